package ipclass

import (
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }
func testDetector(s Settings) (*Detector, *clock) {
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	d := NewDetector(s)
	d.now = c.now
	return d, c
}

var client = netip.MustParseAddr("198.51.100.9")

func TestDetectorThresholdBanAndExpiry(t *testing.T) {
	d, c := testDetector(Settings{Threshold: 20, BanFor: 15 * time.Minute})
	if _, hit := d.Signal(client, SignalProbe); hit || d.Suspicious(client) {
		t.Fatal("one probe (10) already crossed 20")
	}
	det, hit := d.Signal(client, SignalProbe)
	if !hit || det.Signal != SignalProbe || det.Score < 20 || !det.Until.Equal(c.t.Add(15*time.Minute)) {
		t.Fatalf("second probe: %+v, %v", det, hit)
	}
	if !d.Suspicious(client) {
		t.Fatal("not suspicious after crossing the threshold")
	}
	if _, again := d.Signal(client, SignalProbe); again {
		t.Error("a detected client was detected again before its detection ended")
	}
	c.advance(15*time.Minute + time.Second)
	if d.Suspicious(client) {
		t.Error("still suspicious after ban_for")
	}
}

func TestDetectorScoreDecays(t *testing.T) {
	d, c := testDetector(Settings{Threshold: 20, Decay: 10 * time.Minute})
	d.Signal(client, SignalProbe) // 10
	c.advance(10 * time.Minute)   // halves to 5
	d.Signal(client, SignalProbe) // 15
	if d.Suspicious(client) {
		t.Fatal("decayed score crossed the threshold")
	}
	if _, hit := d.Signal(client, SignalProbe); !hit { // 25
		t.Fatal("25 did not cross 20")
	}
}

// signalUntilDetected sends sig with keys key(1), key(2), ... (at most n) and returns the
// number of the signal that detected the client, 0 if none did.
func signalUntilDetected(d *Detector, a netip.Addr, sig Signal, n int, key func(i int) string) int {
	for i := 1; i <= n; i++ {
		if _, hit := d.SignalKey(a, sig, key(i)); hit {
			return i
		}
	}
	return 0
}

func distinctPaths(i int) string { return fmt.Sprintf("/scan/%d", i) }

// TestDetectorNotFoundBurst: with the defaults, the first 10 distinct 404s of a burst are
// free and the next 20 (1 point each) detect: a scanner at its 30th. A 404 repeated (a page
// polling a missing URL) never counts again, however often.
func TestDetectorNotFoundBurst(t *testing.T) {
	d, _ := testDetector(Settings{})
	if got := signalUntilDetected(d, client, SignalNotFound, 200, distinctPaths); got != 30 {
		t.Fatalf("a scan of distinct paths detected at its %dth 404, want the 30th", got)
	}
	poller := netip.MustParseAddr("198.51.100.10")
	if got := signalUntilDetected(d, poller, SignalNotFound, 10_000, func(i int) string { return fmt.Sprintf("/api/missing/%d", i%16) }); got != 0 {
		t.Fatalf("16 missing URLs polled 10,000 times detected the client at %d", got)
	}
}

// TestDetectorBurstLeaks: the bucket gives one back every leak: a client with a distinct 404
// every 10 s (a reader following broken links) never scores; a full bucket takes one more
// after a leak, and the next one scores.
func TestDetectorBurstLeaks(t *testing.T) {
	d, c := testDetector(Settings{})
	for i := range 1000 {
		if _, hit := d.SignalKey(client, SignalNotFound, distinctPaths(i)); hit {
			t.Fatalf("a distinct 404 every 10s detected at %d", i)
		}
		c.advance(10 * time.Second)
	}
	if l := d.Detections(1); len(l) != 0 {
		t.Fatalf("detections: %v", l)
	}
	other := netip.MustParseAddr("198.51.100.10")
	for i := range 10 {
		d.SignalKey(other, SignalNotFound, distinctPaths(i))
	}
	c.advance(10 * time.Second)
	d.SignalKey(other, SignalNotFound, distinctPaths(10)) // the place the leak freed
	for i := 11; i < 30; i++ {                            // 19 points
		if _, hit := d.SignalKey(other, SignalNotFound, distinctPaths(i)); hit {
			t.Fatalf("detected at %d: the leak freed no place", i)
		}
	}
	if _, hit := d.SignalKey(other, SignalNotFound, distinctPaths(30)); !hit {
		t.Fatal("20 404s past a full bucket did not detect")
	}
}

