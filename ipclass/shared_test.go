package ipclass

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/swarmsec/caddy-hardening/internal/testenv"
)

type logSink struct {
	mu   sync.Mutex
	msgs []string
}

func (l *logSink) logf(msg string, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.msgs = append(l.msgs, msg)
}

func sharedPair(t *testing.T, r *testenv.Redis) (a, b *Detector, sa, sb *SharedBans, logs *logSink) {
	logs = &logSink{}
	mk := func() (*Detector, *SharedBans) {
		c := redis.NewClient(&redis.Options{Addr: r.Addr, DialTimeout: 200 * time.Millisecond, MaxRetries: -1})
		t.Cleanup(func() { c.Close() })
		d := NewDetector(Settings{})
		s := NewSharedBans(c, "test:", d, 1000, logs.logf)
		s.Start()
		t.Cleanup(s.Stop)
		return d, s
	}
	a, sa = mk()
	b, sb = mk()
	return
}

func TestSharedBansReachOtherInstance(t *testing.T) {
	r := testenv.StartRedis(t)
	a, b, sa, _, _ := sharedPair(t, r)
	ip := netip.MustParseAddr("198.51.100.23")
	time.Sleep(100 * time.Millisecond) // both subscribed
	d, hit := a.Signal(ip, SignalTraversal)
	if !hit {
		t.Fatal("no detection")
	}
	start := time.Now()
	sa.Publish(d)
	testenv.WaitFor(t, 5*time.Second, "detection seen by the other instance", func() bool { return b.Suspicious(ip) })
	t.Logf("propagated in %v", time.Since(start))

	// A third instance started later loads the active detections from the set.
	c := redis.NewClient(&redis.Options{Addr: r.Addr})
	defer c.Close()
	late := NewDetector(Settings{})
	if err := NewSharedBans(c, "test:", late, 1000, func(string, error) {}).Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !late.Suspicious(ip) {
		t.Fatal("a late instance did not load the shared detection")
	}

	a.Unban(ip)
	sa.PublishUnban(ip)
	testenv.WaitFor(t, 5*time.Second, "unban seen by the other instance", func() bool { return !b.Suspicious(ip) })
	if n, _ := c.ZCard(context.Background(), "test:{ipclass}:detected").Result(); n != 0 {
		t.Errorf("unbanned IP still in the shared set (%d members)", n)
	}
}

func TestSharedBansRedisDownStaysLocal(t *testing.T) {
	r := testenv.StartRedis(t)
	a, b, sa, _, logs := sharedPair(t, r)
	time.Sleep(100 * time.Millisecond)
	r.Kill()
	ip := netip.MustParseAddr("198.51.100.24")
	d, _ := a.Signal(ip, SignalTraversal)
	start := time.Now()
	sa.Publish(d) // must not block (a bound of a second: a loaded machine stalls goroutines)
	if el := time.Since(start); el > time.Second {
		t.Fatalf("Publish blocked %v with Redis down", el)
	}
	if !a.Suspicious(ip) {
		t.Fatal("detection not applied locally with Redis down")
	}
	// Wait for a's own report: the log is shared with b, whose subscriber can notice first,
	// and a logs just after Failing shows the change.
	testenv.WaitFor(t, 5*time.Second, "Failing() true with Redis down", sa.Failing)
	testenv.WaitFor(t, 5*time.Second, "failure logged", func() bool {
		logs.mu.Lock()
		defer logs.mu.Unlock()
		return len(logs.msgs) > 0
	})
	// Back: the next detection is shared again, and the earlier one (never stored) stays local.
	r.Restart()
	ip2 := netip.MustParseAddr("198.51.100.25")
	d2, _ := a.Signal(ip2, SignalTraversal)
	testenv.WaitFor(t, 10*time.Second, "detection shared after Redis returned", func() bool {
		sa.Publish(d2)
		time.Sleep(200 * time.Millisecond)
		return b.Suspicious(ip2)
	})
	// A's publication works again, but A reports Redis back only once its own subscription
	// is back too, which can come after B's: wait for it.
	testenv.WaitFor(t, 10*time.Second, "Failing() false after Redis returned", func() bool { return !sa.Failing() })
}

