package caddymodule

import (
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/swarmsec/caddy-hardening/internal/testcaddy"
	"github.com/swarmsec/caddy-hardening/internal/testenv"
)

// TestSecurityEventLoggingIsBounded: a flood of one event is logged at eventLogRate per second;
// the next logged one says how many were left out.
func TestSecurityEventLoggingIsBounded(t *testing.T) {
	s := newEventLogBudget()
	t0 := time.Unix(1_800_000_000, 0)
	logged := 0
	for range 3 * eventLogRate {
		if _, ok := s.Admit(EventPathBlocked, netip.Addr{}, t0); ok {
			logged++
		}
	}
	if logged != eventLogRate {
		t.Fatalf("logged %d of a burst, want %d", logged, eventLogRate)
	}
	if _, ok := s.Admit(EventIPReclassified, netip.Addr{}, t0); !ok {
		t.Fatal("another event name shares the flood's budget")
	}
	suppressed, ok := s.Admit(EventPathBlocked, netip.Addr{}, t0.Add(time.Second/eventLogRate))
	if !ok || suppressed != 2*eventLogRate {
		t.Fatalf("after refill: ok=%v suppressed=%d, want true and %d", ok, suppressed, 2*eventLogRate)
	}
	if suppressed, _ := s.Admit(EventPathBlocked, netip.Addr{}, t0.Add(2*time.Second)); suppressed != 0 {
		t.Fatalf("the count of left-out events was not reset: %d", suppressed)
	}
}

// TestSecurityEventLogShareOfOneClient: one client flooding an event (forged CSP reports, 100
// to a request) took the name's whole budget, and the same events of every other client were
// left out of the log for as long as it went on; beyond eventLogPerClient a second, its events
// now take only the upper half of the budget, and the others are logged (an IPv6 /64 counting
// as one client).
func TestSecurityEventLogShareOfOneClient(t *testing.T) {
	s := newEventLogBudget()
	t0 := time.Unix(1_800_000_000, 0)
	flood := func(client string) (logged int) {
		for range 3 * eventLogRate {
			if _, ok := s.Admit(EventCSPViolation, netip.MustParseAddr(client), t0); ok {
				logged++
			}
		}
		return logged
	}
	if n := flood("192.0.2.7"); n != eventLogRate/2 {
		t.Fatalf("one client had %d events logged in a second, want %d", n, eventLogRate/2)
	}
	if n := flood("2001:db8:1:2::1") + flood("2001:db8:1:2::2"); n != eventLogPerClient {
		t.Fatalf("two addresses of one /64 had %d events logged after the flood, want their share, %d", n, eventLogPerClient)
	}
	suppressed, ok := s.Admit(EventCSPViolation, netip.MustParseAddr("198.51.100.1"), t0)
	if !ok || suppressed != 2*3*eventLogRate-eventLogPerClient {
		t.Fatalf("another client's report: logged %v, suppressed %d; want logged, with the %d of the /64 since its last logged one", ok, suppressed, 2*3*eventLogRate-eventLogPerClient)
	}
	if _, ok := s.Admit(EventCSPViolation, netip.MustParseAddr("192.0.2.7"), t0.Add(time.Second)); !ok {
		t.Fatal("the flooding client's share did not come back the next second")
	}
	if s.Clients() != 1 {
		t.Fatalf("%d clients remembered after the second changed, want 1", s.Clients())
	}
}

// TestForgedCSPReportsDoNotHideOthers: a client behind the trusted proxy posts batches of
// forged CSP reports; a browser's report sent right after is still in the security log.
func TestForgedCSPReportsDoNotHideOthers(t *testing.T) {
	port := testenv.FreePort(t)
	c := testcaddy.StartCaddy(t, fmt.Sprintf(`{
	servers {
		trusted_proxies static 127.0.0.1/32
		trusted_proxies_strict
	}
}
http://127.0.0.1:%d {
	bind 127.0.0.1
	csp_report /csp-report
}
`, port))
	url := fmt.Sprintf("http://127.0.0.1:%d/csp-report", port)
	post := func(client, blocked string, n int) {
		t.Helper()
		batch := strings.TrimSuffix(strings.Repeat(`{"type": "csp-violation", "body": {"effectiveDirective": "script-src-elem", "blockedURL": "`+blocked+`"}},`, n), ",")
		req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader("["+batch+"]"))
		req.Header.Set("Content-Type", "application/reports+json")
		req.Header.Set("X-Forwarded-For", client)
		if resp, _ := fetch(t, req); resp.StatusCode != http.StatusNoContent {
			t.Fatalf("report from %s: %d", client, resp.StatusCode)
		}
	}
	for range 5 {
		post("192.0.2.7", "https://forged.example/x.js", maxReportsPerRequest)
	}
	post("198.51.100.1", "https://genuine.example/y.js", 1)
	logged := testenv.Filter(c.Logs(), func(e testenv.LogEntry) bool {
		return e.Logger() == securityLoggerName && e.Msg() == EventCSPViolation && e.Str("client_ip") == "198.51.100.1"
	})
	if len(logged) != 1 || logged[0].Str("blocked_uri") != "https://genuine.example/y.js" {
		t.Fatalf("the other client's report after the flood: %d logged, want 1", len(logged))
	}
}
