package page

import (
	"encoding/json"
	"flag"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/swarmsec/caddy-hardening/csp"
	"github.com/swarmsec/caddy-hardening/dashboard/page/pagetest"
)

var updateScreenshot = flag.Bool("update-screenshot", false, "copy this run's light-scheme screenshot to docs/dashboard.png (the README's)")

const fixtureKey = "dk_fixture-key-0123456789abcdef"

// fixtureServer serves the page as the monitoring handler will (contract headers, a fresh
// nonce per request) under a mount path, and the fixtures as <mount>/dashboard/data:
// 401 problem+json without the key (unless every client is trusted), 400 for scope=all
// without Redis.
type fixtureServer struct {
	trusted bool   // every client is in the trusted class: no key needed
	redis   bool   // scope=all is possible
	doc     []byte // served instead of the fixtures when set
}

func (f fixtureServer) start(t *testing.T) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ops/dashboard", func(w http.ResponseWriter, r *http.Request) {
		nonce := csp.NewNonce()
		h := w.Header()
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Cache-Control", "no-store")
		h.Set("Content-Security-Policy", CSP(nonce))
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		_, _ = w.Write(Render(nonce))
	})
	mux.HandleFunc("GET /ops/dashboard/data", func(w http.ResponseWriter, r *http.Request) {
		if !f.trusted && r.Header.Get("Authorization") != "Bearer "+fixtureKey {
			problem(w, http.StatusUnauthorized, "Unauthorized")
			return
		}
		file := "testdata/data-15m.json"
		if r.URL.Query().Get("range") == "1h" {
			file = "testdata/data-1h.json"
		}
		raw, err := os.ReadFile(file)
		if f.doc != nil {
			raw = f.doc
		}
		if err != nil {
			problem(w, http.StatusInternalServerError, err.Error())
			return
		}
		if r.URL.Query().Get("scope") == "all" {
			if !f.redis {
				problem(w, http.StatusBadRequest, "scope=all needs Redis")
				return
			}
			var doc map[string]any
			_ = json.Unmarshal(raw, &doc)
			doc["scope"], doc["instances"] = "all", []string{"caddy-7f9c", "caddy-b21a"}
			raw, _ = json.Marshal(doc)
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write(raw)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL + "/ops/dashboard"
}

func problem(w http.ResponseWriter, code int, title string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]any{"type": "about:blank", "title": title, "status": code})
}

func requireClean(t *testing.T, r *pagetest.Result, url, key string) {
	t.Helper()
	for _, p := range r.Problems(url, key) {
		t.Error(p)
	}
}

func TestDashboardPageWithoutKeyShowsOnlyTheLoginPrompt(t *testing.T) {
	url := fixtureServer{}.start(t)
	r := pagetest.Run(t, pagetest.Options{URL: url})
	requireClean(t, r, url, "")
	f := r.Phases["start"]
	if f == nil || f.State != "login" || !f.LoginVisible || f.DashVisible {
		t.Fatalf("without a key: %+v", f)
	}
	if f.SVGs != 0 || strings.Contains(f.Text, "Rate-limit") || strings.Contains(f.Text, "caddy-7f9c") {
		t.Fatalf("the login prompt shows more than a prompt (%d svgs):\n%s", f.SVGs, f.Text)
	}
	if !strings.Contains(f.Text, "Sign in") || !strings.Contains(f.Text, "API key") {
		t.Fatalf("no login prompt:\n%s", f.Text)
	}
	if len(r.Data) != 1 || r.Data[0].Status != 401 || r.Data[0].Authorization != "" {
		t.Fatalf("data requests: %+v, want one unauthenticated 401", r.Data)
	}
}

