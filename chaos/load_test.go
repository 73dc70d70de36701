package chaos

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// TestLoadIsBounded: with every worker busy, ticks are skipped rather than queued, so a slow
// server sees at most Workers requests at once and the generator's backlog stays empty.
func TestLoadIsBounded(t *testing.T) {
	var inFlight, peak atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		time.Sleep(50 * time.Millisecond)
		if r.Header.Get("X-Forwarded-For") != "192.0.2.1" {
			w.WriteHeader(http.StatusBadRequest)
		}
	}))
	defer srv.Close()
	l := &Load{Targets: []string{srv.URL}, Rate: 400, Workers: 2,
		Next: func(int64) Request { return Request{Path: "/", ClientIP: "192.0.2.1"} }}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	st := l.Run(ctx)
	if peak.Load() > 2 {
		t.Errorf("%d requests in flight at once, want at most 2 workers", peak.Load())
	}
	if st.Skipped == 0 || st.Requests > 2*(500/50)+2 {
		t.Errorf("requests %d, skipped %d: a saturated load must skip ticks, not queue them", st.Requests, st.Skipped)
	}
	if st.ByStatus[200] != st.Requests || st.ByInstance[0][200] != st.Requests {
		t.Errorf("statuses %v, per instance %v", st.ByStatus, st.ByInstance)
	}
	if p := st.Percentile(.5); p < 50*time.Millisecond {
		t.Errorf("median latency %v, the server takes 50ms", p)
	}
}

func TestLoadStopsAfterTotal(t *testing.T) {
	var served atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { served.Add(1) }))
	defer srv.Close()
	l := &Load{Targets: []string{srv.URL}, Workers: 4, Total: 250,
		Next: func(int64) Request { return Request{Path: "/"} }}
	st := l.Run(context.Background())
	if st.Requests != 250 || served.Load() != 250 {
		t.Fatalf("sent %d, served %d, want 250", st.Requests, served.Load())
	}
}
