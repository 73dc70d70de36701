package caddymodule

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/swarmsec/caddy-hardening/internal/testcaddy"
)

// TestBreakerLeavesVarsAloneAfterTheRoute: reverse_proxy's dial function reads the request's
// vars map from the transport's dial goroutine, which goes on after the request when another
// connection freed up first. The breaker deleted its key from that map once the route had run:
// a write racing with that read, Go's fatal "concurrent map read and map write" outside -race
// (found by -race under load). Bursts of concurrent requests make such abandoned dials; under
// -race the old code fails here.
func TestBreakerLeavesVarsAloneAfterTheRoute(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("ok"))
	}))
	t.Cleanup(up.Close)
	cf, url := breakerSite(t, "t_vars_race", "consecutive_failures 1000", strings.TrimPrefix(up.URL, "http://"))
	testcaddy.StartCaddy(t, cf)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	t.Cleanup(client.CloseIdleConnections)
	for range 10 {
		var wg sync.WaitGroup
		for range 48 {
			wg.Go(func() {
				resp, err := client.Get(url)
				if err != nil {
					t.Error(err)
					return
				}
				resp.Body.Close()
				if resp.StatusCode != 200 {
					t.Errorf("status %d", resp.StatusCode)
				}
			})
		}
		wg.Wait()
	}
}