func TestDashboardPageDrawsTheFixture(t *testing.T) {
	url := fixtureServer{}.start(t)
	dir := pagetest.ArtifactDir(t)
	shot, dark := filepath.Join(dir, "dashboard.png"), filepath.Join(dir, "dashboard-dark.png")
	r := pagetest.Run(t, pagetest.Options{URL: url, Key: fixtureKey, Screenshot: shot, ScreenshotDark: dark,
		SwitchRange: true, Logout: true})
	requireClean(t, r, url, fixtureKey)
	t.Logf("screenshots: %s %s", shot, dark)

	// The login: first a try without a key (trusted clients need none), then the key.
	if s := r.Phases["start"]; s == nil || s.State != "login" {
		t.Fatalf("start: %+v", s)
	}
	f := r.Phases["ready"]
	if f == nil || f.State != "ready" || f.LoginVisible || !f.DashVisible || !f.LogoutVisible {
		t.Fatalf("after the key: %+v", f)
	}
	if f.Updates < 2 {
		t.Fatalf("%d updates: the 5 s refresh did not run", f.Updates)
	}
	if f.StoredKey == nil || *f.StoredKey != fixtureKey {
		t.Fatalf("sessionStorage holds %v", f.StoredKey)
	}
	for _, d := range r.Data[1:] {
		if d.Authorization != "Bearer "+fixtureKey {
			t.Fatalf("a data request after the login without the key: %+v", d)
		}
	}

	d := loadFixture(t, "data-15m.json")
	checkCharts(t, f, d)
	if f.ScopeSwitchVisible {
		t.Error("the scope switch shows although scope=all answered 400")
	}
	if !strings.Contains(f.Who, "caddy-7f9c") {
		t.Errorf("the instance is not named: %q", f.Who)
	}
	// Degraded banner: one line per entry of current.degraded.
	if !f.BannerVisible || len(f.Banner) != 2 || !strings.Contains(f.Banner[0], "Redis unavailable: decisions in memory") {
		t.Errorf("banner: visible %v, %q", f.BannerVisible, f.Banner)
	}
	if f.Stats["s-status"] != "warn" || f.Stats["s-store"] != "memory-fallback" || f.Stats["s-breakers"] != "1 / 2" || f.Stats["s-flagged"] != "3" {
		t.Errorf("cards: %v", f.Stats)
	}

	// Tables: every row, the flagged IP with its unban command, the hostile strings as text.
	sus := f.Tables["t-suspicious"]
	if len(sus) != len(d.Suspicious) || sus[0][0] != "203.0.113.9" || !strings.Contains(sus[0][4], d.Suspicious[0].Unban) {
		t.Errorf("suspicious IPs: %q", sus)
	}
	if len(f.Tables["t-top"]) != len(d.TopLimited) || len(f.Tables["t-deps"]) != 2 || len(f.Tables["t-events"]) != len(d.Events) {
		t.Errorf("rows: top %d, deps %d, events %d", len(f.Tables["t-top"]), len(f.Tables["t-deps"]), len(f.Tables["t-events"]))
	}
	totals := len(d.Totals.RateLimit) + len(d.Totals.PathBlocked) + len(d.Totals.Detections) + len(d.Totals.CSPViolations)
	if len(f.Tables["t-totals"]) != totals {
		t.Errorf("totals: %d rows, want %d", len(f.Tables["t-totals"]), totals)
	}
	var uris []string
	for _, row := range f.Tables["t-events"] {
		uris = append(uris, row[5])
	}
	if !strings.Contains(strings.Join(uris, "\n"), "/files/../../etc/passwd?q=<script>alert(document.domain)</script>") {
		t.Errorf("the hostile URI is not shown as text: %q", uris)
	}
	if f.Scripts != 1 || f.Images != 0 {
		t.Errorf("the data added markup: %d scripts, %d images", f.Scripts, f.Images)
	}

	// The tooltip names the time and the values under the pointer.
	if r.Hover == nil || !r.Hover.Visible || r.Hover.Guide != "visible" || !strings.Contains(r.Hover.Text, ":") || !strings.Contains(r.Hover.Text, "api · allowed") {
		t.Errorf("hover: %+v", r.Hover)
	}

	// The keyboard walks the same buckets: End, then one to the left.
	for _, k := range []*pagetest.Keyboard{r.Keyboard, r.KeyboardAfterRefresh} {
		if k == nil || !k.Visible || !k.Focused || k.Cursor != "178" || !strings.Contains(k.Text, "api · allowed") {
			t.Errorf("keyboard (before and after a refresh): %+v", k)
		}
	}

	// The range switch fetches the hour (60 one-minute buckets) and back.
	if h := r.Phases["range1h"]; h == nil || h.Charts["ratelimit"].Buckets != 60 {
		t.Errorf("1h: %+v", h)
	} else {
		checkCharts(t, h, loadFixture(t, "data-1h.json"))
	}
	if b := r.Phases["range15m"]; b == nil || b.Charts["ratelimit"].Buckets != 180 {
		t.Errorf("back to 15m: %+v", b)
	}

	// Log out: the key is gone, nothing of the data is left, no request follows.
	l := r.Phases["afterLogout"]
	if l == nil || l.State != "login" || !l.LoginVisible || l.DashVisible || l.StoredKey != nil || l.SVGs != 0 {
		t.Fatalf("after logout: %+v", l)
	}
	for _, tab := range l.Tables {
		if len(tab) != 0 {
			t.Fatalf("a table kept rows after logout: %q", l.Tables)
		}
	}
	if strings.Contains(l.Text, "203.0.113.9") {
		t.Fatal("data visible after logout")
	}
	if last := r.Data[len(r.Data)-1]; !strings.Contains(last.URL, "range=15m") || last.Status != 200 {
		t.Fatalf("a data request after the logout: %+v", last)
	}

	if *updateScreenshot {
		pagetest.CopyFile(t, shot, "../../docs/dashboard.png")
	}
}

