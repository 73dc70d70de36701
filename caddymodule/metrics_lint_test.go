package caddymodule

import (
	"fmt"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/swarmsec/caddy-hardening/internal/testcaddy"
	"github.com/swarmsec/caddy-hardening/internal/testenv"
)

// TestOurMetricsPassPromlint: every caddy_hardening_* family a configuration with each module
// (Redis included) exposes on /metrics passes client_golang's promlint: names with their
// unit and _total, help texts, no reserved or camel-case labels. Caddy's own families are
// Caddy's. The families are listed, so a module that stops exposing one is caught too.
func TestOurMetricsPassPromlint(t *testing.T) {
	r := testenv.StartRedis(t)
	admin, port, dead := testenv.FreePort(t), testenv.FreePort(t), testenv.FreePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	testcaddy.StartCaddy(t, fmt.Sprintf(`{
	admin 127.0.0.1:%d
	hardening {
		redis redis://%s/0
		detection {
			threshold 20
		}
	}
}
http://%s {
	bind 127.0.0.1
	path_guard {
		suspicious_action block
	}
	csp_report /csp-report
	handle_path /mon/* {
		monitoring {
			check redis
			check tcp dead 127.0.0.1:%d
		}
	}
	handle /api/* {
		policy_rate_limit api
		upstream_breaker api {
			consecutive_failures 1
		}
		reverse_proxy 127.0.0.1:%d
	}
	policy_rate_limit public
	respond "ok"
}
`, admin, r.Addr, addr, dead, dead))
	postReport(t, "http://"+addr+"/csp-report", "application/csp-report",
		`{"csp-report": {"document-uri": "http://127.0.0.1/", "effective-directive": "script-src-elem", "blocked-uri": "inline"}}`)
	if status, _, _ := rawGet(t, addr, "/api/x"); status != 502 {
		t.Fatalf("dead upstream: %d", status)
	}
	rawGet(t, addr, "/a/../../etc/passwd") // path_blocked, then the client is detected
	rawGet(t, addr, "/")                   // suspicious_blocked: the admin endpoint serves /metrics
	want := []string{
		"breaker_requests_total", "breaker_short_circuited_total", "breaker_state", "breaker_transitions_total", "component_status",
		"csp_violations_total", "dependency_check_duration_seconds", "dependency_checks_total",
		"dependency_status", "dependency_up", "detection_bans_evicted_total", "detection_suspicious_ips", "detection_tracked_ips",
		"ip_class_requests_total", "ip_reclassified_total", "path_blocked_total",
		"ratelimit_adaptive_factor", "ratelimit_decisions_total", "ratelimit_fallback_decisions_total", "ratelimit_memory_keys",
		"ratelimit_store_duration_seconds", "ratelimit_store_mode", "suspicious_blocked_total",
	}
	var text string
	waitFor(t, "every family on /metrics", func() bool {
		text = getReply(t, fmt.Sprintf("http://127.0.0.1:%d/metrics", admin)).body
		for _, name := range want {
			if !strings.Contains(text, "# TYPE caddy_hardening_"+name+" ") {
				return false
			}
		}
		return true
	})
	var ours strings.Builder
	family := false
	for line := range strings.Lines(text) {
		if strings.HasPrefix(line, "# HELP ") {
			family = strings.HasPrefix(line, "# HELP caddy_hardening_")
		}
		if family {
			ours.WriteString(line)
		}
	}
	problems, err := promlint.New(strings.NewReader(ours.String())).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
}