// TestDetectorAuthFailureBurst: 5 distinct failed authentications are free, the next 10 (2
// points each) detect; the same credentials sent again (an expired token) never count again;
// failures without a key (a form's credentials are in its body) each count.
func TestDetectorAuthFailureBurst(t *testing.T) {
	d, _ := testDetector(Settings{})
	guess := func(i int) string { return fmt.Sprintf("Basic guess-%d", i) }
	if got := signalUntilDetected(d, client, SignalAuthFailure, 100, guess); got != 15 {
		t.Fatalf("a password guesser detected at its %dth failure, want the 15th", got)
	}
	expired := netip.MustParseAddr("198.51.100.10")
	if got := signalUntilDetected(d, expired, SignalAuthFailure, 1000, func(int) string { return "Bearer expired" }); got != 0 {
		t.Fatalf("one expired token sent 1000 times detected at %d", got)
	}
	form := netip.MustParseAddr("198.51.100.11")
	if got := signalUntilDetected(d, form, SignalAuthFailure, 100, func(int) string { return "" }); got != 15 {
		t.Fatalf("form logins without a key detected at %d, want 15", got)
	}
}

// TestDetectorBurstConfigured: Allowance 0 turns the rule off (every signal counts, repeats
// too: 20 404s of one path detect); a larger allowance and leak apply; signals without a burst
// score at once.
func TestDetectorBurstConfigured(t *testing.T) {
	d, c := testDetector(Settings{Bursts: map[Signal]Burst{SignalNotFound: {Allowance: 0}, SignalAuthFailure: {Allowance: 20, Leak: time.Minute}}})
	if got := signalUntilDetected(d, client, SignalNotFound, 100, func(int) string { return "/same" }); got != 20 {
		t.Fatalf("not_found without a burst detected at %d, want 20", got)
	}
	other := netip.MustParseAddr("198.51.100.10")
	for i := range 20 {
		d.SignalKey(other, SignalAuthFailure, fmt.Sprint(i))
	}
	c.advance(59 * time.Second) // less than one leak: the bucket is still full
	if got := signalUntilDetected(d, other, SignalAuthFailure, 100, func(i int) string { return fmt.Sprint(100 + i) }); got != 10 {
		t.Fatalf("auth_failure past an allowance of 20 detected at %d, want 10", got)
	}
	probe := netip.MustParseAddr("198.51.100.11")
	if got := signalUntilDetected(d, probe, SignalProbe, 10, distinctPaths); got != 2 {
		t.Fatalf("probes detected at %d, want 2: they have no burst", got)
	}
}

// TestDetectorFloodKeepsAFillingBucket: a scanner part-way through its allowance is worth more
// than a flood of clients with one 404 each: eviction keeps it, and it is detected at its 30th
// 404 as if there had been no flood.
func TestDetectorFloodKeepsAFillingBucket(t *testing.T) {
	d, _ := testDetector(Settings{MaxTracked: 6410})
	for i := range 9 {
		d.SignalKey(client, SignalNotFound, distinctPaths(i))
	}
	for i := range 100_000 {
		d.SignalKey(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), SignalNotFound, "/x")
	}
	if got := signalUntilDetected(d, client, SignalNotFound, 100, func(i int) string { return distinctPaths(100 + i) }); got != 21 {
		t.Fatalf("after the flood, the scanner was detected at its %dth 404, want 21 (9 + 21 = 30)", got)
	}
}

func TestDetectorShadow(t *testing.T) {
	d, _ := testDetector(Settings{Shadow: true})
	d.Signal(client, SignalTraversal)
	if det, hit := d.Signal(client, SignalTraversal); !hit || !det.Shadow {
		// one traversal is 20 already; the first call returned it
	}
	if d.Suspicious(client) {
		t.Fatal("shadow mode made a client suspicious")
	}
	if list := d.Detections(10); len(list) != 1 || !list[0].Shadow {
		t.Fatalf("shadow detection not listed as shadow: %+v", list)
	}
}

