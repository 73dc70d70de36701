//go:build chaos

package chaos

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/swarmsec/caddy-hardening/internal/testenv"
)

// figures is one scenario's JSON line, its fields in the order they were added.
type figures struct {
	keys []string
	vals map[string]any
}

func newFigures(scenario string) *figures {
	f := &figures{vals: map[string]any{}}
	return f.set("scenario", scenario)
}

// rateLimitFigures starts the line of a rate-limit scenario with its load's answers.
func rateLimitFigures(scenario string, st Stats) *figures {
	return newFigures(scenario).
		set("requests", st.Requests).set("skipped", st.Skipped).set("2xx", st.ByStatus[200]).set("429", st.ByStatus[429]).
		set("5xx", st.Count5xx()).set("errors", st.ByStatus[0])
}

func (f *figures) set(k string, v any) *figures {
	if _, ok := f.vals[k]; !ok {
		f.keys = append(f.keys, k)
	}
	f.vals[k] = v
	return f
}

// print writes the line on stdout (CI logs keep it) and in the test log.
func (f *figures) print(t *testing.T) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, k := range f.keys {
		if i > 0 {
			b.WriteByte(',')
		}
		kb, _ := json.Marshal(k)
		vb, err := json.Marshal(f.vals[k])
		if err != nil {
			t.Fatalf("figure %s: %v", k, err)
		}
		b.Write(kb)
		b.WriteByte(':')
		b.Write(vb)
	}
	b.WriteByte('}')
	fmt.Println(b.String())
}

// ms is a duration in whole milliseconds, for the figures.
func ms(d time.Duration) int64 { return d.Milliseconds() }

// mib is bytes in MiB, rounded to 0.1 for the figures.
func mib(b int64) float64 { return math.Round(float64(b)/(1<<20)*10) / 10 }

// failoverTimes are the times an instance logged store_failover to the given mode
// ("memory-fallback" or "redis"), in order.
func failoverTimes(p *testenv.Process, to string) []time.Time {
	var out []time.Time
	for _, e := range testenv.ParseLogs(p.Output()) {
		if e.Msg() != "store_failover" || e.Str("to") != to {
			continue
		}
		if ts, ok := e["ts"].(float64); ok {
			sec, frac := math.Modf(ts)
			out = append(out, time.Unix(int64(sec), int64(frac*1e9)))
		}
	}
	return out
}

// firstAfter is the first time in ts at or after t0, and whether there is one.
func firstAfter(ts []time.Time, t0 time.Time) (time.Time, bool) {
	for _, t := range ts {
		if !t.Before(t0) {
			return t, true
		}
	}
	return time.Time{}, false
}

// failoverDelays checks that every instance logged a store_failover to memory-fallback after
// fault and one back to redis after repair, and returns the slowest of each delay and when the
// last instance returned (end when one did not). what names the fault in errors ("after the
// kill").
func failoverDelays(t *testing.T, procs []*testenv.Process, fault, repair, end time.Time, what, whatBack string) (fallbackAfter, returnAfter time.Duration, lastReturn time.Time) {
	t.Helper()
	returned := 0
	for i, p := range procs {
		fb, ok := firstAfter(failoverTimes(p, "memory-fallback"), fault)
		if !ok {
			t.Errorf("instance %d: no store_failover to memory-fallback %s", i, what)
			continue
		}
		fallbackAfter = max(fallbackAfter, fb.Sub(fault))
		back, ok := firstAfter(failoverTimes(p, "redis"), repair)
		if !ok {
			t.Errorf("instance %d: no store_failover back to redis %s", i, whatBack)
			continue
		}
		returned++
		returnAfter = max(returnAfter, back.Sub(repair))
	}
	lastReturn = end
	if returned == len(procs) {
		lastReturn = repair.Add(returnAfter)
	}
	return fallbackAfter, returnAfter, lastReturn
}

// faultWindow records the latency of every request sent between a fault and its repair.
type faultWindow struct {
	from, to  atomic.Pointer[time.Time] // set by the faults goroutine, read by the observer
	latencies []time.Duration
}

func (w *faultWindow) begin() { now := time.Now(); w.from.Store(&now) }
func (w *faultWindow) end()   { now := time.Now(); w.to.Store(&now) }

// observe is an rlRun observer.
func (w *faultWindow) observe(res Result) {
	from, to := w.from.Load(), w.to.Load()
	if from != nil && res.Sent.After(*from) && (to == nil || res.Sent.Before(*to)) {
		w.latencies = append(w.latencies, res.Latency)
	}
}

// times returns when the fault began and ended (after the run).
func (w *faultWindow) times() (time.Time, time.Time) { return *w.from.Load(), *w.to.Load() }

