package caddymodule

import (
	"fmt"
	"net"
	"net/http"
	"testing"

	"github.com/swarmsec/caddy-hardening/internal/testcaddy"
	"github.com/swarmsec/caddy-hardening/internal/testenv"
)

// TestBreakerOverTwoUpstreamsOneDead: a breaker in front of a reverse_proxy balancing over two
// upstreams, one of which refuses connections (round_robin, so every other request goes to it).
// Without a retry, every other request is Caddy's 502, the breaker (failure_ratio 0.5) opens,
// and the healthy upstream is held back too (breaker.multi_upstream_no_retries warns of it).
// With lb_retries 1 the refused dial is retried on the healthy upstream: every request is
// answered 200 by it, no failure is counted, and the breaker stays closed.
func TestBreakerOverTwoUpstreamsOneDead(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().String()
	l.Close()
	site := func(name, retries string) (string, string) {
		port := testenv.FreePort(t)
		return fmt.Sprintf(`http://127.0.0.1:%d {
	bind 127.0.0.1
	upstream_breaker %s {
		failure_ratio 0.5
		min_requests 4
		open_for 1m
	}
	reverse_proxy %%s %s {
		lb_policy round_robin%s
		transport http {
			response_header_timeout 2s
		}
	}
}
`, port, name, dead, retries), fmt.Sprintf("http://127.0.0.1:%d/", port)
	}
	plain, retried := startUpstream(t, "ok"), startUpstream(t, "ok")
	noRetry, noRetryURL := site("t_pool_noretry", "")
	withRetry, withRetryURL := site("t_pool_retry", "\n\t\tlb_retries 1")
	testcaddy.StartCaddy(t, fmt.Sprintf(noRetry, plain.addr())+fmt.Sprintf(withRetry, retried.addr()))

	failures := breakerRequestsVec.WithLabelValues("t_pool_retry", "failure")
	before := metricValue(t, failures)
	for i := range 20 {
		if r := getReply(t, withRetryURL); r.status != http.StatusOK || r.body != "upstream ok" {
			t.Fatalf("lb_retries 1, request %d: %d %q; want the healthy upstream's 200", i+1, r.status, r.body)
		}
	}
	if n := metricValue(t, failures) - before; n != 0 {
		t.Fatalf("lb_retries 1: %v failures counted, want none", n)
	}
	if s := breakerStatus(t, "t_pool_retry"); s.Observed["state"] != "closed" {
		t.Fatalf("lb_retries 1: the breaker is %v, want closed", s.Observed["state"])
	}
	if n := retried.hits.Load(); n != 20 {
		t.Fatalf("lb_retries 1: the healthy upstream got %d requests, want all 20", n)
	}

	// Without the retry: every other request is a 502, which opens the breaker, and the healthy
	// upstream is refused from then on.
	statuses := map[int]int{}
	for range 8 {
		statuses[getReply(t, noRetryURL).status]++
	}
	if statuses[http.StatusBadGateway] == 0 || statuses[http.StatusServiceUnavailable] == 0 {
		t.Fatalf("without retries: statuses %v; want 502s from the dead upstream, then the open breaker's 503s", statuses)
	}
	waitBreakerState(t, "t_pool_noretry", "open")
	hits := plain.hits.Load()
	for range 4 {
		assertOpenReply(t, getReply(t, noRetryURL), 60)
	}
	if n := plain.hits.Load() - hits; n != 0 {
		t.Fatalf("the open breaker let %d requests through to the healthy upstream", n)
	}
}
