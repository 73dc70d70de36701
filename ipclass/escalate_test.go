package ipclass

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/swarmsec/caddy-hardening/internal/testenv"
)

// sixtyFour is the first address of the i-th /64 of the j-th /48 of 2001:db8::/32.
func sixtyFour(j, i int) netip.Addr {
	return netip.MustParseAddr(fmt.Sprintf("2001:db8:%x:%x::1", j, i))
}

// TestDetectorEscalatesAWiderNetwork: the holder of a /48 had 65536 clients (one per /64),
// each with its own allowance: two probes from each of as many /64s as it liked, each
// detected alone, the next /64 clean. Eight detected /64s of one /48 now detect the /48: every
// address in it is suspicious, and its signals take no entry of their own.
func TestDetectorEscalatesAWiderNetwork(t *testing.T) {
	d, c := testDetector(Settings{Threshold: 20, BanFor: 15 * time.Minute})
	for i := range 7 {
		det, hit := d.Signal(sixtyFour(1, i), SignalTraversal)
		if !hit || det.Bits != 0 {
			t.Fatalf("/64 %d: %+v %v, want its own detection", i, det, hit)
		}
	}
	if d.Suspicious(sixtyFour(1, 100)) {
		t.Fatal("the /48 is suspicious after 7 detected /64s")
	}
	det, hit := d.Signal(sixtyFour(1, 7), SignalTraversal)
	if !hit || det.Bits != 48 || det.Key() != "2001:db8:1::/48" || !det.Until.Equal(c.t.Add(15*time.Minute)) {
		t.Fatalf("eighth /64: %+v %v, want the /48 detected", det, hit)
	}
	if !d.Suspicious(sixtyFour(1, 0xffff)) || d.Suspicious(sixtyFour(2, 0)) || d.Suspicious(client) {
		t.Error("the detected /48 should hold every /64 of it and nothing else")
	}
	tracked, detected := d.Counts()
	if _, hit := d.Signal(sixtyFour(1, 9), SignalTraversal); hit {
		t.Error("a /64 of the detected /48 was detected again")
	}
	if after, _ := d.Counts(); after != tracked {
		t.Errorf("a /64 of the detected /48 took an entry: tracked %d, then %d", tracked, after)
	}
	if detected != 9 {
		t.Errorf("detected %d, want the 8 /64s and the /48", detected)
	}
	top, n := d.TopDetections(100, func(a, b Detection) bool { return a.Bits > b.Bits })
	if n != 9 || top[0].Key() != "2001:db8:1::/48" {
		t.Errorf("listing: %d, first %+v", n, top[0])
	}
	c.advance(15*time.Minute + time.Second)
	if d.Suspicious(sixtyFour(1, 0xffff)) {
		t.Error("the /48 is still suspicious after ban_for")
	}
	// Ended: the count starts afresh.
	if det, _ := d.Signal(sixtyFour(1, 20), SignalTraversal); det.Bits != 0 {
		t.Errorf("the first /64 detected after the /48's detection ended escalated again: %+v", det)
	}

	if !d.UnbanNetwork(netip.MustParsePrefix("2001:db8:1::/48")) == d.Suspicious(sixtyFour(1, 1)) {
		t.Error("UnbanNetwork of an ended detection")
	}
	off, _ := testDetector(Settings{Threshold: 20, EscalateCount: -1})
	for i := range 20 {
		if det, _ := off.Signal(sixtyFour(1, i), SignalTraversal); det.Bits != 0 {
			t.Fatal("EscalateCount -1 escalated")
		}
	}
	if off.Suspicious(sixtyFour(1, 100)) {
		t.Error("EscalateCount -1: the /48 is suspicious")
	}
}

// TestDetectorRepeatDetectionsCountOnce: one /64 detected again and again (each time its
// detection ends) counts once toward its /48, while the first one's detection lasts.
func TestDetectorRepeatDetectionsCountOnce(t *testing.T) {
	d, _ := testDetector(Settings{Threshold: 20, EscalateCount: 2})
	d.Signal(sixtyFour(1, 0), SignalTraversal)
	d.Unban(sixtyFour(1, 0))
	if det, _ := d.Signal(sixtyFour(1, 0), SignalTraversal); det.Bits != 0 {
		t.Fatal("one /64 detected twice escalated its /48")
	}
	if det, _ := d.Signal(sixtyFour(1, 1), SignalTraversal); det.Bits != 48 {
		t.Fatal("two /64s did not escalate under EscalateCount 2")
	}
}

