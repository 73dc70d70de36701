package caddymodule

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/swarmsec/caddy-hardening/internal/testenv"
)

// sharedInstance is one Caddy binary with a shared breaker in front of addr.
type sharedInstance struct {
	p   *testenv.Process
	url string
}

func startSharedInstance(t *testing.T, redisURL, addr string) sharedInstance {
	t.Helper()
	port, admin := testenv.FreePort(t), testenv.FreePort(t)
	cfg := fmt.Sprintf(`{
	admin 127.0.0.1:%d
	hardening {
		environment development
		redis %s {
			dial_timeout 200ms
			read_timeout 200ms
			write_timeout 200ms
		}
	}
}

http://127.0.0.1:%d {
	bind 127.0.0.1
	upstream_breaker t_shared {
		consecutive_failures 2
		open_for 1m
		shared
		sync_interval 100ms
	}
	reverse_proxy %s
}
`, admin, redisURL, port, addr)
	return sharedInstance{testenv.RunCaddy(t, cfg), fmt.Sprintf("http://127.0.0.1:%d/", port)}
}

// status fetches one response's status; a transport error fails the test (no request may
// fail because of Redis).
func (s sharedInstance) status(t *testing.T) int {
	t.Helper()
	resp, err := replyClient.Get(s.url)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// waitOpen polls until the instance answers 503 (bounded); it returns how many requests it
// needed.
func (s sharedInstance) waitOpen(t *testing.T) int {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for n := 1; ; n++ {
		switch code := s.status(t); code {
		case http.StatusServiceUnavailable:
			return n
		case http.StatusOK:
		default:
			t.Fatalf("unexpected status %d", code)
		}
		if time.Now().After(deadline) {
			t.Fatal("the instance did not open")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestBreakerSharedInstancesOpenTogether(t *testing.T) {
	r := testenv.StartRedis(t)
	failing := startUpstream(t, "fail")
	healthy := startUpstream(t, "ok")
	a := startSharedInstance(t, r.URL(0), failing.addr())
	b := startSharedInstance(t, r.URL(0), healthy.addr())

	for i, want := range []int{500, 500, 503} {
		if got := a.status(t); got != want {
			t.Fatalf("instance a, request %d: %d, want %d (open after 2 failures)", i, got, want)
		}
	}
	// b's upstream is healthy: b opens only because a did.
	b.waitOpen(t)
	hits := healthy.hits.Load()
	for range 5 {
		if b.status(t) != 503 {
			t.Fatal("b closed again")
		}
	}
	if healthy.hits.Load() != hits {
		t.Fatal("b's upstream got requests while b was open")
	}
	if err := b.p.WaitOutput(`"cause":"shared"`, 5*time.Second); err != nil {
		t.Fatalf("b logged no state change caused by the shared state: %v", err)
	}
	if n, _ := r.Do("EXISTS", "hardening:breaker:{t_shared}:gobreaker:state:t_shared"); n != int64(1) {
		t.Fatalf("no shared state under the app's key prefix with a hash tag (EXISTS = %v)", n)
	}
}

func TestBreakerSharedRedisDownDecidesLocally(t *testing.T) {
	r := testenv.StartRedis(t)
	failing := startUpstream(t, "fail")
	healthy := startUpstream(t, "ok")
	a := startSharedInstance(t, r.URL(0), failing.addr())
	b := startSharedInstance(t, r.URL(0), healthy.addr())
	if a.status(t) != 500 || b.status(t) != 200 {
		t.Fatal("instances not serving")
	}
	r.Kill()
	for _, p := range []*testenv.Process{a.p, b.p} {
		if err := p.WaitOutput(`"event":"store_failover"`, 10*time.Second); err != nil {
			t.Fatalf("no store_failover event after Redis died: %v", err)
		}
		// The common schema (docs/security-events.md): logger, event and module on every event.
		var found bool
		for _, e := range testenv.ParseLogs(p.Output()) {
			if e.Str("event") == EventStoreFailover {
				found = e.Logger() == securityLoggerName && e.Str("module") == "http.handlers.upstream_breaker"
				break
			}
		}
		if !found {
			t.Fatal("store_failover lacks the common fields (logger hardening.security, module)")
		}
	}
	// No request fails because of Redis; a opens on its own failures, b stays closed.
	if a.status(t) != 500 || a.status(t) != 503 {
		t.Fatal("a's local breaker did not open while Redis is down")
	}
	for range 20 {
		if code := b.status(t); code != 200 {
			t.Fatalf("b answered %d while Redis is down and its upstream is healthy", code)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if strings.Contains(b.p.Output(), `"to":"open"`) {
		t.Fatal("b opened without Redis to tell it")
	}
	// Redis is back: a's trip is recorded and b follows.
	r.Restart()
	b.waitOpen(t)
}