func TestSharedBansSetIsBounded(t *testing.T) {
	r := testenv.StartRedis(t)
	c := redis.NewClient(&redis.Options{Addr: r.Addr})
	defer c.Close()
	s := NewSharedBans(c, "test:", NewDetector(Settings{}), 10, func(string, error) {})
	until := time.Now().Add(time.Hour)
	for i := range 50 {
		if err := s.publish(context.Background(), banMessage{Op: "ban", IP: netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}).String(),
			UntilMs: until.Add(time.Duration(i) * time.Second).UnixMilli()}); err != nil {
			t.Fatal(err)
		}
	}
	if n, _ := c.ZCard(context.Background(), "test:{ipclass}:detected").Result(); n != 10 {
		t.Fatalf("shared set holds %d detections, cap 10", n)
	}
}

// TestSharedBansOverCluster: the sorted set and the channel work on a 3-master Cluster.
func TestSharedBansOverCluster(t *testing.T) {
	cl := testenv.StartCluster(t)
	mk := func() (*Detector, *SharedBans) {
		c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: cl.Addrs()})
		t.Cleanup(func() { c.Close() })
		d := NewDetector(Settings{})
		s := NewSharedBans(c, "test:", d, 1000, func(string, error) {})
		s.Start()
		t.Cleanup(s.Stop)
		return d, s
	}
	a, sa := mk()
	b, _ := mk()
	time.Sleep(300 * time.Millisecond)
	ip := netip.MustParseAddr("2001:db8::77")
	d, _ := a.Signal(ip, SignalTraversal)
	sa.Publish(d)
	testenv.WaitFor(t, 10*time.Second, "detection seen through the Cluster", func() bool { return b.Suspicious(ip) })
	if sa.Failing() {
		t.Error("the sync reports a failure")
	}
}

// levelSink records what a sync logs, split as the app logs it: WARN with an error, INFO
// without.
type levelSink struct {
	mu          sync.Mutex
	warns, info []string
}

func (l *levelSink) logf(msg string, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		l.warns = append(l.warns, msg+": "+err.Error())
	} else {
		l.info = append(l.info, msg)
	}
}

func (l *levelSink) counts() (warns, info int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.warns), len(l.info)
}

// waitFor waits until at least warns WARN and info INFO lines are logged: a sync logs a change
// just after Failing shows it.
func (l *levelSink) waitFor(t *testing.T, warns, info int) {
	t.Helper()
	testenv.WaitFor(t, 5*time.Second, fmt.Sprintf("%d WARN and %d INFO lines", warns, info), func() bool {
		w, i := l.counts()
		return w >= warns && i >= info
	})
}

// sharedNode is one instance: a detector and its sync over its own client to addr.
func sharedNode(t *testing.T, addr string) (*Detector, *SharedBans, *levelSink) {
	return sharedNodeOn(t, redis.NewClient(&redis.Options{Addr: addr, DialTimeout: 200 * time.Millisecond, MaxRetries: -1}))
}

// sharedNodeOn is one instance syncing over client c, closed when the test ends.
func sharedNodeOn(t *testing.T, c redis.UniversalClient) (*Detector, *SharedBans, *levelSink) {
	t.Cleanup(func() { c.Close() })
	d := NewDetector(Settings{})
	logs := &levelSink{}
	s := NewSharedBans(c, "test:", d, 1000, logs.logf)
	s.Start()
	t.Cleanup(s.Stop)
	return d, s, logs
}

// detectAndShare makes a detect ip and publishes the detection, as the app does.
func detectAndShare(t *testing.T, a *Detector, sa *SharedBans, ip netip.Addr) {
	t.Helper()
	d, hit := a.Signal(ip, SignalTraversal)
	if !hit {
		t.Fatalf("%s not detected", ip)
	}
	sa.Publish(d)
}

// fastSubscriberPing shortens the subscriber's ping and resubscribe intervals for one test.
func fastSubscriberPing(t *testing.T) {
	ping, again := subscriberPing, resubscribeEvery
	subscriberPing, resubscribeEvery = 200*time.Millisecond, 100*time.Millisecond
	t.Cleanup(func() { subscriberPing, resubscribeEvery = ping, again })
}

