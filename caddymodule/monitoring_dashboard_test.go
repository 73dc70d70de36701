package caddymodule

import (
	"encoding/json"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/netip"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/swarmsec/caddy-hardening/dashboard/page"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/swarmsec/caddy-hardening/dashboard"
	"github.com/swarmsec/caddy-hardening/internal/testcaddy"
	"github.com/swarmsec/caddy-hardening/internal/testenv"
	"github.com/swarmsec/caddy-hardening/ipclass"
)

// fastDashboard makes the recorder sample every 100 ms for this test (the buckets stay 5 s).
// Register it before starting Caddy: the sampler reads it when it starts and is stopped
// before this cleanup runs.
func fastDashboard(t *testing.T) {
	old := dashSampleEvery
	dashSampleEvery = 100 * time.Millisecond
	t.Cleanup(func() { dashSampleEvery = old })
}

// dashSite is a Caddyfile where 127.0.0.1 is a trusted proxy (X-Forwarded-For names the
// client), the app runs path_guard and policy_rate_limit <policy> (2 requests an hour), and
// the monitoring handler is mounted under /api/monitoring/. It returns the Caddyfile and the
// site's host:port.
func dashSite(t *testing.T, policy, hardening, monitoring string) (string, string) {
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	cf := fmt.Sprintf(`{
	servers {
		trusted_proxies static 127.0.0.1/32
	}
	hardening {
		policy %[1]s {
			limit 2/1h
		}
		%[2]s
	}
}
http://%[3]s {
	bind 127.0.0.1
	handle_path /api/monitoring/* {
		monitoring {
			%[4]s
		}
	}
	handle /metrics {
		metrics
	}
	handle {
		path_guard
		policy_rate_limit %[1]s
		respond "app"
	}
}
`, policy, hardening, addr, monitoring)
	return string(caddyfile.Format([]byte(cf))), addr
}

// dashData fetches /dashboard/data with the key and decodes it; the answer must be 200.
func dashData(t *testing.T, addr, key, query string) dashboard.Document {
	t.Helper()
	a := call(t, "GET", "http://"+addr+"/api/monitoring/dashboard/data"+query, key)
	if a.code != http.StatusOK || a.header.Get("Content-Type") != "application/json" {
		t.Fatalf("data: %d %s: %s", a.code, a.header.Get("Content-Type"), a.body)
	}
	var doc dashboard.Document
	if err := json.Unmarshal([]byte(a.body), &doc); err != nil {
		t.Fatalf("data: %v: %s", err, a.body)
	}
	return doc
}

func sendAs(t *testing.T, addr, client, target string) int {
	t.Helper()
	status, _, _ := rawGet(t, addr, target, "X-Forwarded-For: "+client)
	return status
}

// sumSeries adds every bucket of the series of fam whose labels include want.
func sumSeries(fam []dashboard.Labeled, want map[string]string) float64 {
	sum := 0.0
	for _, s := range fam {
		if hasLabels(s.Labels, want) {
			for _, v := range s.Values {
				sum += v
			}
		}
	}
	return sum
}

func hasLabels(have, want map[string]string) bool {
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return true
}

func totalOf(ts []dashboard.Total, want map[string]string) float64 {
	sum := 0.0
	for _, tot := range ts {
		if hasLabels(tot.Labels, want) {
			sum += tot.Count
		}
	}
	return sum
}

// promSeries reads one family from Prometheus' text format (Caddy's /metrics): the labels and
// value of each series.
func promSeries(t *testing.T, text, family string) []dashboard.Total {
	t.Helper()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("/metrics: %v", err)
	}
	var out []dashboard.Total
	for _, m := range families[family].GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		v := m.GetCounter().GetValue() + m.GetGauge().GetValue()
		out = append(out, dashboard.Total{Labels: labels, Count: v})
	}
	return out
}

