//go:build chaos

package chaos

import (
	"context"
	"flag"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/swarmsec/caddy-hardening/internal/testenv"
)

var soakFor = flag.Duration("soak", 0, "run TestSoak for this long (e.g. 60s in CI, 10m for the README figure); 0 skips it")

// The soak's sampling period and growth rules, applied after a warm-up that lets connection
// pools fill. RSS grows when the minimum of its last third exceeds the maximum of its first
// third by more than soakRSSGrowth and by more than soakRSSSlack; goroutines leak when they
// never decrease and the minimum of their last third exceeds the maximum of their first third
// by more than soakGoroutines (a step while pools fill, then a plateau, is not a leak).
const (
	soakSample     = 10 * time.Second
	soakWarmup     = 10 * time.Second
	soakRSSGrowth  = 0.20
	soakRSSSlack   = 8 << 20
	soakGoroutines = 50
)

// requireFlag skips a test its flag leaves off, except under CI, where nothing may skip.
func requireFlag(t *testing.T, off bool, name string) {
	t.Helper()
	if !off {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("CI is set but -%s is not: the CI script must pass it", name)
	}
	t.Skipf("-%s not given", name)
}

// TestSoak runs the full stack (standalone Redis, three instances, every module on the
// route) under a steady mixed load for -soak, samples each instance's RSS and goroutines every
// 10 s, and fails on sustained growth of either.
func TestSoak(t *testing.T) {
	requireFlag(t, *soakFor <= 0, "soak")
	redis := testenv.StartRedis(t)
	up := startUpstream(t)
	s := startStack(t, stackConfig{Redis: standaloneRedis(redis.Addr), Upstream: up.Addr})

	// 1000 clients; most requests reach the upstream, some are 404s (the detector scores
	// them), some are rate limited.
	paths := []string{"/app/a", "/app/b", "/app/c", "/app/missing", "/rl/x", "/app/d", "/app/e", "/app/f"}
	l := &Load{Targets: s.urls, Rate: 200, Workers: 16,
		Next: func(i int64) Request {
			return Request{Instance: int(i % 3), Path: paths[(i/3)%int64(len(paths))],
				ClientIP: fmt.Sprintf("198.18.%d.%d", (i/7)%4, 1+(i/7/4)%250)}
		},
	}
	ctx, cancel := context.WithTimeout(context.Background(), soakWarmup+*soakFor+time.Second)
	defer cancel()
	statsCh := make(chan Stats, 1)
	go func() { statsCh <- l.Run(ctx) }()

	type series struct {
		RSSMiB     []float64 `json:"rss_mib"`
		Goroutines []int     `json:"goroutines"`
	}
	inst := make([]series, len(s.procs))
	start := time.Now().Add(soakWarmup)
	for _, u := range s.urls { // the first metrics answer starts the instance's system sampler
		readMetrics(t, u)
	}
	for k := 0; ; k++ {
		at := start.Add(time.Duration(k) * soakSample)
		if at.After(start.Add(*soakFor)) {
			break
		}
		time.Sleep(time.Until(at))
		for i, p := range s.procs {
			inst[i].RSSMiB = append(inst[i].RSSMiB, mib(rssBytes(t, p.PID())))
			inst[i].Goroutines = append(inst[i].Goroutines, readMetrics(t, s.urls[i]).System.Runtime.Goroutines)
		}
	}
	cancel()
	st := <-statsCh

	for code, n := range st.ByStatus {
		if code != 200 && code != 404 && code != 429 {
			t.Errorf("%d answers with status %d (0: transport error); want 200, 404, 429", n, code)
		}
	}
	for i, se := range inst {
		if grows, why := rssGrows(se.RSSMiB); grows {
			t.Errorf("instance %d: RSS grows: %s; samples %v MiB", i, why, se.RSSMiB)
		}
		if leaks, why := goroutinesLeak(se.Goroutines); leaks {
			t.Errorf("instance %d: goroutines grow: %s; samples %v", i, why, se.Goroutines)
		}
	}
	newFigures("soak").set("duration_s", soakFor.Seconds()).set("sample_s", soakSample.Seconds()).
		set("requests", st.Requests).set("skipped", st.Skipped).set("2xx", st.ByStatus[200]).
		set("404", st.ByStatus[404]).set("429", st.ByStatus[429]).set("5xx", st.Count5xx()).
		set("p50_ms", ms(st.Percentile(.5))).set("p99_ms", ms(st.Percentile(.99))).
		set("instances", inst).print(t)
}

// thirds are the first and last third of a series (at least one sample each).
func thirds[T any](s []T) (first, last []T) {
	n := max(1, len(s)/3)
	return s[:n], s[len(s)-n:]
}

// rssGrows applies the growth rule to RSS samples in MiB.
func rssGrows(mib []float64) (bool, string) {
	if len(mib) < 3 {
		return false, ""
	}
	first, last := thirds(mib)
	firstMax, lastMin := first[0], last[0]
	for _, v := range first {
		firstMax = max(firstMax, v)
	}
	for _, v := range last {
		lastMin = min(lastMin, v)
	}
	if lastMin > firstMax*(1+soakRSSGrowth) && (lastMin-firstMax)*(1<<20) > soakRSSSlack {
		return true, fmt.Sprintf("the last third's minimum %.1f MiB exceeds the first third's maximum %.1f MiB by more than %.0f%% and %d MiB",
			lastMin, firstMax, soakRSSGrowth*100, soakRSSSlack>>20)
	}
	return false, ""
}

// goroutinesLeak applies the goroutine rule: never decreasing, and the last third's minimum
// more than soakGoroutines above the first third's maximum.
func goroutinesLeak(g []int) (bool, string) {
	if len(g) < 3 {
		return false, ""
	}
	for i := 1; i < len(g); i++ {
		if g[i] < g[i-1] {
			return false, ""
		}
	}
	first, last := thirds(g)
	if last[0]-first[len(first)-1] > soakGoroutines { // sorted: never decreasing
		return true, fmt.Sprintf("never decreasing, the last third's minimum %d is more than %d above the first third's maximum %d",
			last[0], soakGoroutines, first[len(first)-1])
	}
	return false, ""
}