func TestDetectorZeroScoreIgnored(t *testing.T) {
	d, _ := testDetector(Settings{Scores: map[Signal]float64{SignalNotFound: 0}})
	for range 100 {
		if _, hit := d.Signal(client, SignalNotFound); hit {
			t.Fatal("a signal scored 0 detected a client")
		}
	}
	if tracked, _ := d.Counts(); tracked != 0 {
		t.Errorf("a signal scored 0 tracked a client: %d", tracked)
	}
}

func TestDetectorBanUnban(t *testing.T) {
	d, c := testDetector(Settings{})
	d.Ban(client, c.t.Add(time.Minute), SignalManual)
	if !d.Suspicious(client) {
		t.Fatal("manual ban not applied")
	}
	d.Ban(client, c.t.Add(time.Second), SignalShared) // earlier end: ignored
	c.advance(30 * time.Second)
	if !d.Suspicious(client) {
		t.Fatal("an earlier-ending ban shortened a longer one")
	}
	if !d.Unban(client) || d.Suspicious(client) {
		t.Fatal("unban did not clear the detection")
	}
	if d.Unban(client) {
		t.Error("unban of an unknown client reported a detection")
	}
}

// TestDetectorBoundedUnderFlood: many distinct clients never grow the table past its cap, and
// detected clients survive the flood of one-signal clients.
func TestDetectorBoundedUnderFlood(t *testing.T) {
	const maxTracked = 6410 // not a multiple of the shard count: the cap still holds exactly
	d, _ := testDetector(Settings{MaxTracked: maxTracked})
	for range 3 {
		d.Signal(client, SignalTraversal)
	}
	for i := range 100_000 {
		d.Signal(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), SignalNotFound)
	}
	tracked, detected := d.Counts()
	if tracked > maxTracked {
		t.Fatalf("tracking %d clients, cap %d", tracked, maxTracked)
	}
	if detected != 1 || !d.Suspicious(client) {
		t.Fatalf("the detected client was evicted by the flood (detected=%d)", detected)
	}
}

func TestClassifierPrecedence(t *testing.T) {
	d, _ := testDetector(Settings{})
	c := Classifier{
		Trusted:    NewPrefixSet(mustPrefixes(t, "10.0.0.0/8")),
		Suspicious: NewPrefixSet(mustPrefixes(t, "10.9.0.0/16", "203.0.113.0/24")),
		Detector:   d,
	}
	for ip, want := range map[string]Class{"10.9.1.1": Trusted, "203.0.113.5": Suspicious, "198.51.100.1": Default} {
		if got := c.Class(netip.MustParseAddr(ip)); got != want {
			t.Errorf("Class(%s) = %s, want %s", ip, got, want)
		}
	}
	trusted := netip.MustParseAddr("10.1.2.3")
	for range 10 {
		if _, hit := c.Signal(trusted, SignalTraversal, ""); hit {
			t.Fatal("a trusted client was reclassified")
		}
	}
	if c.Class(trusted) != Trusted {
		t.Fatal("trusted client lost its class")
	}
	c.Signal(client, SignalTraversal, "")
	if c.Class(client) != Suspicious {
		t.Fatal("detected client not suspicious")
	}
	var zero Classifier
	if zero.Class(client) != Default {
		t.Error("zero classifier is not all default")
	}
}

func TestClassAndSignalNames(t *testing.T) {
	for _, c := range []Class{Default, Trusted, Suspicious} {
		if got, err := ParseClass(c.String()); err != nil || got != c {
			t.Errorf("ParseClass(%s) = %v, %v", c, got, err)
		}
	}
	if _, err := ParseClass("evil"); err == nil {
		t.Error("unknown class accepted")
	}
	for _, s := range ScoredSignals() {
		if got, err := ParseSignal(s.String()); err != nil || got != s {
			t.Errorf("ParseSignal(%s) = %v, %v", s, got, err)
		}
	}
	if _, err := ParseSignal("manual"); err == nil {
		t.Error("manual is not a scored signal")
	}
	_ = fmt.Sprint(Class(9), Signal(99))
}

