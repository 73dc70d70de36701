package caddymodule

import (
	"fmt"
	"maps"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/swarmsec/caddy-hardening/internal/testcaddy"
	"github.com/swarmsec/caddy-hardening/internal/testenv"
)

// metricsSite is a site serving Caddy's /metrics: the running configuration's registry.
func metricsSite(t *testing.T) (string, string) {
	port := testenv.FreePort(t)
	return fmt.Sprintf(`http://127.0.0.1:%d {
	bind 127.0.0.1
	metrics /metrics
}
`, port), fmt.Sprintf("http://127.0.0.1:%d/metrics", port)
}

var breakerFamilies = []string{"caddy_hardening_breaker_state", "caddy_hardening_breaker_requests_total",
	"caddy_hardening_breaker_short_circuited_total", "caddy_hardening_breaker_transitions_total"}

// scrapeBreaker reads /metrics and returns the series of one breaker, each keyed as
// `breaker_state{state=open}` (the family without its prefix, the other labels sorted).
func scrapeBreaker(t *testing.T, url, name string) map[string]float64 {
	t.Helper()
	r := getReply(t, url)
	if r.status != 200 {
		t.Fatalf("GET %s: %d %s", url, r.status, r.body)
	}
	out := map[string]float64{}
	for _, fam := range breakerFamilies {
		for _, s := range promSeries(t, r.body, fam) {
			if s.Labels["breaker"] != name {
				continue
			}
			var labels []string
			for _, k := range slices.Sorted(maps.Keys(s.Labels)) {
				if k != "breaker" {
					labels = append(labels, k+"="+s.Labels[k])
				}
			}
			out[strings.TrimPrefix(fam, "caddy_hardening_")+"{"+strings.Join(labels, ",")+"}"] = s.Count
		}
	}
	return out
}

// TestBreakerShortCircuitedSeriesOnlyForRefusingStates: a closed breaker never short-circuits,
// so short_circuited_total has series for open and half_open only.
func TestBreakerShortCircuitedSeriesOnlyForRefusingStates(t *testing.T) {
	u := startUpstream(t, "ok")
	block, _ := breakerSite(t, "t_sc_states", "consecutive_failures 1", u.addr())
	mblock, murl := metricsSite(t)
	testcaddy.StartCaddy(t, block+mblock)
	var got []string
	for k := range scrapeBreaker(t, murl, "t_sc_states") {
		if strings.HasPrefix(k, "breaker_short_circuited_total") {
			got = append(got, k)
		}
	}
	slices.Sort(got)
	want := "breaker_short_circuited_total{response=fallback,state=half_open} breaker_short_circuited_total{response=fallback,state=open} " +
		"breaker_short_circuited_total{response=fallback_5xx,state=half_open} breaker_short_circuited_total{response=fallback_5xx,state=open} " +
		"breaker_short_circuited_total{response=problem,state=half_open} breaker_short_circuited_total{response=problem,state=open}"
	if strings.Join(got, " ") != want {
		t.Fatalf("short_circuited_total series:\n  %s\nwant\n  %s", strings.Join(got, " "), want)
	}
}

// TestBreakerSeriesFollowTheConfiguredBreakers: a reload that removes a breaker drops its
// series (an open one's state gauge would keep an alert firing), a breaker that stays keeps
// its series going, and a breaker configured again starts afresh.
func TestBreakerSeriesFollowTheConfiguredBreakers(t *testing.T) {
	failing, ok := startUpstream(t, "fail"), startUpstream(t, "ok")
	old, oldURL := breakerSite(t, "t_series_old", "consecutive_failures 1\nopen_for 1h", failing.addr())
	keep, keepURL := breakerSite(t, "t_series_keep", "consecutive_failures 1", ok.addr())
	mblock, murl := metricsSite(t)
	c := testcaddy.StartCaddy(t, old+keep+mblock)

	if r := getReply(t, oldURL); r.status != 500 {
		t.Fatalf("first request: %d, want the upstream's 500", r.status)
	}
	assertOpenReply(t, getReply(t, oldURL), 3600)
	for range 3 {
		if r := getReply(t, keepURL); r.status != 200 {
			t.Fatalf("kept breaker: %d", r.status)
		}
	}
	waitFor(t, "t_series_old's gauge to say open", func() bool {
		return scrapeBreaker(t, murl, "t_series_old")["breaker_state{state=open}"] == 1
	})

	// The reload removes t_series_old: none of its series remain; t_series_keep's go on.
	if err := c.Load(keep + mblock); err != nil {
		t.Fatal(err)
	}
	if got := scrapeBreaker(t, murl, "t_series_old"); len(got) != 0 {
		t.Fatalf("series of the removed breaker after the reload: %v", got)
	}
	kept := scrapeBreaker(t, murl, "t_series_keep")
	if kept["breaker_requests_total{outcome=success}"] != 3 || kept["breaker_state{state=closed}"] != 1 {
		t.Fatalf("the kept breaker's series after the reload: %v; want its 3 successes and closed", kept)
	}

	// A second reload keeps them going; the removed breaker does not come back.
	if err := c.Load(keep + mblock); err != nil {
		t.Fatal(err)
	}
	getReply(t, keepURL)
	if got := scrapeBreaker(t, murl, "t_series_keep")["breaker_requests_total{outcome=success}"]; got != 4 {
		t.Fatalf("requests_total{outcome=success} = %v after two reloads, want 4", got)
	}
	if got := scrapeBreaker(t, murl, "t_series_old"); len(got) != 0 {
		t.Fatalf("series of the removed breaker two reloads later: %v", got)
	}

	// Without breakers there are no breaker series; a breaker configured again starts closed
	// with its counters at zero.
	if err := c.Load(mblock); err != nil {
		t.Fatal(err)
	}
	if got := scrapeBreaker(t, murl, "t_series_keep"); len(got) != 0 {
		t.Fatalf("series with no breaker configured: %v", got)
	}
	if err := c.Load(old + keep + mblock); err != nil {
		t.Fatal(err)
	}
	again := scrapeBreaker(t, murl, "t_series_old")
	for k, v := range again {
		want := 0.0
		if k == "breaker_state{state=closed}" {
			want = 1
		}
		if v != want {
			t.Fatalf("the breaker configured again: %v; want closed and every counter at 0", again)
		}
	}
	if len(again) != 3+3+6+3 { // states, outcomes, short-circuited (open, half_open) × responses, transitions
		t.Fatalf("the breaker configured again has %d series, want 15: %v", len(again), again)
	}
}