// TestSharedBansSubscriberNoticesRedisStop: B only receives (it publishes nothing). When Redis
// stops, B reports the failure (Failing, one WARN) although it never tried to publish; once
// Redis is back it reports pass again (one INFO) and receives detections again.
func TestSharedBansSubscriberNoticesRedisStop(t *testing.T) {
	r := testenv.StartRedis(t)
	a, sa, _ := sharedNode(t, r.Addr)
	b, sb, logs := sharedNode(t, r.Addr)
	first, _ := a.Signal(netip.MustParseAddr("198.51.100.30"), SignalTraversal)
	testenv.WaitFor(t, 5*time.Second, "both subscribed", func() bool {
		sa.Publish(first)
		time.Sleep(50 * time.Millisecond)
		return b.Suspicious(first.Addr)
	})
	if sb.Failing() {
		t.Fatal("Failing before the outage")
	}

	r.Stop()
	testenv.WaitFor(t, 3*time.Second, "the subscriber reports the outage", sb.Failing)
	logs.waitFor(t, 1, 0)
	time.Sleep(3 * resubscribeEvery) // several failed attempts: still one WARN
	if w, i := logs.counts(); w != 1 || i != 0 {
		t.Fatalf("during the outage: %d WARN, %d INFO lines, want 1 and 0: %v", w, i, logs.warns)
	}

	r.Restart()
	testenv.WaitFor(t, 10*time.Second, "the subscriber reports Redis back", func() bool { return !sb.Failing() })
	logs.waitFor(t, 1, 1)
	if w, i := logs.counts(); w != 1 || i != 1 {
		t.Fatalf("after the outage: %d WARN, %d INFO lines, want 1 and 1", w, i)
	}
	after := netip.MustParseAddr("198.51.100.31")
	detectAndShare(t, a, sa, after)
	testenv.WaitFor(t, 5*time.Second, "a detection after the outage received", func() bool { return b.Suspicious(after) })
}

// TestSharedBansSubscriberResyncsAfterPartition: B reaches Redis through a proxy that is cut.
// B reports the failure; A (still connected) detects a client meanwhile, whose message B
// cannot receive. When the proxy is restored, B subscribes again, reads the shared set and
// so applies the detection it missed, and reports pass.
func TestSharedBansSubscriberResyncsAfterPartition(t *testing.T) {
	fastSubscriberPing(t)
	r := testenv.StartRedis(t)
	p := testenv.StartProxy(t, r.Addr)
	a, sa, _ := sharedNode(t, r.Addr)
	b, sb, logs := sharedNode(t, p.Addr)
	time.Sleep(200 * time.Millisecond) // both subscribed

	p.Cut()
	testenv.WaitFor(t, 5*time.Second, "the subscriber reports the partition", sb.Failing)
	missed := netip.MustParseAddr("198.51.100.32")
	detectAndShare(t, a, sa, missed)
	testenv.WaitFor(t, 5*time.Second, "the detection stored in Redis", func() bool {
		v, err := r.Do("ZSCORE", "test:{ipclass}:detected", missed.String())
		return err == nil && v != nil
	})
	time.Sleep(100 * time.Millisecond)
	if b.Suspicious(missed) {
		t.Fatal("B received a detection through a cut proxy")
	}

	p.Restore()
	testenv.WaitFor(t, 10*time.Second, "B back and the missed detection applied", func() bool { return !sb.Failing() && b.Suspicious(missed) })
	if sa.Failing() {
		t.Error("A, never cut off, reports a failure")
	}
	logs.waitFor(t, 1, 1)
	if w, i := logs.counts(); w != 1 || i != 1 {
		t.Fatalf("B logged %d WARN and %d INFO lines, want 1 and 1", w, i)
	}
}

// TestSharedBansSubscriberNoticesFrozenRedis: a Redis that keeps its connections open but
// answers nothing (SIGSTOP) is noticed by the subscriber's ping, and the subscriber is back
// once it answers again.
func TestSharedBansSubscriberNoticesFrozenRedis(t *testing.T) {
	fastSubscriberPing(t)
	r := testenv.StartRedis(t)
	_, sb, _ := sharedNode(t, r.Addr)
	time.Sleep(200 * time.Millisecond)
	r.Freeze()
	defer r.Thaw()
	testenv.WaitFor(t, 5*time.Second, "a silent Redis noticed", sb.Failing)
	r.Thaw()
	testenv.WaitFor(t, 5*time.Second, "the subscriber back after the thaw", func() bool { return !sb.Failing() })
}