func TestDashboardDataNeedsAuthorization(t *testing.T) {
	fastDashboard(t)
	key, digest := newKey(t)
	cf, addr := dashSite(t, "dash_auth", "", "api_keys "+digest)
	testcaddy.StartCaddy(t, cf)
	url := "http://" + addr + "/api/monitoring/dashboard/data"
	for _, k := range []string{"", "mon_wrongwrongwrongwrongwrongwrongwrong"} {
		a := call(t, "GET", url, k)
		if a.code != http.StatusUnauthorized || a.header.Get("Content-Type") != "application/problem+json" ||
			!strings.Contains(a.body, `"title":"Unauthorized"`) || strings.Contains(a.body, "timestamps") || strings.Contains(a.body, "instance") {
			t.Fatalf("key %q: %d %s %s", k, a.code, a.header.Get("Content-Type"), a.body)
		}
	}
	doc := dashData(t, addr, key, "")
	if doc.Scope != "local" || doc.Range != "15m" || doc.ResolutionSeconds != 5 || len(doc.Timestamps) != 180 ||
		doc.Instance == "" || len(doc.Instances) != 1 || len(doc.System.Goroutines) != 180 || len(doc.StoreMode.Values) != 180 {
		t.Fatalf("doc: scope %s range %s res %d, %d timestamps, instance %q", doc.Scope, doc.Range, doc.ResolutionSeconds, len(doc.Timestamps), doc.Instance)
	}
	for i := 1; i < len(doc.Timestamps); i++ {
		if doc.Timestamps[i]-doc.Timestamps[i-1] != 5 || doc.Timestamps[i]%5 != 0 {
			t.Fatalf("timestamps not aligned 5 s apart at %d: %v", i, doc.Timestamps[i-1:i+1])
		}
	}
	waitFor(t, "a goroutines sample", func() bool {
		g := dashData(t, addr, key, "").System.Goroutines
		return !math.IsNaN(g[len(g)-1]) && g[len(g)-1] > 0
	})
	// The wrong key was a monitoring_access_denied event, now in the dashboard's events.
	found := false
	for _, e := range dashData(t, addr, key, "").Events {
		found = found || (e.Event == EventMonitoringDenied && e.Fields["route"] == "dashboard/data")
	}
	if !found {
		t.Fatal("the wrong key's monitoring_access_denied event is not in the events")
	}
	if d := dashData(t, addr, key, "?range=1h"); d.Range != "1h" || d.ResolutionSeconds != 60 || len(d.Timestamps) != 60 || len(d.System.CPUPercent) != 60 {
		t.Fatalf("1h: range %s res %d, %d timestamps", d.Range, d.ResolutionSeconds, len(d.Timestamps))
	}
	for q, want := range map[string]string{"?range=2h": "range", "?scope=everything": "scope", "?scope=all": "needs Redis"} {
		a := call(t, "GET", url+q, key)
		if a.code != http.StatusBadRequest || !strings.Contains(a.body, want) {
			t.Fatalf("%s: %d %s", q, a.code, a.body)
		}
	}
	if a := call(t, "POST", url, key); a.code != http.StatusMethodNotAllowed {
		t.Fatalf("POST: %d", a.code)
	}
}

func TestDashboardDataForTrustedClass(t *testing.T) {
	cf, addr := dashSite(t, "dash_trusted", "ip_classes {\ntrusted 127.0.0.1\n}", "")
	testcaddy.StartCaddy(t, cf)
	if doc := dashData(t, addr, "", ""); len(doc.Timestamps) != 180 {
		t.Fatalf("trusted client: %d timestamps", len(doc.Timestamps))
	}
	a := call(t, "GET", "http://"+addr+"/api/monitoring/dashboard/data", "")
	req, _ := http.NewRequest("GET", "http://"+addr+"/api/monitoring/dashboard/data", nil)
	req.Header.Set("X-Forwarded-For", "198.51.100.4") // a default client behind the trusted proxy
	resp, err := replyClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if a.code != http.StatusOK || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("trusted %d, default client %d", a.code, resp.StatusCode)
	}
}

func TestDashboardOff(t *testing.T) {
	_, digest := newKey(t)
	cf, addr := dashSite(t, "dash_off", "", "api_keys "+digest+"\ndashboard off")
	testcaddy.StartCaddy(t, cf)
	for _, p := range []string{"dashboard", "dashboard/data"} {
		if a := call(t, "GET", "http://"+addr+"/api/monitoring/"+p, ""); a.code != http.StatusNotFound {
			t.Fatalf("%s with the dashboard off: %d", p, a.code)
		}
	}
	if a := call(t, "GET", "http://"+addr+"/api/monitoring/live", ""); a.code != http.StatusOK {
		t.Fatalf("live: %d", a.code)
	}
}

var nonceAttr = regexp.MustCompile(`nonce="([^"]+)"`)

// checkPage fetches the page and checks its one CSP against the nonces in its body.
func checkPage(t *testing.T, url string) string {
	t.Helper()
	a := call(t, "GET", url, "")
	if a.code != http.StatusOK || a.header.Get("Content-Type") != "text/html; charset=utf-8" ||
		a.header.Get("Cache-Control") != "no-store" || a.header.Get("X-Content-Type-Options") != "nosniff" ||
		a.header.Get("Referrer-Policy") != "no-referrer" {
		t.Fatalf("page: %d %v", a.code, a.header)
	}
	csps := a.header.Values("Content-Security-Policy")
	if len(csps) != 1 || len(a.header.Values("Content-Security-Policy-Report-Only")) != 0 {
		t.Fatalf("page CSP headers: %q, report-only %q", csps, a.header.Values("Content-Security-Policy-Report-Only"))
	}
	m := regexp.MustCompile(`^default-src 'none'; script-src 'nonce-([A-Za-z0-9+/=]{24})'; style-src 'nonce-([A-Za-z0-9+/=]{24})'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'; require-trusted-types-for 'script'; trusted-types 'none'$`).FindStringSubmatch(csps[0])
	if m == nil || m[1] != m[2] {
		t.Fatalf("page CSP: %q", csps[0])
	}
	nonces := nonceAttr.FindAllStringSubmatch(a.body, -1)
	if len(nonces) < 2 {
		t.Fatalf("the page has %d nonce attributes: %s", len(nonces), a.body)
	}
	for _, n := range nonces {
		if n[1] != m[1] {
			t.Fatalf("body nonce %q, CSP nonce %q", n[1], m[1])
		}
	}
	// The page is the embedded one, whole: no data is ever rendered into it.
	if a.body != string(page.Render(m[1])) {
		t.Fatalf("the page differs from page.Render of its nonce:\n%.400s", a.body)
	}
	return m[1]
}