func TestDashboardPageTrustedClientNeedsNoKey(t *testing.T) {
	url := fixtureServer{trusted: true, redis: true}.start(t)
	r := pagetest.Run(t, pagetest.Options{URL: url, MinUpdates: 1, SwitchScope: true})
	requireClean(t, r, url, "")
	f := r.Phases["start"]
	if f == nil || f.State != "ready" || f.LoginVisible || f.LogoutVisible {
		t.Fatalf("a trusted client: %+v", f)
	}
	if ready := r.Phases["ready"]; ready == nil || !ready.ScopeSwitchVisible {
		t.Fatalf("scope=all answers 200 but the switch is hidden: %+v", ready)
	}
	all := r.Phases["scopeAll"]
	if all == nil || !strings.Contains(all.Who, "all instances") || !strings.Contains(all.Who, "caddy-b21a") {
		t.Fatalf("all instances: %+v", all)
	}
	for _, d := range r.Data {
		if d.Authorization != "" || d.Status != 200 {
			t.Fatalf("data request %+v: a trusted client sends no key and gets 200", d)
		}
	}
}

// checkCharts compares every drawn series with the fixture: the same sums and the same
// non-zero and non-null points, the series grouped as the page groups them.
func checkCharts(t *testing.T, f *pagetest.Facts, d *dashData) {
	t.Helper()
	n := len(d.Timestamps)
	type want struct{ sum, nonzero, points float64 }
	counts := func(list []labelled, name func(labelled) string) map[string]want {
		sums := map[string][]float64{}
		for _, s := range list {
			k := name(s)
			if sums[k] == nil {
				sums[k] = make([]float64, n)
			}
			for i, v := range s.Values {
				sums[k][i] += v
			}
		}
		out := map[string]want{}
		for k, vs := range sums {
			var w want
			for _, v := range vs {
				w.sum += v
				w.points++
				if v != 0 {
					w.nonzero++
				}
			}
			out[k] = w
		}
		return out
	}
	gauge := func(vs []*float64) want {
		var w want
		for _, v := range vs {
			if v != nil {
				w.sum += *v
				w.points++
				if *v != 0 {
					w.nonzero++
				}
			}
		}
		return w
	}
	expect := map[string]map[string]want{
		"ratelimit":           counts(d.RateLimit, func(s labelled) string { return s.Policy + " · " + s.Result }),
		"path_blocked":        counts(d.PathBlocked, func(s labelled) string { return s.Reason }),
		"detections":          counts(d.Detections, func(s labelled) string { return s.Signal }),
		"csp_violations":      counts(d.CSPViolations, func(s labelled) string { return s.Directive }),
		"breaker_transitions": counts(d.BreakerTransitions, func(s labelled) string { return s.Breaker + " → " + s.To }),
		"cpu":                 {"CPU": gauge(d.System.CPUPercent)},
		"memory":              {"Memory": gauge(d.System.MemoryBytes)},
		"goroutines":          {"Goroutines": gauge(d.System.Goroutines)},
		"dependency_latency":  {},
	}
	for _, dep := range d.Dependencies {
		expect["dependency_latency"][dep.Name] = gauge(dep.LatencyMS)
	}
	for chart, series := range expect {
		c, ok := f.Charts[chart]
		if !ok {
			t.Errorf("no chart %s", chart)
			continue
		}
		if c.Buckets != n || c.SVGs != 1 || len(c.Ticks) < 4 {
			t.Errorf("%s: %d buckets (want %d), %d svgs, ticks %q", chart, c.Buckets, n, c.SVGs, c.Ticks)
		}
		got := c.SeriesByName()
		if len(got) != len(series) {
			t.Errorf("%s: series %v, want %v", chart, c.Series, series)
		}
		for name, w := range series {
			g, ok := got[name]
			if !ok {
				t.Errorf("%s: no series %q among %v", chart, name, c.Series)
				continue
			}
			if math.Abs(g.Sum-w.sum) > 0.01*math.Max(1, math.Abs(w.sum)) || float64(g.NonZero) != w.nonzero || float64(g.Points) != w.points {
				t.Errorf("%s %q: drawn sum %v, %d non-zero, %d points; fixture %v, %v, %v", chart, name, g.Sum, g.NonZero, g.Points, w.sum, w.nonzero, w.points)
			}
			if w.nonzero > 0 && g.Paths == 0 {
				t.Errorf("%s %q has data but no shape drawn", chart, name)
			}
		}
	}
	// The store-mode strip: one legend entry per mode seen.
	if s := f.Charts["store_mode"]; s.Buckets != n || len(s.Legend) != 2 {
		t.Errorf("store mode strip: %+v", s)
	}
}