// TestDetectorShardsAreSeeded: which shard an address lands in depends on a per-detector random
// seed, so addresses a client picks to crowd one shard of one detector spread over another's.
func TestDetectorShardsAreSeeded(t *testing.T) {
	a, b := NewDetector(Settings{}), NewDetector(Settings{})
	index := func(d *Detector, addr netip.Addr) int { return d.shardIndex(addr, len(*d.shards.Load())) }
	same := 0
	for i := range 256 {
		addr := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 14: byte(i >> 4), 15: byte(i)})
		if index(a, addr) == index(b, addr) {
			same++
		}
	}
	// One hash for all detectors puts all 256 in the same shard of both; independent seeds
	// about 256/64 = 4.
	if same > 32 {
		t.Fatalf("%d of 256 addresses are in the same shard of two detectors: the shard hash is not seeded", same)
	}
}

// TestDetectorTracksEveryClientBelowMaxTracked: however small MaxTracked is, clients fall into
// shards of at least 1024 (or one shard), so 90 % of MaxTracked clients are all kept.
func TestDetectorTracksEveryClientBelowMaxTracked(t *testing.T) {
	for _, maxTracked := range []int{10, 100, 1000, 10_000} {
		d, _ := testDetector(Settings{MaxTracked: maxTracked})
		n := maxTracked * 9 / 10
		for i := range n {
			d.Signal(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), SignalNotFound)
		}
		if tracked, _ := d.Counts(); tracked != n {
			t.Errorf("MaxTracked %d: %d clients signalled, %d tracked", maxTracked, n, tracked)
		}
	}
}

// TestDetectorTracksEveryClientAfterMaxTrackedChanges: a reload that changes MaxTracked
// (SetSettings on the detector the reload keeps) spreads clients over as many shards as a new
// detector of that MaxTracked has. A detector made with the default (64 shards) and lowered to
// 1000 kept 64 shards of 15 entries, and evicted scored clients long before it tracked 1000;
// raised back, it keeps what it tracked and its detections.
func TestDetectorTracksEveryClientAfterMaxTrackedChanges(t *testing.T) {
	d, c := testDetector(Settings{Threshold: 20})
	banned := netip.MustParseAddr("192.0.2.7")
	d.Ban(banned, c.now().Add(time.Hour), SignalManual)
	for k, maxTracked := range []int{1000, 10, 200_000, 5000} {
		d.SetSettings(Settings{Threshold: 20, MaxTracked: maxTracked})
		n := maxTracked * 9 / 10
		for i := range n {
			d.Signal(netip.AddrFrom4([4]byte{byte(100 + k), byte(i >> 16), byte(i >> 8), byte(i)}), SignalNotFound)
		}
		tracked, _ := d.Counts()
		if tracked > maxTracked {
			t.Errorf("MaxTracked %d: %d tracked", maxTracked, tracked)
		}
		if maxTracked >= 1000 && tracked < n {
			t.Errorf("MaxTracked %d: %d clients signalled, %d tracked", maxTracked, n, tracked)
		}
		if maxTracked >= 1000 && !d.Suspicious(banned) {
			t.Errorf("MaxTracked %d: the ban made before was lost", maxTracked)
		}
	}
}

// TestDetectorReshardsUnderLoad: signals, bans, unbans and listings go on while reloads change
// the shard count; nothing is lost that was not evicted, and the bound holds (run with -race).
func TestDetectorReshardsUnderLoad(t *testing.T) {
	d, c := testDetector(Settings{Threshold: 20})
	banned := netip.MustParseAddr("192.0.2.7")
	d.Ban(banned, c.now().Add(time.Hour), SignalManual)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				a := netip.AddrFrom4([4]byte{10, byte(w), byte(i >> 8), byte(i)})
				d.Signal(a, SignalNotFound)
				if i%64 == 0 {
					d.Unban(a)
					d.Counts()
					d.Detections(10)
					d.TopDetections(3, func(a, b Detection) bool { return a.Score > b.Score })
				}
			}
		}()
	}
	for i := range 200 {
		d.SetSettings(Settings{Threshold: 20, MaxTracked: []int{100, 5000, 200_000, 2000}[i%4]})
	}
	close(stop)
	wg.Wait()
	if !d.Suspicious(banned) {
		t.Error("the ban made before the reloads was lost")
	}
	if tracked, _ := d.Counts(); tracked > 2000 {
		t.Errorf("%d tracked, MaxTracked 2000", tracked)
	}
}

