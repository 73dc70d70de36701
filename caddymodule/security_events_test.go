package caddymodule

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/swarmsec/caddy-hardening/internal/testenv"
)

// commonFields every security event carries; requestFields, every event a request caused.
var (
	commonFields  = []string{"event", "module"}
	requestFields = []string{"client_ip", "ip_class", "method", "host", "uri"}
)

// TestSecurityEventSchema triggers every security event a request or timer can cause without
// Redis (store_failover: breaker_shared_test.go) and checks each, in the log and as a Caddy
// event, carries the documented common fields (docs/security-events.md).
func TestSecurityEventSchema(t *testing.T) {
	port, dead := testenv.FreePort(t), testenv.FreePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	names := []string{EventMonitoringDenied, EventCSPViolation, EventBreakerStateChanged, EventPathBlocked, EventIPReclassified, EventSuspiciousBlocked}
	c := startWithEvents(t, fmt.Sprintf(`{
	admin off
	hardening {
		detection {
			threshold 20
			ban_for 1h
		}
	}
}
http://%s {
	bind 127.0.0.1
	path_guard {
		suspicious_action block
	}
	csp_report /csp-report
	handle_path /api/monitoring/* {
		monitoring
	}
	handle /api/* {
		upstream_breaker api {
			consecutive_failures 1
			open_for 1h
		}
		reverse_proxy 127.0.0.1:%d
	}
	respond "ok"
}
`, addr, dead), names...)

	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/api/monitoring/health", nil)
	req.Header.Set("Authorization", "Bearer not-a-key")
	if resp, _ := fetch(t, req); resp.StatusCode != http.StatusOK {
		t.Fatalf("health with a wrong key: %d", resp.StatusCode)
	}
	if resp, _ := fetch(t, mustRequest(t, "http://"+addr+"/api/monitoring/health")); resp.StatusCode != http.StatusOK { // no key: a probe, no event
		t.Fatalf("health without a key: %d", resp.StatusCode)
	}
	if resp, _ := postReport(t, "http://"+addr+"/csp-report", "application/csp-report",
		`{"csp-report": {"document-uri": "http://127.0.0.1/", "effective-directive": "script-src-elem", "blocked-uri": "inline", "disposition": "enforce"}}`); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("csp report: %d", resp.StatusCode)
	}
	if status, _, _ := rawGet(t, addr, "/api/x"); status != http.StatusBadGateway {
		t.Fatalf("dead upstream: %d", status)
	}
	if status, _, _ := rawGet(t, addr, "/a/../../etc/passwd"); status != http.StatusBadRequest { // traversal: 20, detected
		t.Fatalf("traversal: %d", status)
	}
	if status, _, _ := rawGet(t, addr, "/"); status != http.StatusForbidden {
		t.Fatalf("detected client: %d", status)
	}

	for _, name := range names {
		var logged []testenv.LogEntry
		deadline := time.Now().Add(5 * time.Second) // the breaker's event comes from its own goroutine
		for len(logged) == 0 && time.Now().Before(deadline) {
			logged = securityLogs(c, name)
			if len(logged) == 0 {
				time.Sleep(20 * time.Millisecond)
			}
		}
		if len(logged) == 0 {
			t.Errorf("%s: not logged on %s", name, securityLoggerName)
			continue
		}
		want := commonFields
		if name != EventBreakerStateChanged {
			want = append(append([]string{}, commonFields...), requestFields...)
		}
		for _, f := range want {
			if _, ok := logged[0][f]; !ok {
				t.Errorf("%s log lacks %q: %v", name, f, logged[0])
			}
		}
		ev := recordedEvents(name)
		if len(ev) == 0 {
			t.Errorf("%s: no Caddy event", name)
			continue
		}
		for _, f := range want {
			if _, ok := ev[0].Data[f]; !ok {
				t.Errorf("%s Caddy event lacks %q: %v", name, f, ev[0].Data)
			}
		}
	}
	if l := securityLogs(c, EventMonitoringDenied); len(l) != 1 || l[0].Str("route") != "health" || l[0].Level() != "warn" {
		t.Errorf("monitoring_access_denied: want one warn entry for the wrong key only, got %v", l)
	}
	// Under handle_path the event carries the URI the client sent, not the stripped one.
	if l := securityLogs(c, EventMonitoringDenied); len(l) == 1 && l[0].Str("uri") != "/api/monitoring/health" {
		t.Errorf("monitoring_access_denied logged uri %q, want /api/monitoring/health", l[0].Str("uri"))
	}
	if ev := recordedEvents(EventMonitoringDenied); len(ev) == 0 || ev[0].Data["uri"] != "/api/monitoring/health" {
		t.Errorf("monitoring_access_denied Caddy event: %v", ev)
	}
	if l := securityLogs(c, EventPathBlocked); len(l) == 0 || l[0].Str("uri") != "/a/../../etc/passwd" {
		t.Errorf("path_blocked uri: %v", l)
	}
}

func mustRequest(t *testing.T, url string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}