// TestDashboardPageWithoutData: a fresh instance (nothing recorded yet, sections missing,
// gauges all null, labels the page does not know) draws empty charts and empty tables,
// without an error.
func TestDashboardPageWithoutData(t *testing.T) {
	ts := fixtureTimestamps()
	nulls := make([]any, len(ts))
	doc, _ := json.Marshal(map[string]any{
		"instance": "edge-1", "instances": []string{"edge-1"}, "scope": "local", "range": "15m",
		"resolution_seconds": 5, "generated": "2026-11-28T04:00:00Z", "timestamps": ts,
		"ratelimit":    []any{map[string]any{"policy": "p", "class": "c", "result": "a_new_result", "values": make([]int, 180)}},
		"path_blocked": []any{}, "detections": nil,
		"system":     map[string]any{"cpu_percent": nulls, "memory_bytes": nulls},
		"store_mode": map[string]any{"values": nulls},
		"current":    map[string]any{"status": "pass", "ready": true, "degraded": []any{}},
		"events":     []any{"not an object", nil, 7},
	})
	url := fixtureServer{trusted: true, doc: doc}.start(t)
	r := pagetest.Run(t, pagetest.Options{URL: url, MinUpdates: 1})
	requireClean(t, r, url, "")
	f := r.Phases["ready"]
	if f == nil || f.State != "ready" || f.BannerVisible {
		t.Fatalf("empty data: %+v", f)
	}
	for name, c := range f.Charts {
		if !c.Empty || c.Buckets != 180 || c.SVGs != 1 {
			t.Errorf("chart %s: %+v, want an empty chart over 180 buckets", name, c)
		}
	}
	if s := f.Charts["ratelimit"].SeriesByName()["p · a_new_result"]; s.Points != 180 || s.Sum != 0 {
		t.Errorf("the unknown result is not a series of zeros: %+v", f.Charts["ratelimit"].Series)
	}
	for id, rows := range f.Tables {
		if len(rows) != 0 {
			t.Errorf("table %s has rows: %q", id, rows)
		}
	}
	if f.Stats["s-store"] != "none" || f.Stats["s-flagged"] != "0" {
		t.Errorf("cards: %v", f.Stats)
	}
}