// TestDetectorIPv6ClientIsItsNetwork: the addresses of one IPv6 /64 are one client (their
// scores add up, the detection covers the whole network, an unban by any of them lifts it);
// another /64 is another client; IPv6Prefix 128 keeps addresses apart; IPv4 is untouched.
func TestDetectorIPv6ClientIsItsNetwork(t *testing.T) {
	d, _ := testDetector(Settings{Threshold: 20})
	a, b := netip.MustParseAddr("2001:db8:1:2::1"), netip.MustParseAddr("2001:db8:1:2:aaaa::7")
	d.Signal(a, SignalProbe)
	det, hit := d.Signal(b, SignalProbe)
	if !hit {
		t.Fatal("two probes from one /64 did not add up to the threshold")
	}
	if got := d.ClientString(det.Addr); got != "2001:db8:1:2::/64" {
		t.Errorf("the detection names %s, want 2001:db8:1:2::/64", got)
	}
	if !d.Suspicious(netip.MustParseAddr("2001:db8:1:2:ffff::9")) {
		t.Error("another address of the detected /64 is not suspicious")
	}
	if d.Suspicious(netip.MustParseAddr("2001:db8:1:3::1")) {
		t.Error("the next /64 is suspicious")
	}
	if !d.Unban(netip.MustParseAddr("2001:db8:1:2::beef")) || d.Suspicious(a) {
		t.Error("an unban by another address of the network did not lift the detection")
	}
	if got := d.ClientString(netip.MustParseAddr("198.51.100.9")); got != "198.51.100.9" {
		t.Errorf("IPv4 client named %s", got)
	}

	exact, _ := testDetector(Settings{Threshold: 20, IPv6Prefix: 128})
	exact.Signal(a, SignalProbe)
	if _, hit := exact.Signal(b, SignalProbe); hit {
		t.Error("IPv6Prefix 128: two addresses' scores added up")
	}
	if got := exact.ClientString(a); got != "2001:db8:1:2::1" {
		t.Errorf("IPv6Prefix 128 names %s", got)
	}
}

// TestDetectorBanForIsBounded: a ban past MaxBanFor (whose end in int64 nanoseconds would
// overflow past 2262) holds for MaxBanFor, from the detector's settings and from Ban alike.
func TestDetectorBanForIsBounded(t *testing.T) {
	d, c := testDetector(Settings{BanFor: 100000 * 24 * time.Hour})
	det, hit := d.Signal(client, SignalTraversal)
	if !hit || !det.Until.Equal(c.t.Add(MaxBanFor)) || !d.Suspicious(client) {
		t.Fatalf("detection with ban_for 100000d: %+v, %v, suspicious %v", det, hit, d.Suspicious(client))
	}
	other := netip.MustParseAddr("198.51.100.10")
	d.Ban(other, c.t.Add(100000*24*time.Hour), SignalManual)
	if !d.Suspicious(other) {
		t.Fatal("a ban of 100000d banned nobody")
	}
	if l := d.Detections(10); len(l) != 2 || !l[0].Until.Equal(c.t.Add(MaxBanFor)) || !l[1].Until.Equal(c.t.Add(MaxBanFor)) {
		t.Fatalf("detections: %+v", l)
	}
}

// TestDetectorShadowSwitchedOff: a client found in shadow mode is detected, for real, by its
// next signal once shadow is off (its shadow entry does not count as a detection).
func TestDetectorShadowSwitchedOff(t *testing.T) {
	d, _ := testDetector(Settings{Shadow: true})
	if det, hit := d.Signal(client, SignalTraversal); !hit || !det.Shadow {
		t.Fatalf("shadow detection: %+v, %v", det, hit)
	}
	if _, hit := d.Signal(client, SignalTraversal); hit {
		t.Error("in shadow mode, a client was reported twice for one detection")
	}
	d.SetSettings(Settings{})
	if d.Suspicious(client) {
		t.Fatal("a shadow detection applied once shadow was off")
	}
	det, hit := d.Signal(client, SignalTraversal)
	if !hit || det.Shadow || !d.Suspicious(client) {
		t.Fatalf("after shadow was switched off, the shadow-found client was not detected: %+v, %v", det, hit)
	}
}

