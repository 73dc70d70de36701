//go:build chaos

package chaos

import (
	"fmt"
	"testing"
	"time"

	"github.com/swarmsec/caddy-hardening/internal/testenv"
)

// TestClusterMasterKilled: one master of a 3-master Cluster (no replicas, full coverage not
// required, so the others keep serving their slots) is killed under load, and restarted 7 s
// later (its data gone, its slots kept in nodes.conf). Keys on the other masters keep their
// exact shared limit over the whole run; keys on the dead master fall back to each
// instance's memory until the master is back, then return to it; no request fails.
func TestClusterMasterKilled(t *testing.T) {
	cluster := testenv.StartCluster(t, "--cluster-require-full-coverage", "no")
	victim := cluster.Nodes[0]
	onVictim, elsewhere := placeKeys(t, cluster, victim)
	up := startUpstream(t)
	s := startStack(t, stackConfig{Redis: clusterRedis(cluster.Addrs()), Upstream: up.Addr, StoreTimeout: 200 * time.Millisecond})

	const killAt, restartAt = 5 * time.Second, 12 * time.Second
	keys := append(append([]string{}, onVictim...), elsewhere...)
	r := &rlRun{keys: keys, rate: 300, runFor: 22 * time.Second}
	var killed, restarted time.Time
	st := r.run(t, s, func(start time.Time) {
		time.Sleep(time.Until(start.Add(killAt)))
		killed = time.Now()
		victim.Kill()
		time.Sleep(time.Until(start.Add(restartAt)))
		restarted = time.Now()
		victim.Restart()
	})
	end := time.Now()
	checkStatuses(t, st)

	fallbackAfter, returnAfter, lastReturn := failoverDelays(t, s.procs, killed, restarted, end, "after the master was killed", "after it restarted")
	// Decisions reach the restarted master again (it runs the script anew: its cache died
	// with it).
	if calls := victim.CommandCalls(t, "evalsha", "eval"); calls == 0 {
		t.Errorf("the restarted master ran no decision script")
	}

	var exactAdmitted, exactWant, affectedAdmitted, affectedBound, affectedExact int64
	for _, k := range elsewhere {
		tl := r.tallies[k]
		exactWant += checkExact(t, "key "+k+" on a live master", tl.admitted, tl.first, tl.last)
		exactAdmitted += tl.admitted
	}
	// A key on the victim: Redis's allowance over the run, one more burst from the empty
	// bucket after the restart, and three in-memory allowances until each instance returned.
	for _, k := range onVictim {
		tl := r.tallies[k]
		redisPart, _ := allowance(tl.first, tl.last)
		memPart, _ := allowance(killed, lastReturn)
		b := redisPart + rlBurst + 1 + 3*(memPart+1)
		if tl.admitted > b {
			t.Errorf("key %s on the dead master: admitted %d, more than the bound %d", k, tl.admitted, b)
		}
		affectedAdmitted += tl.admitted
		affectedBound += b
		affectedExact += redisPart
	}
	if affectedAdmitted <= affectedExact {
		t.Errorf("keys on the dead master: admitted %d, no more than one shared limit (%d): did they fall back?", affectedAdmitted, affectedExact)
	}
	rateLimitFigures("cluster_master_killed", st).
		set("fallback_after_ms", ms(fallbackAfter)).set("return_after_restart_ms", ms(returnAfter)).
		set("keys_live_masters", len(elsewhere)).set("admitted_live", exactAdmitted).set("limit_exact_live", exactWant).
		set("keys_dead_master", len(onVictim)).set("admitted_dead", affectedAdmitted).set("limit_expected_dead", affectedBound).
		set("shared_limit_dead", affectedExact).
		set("p50_ms", ms(st.Percentile(.5))).set("p99_ms", ms(st.Percentile(.99))).print(t)
}

// placeKeys picks client addresses until three keys live on the victim and two on each other
// master, by asking the Cluster where each key's slot is.
func placeKeys(t *testing.T, c *testenv.Cluster, victim *testenv.Redis) (onVictim, elsewhere []string) {
	t.Helper()
	owner := slotOwners(t, c)
	perNode := map[string]int{}
	for i := 1; i < 255 && (len(onVictim) < 3 || len(elsewhere) < 4); i++ {
		ip := fmt.Sprintf("198.51.100.%d", i)
		slot, err := c.Nodes[1].Do("CLUSTER", "KEYSLOT", "chaos:rl:{chaos:"+ip+"}")
		if err != nil {
			t.Fatal(err)
		}
		node := owner(slot.(int64))
		switch {
		case node == victim.Addr && len(onVictim) < 3:
			onVictim = append(onVictim, ip)
		case node != victim.Addr && perNode[node] < 2:
			perNode[node]++
			elsewhere = append(elsewhere, ip)
		}
	}
	if len(onVictim) < 3 || len(elsewhere) < 4 {
		t.Fatalf("could not place keys: %v on the victim, %v elsewhere", onVictim, elsewhere)
	}
	return onVictim, elsewhere
}

// slotOwners reads CLUSTER SLOTS and returns the master address of a slot.
func slotOwners(t *testing.T, c *testenv.Cluster) func(slot int64) string {
	t.Helper()
	reply, err := c.Nodes[1].Do("CLUSTER", "SLOTS")
	if err != nil {
		t.Fatal(err)
	}
	type span struct {
		lo, hi int64
		addr   string
	}
	var spans []span
	for _, e := range reply.([]any) {
		row := e.([]any)
		master := row[2].([]any)
		spans = append(spans, span{row[0].(int64), row[1].(int64), fmt.Sprintf("%s:%d", master[0], master[1])})
	}
	return func(slot int64) string {
		for _, s := range spans {
			if slot >= s.lo && slot <= s.hi {
				return s.addr
			}
		}
		t.Fatalf("slot %d has no master in %v", slot, spans)
		return ""
	}
}