// TestDashboardPageCountsAllFlagged: the "Flagged IPs" card shows suspicious_count, not the
// rows of the table (at most MaxSuspicious).
func TestDashboardPageCountsAllFlagged(t *testing.T) {
	ts := fixtureTimestamps()
	doc, _ := json.Marshal(map[string]any{
		"instance": "edge-1", "instances": []string{"edge-1"}, "scope": "local", "range": "15m",
		"resolution_seconds": 5, "generated": "2026-11-28T04:00:00Z", "timestamps": ts,
		"current": map[string]any{"status": "pass", "ready": true, "degraded": []any{}},
		"suspicious": []any{map[string]any{"ip": "192.0.2.7", "score": 29.2, "signal": "probe", "until": "2026-11-28T05:00:00Z",
			"seconds_left": 3600, "unban": "curl -X DELETE http://localhost:2019/hardening/ipclass/detected/192.0.2.7"}},
		"suspicious_count": 1501,
	})
	url := fixtureServer{trusted: true, doc: doc}.start(t)
	r := pagetest.Run(t, pagetest.Options{URL: url, MinUpdates: 1})
	requireClean(t, r, url, "")
	f := r.Phases["ready"]
	if f == nil || f.Stats["s-flagged"] != "1501" || len(f.Tables["t-suspicious"]) != 1 {
		t.Fatalf("flagged card and table: %+v", f)
	}
}

// TestDashboardPageNamesTheAdminEndpoint: the suspicious table says which admin endpoint its
// commands address, and, when the configuration turns the admin API off, says so instead of
// showing a command.
func TestDashboardPageNamesTheAdminEndpoint(t *testing.T) {
	for _, tc := range []struct {
		admin, unban, note, cell string
	}{
		{"127.0.0.1:2999", "curl -X DELETE http://127.0.0.1:2999/hardening/ipclass/detected/192.0.2.7",
			"lifts a ban through Caddy's admin API at 127.0.0.1:2999", "curl -X DELETE http://127.0.0.1:2999/hardening/ipclass/detected/192.0.2.7"},
		{"off", "", "Caddy's admin API is off here (admin off)", "admin API off"},
	} {
		doc, _ := json.Marshal(map[string]any{
			"instance": "edge-1", "instances": []string{"edge-1"}, "scope": "local", "range": "15m",
			"resolution_seconds": 5, "generated": "2026-11-28T04:00:00Z", "timestamps": fixtureTimestamps(),
			"current": map[string]any{"status": "pass", "ready": true, "degraded": []any{}},
			"suspicious": []any{map[string]any{"ip": "192.0.2.7", "score": 29.2, "signal": "probe", "until": "2026-11-28T05:00:00Z",
				"seconds_left": 3600, "unban": tc.unban}},
			"suspicious_count": 1, "admin": tc.admin,
		})
		url := fixtureServer{trusted: true, doc: doc}.start(t)
		r := pagetest.Run(t, pagetest.Options{URL: url, MinUpdates: 1})
		requireClean(t, r, url, "")
		f := r.Phases["ready"]
		if f == nil || len(f.Tables["t-suspicious"]) != 1 {
			t.Fatalf("admin %s: table %+v", tc.admin, f)
		}
		if row := f.Tables["t-suspicious"][0]; !strings.HasPrefix(row[4], tc.cell) {
			t.Errorf("admin %s: unban cell %q, want %q", tc.admin, row[4], tc.cell)
		}
		if !strings.Contains(f.Text, tc.note) {
			t.Errorf("admin %s: the page does not say %q:\n%s", tc.admin, tc.note, f.Text)
		}
	}
}

// fixtureTimestamps are the 180 five-second buckets of a 15-minute document.
func fixtureTimestamps() []int64 {
	ts := make([]int64, 180)
	for i := range ts {
		ts[i] = 1795837500 + int64(i)*5
	}
	return ts
}

