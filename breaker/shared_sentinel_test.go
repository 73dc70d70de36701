package breaker

import (
	"fmt"
	"testing"
	"time"

	"github.com/swarmsec/caddy-hardening/internal/redisconn"
	"github.com/swarmsec/caddy-hardening/internal/testenv"
)

// TestSharedBreakersFollowASentinelFailover: two instances share a breaker through a master
// that Sentinel watches. The master is killed and its replica promoted: each instance reports
// the store unreachable once and answering again once, and a trip after the promotion opens
// the other instance's breaker through the new master.
func TestSharedBreakersFollowASentinelFailover(t *testing.T) {
	master := testenv.StartRedis(t)
	replica := testenv.StartReplica(t, master)
	const name = "brk"
	sentinel := testenv.StartFailoverSentinel(t, master, name)
	instance := func(h *healthLog) *Breaker {
		// The app's client: redisconn with the Sentinel settings a Caddyfile gives.
		c, err := redisconn.New(redisconn.Options{SentinelMaster: name, SentinelAddrs: []string{sentinel.Addr},
			DialTimeout: 200 * time.Millisecond, MaxRetries: -1})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return sharedBreaker(t, c, h)
	}
	var ha, hb healthLog
	a, b := instance(&ha), instance(&hb)
	const stateKey = "hardening:breaker:{billing}:gobreaker:state:billing"
	testenv.WaitFor(t, 5*time.Second, "the replica to hold the shared state", func() bool {
		v, err := replica.Do("EXISTS", stateKey)
		return err == nil && v == int64(1)
	})
	// The instance that did not create the state waited for gobreaker's mutex (it retries
	// every 500 ms): from here on each synchronisation is one GET.
	time.Sleep(time.Second)

	master.Kill()
	testenv.WaitFor(t, 15*time.Second, "the Sentinel to promote the replica", func() bool {
		v, err := sentinel.Do("SENTINEL", "GET-MASTER-ADDR-BY-NAME", name)
		return err == nil && fmt.Sprint(v) == fmt.Sprintf("[127.0.0.1 %d]", replica.Port)
	})
	testenv.WaitFor(t, 5*time.Second, "both instances to reach the new master", func() bool {
		_, okA, _ := a.SharedHealth()
		_, okB, _ := b.SharedHealth()
		return okA && okB
	})
	run(t, a, Failure)
	run(t, a, Failure)
	waitState(t, b, StateOpen) // b read a's trip from the promoted master
	for who, h := range map[string]*healthLog{"a": &ha, "b": &hb} {
		errs := h.get()
		if len(errs) != 2 || errs[0] == nil || errs[1] != nil {
			t.Errorf("%s reported %v over the failover, want one error then nil", who, errs)
		}
	}
}
