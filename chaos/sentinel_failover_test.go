//go:build chaos

package chaos

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/swarmsec/caddy-hardening/internal/testenv"
)

const sentinelMaster = "chaos"

// TestSentinelFailover: a master with one replica, watched by three Sentinels (quorum 2).
// Under load the master and the Sentinel listed first in the configuration are killed
// (SIGKILL) together; the two other Sentinels promote the replica. No request fails; each
// instance decides in memory from the kill until go-redis, asking the next Sentinel, follows
// the promotion, then returns to Redis, now the promoted replica, which reloads the script it
// never ran (NOSCRIPT) and decides from the replicated buckets. Every key's total stays within
// what the policy allows per store in play.
func TestSentinelFailover(t *testing.T) {
	master := testenv.StartRedis(t)
	replica := testenv.StartReplica(t, master)
	// Started after the replica synced, so their first look at the master finds the replica
	// (otherwise they learn of it at the next INFO, 10 s later).
	sentinels := testenv.StartSentinels(t, 3, 2, master, sentinelMaster,
		"sentinel down-after-milliseconds "+sentinelMaster+" 1000",
		"sentinel failover-timeout "+sentinelMaster+" 5000")
	for i, sn := range sentinels {
		testenv.WaitFor(t, 20*time.Second, fmt.Sprintf("Sentinel %d to know the replica and the 2 other Sentinels", i), func() bool {
			reps, err := sn.Do("SENTINEL", "REPLICAS", sentinelMaster)
			peers, err2 := sn.Do("SENTINEL", "SENTINELS", sentinelMaster)
			list, _ := peers.([]any)
			return err == nil && err2 == nil && strings.Contains(fmt.Sprint(reps), strconv.Itoa(replica.Port)) && len(list) == 2
		})
	}
	first, witness, third := sentinels[0], sentinels[1], sentinels[2]

	up := startUpstream(t)
	redisConf := fmt.Sprintf("redis {\n\t\t\tsentinel %s %s %s %s\n\t\t\tkey_prefix chaos:\n\t\t}",
		sentinelMaster, first.Addr, witness.Addr, third.Addr)
	s := startStack(t, stackConfig{Redis: redisConf, Upstream: up.Addr, StoreTimeout: 200 * time.Millisecond})

	const killAt = 6 * time.Second
	// A promotion can take one failed election: with two live Sentinels a split vote (each
	// votes for itself) is retried after twice failover-timeout (10 s), about 13 s after the
	// kill. promoteWithin covers that, and the load runs on past it, so the return is seen.
	const promoteWithin = 20 * time.Second
	r := &rlRun{keys: ipKeys(6), rate: 300, runFor: killAt + promoteWithin + 4*time.Second, cutoff: killAt - 200*time.Millisecond}
	// promoted is the last moment a live Sentinel still named the old master: go-redis hears of
	// the switch (+switch-master) as soon as the Sentinels make it, possibly before the next
	// poll here sees it, so that is the earliest an instance can return.
	var killed, promoted time.Time
	st := r.run(t, s, func(start time.Time) {
		time.Sleep(time.Until(start.Add(killAt)))
		killed = time.Now()
		master.Kill()
		first.Kill()
		for time.Since(killed) < promoteWithin {
			asked := time.Now()
			addr, err := witness.Do("SENTINEL", "GET-MASTER-ADDR-BY-NAME", sentinelMaster)
			if err == nil && fmt.Sprint(addr) == fmt.Sprintf("[127.0.0.1 %d]", replica.Port) {
				return
			}
			promoted = asked
			time.Sleep(50 * time.Millisecond)
		}
		promoted = time.Time{}
	})
	end := time.Now()
	if promoted.IsZero() {
		t.Fatalf("the Sentinels did not promote the replica within %v of the kill", promoteWithin)
	}

	checkStatuses(t, st)
	checkStoreOnRedis(t, s, "after the promotion")
	// Effects replication sends the replica writes, not scripts: every EVALSHA it ran came
	// from an instance after the promotion.
	if calls := replica.CommandCalls(t, "evalsha", "eval"); calls == 0 {
		t.Errorf("the promoted replica ran no decision script: the instances did not follow the promotion")
	}

	fallbackAfter, returnAfter, lastReturn := failoverDelays(t, s.procs, killed, promoted, end, "after the kill", "after the promotion")

	// Redis decides exactly before the kill. Until an instance returns, it decides in its own
	// memory store; after, the promoted replica decides from buckets that may miss the last
	// writes the master took (asynchronous replication): at most one more burst.
	outage := lastReturn.Sub(killed)
	admitted, bound, exactBefore := r.checkOutage(t, killed, lastReturn)
	rateLimitFigures("sentinel_failover", st).
		set("promoted_after_ms", ms(promoted.Sub(killed))).
		set("fallback_after_ms", ms(fallbackAfter)).set("return_after_promotion_ms", ms(returnAfter)).set("outage_ms", ms(outage)).
		set("keys", len(r.keys)).set("admitted", admitted).set("limit_expected", bound).
		set("admitted_before_kill", exactBefore).set("by_instance", st.ByInstance).
		set("p50_ms", ms(st.Percentile(.5))).set("p99_ms", ms(st.Percentile(.99))).print(t)
}
