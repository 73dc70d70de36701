package caddymodule

import (
	"net/http"
	"testing"
)

// TestFinalStatus: the breaker judges (and its fallback run reports) the response's own status,
// not an informational one before it; 101 is a WebSocket's answer, so it is final.
func TestFinalStatus(t *testing.T) {
	for _, tc := range []struct {
		status int
		final  bool
	}{
		{http.StatusContinue, false},
		{http.StatusProcessing, false},
		{http.StatusEarlyHints, false},
		{http.StatusSwitchingProtocols, true},
		{http.StatusOK, true},
		{http.StatusNoContent, true},
		{http.StatusNotModified, true},
		{http.StatusServiceUnavailable, true},
	} {
		if got := finalStatus(tc.status); got != tc.final {
			t.Errorf("finalStatus(%d) = %v, want %v", tc.status, got, tc.final)
		}
	}
}
