package caddymodule

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/swarmsec/caddy-hardening/internal/testcaddy"
	"github.com/swarmsec/caddy-hardening/internal/testenv"
)

// TestBreakerIgnoresRateLimitRefusals: a breaker written before policy_rate_limit in a route
// (so it wraps the limiter) sees the limiter's refusals, which say nothing about the upstream,
// which never got those requests. A refusal with status 503 counted as an upstream failure, so
// one client over its limit opened the breaker for every client; a 429 counted as a success,
// so refusals reset consecutive failures and a refused probe closed a half-open breaker. Both
// are excluded now.
func TestBreakerIgnoresRateLimitRefusals(t *testing.T) {
	healthy := startUpstream(t, "ok")
	site := func(name, status string) (string, string) {
		port := testenv.FreePort(t)
		return fmt.Sprintf(`http://127.0.0.1:%d {
	bind 127.0.0.1
	route {
		upstream_breaker %s {
			consecutive_failures 2
			open_for 1m
		}
		policy_rate_limit per_client {
			%s
		}
		reverse_proxy %s
	}
}
`, port, name, status, healthy.addr()), fmt.Sprintf("http://127.0.0.1:%d/", port)
	}
	block503, url503 := site("t_rl_503", "status 503")
	block429, url429 := site("t_rl_429", "headers on")
	testcaddy.StartCaddy(t, `{
	hardening {
		policy per_client {
			limit 1/1h
			key {header.X-Client}
		}
	}
}
`+block503+block429)

	for _, c := range []struct {
		name, url string
		refused   int
	}{{"t_rl_503", url503, 503}, {"t_rl_429", url429, 429}} {
		success, failure := breakerCount(t, c.name, "success"), breakerCount(t, c.name, "failure")
		if r := getReply(t, c.url, "X-Client: flood-"+c.name); r.status != http.StatusOK {
			t.Fatalf("%s: the flooding client's first request: %d", c.name, r.status)
		}
		for i := range 3 {
			if r := getReply(t, c.url, "X-Client: flood-"+c.name); r.status != c.refused || r.header.Get("Content-Type") != "application/problem+json" {
				t.Fatalf("%s: refusal %d: %d %q, want the limiter's %d", c.name, i, r.status, r.header.Get("Content-Type"), c.refused)
			}
		}
		if r := getReply(t, c.url, "X-Client: other-"+c.name); r.status != http.StatusOK {
			t.Fatalf("%s: another client got %d after one client's refusals: the limiter's refusals opened the breaker", c.name, r.status)
		}
		if got := breakerCount(t, c.name, "failure") - failure; got != 0 {
			t.Fatalf("%s: %v failures counted for the limiter's refusals", c.name, got)
		}
		if got := breakerCount(t, c.name, "success") - success; got != 2 {
			t.Fatalf("%s: %v successes counted, want the 2 requests the upstream answered", c.name, got)
		}
	}
	if n := healthy.hits.Load(); n != 4 {
		t.Fatalf("the upstream got %d requests, want 4", n)
	}
}
