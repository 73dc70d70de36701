package ipclass

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/swarmsec/caddy-hardening/internal/redisconn"
	"github.com/swarmsec/caddy-hardening/internal/testenv"
)

// TestSharedBansFollowASentinelFailover: two instances share detections through a master
// that Sentinel watches. The master is killed and its replica promoted: each instance reports
// the outage once (one WARN) and the return once (one INFO), detections made after the
// promotion reach the other instance through the new master, and the set there holds the
// detections made before the kill (replicated) and after.
func TestSharedBansFollowASentinelFailover(t *testing.T) {
	fastSubscriberPing(t)
	master := testenv.StartRedis(t)
	replica := testenv.StartReplica(t, master)
	const name = "det"
	sentinel := testenv.StartFailoverSentinel(t, master, name)
	node := func() (*Detector, *SharedBans, *levelSink) {
		// The app's client: redisconn with the Sentinel settings a Caddyfile gives.
		c, err := redisconn.New(redisconn.Options{SentinelMaster: name, SentinelAddrs: []string{sentinel.Addr},
			DialTimeout: 200 * time.Millisecond, MaxRetries: -1})
		if err != nil {
			t.Fatal(err)
		}
		return sharedNodeOn(t, c)
	}
	a, sa, logsA := node()
	b, sb, logsB := node()
	before := netip.MustParseAddr("198.51.100.40")
	detectAndShare(t, a, sa, before)
	testenv.WaitFor(t, 5*time.Second, "B to receive a detection before the failover", func() bool { return b.Suspicious(before) })
	waitSynced := func() bool {
		v, err := replica.Do("ZCARD", "test:{ipclass}:detected")
		return err == nil && v == int64(1)
	}
	testenv.WaitFor(t, 5*time.Second, "the replica to hold the detection", waitSynced)

	master.Kill()
	testenv.WaitFor(t, 15*time.Second, "the Sentinel to promote the replica", func() bool {
		v, err := sentinel.Do("SENTINEL", "GET-MASTER-ADDR-BY-NAME", name)
		return err == nil && fmt.Sprint(v) == fmt.Sprintf("[127.0.0.1 %d]", replica.Port)
	})
	after := netip.MustParseAddr("198.51.100.41")
	d, _ := a.Signal(after, SignalTraversal)
	testenv.WaitFor(t, 10*time.Second, "B to receive a detection made after the promotion", func() bool {
		if !b.Suspicious(after) {
			sa.Publish(d) // until A's client has followed the switch
			time.Sleep(100 * time.Millisecond)
		}
		return b.Suspicious(after)
	})
	testenv.WaitFor(t, 5*time.Second, "both instances to report Redis back", func() bool { return !sa.Failing() && !sb.Failing() })
	for who, logs := range map[string]*levelSink{"A": logsA, "B": logsB} {
		if w, i := logs.counts(); w != 1 || i != 1 {
			t.Errorf("%s logged %d WARN and %d INFO lines over the failover, want 1 and 1: %q %q", who, w, i, logs.warns, logs.info)
		}
	}
	if v, err := replica.Do("ZCARD", "test:{ipclass}:detected"); err != nil || v != int64(2) {
		t.Fatalf("the promoted master holds %v detections (%v), want the 2 made before and after", v, err)
	}
}