// TestSharedBansStopIsNoOutage: stopping the sync (a reload that changes the Redis settings)
// while a publication waits for Redis does not log that Redis is unavailable.
func TestSharedBansStopIsNoOutage(t *testing.T) {
	r := testenv.StartRedis(t)
	// The publication waits at most a second for the frozen Redis: Stop comes first.
	c := redis.NewClient(&redis.Options{Addr: r.Addr, MaxRetries: -1, ReadTimeout: time.Second})
	t.Cleanup(func() { c.Close() })
	logs := &logSink{}
	d := NewDetector(Settings{})
	s := NewSharedBans(c, "test:", d, 1000, logs.logf)
	s.Start()
	time.Sleep(100 * time.Millisecond) // subscribed
	r.Freeze()
	t.Cleanup(r.Thaw)
	det, _ := d.Signal(netip.MustParseAddr("198.51.100.26"), SignalTraversal)
	s.Publish(det)
	time.Sleep(50 * time.Millisecond) // the publication waits for the frozen Redis
	s.Stop()
	logs.mu.Lock()
	defer logs.mu.Unlock()
	if len(logs.msgs) != 0 {
		t.Fatalf("stopping the sync logged %q: a publication cut short by Stop is no Redis failure", logs.msgs)
	}
}

// lateInstanceKnows reports whether an instance started now (one Reload of the set) finds ip
// suspicious.
func lateInstanceKnows(t *testing.T, addr string, ip netip.Addr) bool {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer c.Close()
	late := NewDetector(Settings{})
	if err := NewSharedBans(c, "test:", late, 1000, func(string, error) {}).Reload(context.Background()); err != nil {
		return false
	}
	return late.Suspicious(ip)
}

// TestSharedBansRepublishedAfterRedisLostThem: Redis restarted without persistence, or
// FLUSHALL, empties the shared set. The running instances keep their bans, and add them to the
// set again, so an instance started afterwards learns them.
func TestSharedBansRepublishedAfterRedisLostThem(t *testing.T) {
	fastSubscriberPing(t)
	r := testenv.StartRedis(t)
	a, sa, _ := sharedNode(t, r.Addr)
	b, sb, _ := sharedNode(t, r.Addr)
	ip := netip.MustParseAddr("198.51.100.40")
	d, _ := a.Signal(ip, SignalTraversal)
	testenv.WaitFor(t, 5*time.Second, "both subscribed", func() bool {
		sa.Publish(d)
		time.Sleep(50 * time.Millisecond)
		return b.Suspicious(ip)
	})

	// A restart without persistence: the subscribers reconnect, find the set lost, refill it.
	r.Restart()
	testenv.WaitFor(t, 10*time.Second, "a new instance learns the ban after the restart", func() bool {
		return lateInstanceKnows(t, r.Addr, ip)
	})
	if v, err := r.Do("ZSCORE", "test:{ipclass}:detected", ip.String()); err != nil || v == nil {
		t.Fatalf("ban not back in the shared set: %v %v", v, err)
	}

	// FLUSHALL keeps the connections: the next periodic reload (here: B's, which only holds
	// the ban as received from A) finds the marker gone and refills the set.
	if _, err := r.Do("FLUSHALL"); err != nil {
		t.Fatal(err)
	}
	if err := sb.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !lateInstanceKnows(t, r.Addr, ip) {
		t.Fatal("a new instance started after FLUSHALL does not learn the ban the running ones hold")
	}

	// A ban already in the set keeps its end through a republication.
	v, _ := r.Do("ZSCORE", "test:{ipclass}:detected", ip.String())
	later := time.Now().Add(48 * time.Hour).UnixMilli()
	if _, err := r.Do("ZADD", "test:{ipclass}:detected", later, ip.String()); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Do("DEL", "test:{ipclass}:epoch"); err != nil {
		t.Fatal(err)
	}
	if err := sa.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	got, _ := r.Do("ZSCORE", "test:{ipclass}:detected", ip.String())
	if f, err := strconv.ParseFloat(fmt.Sprint(got), 64); err != nil || int64(f) != later {
		t.Fatalf("republication changed the shared end from %v to %v (was %v before)", later, got, v)
	}
}