func TestDashboardPageCSP(t *testing.T) {
	cf, addr := dashSite(t, "dash_page", "", "")
	testcaddy.StartCaddy(t, cf)
	url := "http://" + addr + "/api/monitoring/dashboard"
	if a, b := checkPage(t, url), checkPage(t, url); a == b {
		t.Fatal("two requests got the same nonce")
	}
}

// TestDashboardPageUnderSecurityHeaders: security_headers wraps the route with its own CSP
// (enforced and report-only) and rewrites HTML nonces; the page still carries only its own
// CSP and its nonces match it.
func TestDashboardPageUnderSecurityHeaders(t *testing.T) {
	for _, inject := range []string{"inject_nonce tags", "inject_nonce placeholder dashboard-placeholder-0123456789"} {
		t.Run(strings.Fields(inject)[1], func(t *testing.T) {
			addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
			testcaddy.StartCaddy(t, fmt.Sprintf(`{
	hardening {
		environment development
	}
}
http://%s {
	bind 127.0.0.1
	security_headers strict {
		csp {
			script-src 'self' 'nonce'
		}
		%s
	}
	header Content-Security-Policy-Report-Only "default-src 'self'"
	handle_path /api/monitoring/* {
		monitoring
	}
}
`, addr, inject))
			checkPage(t, "http://"+addr+"/api/monitoring/dashboard")
		})
	}
}

