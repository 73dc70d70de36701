package caddymodule

import (
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/swarmsec/caddy-hardening/csp"
	"github.com/swarmsec/caddy-hardening/dashboard/page/pagetest"
	"github.com/swarmsec/caddy-hardening/internal/testcaddy"
	"github.com/swarmsec/caddy-hardening/internal/testenv"
)

var updateDashboardScreenshot = flag.Bool("update-screenshot", false, "copy the dashboard screenshot of a real Caddy to docs/dashboard-caddy.png")

// dashboardSite is a site with the monitoring handler (dashboard on by default) under
// /api/monitoring/, Caddy's Prometheus metrics on /metrics, security_headers site-wide (the
// page must run under its own CSP all the same), path_guard, and a rate-limited /app/.
// 127.0.0.1 is a trusted proxy, so the test's traffic names its clients in X-Forwarded-For
// while the browser is 127.0.0.1 itself; trusted lists the trusted class. Caddy's admin
// endpoint listens on 127.0.0.1:adminPort, which the unban commands name.
func dashboardSite(port, adminPort int, digest, trusted string) string {
	classes := ""
	if trusted != "" {
		classes = "\n\t\tip_classes {\n\t\t\ttrusted " + trusted + "\n\t\t}"
	}
	return fmt.Sprintf(`{
	admin 127.0.0.1:%d
	servers {
		trusted_proxies static 127.0.0.1/32
	}
	hardening {%s
		detection {
			threshold 20
			score probe 10 traversal 20
		}
		policy dashapi {
			limit 5/1m
			key {client_ip}
		}
	}
}
http://127.0.0.1:%d {
	bind 127.0.0.1
	handle_path /api/monitoring/* {
		monitoring {
			api_keys %s
		}
	}
	handle /metrics {
		metrics
	}
	security_headers
	path_guard
	policy_rate_limit /app/* dashapi
	respond "app"
}
`, adminPort, classes, port, digest)
}

// dashDoc is the part of /dashboard/data this test reads.
type dashDoc struct {
	Instance   string                       `json:"instance"`
	Timestamps []int64                      `json:"timestamps"`
	RateLimit  []map[string]json.RawMessage `json:"ratelimit"`
	Totals     map[string][]map[string]any  `json:"totals"`
	Suspicious []struct {
		IP    string `json:"ip"`
		Unban string `json:"unban"`
	} `json:"suspicious"`
}

// seriesSum sums the values of the ratelimit series with these labels.
func (d *dashDoc) rateLimitSum(policy, result string) float64 {
	var s float64
	for _, se := range d.RateLimit {
		var p, r string
		_ = json.Unmarshal(se["policy"], &p)
		_ = json.Unmarshal(se["result"], &r)
		if p != policy || r != result {
			continue
		}
		var vs []*float64
		_ = json.Unmarshal(se["values"], &vs)
		for _, v := range vs {
			if v != nil {
				s += *v
			}
		}
	}
	return s
}

func fetchDash(t *testing.T, url, key string) (int, *dashDoc) {
	t.Helper()
	a := call(t, "GET", url, key)
	if a.code != http.StatusOK {
		return a.code, nil
	}
	d := new(dashDoc)
	if err := json.Unmarshal([]byte(a.body), d); err != nil {
		t.Fatalf("dashboard/data: %v\n%s", err, a.body)
	}
	return a.code, d
}