// TestDetectorNetworkCannotFlushOthersBans: bans older than a flood of detections from one
// IPv6 /32 (1024 /48s, seven /64s each: under the escalation count) were evicted from a full
// table, the detections ending first going first; a client with a /32 could unban everyone
// detected before it. Detections of a crowded wider network now go before any of a client
// alone in its network.
func TestDetectorNetworkCannotFlushOthersBans(t *testing.T) {
	d, c := testDetector(Settings{Threshold: 20, MaxTracked: 2048})
	var early []netip.Addr
	for i := range 50 {
		a := netip.AddrFrom4([4]byte{198, 51, 100, byte(i)})
		d.Signal(a, SignalTraversal)
		early = append(early, a)
	}
	early = append(early, netip.MustParseAddr("2001:db8:ffff:1::1"))
	d.Signal(early[len(early)-1], SignalTraversal)
	c.advance(time.Second)
	for i := range 7 {
		for j := range 1024 {
			d.Signal(sixtyFour(j, i), SignalTraversal)
		}
	}
	tracked, _ := d.Counts()
	lost := 0
	for _, a := range early {
		if !d.Suspicious(a) {
			lost++
		}
	}
	if lost > 0 {
		t.Fatalf("%d of %d earlier bans flushed by one /32's detections (tracked %d)", lost, len(early), tracked)
	}
	if tracked > 2048+wideShards*minWideShardTracked {
		t.Errorf("tracked %d", tracked)
	}
}

// TestSharedBansCarryEscalations: an escalated /48 reaches the other instances (published as
// 2001:db8:1::/48: they used to ignore any member that was not an address), a late instance
// loads it from the set, and an operator's unban of it reaches them too.
func TestSharedBansCarryEscalations(t *testing.T) {
	r := testenv.StartRedis(t)
	a, b, sa, _, _ := sharedPair(t, r)
	time.Sleep(100 * time.Millisecond) // both subscribed
	var det Detection
	for i := range DefaultEscalateCount {
		det, _ = a.Signal(sixtyFour(1, i), SignalTraversal)
	}
	if det.Bits != 48 {
		t.Fatalf("no escalation: %+v", det)
	}
	sa.Publish(det)
	fresh := sixtyFour(1, 0xabc)
	testenv.WaitFor(t, 5*time.Second, "the /48 seen by the other instance", func() bool { return b.Suspicious(fresh) })

	c := redis.NewClient(&redis.Options{Addr: r.Addr})
	defer c.Close()
	late := NewDetector(Settings{})
	if err := NewSharedBans(c, "test:", late, 1000, func(string, error) {}).Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !late.Suspicious(fresh) {
		t.Fatal("a late instance did not load the shared /48")
	}

	p := netip.MustParsePrefix("2001:db8:1::/48")
	a.UnbanNetwork(p)
	sa.PublishUnbanNetwork(p)
	testenv.WaitFor(t, 5*time.Second, "the /48's unban seen by the other instance", func() bool { return !b.Suspicious(fresh) })
}

// TestDetectorEscalationAcrossAReload: a signal that read the settings before a reload changed
// IPv6Escalate (48 to 56) may escalate after the reload cleared the wider networks; its /48,
// 2001:db8:1::, read as a /56, made 2001:db8:1::/56 suspicious and was listed as that /56.
func TestDetectorEscalationAcrossAReload(t *testing.T) {
	d, _ := testDetector(Settings{Threshold: 20, EscalateCount: 2})
	old := d.settings.Load()
	d.SetSettings(Settings{Threshold: 20, EscalateCount: 2, IPv6Escalate: 56})
	now := d.now().UnixNano()
	d.Ban(client, d.now().Add(time.Hour), SignalManual) // a detection in effect: Suspicious looks
	for i := range 2 {
		d.escalate(sixtyFour(1, i), SignalTraversal, 20, now+int64(time.Hour), old, now)
	}
	if d.Suspicious(sixtyFour(1, 0x00ff)) {
		t.Error("a /48 escalated under the old settings applies as a /56 under the new")
	}
	if _, n := d.TopDetections(10, func(a, b Detection) bool { return false }); n != 1 {
		t.Errorf("%d detections listed, want the one ban", n)
	}
}

