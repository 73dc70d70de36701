package caddymodule

import (
	"net/http"
	"strings"
	"testing"

	"github.com/swarmsec/caddy-hardening/internal/testcaddy"
)

// TestDashboardForgedCSPReportsDoNotHideOthers: one client posting batches of forged CSP
// reports used up the events' admission of csp_violation, so another client's report sent
// right after was missing from the dashboard's last security events; one client now gets
// about half of the budget (as in the security log) and the other's report is listed.
func TestDashboardForgedCSPReportsDoNotHideOthers(t *testing.T) {
	key, digest := newKey(t)
	cf, addr := dashSite(t, "dash_csp_clients", "", "api_keys "+digest)
	cf = strings.Replace(cf, "\thandle {\n", "\thandle /csp {\n\t\tcsp_report /csp\n\t}\n\thandle {\n", 1)
	testcaddy.StartCaddy(t, cf)
	post := func(client, blocked string, n int) {
		t.Helper()
		batch := strings.TrimSuffix(strings.Repeat(`{"type": "csp-violation", "body": {"effectiveDirective": "script-src-elem", "blockedURL": "`+blocked+`"}},`, n), ",")
		req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/csp", strings.NewReader("["+batch+"]"))
		req.Header.Set("Content-Type", "application/reports+json")
		req.Header.Set("X-Forwarded-For", client)
		if resp, body := fetch(t, req); resp.StatusCode != http.StatusNoContent {
			t.Fatalf("report from %s: %d %s", client, resp.StatusCode, body)
		}
	}
	for range 5 {
		post("192.0.2.7", "https://forged.example/x.js", maxReportsPerRequest)
	}
	post("198.51.100.1", "https://genuine.example/y.js", 1)
	for range 5 {
		post("192.0.2.7", "https://forged.example/x.js", maxReportsPerRequest)
	}
	doc := dashData(t, addr, key, "")
	flooder, genuine := 0, 0
	for _, e := range doc.Events {
		switch {
		case e.Event != EventCSPViolation:
		case e.ClientIP == "192.0.2.7":
			flooder++
		case e.ClientIP == "198.51.100.1" && e.Fields["blocked_uri"] == "https://genuine.example/y.js":
			genuine++
		}
	}
	if genuine != 1 || flooder == 0 {
		t.Fatalf("events after the forged reports: %d of the flooder, %d of the other client; want the other's one report listed", flooder, genuine)
	}
}