// TestDashboardTrafficMatchesMetrics generates allowed and denied requests, probes and a
// traversal; the series hold the points and the totals equal Caddy's /metrics.
func TestDashboardTrafficMatchesMetrics(t *testing.T) {
	fastDashboard(t)
	key, digest := newKey(t)
	policy := "dash_traffic"
	cf, addr := dashSite(t, policy, "", "api_keys "+digest)
	c := testcaddy.StartCaddy(t, cf)
	before := waitSampled(t, addr, key)

	limited, prober, traverser := "203.0.113.9", "198.51.100.7", "192.0.2.5"
	start := time.Now().Unix()
	for i, want := range []int{200, 200, 429, 429, 429} {
		if got := sendAs(t, addr, limited, "/"); got != want {
			t.Fatalf("request %d: %d, want %d", i, got, want)
		}
	}
	for _, p := range []string{"/.env", "/.git/config"} {
		sendAs(t, addr, prober, p)
	}
	if got := sendAs(t, addr, traverser, "/static/../../etc/passwd"); got != http.StatusBadRequest {
		t.Fatalf("traversal: %d", got)
	}
	end := time.Now().Unix()

	allowed := map[string]string{"policy": policy, "result": "allowed"}
	denied := map[string]string{"policy": policy, "result": "denied"}
	var doc dashboard.Document
	waitFor(t, "the traffic in the dashboard", func() bool {
		doc = dashData(t, addr, key, "")
		return totalOf(doc.Totals.RateLimit, denied)-totalOf(before.Totals.RateLimit, denied) == 3 && totalOf(doc.Totals.PathBlocked, map[string]string{"reason": "dot_segment"}) > totalOf(before.Totals.PathBlocked, map[string]string{"reason": "dot_segment"})
	})
	// The series: every point of the new policy lies in the buckets of the traffic.
	// Allowed: two of the limited client, and the prober's two (path_guard lets probes through).
	if a, d := sumSeries(doc.RateLimit, allowed), sumSeries(doc.RateLimit, denied); a != 4 || d != 3 {
		t.Fatalf("series: %v allowed, %v denied; want 4 and 3", a, d)
	}
	for _, s := range doc.RateLimit {
		if s.Labels["policy"] != policy {
			continue
		}
		for i, v := range s.Values {
			// A sample's increase goes to the bucket of the sample, which may follow the traffic's.
			if ts := doc.Timestamps[i]; v != 0 && (ts < start-start%5 || ts > end+5) {
				t.Fatalf("%v: %v at %d, outside the traffic [%d, %d]", s.Labels, v, ts, start, end)
			}
		}
	}
	for fam, pair := range map[string][2][]dashboard.Labeled{
		"traversal": {before.PathBlocked, doc.PathBlocked},
		"probe":     {before.Detections, doc.Detections},
	} {
		label := map[string]string{"reason": "dot_segment"}
		if fam == "probe" {
			label = map[string]string{"signal": "probe"}
		}
		if got := sumSeries(pair[1], label) - sumSeries(pair[0], label); got != 1 {
			t.Fatalf("%s: the series grew by %v, want 1", fam, got)
		}
	}
	if h := dashData(t, addr, key, "?range=1h"); sumSeries(h.RateLimit, denied) != 3 {
		t.Fatalf("1h series: %v denied", sumSeries(h.RateLimit, denied))
	}

	// Totals equal /metrics, series by series (folded ones as a sum).
	metrics := call(t, "GET", "http://"+addr+"/metrics", "").body
	for fam, totals := range map[string][]dashboard.Total{
		"caddy_hardening_ratelimit_decisions_total": doc.Totals.RateLimit,
		"caddy_hardening_path_blocked_total":        doc.Totals.PathBlocked,
		"caddy_hardening_ip_reclassified_total":     doc.Totals.Detections,
		"caddy_hardening_csp_violations_total":      doc.Totals.CSPViolations,
	} {
		prom := promSeries(t, metrics, fam)
		sumProm, sumDash := 0.0, 0.0
		for _, p := range prom {
			sumProm += p.Count
		}
		for _, tot := range totals {
			sumDash += tot.Count
			if tot.Labels[firstLabel(tot.Labels)] == dashboard.Other {
				continue
			}
			if got := totalOf(prom, tot.Labels); got != tot.Count {
				t.Fatalf("%s %v: dashboard %v, /metrics %v", fam, tot.Labels, tot.Count, got)
			}
		}
		if sumProm != sumDash {
			t.Fatalf("%s: dashboard totals sum to %v, /metrics to %v", fam, sumDash, sumProm)
		}
	}
	if totalOf(doc.Totals.RateLimit, denied)-totalOf(before.Totals.RateLimit, denied) != 3 {
		t.Fatal("the denied total did not grow by 3")
	}

	// The tables.
	if len(doc.TopLimited) == 0 || doc.TopLimited[0] != (dashboard.Limited{Policy: policy, Key: limited, Count: 3}) {
		t.Fatalf("top limited: %+v", doc.TopLimited)
	}
	var sus *dashboard.Suspicious
	for i := range doc.Suspicious {
		if doc.Suspicious[i].IP == prober {
			sus = &doc.Suspicious[i]
		}
	}
	if sus == nil || sus.Signal != "probe" || sus.SecondsLeft <= 0 { // its unban command: TestDashboardUnbanUsesTheConfiguredAdmin
		t.Fatalf("suspicious: %+v", doc.Suspicious)
	}
	events := map[string]dashboard.Event{}
	for _, e := range doc.Events {
		if _, seen := events[e.Event]; !seen {
			events[e.Event] = e
		}
	}
	if e := events[EventPathBlocked]; e.ClientIP != traverser || e.Fields["reason"] != "dot_segment" || !strings.Contains(e.URI, "etc/passwd") {
		t.Fatalf("path_blocked event: %+v", e)
	}
	if e := events[EventRateLimited]; e.ClientIP != limited || e.Fields["policy"] != policy {
		t.Fatalf("rate_limit_exceeded event: %+v", e)
	}
	probed := false
	for _, e := range doc.Events {
		probed = probed || (e.Event == EventIPReclassified && e.Fields["ip"] == prober && e.Fields["signal"] == "probe")
	}
	if !probed {
		t.Fatalf("no ip_reclassified event for the prober in %+v", doc.Events)
	}
	if m := doc.StoreMode.Values[len(doc.StoreMode.Values)-1]; m == nil || *m != storeModeMemory {
		t.Fatalf("store mode now: %v", m)
	}

	// A reload keeps the history.
	if err := c.Load(strings.Replace(cf, `respond "app"`, `respond "app after reload"`, 1)); err != nil {
		t.Fatal(err)
	}
	after := dashData(t, addr, key, "")
	if sumSeries(after.RateLimit, denied) != 3 || len(after.TopLimited) == 0 || after.TopLimited[0].Key != limited {
		t.Fatalf("after reload: %v denied, top %+v", sumSeries(after.RateLimit, denied), after.TopLimited)
	}
	waitFor(t, "a sample after the reload", func() bool {
		g := dashData(t, addr, key, "").System.Goroutines
		return !math.IsNaN(g[len(g)-1])
	})
}

// waitSampled waits for the recorder's first sample (the baseline) and returns the data then.
func waitSampled(t *testing.T, addr, key string) dashboard.Document {
	t.Helper()
	var doc dashboard.Document
	waitFor(t, "the first sample", func() bool {
		doc = dashData(t, addr, key, "")
		g := doc.System.Goroutines
		return !math.IsNaN(g[len(g)-1])
	})
	return doc
}

func firstLabel(m map[string]string) string {
	for k := range m {
		return k
	}
	return ""
}

// TestDashboardTopKeysAreBounded: hundreds of refused clients leave the top-K at its bound.
func TestDashboardTopKeysAreBounded(t *testing.T) {
	key, digest := newKey(t)
	cf, addr := dashSite(t, "dash_many", "", "api_keys "+digest)
	testcaddy.StartCaddy(t, cf)
	for i := 0; i < 300; i++ {
		client := fmt.Sprintf("198.18.%d.%d", i/250, i%250+1)
		for j := 0; j < 3; j++ {
			sendAs(t, addr, client, "/")
		}
	}
	doc := dashData(t, addr, key, "")
	if len(doc.TopLimited) != dashboard.TopShown {
		t.Fatalf("%d top rows, want %d", len(doc.TopLimited), dashboard.TopShown)
	}
	if n := currentDash.Load().top.Len(); n > dashboard.TopTracked {
		t.Fatalf("the top-K tracks %d keys, bound %d", n, dashboard.TopTracked)
	}
	if n := len(doc.Events); n > dashboard.MaxEvents {
		t.Fatalf("%d events, bound %d", n, dashboard.MaxEvents)
	}
}

