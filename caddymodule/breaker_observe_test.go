package caddymodule

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

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
		"breaker_short_circuited_total{response=problem,state=half_open} breaker_short_circuited_total{response=problem,state=open}"
	if strings.Join(got, " ") != want {
		t.Fatalf("short_circuited_total series:\n  %s\nwant\n  %s", strings.Join(got, " "), want)
	}
}
