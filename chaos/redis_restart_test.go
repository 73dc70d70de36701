//go:build chaos

package chaos

import (
	"testing"
	"time"

	"github.com/swarmsec/caddy-hardening/internal/testenv"
)

// TestRedisRestart: a standalone Redis is killed (SIGKILL) under load and restarted 6 s later
// with its data gone. No request fails; each instance decides in memory while Redis is away
// and returns to Redis once it answers; every key's total stays within what the policy allows
// per store in play.
func TestRedisRestart(t *testing.T) {
	redis := testenv.StartRedis(t)
	up := startUpstream(t)
	s := startStack(t, stackConfig{Redis: standaloneRedis(redis.Addr), Upstream: up.Addr, StoreTimeout: 200 * time.Millisecond})

	const killAt, restartAt = 6 * time.Second, 12 * time.Second
	r := &rlRun{keys: ipKeys(6), rate: 300, runFor: 20 * time.Second, cutoff: killAt - 200*time.Millisecond}
	var killed, restarted time.Time
	var during []string // each instance's ratelimit:store component while Redis is away
	st := r.run(t, s, func(start time.Time) {
		time.Sleep(time.Until(start.Add(killAt)))
		killed = time.Now()
		redis.Kill()
		time.Sleep(time.Until(start.Add(restartAt - time.Second)))
		during = storeStates(s)
		time.Sleep(time.Until(start.Add(restartAt)))
		restarted = time.Now()
		redis.Restart()
	})
	end := time.Now()

	checkStatuses(t, st)

	// Monitoring shows the degraded state while Redis is away, and the healthy one after.
	checkStoreFallback(t, during, "while Redis was away")
	checkStoreOnRedis(t, s, "after the restart")

	// Each instance fell back after the kill and returned after the restart.
	fallbackAfter, returnAfter, lastReturn := failoverDelays(t, s.procs, killed, restarted, end, "after the kill", "after the restart")

	// Limits held throughout. Redis decides before the kill (exactly) and after the restart
	// (from an empty bucket); between the kill and an instance's return, that instance decides
	// in its own memory store, empty until then. So a key's total is at most two Redis
	// allowances over the whole run plus three in-memory ones over the outage.
	outage := lastReturn.Sub(killed)
	admitted, bound, exactBefore := r.checkOutage(t, killed, lastReturn)
	rateLimitFigures("redis_restart", st).
		set("fallback_after_ms", ms(fallbackAfter)).set("return_after_ms", ms(returnAfter)).set("outage_ms", ms(outage)).
		set("keys", len(r.keys)).set("admitted", admitted).set("limit_expected", bound).
		set("admitted_before_kill", exactBefore).set("by_instance", st.ByInstance).
		set("p50_ms", ms(st.Percentile(.5))).set("p99_ms", ms(st.Percentile(.99))).print(t)
}