// TestDashboardShowsRedisFallback: with Redis gone, the rate limiter decides in memory; the
// data says so (store mode series, degraded banner, store_failover event), and scope=all still
// answers with this instance alone.
func TestDashboardShowsRedisFallback(t *testing.T) {
	fastDashboard(t)
	r := testenv.StartRedis(t)
	key, digest := newKey(t)
	cf, addr := dashSite(t, "dash_fallback", "redis "+r.URL(0), "api_keys "+digest)
	testcaddy.StartCaddy(t, cf)
	waitFor(t, "the redis store mode in the series", func() bool {
		m := dashData(t, addr, key, "").StoreMode.Values
		return m[len(m)-1] != nil && *m[len(m)-1] == storeModeRedis
	})
	if d := dashData(t, addr, key, "?scope=all"); len(d.Instances) != 1 || len(d.Current.Degraded) != 0 {
		t.Fatalf("all view with one instance: %v, degraded %+v", d.Instances, d.Current.Degraded)
	}
	// A bucket shows the most degraded mode it saw: let one bucket end in redis mode.
	time.Sleep(time.Until(time.Now().Truncate(5 * time.Second).Add(5*time.Second + 300*time.Millisecond)))
	r.Kill()
	var doc dashboard.Document
	// The store_failover event follows the switch the series shows: wait for both.
	waitFor(t, "the fallback and its store_failover event in the dashboard", func() bool {
		sendAs(t, addr, "203.0.113.20", "/")
		doc = dashData(t, addr, key, "")
		m := doc.StoreMode.Values
		if m[len(m)-1] == nil || *m[len(m)-1] != storeModeFallback {
			return false
		}
		for _, e := range doc.Events {
			if e.Event == EventStoreFailover && e.Fields["to"] == storeModeFallback {
				return true
			}
		}
		return false
	})
	found := false
	for _, d := range doc.Current.Degraded {
		found = found || (d.Kind == dashboard.DegradedRateLimitFallback && d.Component == "ratelimit:store" && d.Message != "")
	}
	if !found || doc.Current.Status != "warn" {
		t.Fatalf("current: %+v", doc.Current)
	}
	sawRedis := false
	for _, m := range doc.StoreMode.Values {
		sawRedis = sawRedis || (m != nil && *m == storeModeRedis)
	}
	if !sawRedis {
		t.Fatal("the series lost the time in redis mode")
	}
	if d := dashData(t, addr, key, "?scope=all"); len(d.Instances) != 1 || d.Scope != "all" {
		t.Fatalf("all view with Redis down: %v %s", d.Instances, d.Scope)
	}
}

