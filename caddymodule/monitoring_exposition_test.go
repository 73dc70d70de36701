package caddymodule

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/swarmsec/caddy-hardening/internal/testcaddy"
)

// prometheusAccept is the Accept header Prometheus 3 sends with a scrape.
const prometheusAccept = "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5," +
	"application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3," +
	"text/plain;version=0.0.4;q=0.2,*/*;q=0.1"

// TestMonitoringMetricsScrapedByPrometheus: the metrics route served JSON only, and Caddy's
// Prometheus endpoint (admin /metrics) listens on loopback, so a Prometheus outside the pod
// could not scrape the caddy_hardening_* series without another listener. A scrape of the
// metrics route (Prometheus's Accept) now gets the exposition format, behind the route's access
// rule: 401 with WWW-Authenticate without a key, the whole registry with one; browsers and
// curl (`*/*`) keep the JSON view.
func TestMonitoringMetricsScrapedByPrometheus(t *testing.T) {
	key, digest := newKey(t)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer up.Close()
	cf, base := monitoringSite(t, "", fmt.Sprintf("check http billing %s/healthz\napi_keys %s", up.URL, digest))
	testcaddy.StartCaddy(t, cf)
	waitFor(t, "the first run", func() bool { return services(t, base, key).Dependencies[0].Runs > 0 })

	scrape := func(accept, key string) answer {
		t.Helper()
		req, _ := http.NewRequest("GET", base+"metrics", nil)
		req.Header.Set("Accept", accept)
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		return send(t, req)
	}

	a := scrape(prometheusAccept, "")
	if a.code != http.StatusUnauthorized || !strings.HasPrefix(a.header.Get("WWW-Authenticate"), "Bearer") ||
		strings.Contains(a.body, "caddy_hardening") {
		t.Fatalf("a scrape without a key: %d %q %s", a.code, a.header.Get("WWW-Authenticate"), a.body)
	}

	a = scrape(prometheusAccept, key)
	if a.code != http.StatusOK || !strings.HasPrefix(a.header.Get("Content-Type"), "application/openmetrics-text") ||
		!strings.HasSuffix(a.body, "# EOF\n") || a.header.Get("Cache-Control") != "no-store" {
		t.Fatalf("Prometheus's scrape with a key: %d %q %q, body ends %q", a.code,
			a.header.Get("Content-Type"), a.header.Get("Cache-Control"), a.body[max(0, len(a.body)-40):])
	}

	a = scrape("text/plain;version=0.0.4", key)
	if a.code != http.StatusOK || !strings.HasPrefix(a.header.Get("Content-Type"), "text/plain") {
		t.Fatalf("a text-format scrape: %d %q", a.code, a.header.Get("Content-Type"))
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(a.body))
	if err != nil {
		t.Fatalf("the text format does not parse: %v\n%s", err, a.body)
	}
	for _, name := range []string{"caddy_hardening_dependency_up", "caddy_hardening_dependency_checks_total", "go_goroutines", "process_resident_memory_bytes"} {
		if families[name] == nil {
			t.Errorf("the scrape has no %s", name)
		}
	}
	up0 := families["caddy_hardening_dependency_up"].GetMetric()
	if len(up0) != 1 || up0[0].GetGauge().GetValue() != 1 {
		t.Errorf("caddy_hardening_dependency_up: %v, want one series at 1 (billing)", up0)
	}

	for _, accept := range []string{"*/*", "application/json", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"} {
		a = scrape(accept, key)
		if a.code != http.StatusOK || a.header.Get("Content-Type") != "application/json" || !strings.Contains(a.body, `"counters"`) {
			t.Errorf("Accept %q: %d %q, want the JSON view: %.200s", accept, a.code, a.header.Get("Content-Type"), a.body)
		}
	}
}