// TestSharedBansFullQueueLogsOnce: while Redis stalls, publications wait in the bounded
// queue; past it each detection was dropped with a log line of its own, so clients an
// attacker makes up (one traversal per address, an IPv6 /64 each) wrote one line per request,
// past the security log's budget. The overflow is now logged once when it starts and once
// when the queue takes publications again, with the count that stayed local.
func TestSharedBansFullQueueLogsOnce(t *testing.T) {
	r := testenv.StartRedis(t)
	logs := &logSink{}
	c := redis.NewClient(&redis.Options{Addr: r.Addr, DialTimeout: 200 * time.Millisecond, ReadTimeout: 5 * time.Second, MaxRetries: -1})
	t.Cleanup(func() { c.Close() })
	s := NewSharedBans(c, "test:", NewDetector(Settings{}), 1000, logs.logf)
	s.Start()
	t.Cleanup(s.Stop)
	time.Sleep(100 * time.Millisecond) // subscribed
	r.Freeze()
	defer r.Thaw()
	const extra = 500
	for i := range queueSize + extra {
		s.Publish(Detection{Addr: netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), Signal: SignalTraversal, Until: time.Now().Add(time.Hour)})
	}
	full := 0
	logs.mu.Lock()
	for _, m := range logs.msgs {
		if strings.Contains(m, "queue full") {
			full++
		}
	}
	logs.mu.Unlock()
	if full != 1 {
		t.Errorf("%d publications past the queue logged %d queue-full lines, want 1", extra, full)
	}
	r.Thaw()
	testenv.WaitFor(t, 10*time.Second, "the queue to take publications again", func() bool {
		s.Publish(Detection{Addr: netip.MustParseAddr("192.0.2.1"), Signal: SignalTraversal, Until: time.Now().Add(time.Hour)})
		logs.mu.Lock()
		defer logs.mu.Unlock()
		for _, m := range logs.msgs {
			if strings.Contains(m, "stayed local") {
				return true
			}
		}
		return false
	})
}

// TestSharedBansKeepLoopbackLocal: a detection of 127.0.0.1 (a local test, a local proxy's
// clients without trusted_proxies) was published, and every other instance banned its own
// loopback: its health checks and local tooling. Loopback detections stay local, and one an
// older instance publishes is ignored.
func TestSharedBansKeepLoopbackLocal(t *testing.T) {
	r := testenv.StartRedis(t)
	a, b, sa, _, _ := sharedPair(t, r)
	time.Sleep(100 * time.Millisecond) // both subscribed
	loop, other := netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("198.51.100.61")
	for _, ip := range []netip.Addr{loop, netip.MustParseAddr("::2"), other} {
		d, hit := a.Signal(ip, SignalTraversal)
		if !hit {
			t.Fatalf("%s: no detection", ip)
		}
		sa.Publish(d)
	}
	testenv.WaitFor(t, 5*time.Second, "the other client's detection shared", func() bool { return b.Suspicious(other) })
	if b.Suspicious(loop) || b.Suspicious(netip.IPv6Loopback()) {
		t.Error("another instance banned its own loopback")
	}
	c := redis.NewClient(&redis.Options{Addr: r.Addr})
	defer c.Close()
	members, _ := c.ZRange(context.Background(), "test:{ipclass}:detected", 0, -1).Result()
	if fmt.Sprint(members) != "[198.51.100.61]" {
		t.Errorf("shared set %v, want only the other client", members)
	}
	// As an older instance publishes it.
	c.Publish(context.Background(), "test:{ipclass}:events", `{"op":"ban","ip":"127.0.0.1","until_ms":`+strconv.FormatInt(time.Now().Add(time.Hour).UnixMilli(), 10)+`,"origin":"old"}`)
	c.Publish(context.Background(), "test:{ipclass}:events", `{"op":"ban","ip":"198.51.100.62","until_ms":`+strconv.FormatInt(time.Now().Add(time.Hour).UnixMilli(), 10)+`,"origin":"old"}`)
	testenv.WaitFor(t, 5*time.Second, "the old instance's second ban", func() bool { return b.Suspicious(netip.MustParseAddr("198.51.100.62")) })
	if b.Suspicious(loop) {
		t.Error("a loopback ban from an older instance was applied")
	}
}

// fullRedis is two instances, A and B, on a Redis that has since become full.
type fullRedis struct {
	r      *testenv.Redis
	a, b   *Detector
	sa     *SharedBans
	logs   *levelSink // A's
	before netip.Addr // detected by A and received by B before Redis filled
}

// fullAfterSharing starts Redis and instances A and B, shares A's detection of before with B
// (so both have subscribed and read the set), then fills Redis (testenv.Redis.Fill): it
// refuses writes and still serves reads and pub/sub.
func fullAfterSharing(t *testing.T, before netip.Addr) fullRedis {
	t.Helper()
	r := testenv.StartRedis(t)
	a, sa, logs := sharedNode(t, r.Addr)
	b, _, _ := sharedNode(t, r.Addr)
	detectAndShare(t, a, sa, before)
	testenv.WaitFor(t, 5*time.Second, "a detection shared before the OOM", func() bool { return b.Suspicious(before) })
	r.Fill(t)
	return fullRedis{r: r, a: a, b: b, sa: sa, logs: logs, before: before}
}