// TestDashboardDependencies: a check that passes and a critical one that fails show as series
// (up, latency) and in the current state, with the dependency_down banner.
func TestDashboardDependencies(t *testing.T) {
	fastDashboard(t)
	up, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	go func() {
		for {
			c, err := up.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	down := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	key, digest := newKey(t)
	cf, addr := dashSite(t, "dash_deps", "", fmt.Sprintf(`api_keys %s
check tcp cache %s
check tcp db %s {
	critical
	failures_before_down 1
}`, digest, up.Addr(), down))
	testcaddy.StartCaddy(t, cf)
	var doc dashboard.Document
	waitFor(t, "both checks sampled", func() bool {
		doc = dashData(t, addr, key, "")
		if len(doc.Dependencies) != 2 {
			return false
		}
		for _, d := range doc.Dependencies {
			if math.IsNaN(d.Up[len(d.Up)-1]) || math.IsNaN(d.LatencyMS[len(d.LatencyMS)-1]) {
				return false
			}
		}
		return true
	})
	for _, d := range doc.Dependencies {
		want := map[string]float64{"cache": 1, "db": 0}[d.Name]
		if got := d.Up[len(d.Up)-1]; got != want {
			t.Fatalf("%s up = %v, want %v", d.Name, got, want)
		}
	}
	cur := doc.Current
	if cur.Ready || cur.Status != "fail" || len(cur.Dependencies) != 2 {
		t.Fatalf("current: %+v", cur)
	}
	var banner bool
	for _, d := range cur.Degraded {
		banner = banner || (d.Kind == dashboard.DegradedDependencyDown && d.Component == "db")
	}
	for _, d := range cur.Dependencies {
		if d.Name == "db" && (d.Status != "fail" || !d.Critical || d.Error == "" || d.LatencyMS == nil) {
			t.Fatalf("db now: %+v", d)
		}
	}
	if !banner {
		t.Fatalf("no dependency_down entry: %+v", cur.Degraded)
	}
}

// TestDashboardOpenBreaker: a breaker that trips shows as open now, as a transition in the
// series and in the degraded banner.
func TestDashboardOpenBreaker(t *testing.T) {
	fastDashboard(t)
	key, digest := newKey(t)
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	dead := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	testcaddy.StartCaddy(t, fmt.Sprintf(`http://%s {
	bind 127.0.0.1
	handle_path /api/monitoring/* {
		monitoring {
			api_keys %s
		}
	}
	handle {
		upstream_breaker dash_brk {
			consecutive_failures 2
			open_for 1m
		}
		reverse_proxy %s
	}
}
`, addr, digest, dead))
	waitSampled(t, addr, key)
	for i := 0; i < 3; i++ {
		call(t, "GET", "http://"+addr+"/", "")
	}
	open := map[string]string{"breaker": "dash_brk", "to": "open"}
	var doc dashboard.Document
	waitFor(t, "the open breaker in the dashboard", func() bool {
		doc = dashData(t, addr, key, "")
		return sumSeries(doc.BreakerTransitions, open) == 1
	})
	var now, banner bool
	for _, b := range doc.Current.Breakers {
		now = now || (b.Name == "dash_brk" && b.State == "open")
	}
	for _, d := range doc.Current.Degraded {
		banner = banner || (d.Kind == dashboard.DegradedBreakerOpen && d.Component == "breaker:dash_brk")
	}
	if !now || !banner {
		t.Fatalf("current: %+v", doc.Current)
	}
}

// TestDashboardReloadsWhileSampling: reloads (with checks, a limiter, a changing class list)
// while the sampler runs every 10 ms and data is read; -race finds any read of a configuration
// its Cleanup changes.
func TestDashboardReloadsWhileSampling(t *testing.T) {
	old := dashSampleEvery
	dashSampleEvery = 10 * time.Millisecond
	t.Cleanup(func() { dashSampleEvery = old })
	key, digest := newKey(t)
	checks := fmt.Sprintf("api_keys %s\ncheck tcp db 127.0.0.1:%d {\ninterval 100ms\n}", digest, testenv.FreePort(t))
	cf, addr := dashSite(t, "dash_reload", "", checks)
	c := testcaddy.StartCaddy(t, cf)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
				req, _ := http.NewRequest("GET", "http://"+addr+"/api/monitoring/dashboard/data", nil)
				req.Header.Set("Authorization", "Bearer "+key)
				if resp, err := http.DefaultClient.Do(req); err == nil {
					resp.Body.Close()
				}
			}
		}
	}()
	for i := 0; i < 6; i++ {
		next := cf
		if i%2 == 0 {
			next, _ = dashSite(t, "dash_reload", "ip_classes {\ntrusted 127.0.0.1\n}", checks)
			next = strings.Replace(next, strings.Split(strings.Split(next, "http://")[1], " ")[0], addr, 1)
		}
		if err := c.Load(next); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	close(stop)
	<-done
	if doc := dashData(t, addr, key, ""); len(doc.Dependencies) != 1 {
		t.Fatalf("after the reloads: %d dependencies", len(doc.Dependencies))
	}
}

// TestDashboardRecordsAfterFailedReload: a reload whose http app fails to start (its port is
// in use) leaves the running configuration recorded. Caddy starts apps in map order, so in
// some of the loads our app started, then was cleaned up with the failed configuration.
func TestDashboardRecordsAfterFailedReload(t *testing.T) {
	fastDashboard(t)
	key, digest := newKey(t)
	cf, addr := dashSite(t, "dash_failed_reload", "", "api_keys "+digest)
	c := testcaddy.StartCaddy(t, cf)
	waitSampled(t, addr, key)
	loadFailingAfterStart(t, c, cf, addr)
	traverser := "192.0.2.44"
	if got := sendAs(t, addr, traverser, "/static/../../etc/passwd"); got != http.StatusBadRequest {
		t.Fatalf("traversal: %d", got)
	}
	dot := map[string]string{"reason": "dot_segment"}
	waitFor(t, "the traversal in the totals (as /metrics) and the events", func() bool {
		doc := dashData(t, addr, key, "")
		prom := promSeries(t, call(t, "GET", "http://"+addr+"/metrics", "").body, "caddy_hardening_path_blocked_total")
		event := false
		for _, e := range doc.Events {
			event = event || (e.Event == EventPathBlocked && e.ClientIP == traverser)
		}
		return event && totalOf(prom, dot) >= 1 && totalOf(doc.Totals.PathBlocked, dot) == totalOf(prom, dot)
	})
}