// TestDashboardInABrowser: a real Caddy, real traffic (allowed and denied by
// policy_rate_limit, a probe path, a traversal attempt), and the page in Chromium: zero CSP
// violations and console errors, the charts and tables show that traffic, the numbers match
// Prometheus, and without the key (or the trusted class) only the login prompt shows.
//
// Needs the server side of issue #10 (the dashdata branch: the /dashboard routes).
func TestDashboardInABrowser(t *testing.T) {
	key, digest := newKey(t)
	port, adminPort := testenv.FreePort(t), testenv.FreePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	base := "http://" + addr + "/api/monitoring/"
	c := testcaddy.StartCaddy(t, dashboardSite(port, adminPort, digest, ""))

	// The page's headers, as the contract says.
	resp, body := getBody(t, base+"dashboard")
	policy := resp.Header.Get("Content-Security-Policy")
	nonce := regexp.MustCompile(`script-src 'nonce-([A-Za-z0-9+/=]+)'`).FindStringSubmatch(policy)
	if resp.StatusCode != 200 || nonce == nil || len(nonce[1]) != csp.NonceLen {
		t.Fatalf("GET dashboard: %d, CSP %q", resp.StatusCode, policy)
	}
	want := "default-src 'none'; script-src 'nonce-N'; style-src 'nonce-N'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'; require-trusted-types-for 'script'; trusted-types 'none'"
	if got := strings.ReplaceAll(policy, nonce[1], "N"); got != want {
		t.Errorf("CSP %q\nwant %q", got, want)
	}
	for h, v := range map[string]string{"Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-store",
		"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"} {
		if resp.Header.Get(h) != v {
			t.Errorf("%s: %q, want %q", h, resp.Header.Get(h), v)
		}
	}
	if !strings.Contains(body, `<script nonce="`+nonce[1]+`">`) || strings.Contains(body, "{{nonce}}") {
		t.Error("the page does not carry the CSP's nonce")
	}
	if a := call(t, "GET", base+"dashboard/data", ""); a.code != 401 || a.header.Get("Content-Type") != "application/problem+json" || strings.Contains(a.body, "ratelimit") {
		t.Fatalf("data without a key: %d %s %s", a.code, a.header.Get("Content-Type"), a.body)
	}

	// A first sample before the traffic, so every request lands in a bucket.
	waitFor(t, "the recorder's first sample", func() bool {
		code, d := fetchDash(t, base+"dashboard/data", key)
		return code == 200 && len(d.Timestamps) == 180
	})
	time.Sleep(5500 * time.Millisecond)

	// The traffic.
	counts := map[int]int{}
	for i := 0; i < 3; i++ {
		status, _, _ := rawGet(t, addr, "/app/", "X-Forwarded-For: 198.51.100.7")
		counts[status]++
	}
	for i := 0; i < 8; i++ {
		status, _, _ := rawGet(t, addr, "/app/", "X-Forwarded-For: 203.0.113.9")
		counts[status]++
	}
	if counts[200] == 0 || counts[429] == 0 || counts[200]+counts[429] != 11 {
		t.Fatalf("rate-limited traffic answered %v", counts)
	}
	if status, _, _ := rawGet(t, addr, "/.env", "X-Forwarded-For: 203.0.113.9"); status != 200 {
		t.Fatalf("probe: %d", status)
	}
	if status, _, _ := rawGet(t, addr, "/app/../../etc/passwd", "X-Forwarded-For: 203.0.113.9"); status != 400 {
		t.Fatalf("traversal: %d", status)
	}

	// The data catches up within a sample or two.
	var d *dashDoc
	waitFor(t, "the traffic in dashboard/data", func() bool {
		_, d = fetchDash(t, base+"dashboard/data", key)
		if d == nil || d.rateLimitSum("dashapi", "allowed") != float64(counts[200]) || d.rateLimitSum("dashapi", "denied") != float64(counts[429]) {
			return false
		}
		for _, s := range d.Suspicious {
			if s.IP == "203.0.113.9" {
				return true
			}
		}
		return false
	})

	// The data's totals are Prometheus' counters.
	metrics := call(t, "GET", "http://"+addr+"/metrics", "").body
	checked := 0
	for family, metric := range map[string]string{"ratelimit": "caddy_hardening_ratelimit_decisions_total", "path_blocked": "caddy_hardening_path_blocked_total"} {
		for _, tot := range d.Totals[family] {
			labels := map[string]string{}
			for k, v := range tot {
				if s, ok := v.(string); ok {
					labels[k] = s
				}
			}
			if family == "ratelimit" && labels["policy"] != "dashapi" {
				continue
			}
			if got := totalOf(promSeries(t, metrics, metric), labels); got != tot["count"] {
				t.Errorf("%s %v: dashboard %v, Prometheus %v", family, labels, tot["count"], got)
			}
			checked++
		}
	}
	if checked < 3 {
		t.Errorf("compared %d totals with Prometheus; want the allowed, denied and dot_segment ones at least", checked)
	}

	// Without the key: the login prompt only, and the data answers 401.
	page := base + "dashboard"
	anon := pagetest.Run(t, pagetest.Options{URL: page})
	for _, p := range anon.Problems(page, "") {
		t.Error("without a key: " + p)
	}
	if f := anon.Phases["start"]; f == nil || f.State != "login" || f.DashVisible || f.SVGs != 0 || strings.Contains(f.Text, "203.0.113.9") {
		t.Fatalf("without a key: %+v", f)
	}
	for _, r := range anon.Data {
		if r.Status != 401 {
			t.Fatalf("without a key the data answered %+v", r)
		}
	}

	// With the key.
	shot := filepath.Join(pagetest.ArtifactDir(t), "dashboard-caddy.png")
	r := pagetest.Run(t, pagetest.Options{URL: page, Key: key, Screenshot: shot, Logout: true})
	t.Logf("screenshot: %s", shot)
	for _, p := range r.Problems(page, key) {
		t.Error(p)
	}
	f := r.Phases["ready"]
	if f == nil || f.State != "ready" || !f.DashVisible {
		t.Fatalf("with the key: %+v", f)
	}
	if !strings.Contains(f.Who, d.Instance) || f.ScopeSwitchVisible {
		t.Errorf("instance %q, scope switch %v (no Redis: hidden)", f.Who, f.ScopeSwitchVisible)
	}
	rl := f.Charts["ratelimit"].SeriesByName()
	if rl["dashapi · allowed"].Sum != float64(counts[200]) || rl["dashapi · denied"].Sum != float64(counts[429]) || rl["dashapi · denied"].Paths == 0 {
		t.Errorf("rate-limit chart %+v, want %d allowed and %d denied", f.Charts["ratelimit"].Series, counts[200], counts[429])
	}
	if s := f.Charts["path_blocked"].SeriesByName()["dot_segment"]; s.Sum < 1 || s.Paths == 0 {
		t.Errorf("blocked-paths chart %+v: no dot_segment point", f.Charts["path_blocked"].Series)
	}
	if det := f.Charts["detections"]; det.Empty {
		t.Errorf("detections chart is empty: %+v", det)
	}
	for _, name := range []string{"cpu", "memory", "goroutines"} {
		if c := f.Charts[name]; c.Empty || len(c.Series) != 1 || c.Series[0].Points == 0 {
			t.Errorf("%s chart: %+v", name, c)
		}
	}
	flagged := false
	for _, row := range f.Tables["t-suspicious"] {
		if row[0] == "203.0.113.9" && strings.HasPrefix(row[4], fmt.Sprintf("curl -X DELETE http://127.0.0.1:%d/hardening/ipclass/detected/203.0.113.9", adminPort)) {
			flagged = true
		}
	}
	if !flagged {
		t.Errorf("the flagged IP is not in the suspicious table: %q", f.Tables["t-suspicious"])
	}
	var totalsText []string
	for _, row := range f.Tables["t-totals"] {
		totalsText = append(totalsText, strings.Join(row, " "))
	}
	if !strings.Contains(strings.Join(totalsText, "\n"), fmt.Sprintf("result=denied %d", counts[429])) {
		t.Errorf("the totals table lacks the denied count %d: %q", counts[429], totalsText)
	}
	events := 0
	for _, row := range f.Tables["t-events"] {
		if row[1] == EventPathBlocked && strings.Contains(row[5], "etc/passwd") {
			events++
		}
	}
	if events == 0 {
		t.Errorf("no path_blocked event in the events table: %q", f.Tables["t-events"])
	}
	if l := r.Phases["afterLogout"]; l == nil || l.State != "login" || l.StoredKey != nil || l.SVGs != 0 {
		t.Errorf("after logout: %+v", l)
	}
	if *updateDashboardScreenshot {
		pagetest.CopyFile(t, shot, "../docs/dashboard-caddy.png")
	}

	// A client of the trusted class needs no key.
	if err := c.Load(dashboardSite(port, adminPort, digest, "127.0.0.1")); err != nil {
		t.Fatal(err)
	}
	trusted := pagetest.Run(t, pagetest.Options{URL: page, MinUpdates: 1})
	for _, p := range trusted.Problems(page, "") {
		t.Error("trusted: " + p)
	}
	if f := trusted.Phases["start"]; f == nil || f.State != "ready" || f.LoginVisible {
		t.Fatalf("a trusted client: %+v", f)
	}
	for _, r := range trusted.Data {
		if r.Authorization != "" || (r.Status != 200 && !strings.Contains(r.URL, "scope=all")) {
			t.Fatalf("a trusted client's data request: %+v", r)
		}
	}
}