// TestSharedBansNameWhyRedisRefusedTheSet: a Redis full at maxmemory with noeviction refuses
// the set's ZADD as it is queued, and EXEC then answers only EXECABORT ("Transaction
// discarded because of previous errors"). The WARN line and Failure named that, not the
// cause; they name the OOM now, once, and the next publication after Redis has room again
// reports it back.
func TestSharedBansNameWhyRedisRefusedTheSet(t *testing.T) {
	f := fullAfterSharing(t, netip.MustParseAddr("198.51.100.59"))
	r, a, sa, logs := f.r, f.a, f.sa, f.logs
	detectAndShare(t, a, sa, netip.MustParseAddr("198.51.100.60"))
	detectAndShare(t, a, sa, netip.MustParseAddr("198.51.100.61"))
	testenv.WaitFor(t, 5*time.Second, "the publication to fail", sa.Failing)
	logs.waitFor(t, 1, 0)
	time.Sleep(100 * time.Millisecond) // the second publication fails too: still one line
	if w, _ := logs.counts(); w != 1 || !strings.Contains(logs.warns[0], "OOM") || !strings.Contains(fmt.Sprint(sa.Failure()), "OOM") {
		t.Fatalf("WARN lines %q, Failure %v; want one line naming the OOM", logs.warns, sa.Failure())
	}
	if _, err := r.Do("CONFIG", "SET", "maxmemory", "0"); err != nil {
		t.Fatal(err)
	}
	detectAndShare(t, a, sa, netip.MustParseAddr("198.51.100.62"))
	testenv.WaitFor(t, 5*time.Second, "the publication to work again", func() bool { return !sa.Failing() })
	logs.waitFor(t, 1, 1)
}

// TestSharedBansInstanceStartedOnAFullRedisReceives: an instance that starts (or subscribes
// again) while Redis is full at maxmemory with noeviction can still read the set and receive
// other instances' detections: Redis refuses writes, not reads or pub/sub. Its first reading
// wrote the set's marker unconditionally (SETNX, which Redis refuses when full even when the
// key exists), so the reading failed, the subscription was dropped and tried again every
// second, and the instance received nothing until Redis had room again.
func TestSharedBansInstanceStartedOnAFullRedisReceives(t *testing.T) {
	fastSubscriberPing(t)
	f := fullAfterSharing(t, netip.MustParseAddr("198.51.100.63"))
	r, before := f.r, f.before
	late, sl, logs := sharedNode(t, r.Addr)
	testenv.WaitFor(t, 5*time.Second, "the late instance to read the set", func() bool { return late.Suspicious(before) })
	time.Sleep(5 * resubscribeEvery)
	if sl.Failing() {
		t.Fatalf("the late instance reports a failure of a Redis that serves reads and pub/sub: %v %q", sl.Failure(), logs.warns)
	}
	// A's publication fails with the set's write, and its message is still sent.
	during := netip.MustParseAddr("198.51.100.68")
	detectAndShare(t, f.a, f.sa, during)
	testenv.WaitFor(t, 5*time.Second, "the late instance to receive a detection made while Redis is full", func() bool { return late.Suspicious(during) })
}

// TestSharedBansReportAFullRedisBackWithoutAPublication: Redis full at maxmemory refused a
// publication, and its subscriptions never broke, so nothing but the next publication could
// find that Redis had room again: ipclass:detection stayed warn (for hours on a quiet site)
// after the operator fixed maxmemory. A failed publication side now checks that Redis takes a
// write again, each resubscribe interval.
func TestSharedBansReportAFullRedisBackWithoutAPublication(t *testing.T) {
	fastSubscriberPing(t)
	f := fullAfterSharing(t, netip.MustParseAddr("198.51.100.64"))
	r, a, sa, logs := f.r, f.a, f.sa, f.logs
	detectAndShare(t, a, sa, netip.MustParseAddr("198.51.100.65"))
	testenv.WaitFor(t, 5*time.Second, "the publication to fail", sa.Failing)
	time.Sleep(5 * resubscribeEvery) // checks that still fail: still one WARN line
	if w, i := logs.counts(); w != 1 || i != 0 || !sa.Failing() {
		t.Fatalf("while Redis is full: failing %v, %d WARN and %d INFO lines; want failing, 1 and 0", sa.Failing(), w, i)
	}
	if _, err := r.Do("CONFIG", "SET", "maxmemory", "0"); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 5*time.Second, "sharing reported working again, with no publication", func() bool { return !sa.Failing() })
	logs.waitFor(t, 1, 1)
}