// checkBounded sorts the latencies and asserts there are some and that their p99 is under bound;
// it returns the percentile function for the figures. what names the fault ("while Redis was
// frozen").
func (w *faultWindow) checkBounded(t *testing.T, bound time.Duration, what string) func(p float64) time.Duration {
	t.Helper()
	slices.Sort(w.latencies)
	pct := func(p float64) time.Duration {
		if len(w.latencies) == 0 {
			return 0
		}
		return w.latencies[int(p*float64(len(w.latencies)-1))]
	}
	if len(w.latencies) == 0 {
		t.Fatalf("no request was sent %s", what)
	}
	if p99 := pct(.99); p99 >= bound {
		t.Errorf("p99 latency %s: %v, want under %v", what, p99, bound)
	}
	return pct
}

// storeStates reads every instance's ratelimit:store component, each as "<status> <mode>
// <error>", for checkStoreFallback once the run is over.
func storeStates(s *stack) []string {
	var out []string
	for _, u := range s.urls {
		status, mode, err := storeComponent(u)
		out = append(out, fmt.Sprintf("%s %s %v", status, mode, err))
	}
	return out
}

// checkStoreFallback asserts that states, read during an outage, all say warn / memory-fallback.
func checkStoreFallback(t *testing.T, states []string, when string) {
	t.Helper()
	for i, got := range states {
		if got != "warn memory-fallback <nil>" {
			t.Errorf("instance %d: ratelimit:store %s: %s, want warn memory-fallback", i, when, got)
		}
	}
}

// checkStoreOnRedis asserts every instance's ratelimit:store component says pass / redis.
func checkStoreOnRedis(t *testing.T, s *stack, when string) {
	t.Helper()
	for i, u := range s.urls {
		if status, mode, err := storeComponent(u); err != nil || status != "pass" || mode != "redis" {
			t.Errorf("instance %d: ratelimit:store %s: %s %s %v, want pass redis", i, when, status, mode, err)
		}
	}
}

// rssBytes reads VmRSS from /proc/<pid>/status.
func rssBytes(t *testing.T, pid int) int64 {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("reading the RSS of %d: %v", pid, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				t.Fatalf("VmRSS %q: %v", rest, err)
			}
			return kb * 1024
		}
	}
	t.Fatalf("no VmRSS in /proc/%d/status", pid)
	return 0
}

// monitoringMetrics is the part of /api/monitoring/metrics the scenarios read.
type monitoringMetrics struct {
	System struct {
		Runtime struct {
			Goroutines int `json:"goroutines"`
		} `json:"runtime"`
	} `json:"system"`
	Counters map[string][]struct {
		Labels map[string]string `json:"labels"`
		Value  *float64          `json:"value"`
	} `json:"counters"`
}

// gaugeWith is the value of the caddy_hardening_<name> series whose label has the value given
// (-1 when absent).
func (m monitoringMetrics) gaugeWith(name, label, value string) float64 {
	for _, c := range m.Counters[name] {
		if c.Value != nil && c.Labels[label] == value {
			return *c.Value
		}
	}
	return -1
}

// gauge is the value of a caddy_hardening_<name> series without labels (-1 when absent).
func (m monitoringMetrics) gauge(name string) float64 {
	for _, c := range m.Counters[name] {
		if c.Value != nil {
			return *c.Value
		}
	}
	return -1
}

// monitorHTTP asks the monitoring routes without keeping connections, so sampling leaves no
// idle connection (and no goroutine) behind in the instance it measures.
var monitorHTTP = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

// readMetrics asks an instance's monitoring route, as the trusted client.
func readMetrics(t *testing.T, base string) monitoringMetrics {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, base+"/api/monitoring/metrics", nil)
	req.Header.Set("X-Forwarded-For", monitorClient)
	resp, err := monitorHTTP.Do(req)
	if err != nil {
		t.Fatalf("monitoring metrics: %v", err)
	}
	defer resp.Body.Close()
	var m monitoringMetrics
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("monitoring metrics: status %d", resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatalf("monitoring metrics: %v", err)
	}
	if m.System.Runtime.Goroutines == 0 {
		t.Fatalf("monitoring metrics without a goroutine count: is %s trusted?", monitorClient)
	}
	return m
}

// storeComponent is the ratelimit:store component of an instance's /services answer: its
// status (pass, warn) and mode (redis, memory-fallback).
func storeComponent(base string) (status, mode string, err error) {
	req, _ := http.NewRequest(http.MethodGet, base+"/api/monitoring/services", nil)
	req.Header.Set("X-Forwarded-For", monitorClient)
	resp, err := monitorHTTP.Do(req)
	if err != nil {
		return "", "", err
	}
	defer resp.Body.Close()
	var doc struct {
		Components []struct {
			Component string         `json:"component"`
			Status    string         `json:"status"`
			Observed  map[string]any `json:"observed"`
		} `json:"components"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		return "", "", err
	}
	for _, c := range doc.Components {
		if c.Component == "ratelimit:store" {
			mode, _ := c.Observed["mode"].(string)
			return c.Status, mode, nil
		}
	}
	return "", "", fmt.Errorf("no ratelimit:store component in %s/api/monitoring/services", base)
}
