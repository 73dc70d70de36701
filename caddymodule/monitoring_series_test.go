package caddymodule

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/swarmsec/caddy-hardening/internal/testcaddy"
	"github.com/swarmsec/caddy-hardening/internal/testenv"
)

// TestMonitoringRemovedCheckLeavesNoSeries: the run counters and latency histogram of a check
// that a reload removes (or gives another type) go with it, as a removed breaker's or
// policy's series do; a check that the reload only tunes keeps counting where it was. Before,
// they stayed until Caddy exited: every check name (and type) a process ever ran kept its
// series, frozen, on /metrics.
func TestMonitoringRemovedCheckLeavesNoSeries(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer up.Close()
	key, digest := newKey(t)
	down := testenv.FreePort(t)
	cf, base := monitoringSite(t, "", fmt.Sprintf(
		"check http series_kept %s {\ninterval 100ms\n}\ncheck tcp series_gone 127.0.0.1:%d {\ninterval 100ms\n}\n"+
			"check tcp series_retyped 127.0.0.1:%d {\ninterval 100ms\n}\napi_keys %s", up.URL, down, down, digest))
	c := testcaddy.StartCaddy(t, cf)
	waitFor(t, "every check ran", func() bool {
		for _, d := range services(t, base, key).Dependencies {
			if d.Runs == 0 {
				return false
			}
		}
		return true
	})
	metrics := strings.TrimSuffix(base, "api/monitoring/") + "metrics"
	prom := call(t, "GET", metrics, "").body
	for _, want := range []string{
		`caddy_hardening_dependency_checks_total{check="series_gone",result="fail",type="tcp"}`,
		`caddy_hardening_dependency_check_duration_seconds_count{check="series_retyped",type="tcp"}`,
		`caddy_hardening_dependency_checks_total{check="series_kept",result="pass",type="http"}`,
	} {
		if !strings.Contains(prom, want) {
			t.Fatalf("before the reload, /metrics lacks %s", want)
		}
	}

	next := strings.Replace(cf, fmt.Sprintf("check tcp series_gone 127.0.0.1:%d", down), "check tcp series_other 127.0.0.1:1", 1)
	next = strings.Replace(next, fmt.Sprintf("check tcp series_retyped 127.0.0.1:%d", down), "check http series_retyped "+up.URL, 1)
	next = strings.Replace(next, "check http series_kept "+up.URL+" {\n\t\t\t\tinterval 100ms", "check http series_kept "+up.URL+" {\n\t\t\t\tinterval 150ms", 1)
	if next == cf || strings.Count(next, "interval 150ms") != 1 {
		t.Fatalf("the reloaded Caddyfile did not change as meant:\n%s", next)
	}
	if err := c.Load(next); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the retyped check ran as http", func() bool {
		return strings.Contains(call(t, "GET", metrics, "").body, `caddy_hardening_dependency_checks_total{check="series_retyped",result="pass",type="http"}`)
	})
	prom = call(t, "GET", metrics, "").body
	var stale []string
	for _, line := range strings.Split(prom, "\n") {
		if strings.Contains(line, `check="series_gone"`) || strings.Contains(line, `check="series_retyped",type="tcp"`) ||
			strings.Contains(line, `check="series_retyped",result="fail",type="tcp"`) {
			stale = append(stale, line)
		}
	}
	if len(stale) > 0 {
		t.Errorf("%d series of checks the reload removed are still on /metrics, such as %s", len(stale), stale[0])
	}
	if !strings.Contains(prom, `caddy_hardening_dependency_checks_total{check="series_kept",result="pass",type="http"}`) {
		t.Errorf("the tuned check lost its counter:\n%s", prom)
	}
}