// TestDashboardCSPFloodKeepsOtherEvents: CSP reports, which anyone may send 100 to a POST,
// neither use up the events' admission nor push the other events out of the table.
func TestDashboardCSPFloodKeepsOtherEvents(t *testing.T) {
	key, digest := newKey(t)
	cf, addr := dashSite(t, "dash_csp_flood", "", "api_keys "+digest)
	cf = strings.Replace(cf, "\thandle {\n", "\thandle /csp {\n\t\tcsp_report /csp\n\t}\n\thandle {\n", 1)
	testcaddy.StartCaddy(t, cf)
	var batch []string
	for i := 0; i < 100; i++ {
		batch = append(batch, fmt.Sprintf(`{"type": "csp-violation", "body": {"documentURL": "https://a.example/%d", "effectiveDirective": "script-src-elem", "disposition": "enforce"}}`, i))
	}
	flood := func() {
		for i := 0; i < 5; i++ {
			if resp, body := postReport(t, "http://"+addr+"/csp", "application/reports+json", "["+strings.Join(batch, ",")+"]"); resp.StatusCode != http.StatusNoContent {
				t.Fatalf("reports: %d %s", resp.StatusCode, body)
			}
		}
	}
	traverser := "192.0.2.45"
	flood()
	if got := sendAs(t, addr, traverser, "/static/../../etc/passwd"); got != http.StatusBadRequest {
		t.Fatalf("traversal: %d", got)
	}
	flood()
	doc := dashData(t, addr, key, "")
	names := map[string]int{}
	blocked := false
	for _, e := range doc.Events {
		names[e.Event]++
		blocked = blocked || (e.Event == EventPathBlocked && e.ClientIP == traverser)
	}
	if !blocked || names[EventCSPViolation] == 0 || len(doc.Events) > dashboard.MaxEvents {
		t.Fatalf("events after the CSP flood: %v; the path_blocked of %s is missing", names, traverser)
	}
}

// TestDashboardSuspiciousAreTheTopScores: among 20,000 bans (no score), the clients that probes
// made suspicious (a score) are in the table, picked from every detection; the card's count is
// every detection, not the table's rows.
func TestDashboardSuspiciousAreTheTopScores(t *testing.T) {
	key, digest := newKey(t)
	cf, addr := dashSite(t, "dash_top_scores", "", "api_keys "+digest)
	testcaddy.StartCaddy(t, cf)
	det := activeApp(t).detector()
	until := time.Now().Add(time.Hour)
	const bans = 20_000
	for i := 0; i < bans; i++ {
		det.Ban(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), until, ipclass.SignalManual)
	}
	probers := []string{"198.51.100.1", "198.51.100.2", "198.51.100.3", "198.51.100.4", "198.51.100.5"}
	for _, p := range probers {
		sendAs(t, addr, p, "/.env")
		sendAs(t, addr, p, "/.git/config")
	}
	doc := dashData(t, addr, key, "")
	rows := map[string]dashboard.Suspicious{}
	for _, s := range doc.Suspicious {
		rows[s.IP] = s
	}
	for _, p := range probers {
		if s, ok := rows[p]; !ok || s.Signal != "probe" || s.Score <= 0 {
			t.Fatalf("prober %s not in the table (%d rows, first %+v)", p, len(doc.Suspicious), doc.Suspicious[0])
		}
	}
	if len(doc.Suspicious) != dashboard.MaxSuspicious || doc.Suspicious[0].Score < doc.Suspicious[len(probers)].Score {
		t.Fatalf("%d rows, not by score: %+v", len(doc.Suspicious), doc.Suspicious)
	}
	if doc.SuspiciousCount != bans+len(probers) {
		t.Fatalf("suspicious_count %d, want %d", doc.SuspiciousCount, bans+len(probers))
	}
}

// TestDashboardTopKeysShowClientIPs: the top limited keys show a client IP key as the rate
// limiter names it (an IPv6 client by its /64, the @<ip> fallback of an empty template) and
// any other key as a digest, even one that reads as an address.
func TestDashboardTopKeysShowClientIPs(t *testing.T) {
	key, digest := newKey(t)
	cf, addr := dashSite(t, "dash_ip_keys", "policy dash_keyed {\nlimit 2/1h\nkey {header.X-Key}\n}", "api_keys "+digest)
	cf = strings.Replace(cf, "\thandle {\n", "\thandle /keyed {\n\t\tpolicy_rate_limit dash_keyed\n\t\trespond \"keyed\"\n\t}\n\thandle {\n", 1)
	testcaddy.StartCaddy(t, cf)
	zoned := "fe80::1%<img src=x onerror=alert(8)>"
	for i := 0; i < 3; i++ {
		sendAs(t, addr, "2001:db8:1:2::5", "/")
		rawGet(t, addr, "/keyed", "X-Forwarded-For: 192.0.2.9")
		rawGet(t, addr, "/keyed", "X-Forwarded-For: 192.0.2.10", "X-Key: "+zoned)
	}
	shown := map[string]string{}
	for _, l := range dashData(t, addr, key, "").TopLimited {
		shown[l.Key] = l.Policy
	}
	for k, policy := range map[string]string{
		"2001:db8:1:2::/64":              "dash_ip_keys",
		"@192.0.2.9":                     "dash_keyed",
		dashboard.ShownKey(zoned, false): "dash_keyed",
	} {
		if shown[k] != policy {
			t.Fatalf("%q (%s) not in the top keys %v", k, policy, shown)
		}
	}
	if !strings.HasPrefix(dashboard.ShownKey(zoned, false), "sha256:") {
		t.Fatal("a header value shown as it is")
	}
}

