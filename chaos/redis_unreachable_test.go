//go:build chaos

package chaos

import (
	"testing"
	"time"

	"github.com/swarmsec/caddy-hardening/internal/testenv"
)

// TestRedisUnreachable: a standalone Redis becomes unreachable under load for 6 s without
// dying, in two ways, then comes back:
//
//   - frozen (SIGSTOP, then SIGCONT): nothing is refused or reset; connections stay open, new
//     ones are accepted by the kernel, and no reply comes, the way a stalled node, a paused VM
//     or a dropped route look to a client. When Redis resumes it runs the decisions it had
//     queued, so a few requests are counted twice (in memory and late in Redis);
//   - partitioned (through a proxy: every open connection reset, every new one closed at
//     once, then forwarded again), the way a network partition or a firewall change answered
//     with resets looks: go-redis's pool loses every connection and must dial again.
//
// Either way every decision waits at most the store timeout, the failover breaker then keeps
// requests off Redis, no request fails, and once Redis answers again every instance returns
// to it. The bounds allow the double counts.
func TestRedisUnreachable(t *testing.T) {
	for _, fault := range []struct {
		name string
		// start starts what the fault needs and returns the address Caddy dials, the fault
		// and its repair.
		start func(t *testing.T, redis *testenv.Redis) (addr string, apply, repair func())
	}{
		{"frozen", func(_ *testing.T, redis *testenv.Redis) (string, func(), func()) {
			return redis.Addr, redis.Freeze, redis.Thaw
		}},
		{"partitioned", func(t *testing.T, redis *testenv.Redis) (string, func(), func()) {
			proxy := testenv.StartProxy(t, redis.Addr)
			return proxy.Addr, proxy.Cut, proxy.Restore
		}},
	} {
		t.Run(fault.name, func(t *testing.T) {
			redis := testenv.StartRedis(t)
			addr, apply, repair := fault.start(t, redis)
			up := startUpstream(t)
			const storeTimeout = 50 * time.Millisecond
			s := startStack(t, stackConfig{Redis: standaloneRedis(addr), Upstream: up.Addr, StoreTimeout: storeTimeout})

			const faultAt, repairAt = 6 * time.Second, 12 * time.Second
			var w faultWindow
			r := &rlRun{keys: ipKeys(6), rate: 300, runFor: 20 * time.Second, cutoff: faultAt - 200*time.Millisecond, observe: w.observe}
			var states []string // each instance's ratelimit:store component during the fault
			st := r.run(t, s, func(start time.Time) {
				time.Sleep(time.Until(start.Add(faultAt)))
				w.begin()
				apply()
				time.Sleep(time.Until(start.Add(repairAt - time.Second)))
				states = storeStates(s)
				time.Sleep(time.Until(start.Add(repairAt)))
				w.end()
				repair()
			})
			end := time.Now()
			faulted, repaired := w.times()
			during, after := "while Redis was "+fault.name, "after Redis was reachable again"

			checkStatuses(t, st)
			checkStoreFallback(t, states, during)
			checkStoreOnRedis(t, s, after)
			fallbackAfter, returnAfter, lastReturn := failoverDelays(t, s.procs, faulted, repaired, end, during, after)

			// No request waits for an unreachable Redis longer than the store timeout (a wide
			// margin for a noisy machine: the bound is 20 store timeouts).
			pct := w.checkBounded(t, time.Second, during)

			admitted, limit, exactBefore := r.checkOutage(t, faulted, lastReturn)
			rateLimitFigures("redis_"+fault.name, st).
				set("store_timeout_ms", ms(storeTimeout)).
				set("fallback_after_ms", ms(fallbackAfter)).set("return_after_ms", ms(returnAfter)).
				set("outage_ms", ms(lastReturn.Sub(faulted))).
				set("fault_requests", len(w.latencies)).set("fault_p50_ms", ms(pct(.5))).set("fault_p99_ms", ms(pct(.99))).
				set("fault_max_ms", ms(pct(1))).
				set("keys", len(r.keys)).set("admitted", admitted).set("limit_expected", limit).
				set("admitted_before_fault", exactBefore).set("by_instance", st.ByInstance).
				set("p50_ms", ms(st.Percentile(.5))).set("p99_ms", ms(st.Percentile(.99))).print(t)
		})
	}
}