// TestDetectorShadowSwitchedOn: in shadow mode nobody is suspicious, not even a client
// detected (or banned) before; its detection is kept and applies again when shadow is off.
func TestDetectorShadowSwitchedOn(t *testing.T) {
	d, c := testDetector(Settings{})
	d.Signal(client, SignalTraversal)
	other := netip.MustParseAddr("198.51.100.10")
	d.Ban(other, c.t.Add(time.Hour), SignalManual)
	d.SetSettings(Settings{Shadow: true})
	for _, a := range []netip.Addr{client, other} {
		if d.Suspicious(a) {
			t.Errorf("%s is suspicious in shadow mode", a)
		}
	}
	if _, detected := d.Counts(); detected != 0 {
		t.Errorf("%d detections counted in shadow mode, want 0", detected)
	}
	if l := d.Detections(10); len(l) != 2 || !l[0].Shadow || !l[1].Shadow {
		t.Errorf("detections in shadow mode are not marked shadow: %+v", l)
	}
	if _, hit := d.Signal(client, SignalTraversal); hit {
		t.Error("in shadow mode, a client detected before was reported again")
	}
	d.SetSettings(Settings{})
	if !d.Suspicious(client) || !d.Suspicious(other) {
		t.Error("detections made before shadow mode do not apply again after it")
	}
}

// TestDetectorTopDetections: the k best of every detection, in order, whatever the shards'
// order, with the count of all; expired detections are neither.
func TestDetectorTopDetections(t *testing.T) {
	d, c := testDetector(Settings{Threshold: 20, BanFor: time.Hour})
	for i := 1; i <= 5000; i++ {
		d.Ban(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), c.t.Add(time.Duration(i)*time.Second), SignalManual)
	}
	d.Ban(netip.MustParseAddr("10.9.9.9"), c.t.Add(-time.Second), SignalManual) // ended
	for i := 0; i < 3; i++ {
		a := netip.AddrFrom4([4]byte{192, 0, 2, byte(i)})
		for j := 0; j < 2+i; j++ {
			d.Signal(a, SignalProbe)
		}
	}
	byScoreThenUntil := func(a, b Detection) bool {
		if a.Score != b.Score {
			return a.Score > b.Score
		}
		return a.Until.After(b.Until)
	}
	top, n := d.TopDetections(10, byScoreThenUntil)
	if n != 5003 || len(top) != 10 {
		t.Fatalf("%d detections, %d top; want 5003 and 10", n, len(top))
	}
	// The probers (a score) first, then the bans (no score) that end last.
	for i := 0; i < 3; i++ {
		if top[i].Signal != SignalProbe || top[i].Score < 20 {
			t.Fatalf("top %d: %+v, want a prober", i, top[i])
		}
	}
	for i, want := range []string{"10.0.19.136", "10.0.19.135", "10.0.19.134"} {
		if got := top[3+i].Addr.String(); got != want {
			t.Fatalf("top %d: %v, want %s", 3+i, got, want)
		}
	}
	if _, n := d.TopDetections(0, byScoreThenUntil); n != 5003 {
		t.Fatalf("count alone: %d", n)
	}
}

// TestDetectorRateLimitedBurst: refusals of the rate limiter count past 30, one back every
// 2 s: an office whose logins are refused 15 times a minute, for an hour, is never detected;
// a script refused once a second is, after about a minute and a half; one refused back to
// back at its 37th refusal (30 free, 7 × 3 points).
func TestDetectorRateLimitedBurst(t *testing.T) {
	d, c := testDetector(Settings{})
	office := netip.MustParseAddr("198.51.100.40")
	for i := range 60 * 15 {
		if _, hit := d.Signal(office, SignalRateLimited); hit {
			t.Fatalf("an office refused 15 times a minute detected at its refusal %d", i+1)
		}
		c.advance(4 * time.Second)
	}
	if got := signalUntilDetected(d, client, SignalRateLimited, 100, func(int) string { return "" }); got != 37 {
		t.Fatalf("back-to-back refusals detected at the %dth, want the 37th", got)
	}
	script := netip.MustParseAddr("198.51.100.41")
	for i := 1; i <= 600; i++ {
		if _, hit := d.Signal(script, SignalRateLimited); hit {
			if i < 60 || i > 120 {
				t.Fatalf("a script refused once a second detected after %d s, want 60 to 120", i)
			}
			t.Logf("a script refused once a second detected after %d s", i)
			return
		}
		c.advance(time.Second)
	}
	t.Fatal("a script refused once a second for 10 minutes was never detected")
}

