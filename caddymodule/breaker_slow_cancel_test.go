package caddymodule

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/swarmsec/caddy-hardening/internal/testcaddy"
	"github.com/swarmsec/caddy-hardening/internal/testenv"
)

// TestBreakerClientGivingUpAfterSlowThresholdIsSlow: clients that give up on a hung upstream
// after waiting longer than slow_threshold saw a slow upstream. They were excluded as
// cancellations, so with response_header_timeout longer than the clients' patience the breaker
// never opened on an upstream that answered nobody.
func TestBreakerClientGivingUpAfterSlowThresholdIsSlow(t *testing.T) {
	u := startUpstream(t, "hold")
	port := testenv.FreePort(t)
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	testcaddy.StartCaddy(t, fmt.Sprintf(`http://127.0.0.1:%d {
	bind 127.0.0.1
	upstream_breaker t_slow_cancel {
		consecutive_failures 2
		open_for 1m
		slow_threshold 10ms
	}
	reverse_proxy %s {
		transport http {
			response_header_timeout 1m
		}
	}
}
`, port, u.addr()))
	before := breakerCount(t, "t_slow_cancel", "failure")
	for i := range 2 {
		ctx, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		errc := make(chan error, 1)
		go func() {
			resp, err := http.DefaultClient.Do(req)
			if err == nil {
				resp.Body.Close()
			}
			errc <- err
		}()
		waitFor(t, "the request to reach the upstream", func() bool { return u.held.Load() > int64(i) })
		time.Sleep(20 * time.Millisecond) // the client waits twice slow_threshold, then gives up
		cancel()
		if err := <-errc; err == nil {
			t.Fatal("the held upstream answered")
		}
	}
	waitBreakerState(t, "t_slow_cancel", "open")
	if n := breakerCount(t, "t_slow_cancel", "failure") - before; n != 2 {
		t.Fatalf("requests_total{outcome=failure} = %v, want 2", n)
	}
	assertOpenReply(t, getReply(t, url), 60)
}