// TestSharedBansFullRedisStillTellsTheOthers: a Redis full at maxmemory with noeviction
// refuses the set's ZADD, and the PUBLISH after it was not sent either, although PUBLISH needs
// no memory: a scanner detected by one instance went on unhindered on every other while Redis
// stayed full. The message is now sent whenever Redis answered (it refused the write): the
// others apply the detection at once, until the end A gave it; the refused write still
// counts as a failure (Failing, the OOM named), since an instance that starts meanwhile
// cannot read that detection from the set.
func TestSharedBansFullRedisStillTellsTheOthers(t *testing.T) {
	f := fullAfterSharing(t, netip.MustParseAddr("198.51.100.66"))
	during := netip.MustParseAddr("198.51.100.67")
	d, hit := f.a.Signal(during, SignalTraversal)
	if !hit {
		t.Fatalf("%s not detected", during)
	}
	f.sa.Publish(d)
	testenv.WaitFor(t, 5*time.Second, "B to learn of the detection A made while Redis is full", func() bool { return f.b.Suspicious(during) })
	for _, got := range f.b.Detections(1000) {
		if got.Addr == during && got.Until.UnixMilli() != d.Until.UnixMilli() {
			t.Errorf("B holds the detection until %v, A until %v", got.Until, d.Until)
		}
	}
	testenv.WaitFor(t, 5*time.Second, "the refused write reported", f.sa.Failing)
	if !strings.Contains(fmt.Sprint(f.sa.Failure()), "OOM") {
		t.Errorf("Failure %v, want the OOM", f.sa.Failure())
	}
}

// TestSharedBansSlowRedisFullQueueLogsBounded: with Redis slower than the detections come (a
// distant Redis, one under load; an attacker making up clients faster than it publishes), the
// queue stays full, and each publication Redis took freed one slot: the next detection took it
// ("takes publications again") and the one after found the queue full again ("queue full"), two
// INFO lines per publication, past any budget. The queue counts as taking publications again
// only once it has drained to half its size, so a sustained overload logs one line.
func TestSharedBansSlowRedisFullQueueLogsBounded(t *testing.T) {
	r := testenv.StartRedis(t)
	proxy := testenv.StartProxy(t, r.Addr)
	logs := &logSink{}
	c := redis.NewClient(&redis.Options{Addr: proxy.Addr, DialTimeout: time.Second, ReadTimeout: 5 * time.Second, MaxRetries: -1})
	t.Cleanup(func() { c.Close() })
	s := NewSharedBans(c, "test:", NewDetector(Settings{}), 1000, logs.logf)
	s.Start()
	t.Cleanup(s.Stop)
	if err := c.Ping(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	proxy.SetLatency(2 * time.Millisecond) // a few hundred publications a second at most
	i := 0
	publish := func() {
		i++
		s.Publish(Detection{Addr: netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), Signal: SignalTraversal, Until: time.Now().Add(time.Hour)})
	}
	for range queueSize + 100 {
		publish()
	}
	published := func() int64 { n, _ := c.ZCard(context.Background(), "test:{ipclass}:detected").Result(); return n }
	before := published()
	// Detections keep coming faster than Redis takes them, until Redis has published 20 more.
	for deadline := time.Now().Add(20 * time.Second); published() < before+20 && time.Now().Before(deadline); {
		for range 50 {
			publish()
		}
		time.Sleep(5 * time.Millisecond)
	}
	if published() < before+20 {
		t.Fatal("Redis published fewer than 20 detections in 20 s")
	}
	lines := 0
	logs.mu.Lock()
	for _, m := range logs.msgs {
		if strings.Contains(m, "queue full") || strings.Contains(m, "takes publications again") {
			lines++
		}
	}
	logs.mu.Unlock()
	if lines > 1 {
		t.Errorf("a queue kept full by %d detections (Redis publishing a few at a time) logged %d queue lines, want 1", i, lines)
	}
}