// TestDetectorInsertDuringReloadKeepsItsShardShare: a reload that lowers max_tracked stores
// the new settings, then reshards. A signal between the two took the new MaxTracked (100) with
// the old set's shard count (64): a share of one entry, so a new client's insert emptied its
// shard, an active ban included (TestDetectorReshardsUnderLoad lost its ban so in CI). A
// shard's share now comes with the set it belongs to.
func TestDetectorInsertDuringReloadKeepsItsShardShare(t *testing.T) {
	d, c := testDetector(Settings{Threshold: 20, MaxTracked: 200_000})
	n := len(*d.shards.Load())
	if n < 2 {
		t.Fatalf("MaxTracked 200000 gave %d shard(s)", n)
	}
	banned := netip.MustParseAddr("192.0.2.7")
	d.Ban(banned, c.now().Add(time.Hour), SignalManual)
	// Another client of the same shard, and one more already tracked there.
	var same []netip.Addr
	for i := 0; len(same) < 2; i++ {
		a := netip.AddrFrom4([4]byte{10, 9, byte(i >> 8), byte(i)})
		if d.shardIndex(a, n) == d.shardIndex(banned, n) {
			same = append(same, a)
		}
	}
	d.Signal(same[0], SignalNotFound)
	// The reload's first step: the settings are new, the shards not yet.
	lowered := Settings{Threshold: 20, MaxTracked: 100}.resolve()
	d.settings.Store(&lowered)
	d.Signal(same[1], SignalNotFound)
	if !d.Suspicious(banned) {
		t.Fatal("a signal between a reload's settings and its reshard evicted an active ban")
	}
	d.reshard(&lowered) // the reload's second step
	if !d.Suspicious(banned) {
		t.Fatal("the reshard evicted the active ban")
	}
	if tracked, _ := d.Counts(); tracked > 100 {
		t.Errorf("%d tracked after the reload, MaxTracked 100", tracked)
	}
}

// TestDetectorBansOutlastChurn: a flood of fresh addresses that are not detected (one 404 or
// one probe each, a botnet larger than MaxTracked churning the table) evicted bans once the
// table held mostly bans: a sample of eight bans gave up the one ending first, so an attacker
// got its banned addresses unbanned by sending from new ones. Bans are kept apart from the
// scores, in a table of their own: no churn of scores evicts one.
func TestDetectorBansOutlastChurn(t *testing.T) {
	const maxTracked = 1024
	d, c := testDetector(Settings{Threshold: 20, MaxTracked: maxTracked})
	var banned []netip.Addr
	for i := range 900 {
		a := netip.AddrFrom4([4]byte{198, 51, byte(i >> 8), byte(i)})
		if _, hit := d.Signal(a, SignalTraversal); !hit {
			t.Fatalf("%v not detected", a)
		}
		banned = append(banned, a)
	}
	c.advance(time.Second)
	for i := range 200_000 {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		if i%2 == 0 {
			d.Signal(a, SignalNotFound)
		} else {
			d.Signal(a, SignalProbe) // 10: half the threshold
		}
	}
	lost := 0
	for _, a := range banned {
		if !d.Suspicious(a) {
			lost++
		}
	}
	tracked, detected := d.Counts()
	if lost > 0 {
		t.Errorf("%d of %d bans flushed by 200000 fresh undetected addresses (tracked %d, detected %d)", lost, len(banned), tracked, detected)
	}
	if tracked > maxTracked {
		t.Errorf("tracking %d clients, cap %d", tracked, maxTracked)
	}
}

