//go:build chaos

package chaos

import (
	"testing"
	"time"

	"github.com/swarmsec/caddy-hardening/internal/testenv"
)

// TestRedisFrozen: a standalone Redis is frozen (SIGSTOP) under load for 6 s, then resumed.
// Unlike a crash, nothing is refused or reset: connections stay open, new ones are accepted
// by the kernel, and no reply comes, the way a stalled node, a paused VM or a dropped route
// look to a client. Every decision waits at most the store timeout, the failover breaker
// then keeps requests off Redis, no request fails, and once Redis answers again every
// instance returns to it. When Redis resumes it also runs the decisions it had queued, so a
// few requests are counted twice (in memory and late in Redis): the bounds below allow it.
func TestRedisFrozen(t *testing.T) {
	redis := testenv.StartRedis(t)
	up := startUpstream(t)
	const storeTimeout = 50 * time.Millisecond
	s := startStack(t, stackConfig{Redis: standaloneRedis(redis.Addr), Upstream: up.Addr, StoreTimeout: storeTimeout})

	const freezeAt, thawAt = 6 * time.Second, 12 * time.Second
	var w faultWindow
	r := &rlRun{keys: ipKeys(6), rate: 300, runFor: 20 * time.Second, cutoff: freezeAt - 200*time.Millisecond, observe: w.observe}
	var states []string // each instance's ratelimit:store component while Redis is frozen
	st := r.run(t, s, func(start time.Time) {
		time.Sleep(time.Until(start.Add(freezeAt)))
		w.begin()
		redis.Freeze()
		time.Sleep(time.Until(start.Add(thawAt - time.Second)))
		states = storeStates(s)
		time.Sleep(time.Until(start.Add(thawAt)))
		w.end()
		redis.Thaw()
	})
	end := time.Now()
	frozen, thawed := w.times()

	checkStatuses(t, st)
	checkStoreFallback(t, states, "while Redis was frozen")
	checkStoreOnRedis(t, s, "after Redis resumed")
	fallbackAfter, returnAfter, lastReturn := failoverDelays(t, s.procs, frozen, thawed, end, "after the freeze", "after Redis resumed")

	// No request waits for a frozen Redis longer than the store timeout (a wide margin for a
	// noisy machine: the bound is 20 store timeouts).
	pct := w.checkBounded(t, time.Second, "while Redis was frozen")

	admitted, limit, exactBefore := r.checkOutage(t, frozen, lastReturn)
	rateLimitFigures("redis_frozen", st).
		set("store_timeout_ms", ms(storeTimeout)).
		set("fallback_after_ms", ms(fallbackAfter)).set("return_after_ms", ms(returnAfter)).
		set("outage_ms", ms(lastReturn.Sub(frozen))).
		set("frozen_requests", len(w.latencies)).set("frozen_p50_ms", ms(pct(.5))).set("frozen_p99_ms", ms(pct(.99))).
		set("frozen_max_ms", ms(pct(1))).
		set("keys", len(r.keys)).set("admitted", admitted).set("limit_expected", limit).
		set("admitted_before_freeze", exactBefore).set("by_instance", st.ByInstance).
		set("p50_ms", ms(st.Percentile(.5))).set("p99_ms", ms(st.Percentile(.99))).print(t)
}
