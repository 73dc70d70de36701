//go:build chaos

package chaos

import (
	"fmt"
	"testing"
	"time"

	"github.com/swarmsec/caddy-hardening/internal/testenv"
)

// TestRedisLatency: 500 ms are added between Caddy and Redis (both directions) for 8 s under
// load, with store_timeout 50ms. A decision never waits longer than the store timeout, and the
// failover breaker then skips Redis altogether: request latency stays bounded (p99 under 1 s,
// a wide margin over 50 ms on a noisy machine), and no request fails.
func TestRedisLatency(t *testing.T) {
	redis := testenv.StartRedis(t)
	proxy := testenv.StartProxy(t, redis.Addr)
	up := startUpstream(t)
	const storeTimeout = 50 * time.Millisecond
	s := startStack(t, stackConfig{Redis: standaloneRedis(proxy.Addr), Upstream: up.Addr, StoreTimeout: storeTimeout})

	const slowAt, fastAt, added = 5 * time.Second, 13 * time.Second, 500 * time.Millisecond
	var w faultWindow
	r := &rlRun{keys: ipKeys(6), rate: 300, runFor: 18 * time.Second, observe: w.observe}
	st := r.run(t, s, func(start time.Time) {
		time.Sleep(time.Until(start.Add(slowAt)))
		w.begin()
		proxy.SetLatency(added)
		time.Sleep(time.Until(start.Add(fastAt)))
		w.end()
		proxy.SetLatency(0)
	})
	slowed, restored := w.times()
	checkStatuses(t, st)

	fallbackAfter, returnAfter, _ := failoverDelays(t, s.procs, slowed, restored, time.Now(), "while Redis was slow", "once Redis was fast again")

	const bound = time.Second // store_timeout 50ms: a wide margin for a noisy machine
	pct := w.checkBounded(t, bound, fmt.Sprintf("while Redis was %v slower", added))
	if p99 := st.Percentile(.99); p99 >= bound {
		t.Errorf("p99 latency over the run: %v, want under %v", p99, bound)
	}
	rateLimitFigures("redis_latency", st).
		set("added_latency_ms", ms(added)).set("store_timeout_ms", ms(storeTimeout)).
		set("fallback_after_ms", ms(fallbackAfter)).set("return_after_ms", ms(returnAfter)).
		set("slow_requests", len(w.latencies)).set("slow_p50_ms", ms(pct(.5))).set("slow_p99_ms", ms(pct(.99))).
		set("slow_max_ms", ms(pct(1))).set("p99_bound_ms", ms(bound)).
		set("p50_ms", ms(st.Percentile(.5))).set("p99_ms", ms(st.Percentile(.99))).print(t)
}