// TestDashboardCSPReportHiddenCharacters: a report's bidi override is shown escaped on the
// dashboard (it would show "\u202egnp.exe" as "exe.png"), and a field cut to its bound is
// cut between characters, so the log shows no U+FFFD.
func TestDashboardCSPReportHiddenCharacters(t *testing.T) {
	key, digest := newKey(t)
	cf, addr := dashSite(t, "dash_csp_bidi", "", "api_keys "+digest)
	cf = strings.Replace(cf, "\thandle {\n", "\thandle /csp {\n\t\tcsp_report /csp\n\t}\n\thandle {\n", 1)
	c := testcaddy.StartCaddy(t, cf)
	sample := strings.Repeat("a", 127) + "é" // 129 bytes: the bound, 128, is inside é
	body := fmt.Sprintf(`[{"type": "csp-violation", "body": {"documentURL": "https://shop.example/admin/\u202egnp.exe",
		"effectiveDirective": "script-src-elem", "disposition": "enforce", "sample": %q}}]`, sample)
	if resp, b := postReport(t, "http://"+addr+"/csp", "application/reports+json", body); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("report: %d %s", resp.StatusCode, b)
	}
	var ev *dashboard.Event
	for _, e := range dashData(t, addr, key, "").Events {
		if e.Event == EventCSPViolation {
			ev = &e
			break
		}
	}
	if ev == nil || ev.Fields["document_uri"] != `https://shop.example/admin/\u202Egnp.exe` || ev.Fields["sample"] != strings.Repeat("a", 127) {
		t.Fatalf("dashboard event: %+v", ev)
	}
	logged := testenv.Filter(c.Logs(), func(e testenv.LogEntry) bool { return e.Logger() == securityLoggerName && e.Msg() == EventCSPViolation })
	if len(logged) != 1 || logged[0].Str("sample") != strings.Repeat("a", 127) {
		t.Fatalf("logged: %v", logged)
	}
}

// TestDashboardUnbanUsesTheConfiguredAdmin: the unban command of a suspicious row addresses the
// admin endpoint of the running configuration, from a Caddyfile's `admin` option or a JSON
// config's admin.listen, TCP or Unix socket, and running it lifts the ban; with `admin off`
// the data says so and carries no command.
func TestDashboardUnbanUsesTheConfiguredAdmin(t *testing.T) {
	testenv.RequireBinary(t, "curl")
	testenv.RequireBinary(t, "sh")
	key, digest := newKey(t)
	cf, addr := dashSite(t, "dash_admin", "", "api_keys "+digest)
	withAdmin := func(admin string) string { return strings.Replace(cf, "{\n", "{\n\tadmin "+admin+"\n", 1) }
	port := testenv.FreePort(t)
	c := testcaddy.StartCaddy(t, withAdmin(fmt.Sprintf("127.0.0.1:%d", port)))

	// unbanRow bans client, finds its row in the data and runs its command.
	unbanRow := func(client, wantAdmin, wantCmd string) {
		t.Helper()
		activeApp(t).detector().Ban(netip.MustParseAddr(client), time.Now().Add(time.Hour), ipclass.SignalManual)
		doc := dashData(t, addr, key, "")
		var row *dashboard.Suspicious
		for i := range doc.Suspicious {
			if doc.Suspicious[i].IP == client {
				row = &doc.Suspicious[i]
			}
		}
		if row == nil || doc.Admin != wantAdmin || row.Unban != wantCmd {
			t.Fatalf("admin %q, row %+v; want admin %q, command %q", doc.Admin, row, wantAdmin, wantCmd)
		}
		out, err := exec.Command("sh", "-c", row.Unban+" -sS --fail-with-body").CombinedOutput()
		if err != nil || !strings.Contains(string(out), `"was_detected":true`) {
			t.Fatalf("%s: %v: %s", row.Unban, err, out)
		}
		if activeApp(t).detector().Suspicious(netip.MustParseAddr(client)) {
			t.Fatalf("%s ran, %s is still suspicious", row.Unban, client)
		}
	}
	unbanRow("192.0.2.31", fmt.Sprintf("127.0.0.1:%d", port),
		fmt.Sprintf("curl -X DELETE http://127.0.0.1:%d/hardening/ipclass/detected/192.0.2.31", port))

	sock := filepath.Join(t.TempDir(), "admin.sock")
	cfg, err := testcaddy.Adapt(cf)
	if err != nil {
		t.Fatal(err)
	}
	cfg["admin"] = map[string]any{"listen": "unix/" + sock}
	raw, _ := json.Marshal(cfg)
	if err := c.LoadJSON(string(raw)); err != nil {
		t.Fatal(err)
	}
	unbanRow("192.0.2.32", "unix/"+sock, "curl -X DELETE --unix-socket "+sock+" http://localhost/hardening/ipclass/detected/192.0.2.32")

	if err := c.Load(withAdmin("off")); err != nil {
		t.Fatal(err)
	}
	activeApp(t).detector().Ban(netip.MustParseAddr("192.0.2.33"), time.Now().Add(time.Hour), ipclass.SignalManual)
	doc := dashData(t, addr, key, "")
	if doc.Admin != "off" || len(doc.Suspicious) == 0 {
		t.Fatalf("admin off: admin %q, rows %+v", doc.Admin, doc.Suspicious)
	}
	for _, s := range doc.Suspicious {
		if s.Unban != "" {
			t.Fatalf("admin off, yet a command: %+v", s)
		}
	}
}