// TestDetectorFullBanTableEvictsTheBanEndingFirst: a botnet of more detected addresses than
// MaxTracked fills the ban table, which stays bounded: it evicts among a sample the ban that
// ends first (the flood's own earliest), counts each in BansEvicted and reports it, and a ban
// that must outlast such a flood (an operator's, for a day) is kept.
func TestDetectorFullBanTableEvictsTheBanEndingFirst(t *testing.T) {
	const maxTracked = 1024
	d, c := testDetector(Settings{Threshold: 20, MaxTracked: maxTracked, BanFor: 15 * time.Minute})
	var reported []Detection
	d.OnBanEvicted(func(det Detection) { reported = append(reported, det) })
	day := netip.MustParseAddr("192.0.2.7")
	d.Ban(day, c.now().Add(24*time.Hour), SignalManual)
	const flood = 5000
	for i := range flood {
		if i%1000 == 0 {
			c.advance(time.Minute) // later detections end later
		}
		a := netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)})
		if _, hit := d.Signal(a, SignalTraversal); !hit {
			t.Fatalf("%v not detected", a)
		}
	}
	tracked, detected := d.Counts()
	if tracked > maxTracked || detected > maxTracked {
		t.Fatalf("tracked %d, detected %d: the bound is %d each", tracked, detected, maxTracked)
	}
	if !d.Suspicious(day) {
		t.Error("the day-long ban was evicted by 15-minute detections")
	}
	evicted := int(d.BansEvicted())
	if evicted != flood+1-detected || len(reported) != evicted {
		t.Fatalf("%d detections in a table of %d (%d active): BansEvicted %d, %d reported", flood+1, maxTracked, detected, evicted, len(reported))
	}
	// The latest minute's detections (the last 1000) end last: all are kept.
	kept := 0
	for i := flood - 1000; i < flood; i++ {
		if d.Suspicious(netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)})) {
			kept++
		}
	}
	if kept != 1000 {
		t.Errorf("%d of the 1000 latest detections kept: eviction does not take the bans ending first", kept)
	}
	for _, r := range reported {
		if r.Addr == day || r.Signal != SignalTraversal {
			t.Fatalf("reported eviction %+v", r)
		}
	}
	// An ended ban makes room without counting.
	c.advance(time.Hour)
	d.Signal(netip.MustParseAddr("203.0.113.1"), SignalTraversal)
	if int(d.BansEvicted()) != evicted {
		t.Error("evicting an ended ban was counted")
	}
}

// TestDetectorNAT64ClientsAreTheirIPv4Addresses: behind NAT64/SIIT translation (RFC 6052's
// well-known prefix 64:ff9b::/96, as an IPv6-only host reached over IPv4 through SIIT-DC
// sees its clients), every IPv4 client is an address of one /64: as one client under
// ipv6_prefix 64, one scanner's probes banned every IPv4 user of the site. Such an address is
// its embedded IPv4 client, as an IPv4-mapped one is: the same client as that IPv4 address
// sent natively, and another client than the next one.
func TestDetectorNAT64ClientsAreTheirIPv4Addresses(t *testing.T) {
	scanner, reader := netip.MustParseAddr("64:ff9b::c633:6409"), netip.MustParseAddr("64:ff9b::cb00:7107")
	if got := ClientAddr(scanner, 64); got != netip.MustParseAddr("198.51.100.9") {
		t.Fatalf("ClientAddr(%v) = %v, want 198.51.100.9", scanner, got)
	}
	if got := ClientName(reader, 64); got != "203.0.113.7" {
		t.Fatalf("ClientName(%v) = %q, want 203.0.113.7", reader, got)
	}
	d, _ := testDetector(Settings{Threshold: 20})
	d.Signal(scanner, SignalProbe)
	if det, hit := d.Signal(scanner, SignalProbe); !hit || det.Addr != netip.MustParseAddr("198.51.100.9") {
		t.Fatalf("two probes: %+v, %v", det, hit)
	}
	if d.Suspicious(reader) {
		t.Fatal("a scanner behind NAT64 banned another IPv4 client translated by it")
	}
	if !d.Suspicious(netip.MustParseAddr("198.51.100.9")) {
		t.Error("the scanner's IPv4 address sent natively is not the detected client")
	}
	// Outside the well-known /96 (64:ff9b:0:0:1::/80 is no translation), an address is IPv6.
	if got := ClientAddr(netip.MustParseAddr("64:ff9b::1:0:c633:6409"), 64); got != netip.MustParseAddr("64:ff9b::") {
		t.Errorf("an address of 64:ff9b::/64 outside the /96: %v", got)
	}
}