// TestBreakerReloadResetIsAStateChange: a reload that gives an open breaker new trip rules
// replaces it with a closed one; that is reported like any state change (security log, Caddy
// event, transition count, gauge) with cause reload. A reload that keeps the rules, one that
// is refused and one that fails to start report nothing.
func TestBreakerReloadResetIsAStateChange(t *testing.T) {
	u := startUpstream(t, "fail")
	g1, url := breakerSite(t, "t_reset", "consecutive_failures 1\nopen_for 1h", u.addr())
	g2 := strings.Replace(g1, "open_for 1h", "open_for 2h", 1)
	mblock, murl := metricsSite(t)
	c := startWithEvents(t, g1+mblock, EventBreakerStateChanged)
	getReply(t, url)
	assertOpenReply(t, getReply(t, url), 3600)
	if got := breakerEvents(t, c, "t_reset", 1); got != "warn:closed>open:local" {
		t.Fatalf("events %q, want the opening", got)
	}

	if err := c.LoadJSON(withEvents(t, g2+mblock, EventBreakerStateChanged)); err != nil {
		t.Fatal(err)
	}
	if r := getReply(t, url); r.status != 500 {
		t.Fatalf("after new rules: %d, want the upstream's 500 through a new, closed breaker", r.status)
	}
	want := "warn:closed>open:local info:open>closed:reload warn:closed>open:local"
	if got := breakerEvents(t, c, "t_reset", 3); got != want {
		t.Fatalf("events %q, want %q", got, want)
	}
	var causes []string
	for _, e := range recordedEvents(EventBreakerStateChanged) {
		causes = append(causes, fmt.Sprint(e.Data["from"], ">", e.Data["to"], ":", e.Data["cause"]))
	}
	if got := strings.Join(causes, " "); got != "closed>open:local open>closed:reload closed>open:local" {
		t.Fatalf("Caddy events %q", got)
	}
	m := scrapeBreaker(t, murl, "t_reset")
	if m["breaker_transitions_total{to=closed}"] != 1 || m["breaker_transitions_total{to=open}"] != 2 || m["breaker_state{state=open}"] != 1 {
		t.Fatalf("series %v; want 1 transition to closed (the reset), 2 to open, open now", m)
	}

	// Same rules: the same breaker, nothing to report.
	if err := c.LoadJSON(withEvents(t, g2+mblock, EventBreakerStateChanged)); err != nil {
		t.Fatal(err)
	}
	// New rules in a config refused while provisioning (t_reset twice, with two rule sets),
	// then in one that fails to start (its second site's port is taken): the running config's
	// open breaker stays the reported one.
	refused := twoRoutes(t, "t_reset", "consecutive_failures 1\nopen_for 3h", "consecutive_failures 1\nopen_for 4h", u.addr())
	if err := c.LoadJSON(oneName(withEvents(t, sameName(refused, "t_reset")+mblock, EventBreakerStateChanged), "t_reset")); err == nil || !strings.Contains(err.Error(), "configured twice") {
		t.Fatalf("a config with two rule sets for one name: %v", err)
	}
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	unstartable := strings.Replace(g2, "open_for 2h", "open_for 3h", 1) + fmt.Sprintf("http://%s {\n\tbind 127.0.0.1\n\trespond ok\n}\n", taken.Addr())
	if err := c.LoadJSON(withEvents(t, unstartable+mblock, EventBreakerStateChanged)); err == nil || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("a config listening on a taken port: %v", err)
	}
	assertOpenReply(t, getReply(t, url), 7200)
	time.Sleep(100 * time.Millisecond) // deliveries are asynchronous: give a wrong one time to show
	if got := breakerEvents(t, c, "t_reset", 3); got != want {
		t.Fatalf("events after reloads that kept the breaker %q, want still %q", got, want)
	}
	m = scrapeBreaker(t, murl, "t_reset")
	if m["breaker_transitions_total{to=closed}"] != 1 || m["breaker_state{state=open}"] != 1 {
		t.Fatalf("series %v after reloads that kept the breaker; want still open, 1 transition to closed", m)
	}
}
