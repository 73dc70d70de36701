package caddymodule

import (
	"fmt"
	"testing"

	"github.com/swarmsec/caddy-hardening/internal/testcaddy"
	"github.com/swarmsec/caddy-hardening/internal/testenv"
)

// TestBreakerNestedSameNameCountsOnce: a request that reaches a breaker of the same name twice
// (one snippet imported at two levels, a named route invoked under the breaker) is counted once.
// Counted twice, one upstream failure was two, and after recovery the inner breaker refused the
// outer one's half-open probe (its only slot was taken), whose 503 the outer counted as a failure:
// the breaker reopened on a healthy upstream every open_for, forever.
func TestBreakerNestedSameNameCountsOnce(t *testing.T) {
	u := startUpstream(t, "fail")
	port := testenv.FreePort(t)
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	testcaddy.StartCaddy(t, fmt.Sprintf(`(guard) {
	upstream_breaker t_nested {
		consecutive_failures 2
		open_for 200ms
	}
}

http://127.0.0.1:%d {
	bind 127.0.0.1
	route {
		import guard
		route {
			import guard
			reverse_proxy %s
		}
	}
}
`, port, u.addr()))
	failBefore := breakerCount(t, "t_nested", "failure")

	if r := getReply(t, url); r.status != 500 {
		t.Fatalf("first request: %d, want the upstream's 500", r.status)
	}
	if s := breakerStatus(t, "t_nested"); s.Observed["state"] != "closed" {
		t.Fatalf("one failure with consecutive_failures 2: breaker %v, want closed (counted twice?)", s.Observed["state"])
	}
	if r := getReply(t, url); r.status != 500 {
		t.Fatalf("second request: %d, want the upstream's 500", r.status)
	}
	waitBreakerState(t, "t_nested", "open")
	if n := breakerCount(t, "t_nested", "failure") - failBefore; n != 2 {
		t.Fatalf("requests_total{outcome=failure} = %v, want 2", n)
	}

	u.mode.Store("ok")
	waitBreakerState(t, "t_nested", "half_open")
	if r := getReply(t, url); r.status != 200 {
		t.Fatalf("half-open probe to a recovered upstream: %d %s, want 200", r.status, r.body)
	}
	waitBreakerState(t, "t_nested", "closed")
}