// TestDashboardPageHostileStrings: every string the data carries may come from a client
// (paths, CSP report fields, forwarded addresses) or from another instance through Redis;
// markup, attribute breakers and prototype keys in any of them are shown as text, trip no CSP
// or Trusted Types violation and no console error.
func TestDashboardPageHostileStrings(t *testing.T) {
	const x = `"><img src=x onerror=alert(1)><svg onload=alert(2)>'javascript:alert(3)`
	ts := fixtureTimestamps()
	vals := make([]int, len(ts))
	vals[len(vals)-1] = 3
	series := func(k string) []any {
		return []any{map[string]any{k: x, "__proto__": x, "constructor": x, "class": x, "result": x, "values": vals}}
	}
	doc, _ := json.Marshal(map[string]any{
		"instance": x, "instances": []string{x}, "scope": "local", "range": "15m",
		"resolution_seconds": 5, "generated": "2026-11-28T04:00:00Z", "timestamps": ts,
		"ratelimit": series("policy"), "path_blocked": series("reason"), "detections": series("signal"),
		"csp_violations": series("directive"), "breaker_transitions": series("breaker"),
		"store_mode":   map[string]any{"values": []any{x, "__proto__", "constructor"}},
		"dependencies": []any{map[string]any{"name": x, "up": vals, "latency_ms": vals}},
		"current": map[string]any{"status": x, "ready": true, "reasons": []string{x},
			"degraded":     []any{map[string]any{"kind": x, "component": x, "message": x, "instance": x}},
			"breakers":     []any{map[string]any{"name": x, "state": "__proto__", "instance": x}},
			"dependencies": []any{map[string]any{"name": x, "status": "constructor", "error": x, "instance": x}}},
		"totals":      map[string]any{"ratelimit": []any{map[string]any{"policy": x, "__proto__": x, "count": 1}}},
		"top_limited": []any{map[string]any{"policy": x, "key": x, "count": 2}},
		"suspicious":  []any{map[string]any{"ip": x, "score": 9, "signal": x, "until": x, "seconds_left": 60, "unban": x}},
		"admin":       x,
		"events": []any{map[string]any{"time": x, "event": x, "level": x, "client_ip": x, "ip_class": x, "uri": x,
			"instance": x, "fields": map[string]any{"__proto__": x, x: x}}},
	})
	url := fixtureServer{trusted: true, doc: doc}.start(t)
	r := pagetest.Run(t, pagetest.Options{URL: url, MinUpdates: 1})
	requireClean(t, r, url, "")
	f := r.Phases["ready"]
	if f == nil || f.State != "ready" {
		t.Fatalf("hostile data: %+v", f)
	}
	for _, id := range []string{"t-suspicious", "t-top", "t-deps", "t-events"} {
		if rows := f.Tables[id]; len(rows) != 1 || !strings.Contains(strings.Join(rows[0], " "), x) {
			t.Errorf("table %s does not show the hostile text as text: %q", id, rows)
		}
	}
}

// TestDashboardPageDataStaysOnItsOrigin: the page asked for <its path>/data as a path; served
// at a path beginning with two slashes (//evil.example/dashboard, which a monitoring handler
// mounted at the site's root answers), that is a URL of another host, and only the CSP's
// connect-src kept the key's request from going there. The data URL is now built on the
// page's own origin.
func TestDashboardPageDataStaysOnItsOrigin(t *testing.T) {
	ts := fixtureTimestamps()
	doc, _ := json.Marshal(map[string]any{"instance": "edge-1", "instances": []string{"edge-1"}, "scope": "local", "range": "15m",
		"resolution_seconds": 5, "generated": "2026-11-28T04:00:00Z", "timestamps": ts,
		"current": map[string]any{"status": "pass", "ready": true, "degraded": []any{}}})
	// A raw handler: the page at any path ending in /dashboard, the data at .../dashboard/data
	// (http.ServeMux would redirect the doubled slash away).
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasSuffix(r.URL.Path, "/dashboard"):
			nonce := csp.NewNonce()
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.Header().Set("Content-Security-Policy", CSP(nonce))
			_, _ = w.Write(Render(nonce))
		case strings.HasSuffix(r.URL.Path, "/dashboard/data"):
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(doc)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	url := srv.URL + "//evil.example/dashboard"
	r := pagetest.Run(t, pagetest.Options{URL: url, MinUpdates: 1})
	requireClean(t, r, url, "")
	if f := r.Phases["ready"]; f == nil || f.State != "ready" {
		t.Fatalf("the page at %s: %+v", url, f)
	}
}