// sameWideShard returns n /48s of 2001:db8::/32 whose entries fall into one wide shard (the
// first one's), from the j-th on.
func sameWideShard(d *Detector, n, j int) []netip.Prefix {
	var out []netip.Prefix
	var shard *wideShard
	for ; len(out) < n; j++ {
		p := netip.MustParsePrefix(fmt.Sprintf("2001:db8:%x::/48", j))
		if ws := d.wideShard(p.Addr()); shard == nil || ws == shard {
			shard = ws
			out = append(out, p)
		}
	}
	return out
}

// TestDetectorFullWideTableEvictsTheNetworkBanEndingFirst: the wider networks' table
// (escalations and operators' bans of a /48) evicted among a sample of eight, so a network's
// ban that ends late went before one ending sooner, one went while a mere count (a /48 with a
// detected /64 or two) could have made the room, and no such eviction was counted or
// reported. A full table now drops the counts first, then the ban that ends first, exactly,
// each counted in BansEvicted and reported as the ban table's are.
func TestDetectorFullWideTableEvictsTheNetworkBanEndingFirst(t *testing.T) {
	d, c := testDetector(Settings{Threshold: 20, MaxTracked: 64, EscalateCount: 2})
	var reported []Detection
	d.OnBanEvicted(func(det Detection) { reported = append(reported, det) })
	limit := wideLimit(d.settings.Load())
	nets := sameWideShard(d, 2*limit+1, 1)
	start := c.now()
	// limit-1 network bans, ending a minute apart, given in a scrambled order, and one count.
	for i := range limit - 1 {
		k := (i * 7) % (limit - 1) // 7 is prime to limit-1 (31)
		if _, ok := d.BanNetwork(nets[k], start.Add(time.Duration(k+1)*time.Minute), SignalManual); !ok {
			t.Fatalf("BanNetwork(%s) refused", nets[k])
		}
	}
	counted := nets[limit-1]
	if _, hit := d.Signal(netip.PrefixFrom(counted.Addr(), 64).Addr().Next(), SignalTraversal); !hit {
		t.Fatal("a /64 of the counted network was not detected")
	}
	// The table is full: the next network's ban takes the count's room, not a ban.
	d.BanNetwork(nets[limit], start.Add(time.Hour), SignalManual)
	if n := d.BansEvicted(); n != 0 || len(reported) != 0 {
		t.Fatalf("a network's ban evicted (%d, %v) while a count could make the room", n, reported)
	}
	for i := range limit - 1 {
		if !d.Suspicious(nets[i].Addr().Next()) {
			t.Fatalf("%s ban evicted while a count could make the room", nets[i])
		}
	}
	// Then each new ban evicts the one ending first, in order.
	for i := range limit - 1 {
		d.BanNetwork(nets[limit+1+i], start.Add(2*time.Hour), SignalManual)
		if d.Suspicious(nets[i].Addr().Next()) {
			t.Fatalf("ban %d: %s, the ban ending first, is still in effect", i, nets[i])
		}
		if i+1 < limit-1 && !d.Suspicious(nets[i+1].Addr().Next()) {
			t.Fatalf("ban %d: %s evicted before %s, which ends first", i, nets[i+1], nets[i])
		}
		if int(d.BansEvicted()) != i+1 || len(reported) != i+1 || reported[i].Key() != nets[i].String() {
			t.Fatalf("ban %d: BansEvicted %d, reported %v; want %s", i, d.BansEvicted(), reported, nets[i])
		}
	}
	// An ended network ban makes room without counting.
	c.advance(3 * time.Hour)
	d.BanNetwork(nets[0], c.now().Add(time.Hour), SignalManual)
	if int(d.BansEvicted()) != limit-1 {
		t.Errorf("evicting an ended network ban was counted: %d", d.BansEvicted())
	}
}
