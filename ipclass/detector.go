package ipclass

import (
	"container/heap"
	"hash/maphash"
	"math"
	"net/netip"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Detection is a client crossing the threshold (or being banned by an operator or another
// instance).
type Detection struct {
	Addr netip.Addr
	// Score when it crossed the threshold (0 for manual and shared bans).
	Score float64
	// Signal is the signal that made it cross (SignalManual, SignalShared for bans from
	// outside this instance's scoring).
	Signal Signal
	// Until is when the client stops being suspicious.
	Until time.Time
	// Shadow: the detector is in shadow mode and the client was not made suspicious.
	Shadow bool
	// Bits is, for a wider IPv6 network detected as a whole (Settings.IPv6Escalate), its
	// length: Addr is its first address. 0 for a client.
	Bits int
}

// Key is how SharedBans names the detection: the client's address, or the wider network
// (2001:db8:1::/48).
func (d Detection) Key() string {
	if d.Bits > 0 {
		return netip.PrefixFrom(d.Addr, d.Bits).String()
	}
	return d.Addr.String()
}

const (
	// maxShards is how many independently locked maps a detector spreads clients over, at most.
	maxShards = 64
	// minShardTracked is the least share of MaxTracked a shard gets (unless MaxTracked is
	// smaller): clients fall into shards unevenly, and shards of a few entries would fill, and
	// evict, long before the detector tracks MaxTracked clients.
	minShardTracked = 1024
	// evictSample is how many entries an insert into a full shard looks at to pick the least
	// useful one to evict (as Redis samples for its LRU): O(1) work, no global sweep.
	evictSample = 8
)

// Detector scores clients from the signals modules report and keeps the suspicious ones for
// BanFor. Scores and bans are two tables, each bounded by MaxTracked: a full score table
// evicts, among a sample, the entry with the lowest current score, and never touches a ban, so
// no churn of fresh addresses shortens one (as fail2ban's and CrowdSec's bans, a ban holds for
// its duration). Only a full ban table evicts a ban: the one ending first, unless a sample
// holds bans of a more crowded wider network, which go first (BansEvicted counts them, and
// the bans of wider networks that their own full table evicts, the one ending first).
// Safe for concurrent use.
type Detector struct {
	settings atomic.Pointer[resolvedSettings]
	// shards is a power of two of them, as many as MaxTracked calls for (shardCount); a
	// SetSettings that calls for another count moves every entry to a new set (reshard).
	shards    atomic.Pointer[[]shard]
	reshardMu sync.Mutex // one reshard at a time
	// banHorizon is the latest end of any detection: after it, Suspicious needs no lookup.
	banHorizon atomic.Int64
	// wide holds the wider IPv6 networks of escalation (see escalate.go); wideHorizon is the
	// latest end of their detections.
	wide        [wideShards]wideShard
	wideHorizon atomic.Int64
	// bansEvicted counts the active bans a full ban table evicted; onBanEvicted, when set, is
	// told of each (under the shard's lock: it must be quick).
	bansEvicted  atomic.Uint64
	onBanEvicted atomic.Pointer[func(Detection)]
	now          func() time.Time
	seed         maphash.Seed
}

type shard struct {
	mu sync.Mutex
	m  map[netip.Addr]*entry
	// bans are the detections (this instance's, an operator's, another instance's), apart from
	// the scores in m: evicting a score never ends a ban. Bounded by limit too.
	bans map[netip.Addr]*ban
	// byEnd orders bans by their end, the first ending at its root: a full table evicts it,
	// and an insert drops the bans that have ended from there.
	byEnd endHeap[*ban]
	// retired: a reshard moved the entries to a new set; whoever locked this shard before the
	// swap takes the new set's shard instead.
	retired bool
	// limit is the shard's share of MaxTracked (for m, and apart for bans), set with the set it belongs to (trim): a reload
	// stores its settings before it reshards, and a share made of the new MaxTracked and the old
	// shard count (100 over 64 shards: one) emptied a shard, active bans included.
	limit int
}

type entry struct {
	score  float64
	scored int64 // unix ns of the score's last update
	// empty is, per burst signal, when its bucket will be empty again (unix ns; see Burst).
	empty [len(burstSignals)]int64
	// recent holds hashes of the last keys of its burst signals (0: a free slot); next is the
	// slot the next key takes.
	recent [recentKeys]uint32
	next   uint8
}

// ban is a client's detection: until its end, the client is suspicious (unless shadow).
type ban struct {
	addr   netip.Addr
	until  int64   // unix ns
	score  float64 // the client's score when detected (0 for an operator's or a shared ban)
	scored int64   // unix ns: when score was
	idx    int     // its place in the shard's byEnd
	signal Signal
	shadow bool // a shadow detection: reported, not applied
}

func (b *ban) end() int64     { return b.until }
func (b *ban) setIndex(i int) { b.idx = i }

// NewDetector makes a detector with the given settings.
func NewDetector(s Settings) *Detector {
	d := &Detector{now: time.Now, seed: maphash.MakeSeed()}
	for i := range d.wide {
		d.wide[i].m = make(map[netip.Addr]*wideEntry)
	}
	d.SetSettings(s)
	return d
}

// shardCount is how many shards maxTracked clients are spread over: as many as give each at
// least minShardTracked, at most maxShards, a power of two.
func shardCount(maxTracked int) int {
	n := maxShards
	for n > 1 && n*minShardTracked > maxTracked {
		n /= 2
	}
	return n
}

// SetSettings replaces the settings (on a config reload); scores and detections are kept. A
// MaxTracked that calls for another shard count reshards, and one lowered below what is
// tracked evicts (the least useful first) until the bound holds again. Another IPv6Escalate
// forgets the wider networks' counts and detections: they name networks of the old length.
func (d *Detector) SetSettings(s Settings) {
	r := s.resolve()
	if old := d.settings.Swap(&r); old != nil && old.escBits != r.escBits {
		d.clearWide()
	}
	d.reshard(&r)
}

// reshard moves every entry to a set of shardCount(MaxTracked) shards when the count differs,
// and trims each shard to its share of MaxTracked. It holds every old shard's lock while it
// moves, so no signal lands in a shard that is being emptied; one that waited for such a lock
// finds the shard retired and takes the new set.
func (d *Detector) reshard(set *resolvedSettings) {
	d.reshardMu.Lock()
	defer d.reshardMu.Unlock()
	n := shardCount(set.maxTracked)
	var old []shard
	if p := d.shards.Load(); p != nil {
		old = *p
	}
	now := d.now().UnixNano()
	if len(old) == n {
		for i := range old {
			old[i].mu.Lock()
			old[i].trim(d, set, now, n)
			old[i].mu.Unlock()
		}
		return
	}
	fresh := make([]shard, n)
	for i := range fresh {
		fresh[i].m = make(map[netip.Addr]*entry)
		fresh[i].bans = make(map[netip.Addr]*ban)
	}
	for i := range old {
		old[i].mu.Lock()
	}
	for i := range old {
		for a, e := range old[i].m {
			fresh[d.shardIndex(a, n)].m[a] = e
		}
		for a, b := range old[i].bans {
			f := &fresh[d.shardIndex(a, n)]
			f.bans[a] = b
			b.idx = len(f.byEnd)
			f.byEnd = append(f.byEnd, b)
		}
		old[i].m, old[i].bans, old[i].byEnd, old[i].retired = nil, nil, nil, true
	}
	for i := range fresh {
		heap.Init(&fresh[i].byEnd)
		fresh[i].trim(d, set, now, n)
	}
	d.shards.Store(&fresh)
	for i := range old {
		old[i].mu.Unlock()
	}
}

// IPv6Prefix is how many leading bits of an IPv6 address name a client (Settings.IPv6Prefix).
func (d *Detector) IPv6Prefix() int { return d.settings.Load().ipv6Bits }

// Shadow reports whether the detector is in shadow mode.
func (d *Detector) Shadow() bool { return d.settings.Load().shadow }

// Client is the address the detector knows a's client by (see ClientAddr).
func (d *Detector) Client(a netip.Addr) netip.Addr { return ClientAddr(a, d.settings.Load().ipv6Bits) }

// ClientString names a client as Client gives it (see ClientName).
func (d *Detector) ClientString(a netip.Addr) string {
	return ClientName(a, d.settings.Load().ipv6Bits)
}

// DetectionString names what det detected: its client as ClientString does, or the wider
// network an escalation detected (2001:db8:1::/48).
func (d *Detector) DetectionString(det Detection) string {
	if det.Bits > 0 {
		return det.Key()
	}
	return d.ClientString(det.Addr)
}

// shardIndex is a's shard among n (a power of two), by a hash under the detector's random
// seed: a client that controls many addresses (an IPv6 /64 is 2^64 of them) cannot pick ones
// that crowd a single shard to evict the other clients there with 64 times fewer addresses.
func (d *Detector) shardIndex(a netip.Addr, n int) int {
	b := a.As16()
	return int(maphash.Bytes(d.seed, b[:]) & uint64(n-1))
}

// lock locks a's shard and returns it; a shard a reshard retired meanwhile is given up for
// the new set's.
func (d *Detector) lock(a netip.Addr) *shard {
	for {
		shards := *d.shards.Load()
		s := &shards[d.shardIndex(a, len(shards))]
		s.mu.Lock()
		if !s.retired {
			return s
		}
		s.mu.Unlock()
	}
}

// eachShard runs f on every shard of the current set, each under its lock. A reshard under
// way makes it start again on the new set (after a reset), so no entry is seen twice or
// missed.
func (d *Detector) eachShard(reset func(), f func(s *shard) bool) {
	for {
		shards := *d.shards.Load()
		done := true
		for i := range shards {
			s := &shards[i]
			s.mu.Lock()
			if s.retired {
				s.mu.Unlock()
				done = false
				break
			}
			more := f(s)
			s.mu.Unlock()
			if !more {
				return
			}
		}
		if done {
			return
		}
		reset()
	}
}

// Suspicious reports whether a is an active (not shadow) detection, or lies in a wider
// network that is one (escalation). In shadow mode nobody is: detections and bans made before
// it (or received meanwhile) are kept and apply again when shadow is switched off. It
// allocates nothing and skips the lookups entirely while no detection is active.
func (d *Detector) Suspicious(a netip.Addr) bool {
	now := d.now().UnixNano()
	if now >= d.banHorizon.Load() {
		return false
	}
	set := d.settings.Load()
	if set.shadow {
		return false
	}
	a = ClientAddr(a, set.ipv6Bits)
	s := d.lock(a)
	b := s.bans[a]
	active := b != nil && !b.shadow && b.until > now
	s.mu.Unlock()
	if !active && set.escalates(a) {
		active = d.wideActive(a, set, now)
	}
	return active
}

// Signal adds sig's score to a's. It returns the detection when this signal made a cross the
// threshold; a client already detected is not detected again until its detection ends. The
// caller must not signal trusted clients (the Classifier does that check). A signal with a
// Burst scores only once a's bucket for it is full; Signal gives it no key (SignalKey), so
// every one of them counts toward the bucket.
func (d *Detector) Signal(a netip.Addr, sig Signal) (Detection, bool) {
	return d.SignalKey(a, sig, "")
}

// SignalKey is Signal with the key of what the signal was about (the path of a 404, the
// credentials of a failed authentication): a signal with a Burst whose key is among a's recent
// ones is a repeat and neither fills the bucket nor scores. "" is no key: every one counts.
func (d *Detector) SignalKey(a netip.Addr, sig Signal, key string) (Detection, bool) {
	set := d.settings.Load()
	if sig >= numScoredSignals || set.scores[sig] == 0 {
		return Detection{}, false
	}
	a = ClientAddr(a, set.ipv6Bits)
	now := d.now()
	ns := now.UnixNano()
	escalates := set.escalates(a)
	if escalates && d.wideActive(a, set, ns) {
		// Its wider network is detected: nothing to add, and no entry to take.
		return Detection{}, false
	}
	s := d.lock(a)
	defer s.mu.Unlock()
	e := s.m[a]
	if e == nil {
		e = s.insert(d, a, set, ns)
	}
	if b := sig.burstIndex(); b >= 0 && set.bursts[b].depth > 0 {
		if e.repeat(d.seed, sig, key) || set.bursts[b].absorb(&e.empty[b], ns) {
			return Detection{}, false
		}
	}
	// Decay in steps of at least a second, so a burst that sums exactly to the threshold (two
	// probes of 10 against 20) does not miss it by the microseconds between them.
	if elapsed := ns - e.scored; elapsed >= int64(time.Second) {
		e.score = decayed(e.score, elapsed, set.decay)
		e.scored = ns
	}
	e.score += set.scores[sig]
	// An active detection is not detected again, except a shadow one once shadow mode is off:
	// the clients shadow mode found are the first to detect when it enforces.
	if b := s.bans[a]; (b != nil && b.until > ns && (!b.shadow || set.shadow)) || e.score < set.threshold {
		return Detection{}, false
	}
	until := now.Add(set.banFor)
	u := until.UnixNano()
	s.putBan(d, a, ban{until: u, score: e.score, scored: ns, signal: sig, shadow: set.shadow}, set, ns)
	if !set.shadow {
		extendHorizon(&d.banHorizon, u)
	}
	if escalates {
		if w, ok := d.escalate(a, sig, e.score, u, set, ns); ok {
			// The wider network is the detection to report and share: it holds this client.
			if !w.Shadow {
				extendHorizon(&d.banHorizon, w.Until.UnixNano())
			}
			return w, true
		}
	}
	return Detection{Addr: a, Score: e.score, Signal: sig, Until: until, Shadow: set.shadow}, true
}

// Ban makes a suspicious until the given time (an operator's or another instance's
// detection), at most MaxBanFor from now. A later end replaces an earlier one; an earlier one
// is ignored. It returns the end of a's ban after it, which is later than until when a was
// already banned for longer: the admin API answers with it, not with the end it was asked for.
func (d *Detector) Ban(a netip.Addr, until time.Time, sig Signal) time.Time {
	a = d.Client(a)
	now := d.now()
	if until.Sub(now) > MaxBanFor { // Sub saturates; UnixNano would overflow past 2262
		until = now.Add(MaxBanFor)
	}
	ns := now.UnixNano()
	u := until.UnixNano()
	if u <= ns {
		return until
	}
	s := d.lock(a)
	var b ban
	if cur := s.bans[a]; cur != nil {
		b = *cur
	}
	if later, raised := raiseBan(&b.until, &b.signal, &b.shadow, u, sig); raised {
		b.score, b.scored = 0, ns
		s.putBan(d, a, b, d.settings.Load(), ns)
	} else {
		until = time.Unix(0, later)
	}
	s.mu.Unlock()
	extendHorizon(&d.banHorizon, u)
	return until
}

// Unban forgets a's detection and score. It reports whether a was an active detection.
func (d *Detector) Unban(a netip.Addr) bool {
	a = d.Client(a)
	s := d.lock(a)
	defer s.mu.Unlock()
	delete(s.m, a)
	b := s.bans[a]
	if b == nil {
		return false
	}
	s.removeBan(b)
	return !b.shadow && b.until > d.now().UnixNano()
}

// BansEvicted is how many active bans a full ban table has evicted since the detector was
// made (it is kept across reloads with the detector).
func (d *Detector) BansEvicted() uint64 { return d.bansEvicted.Load() }

// OnBanEvicted sets what is told of each active ban a full ban table evicts (nil: nothing). It
// runs under a lock of the detector: it must be quick and must not call the detector.
func (d *Detector) OnBanEvicted(f func(Detection)) {
	if f == nil {
		d.onBanEvicted.Store(nil)
		return
	}
	d.onBanEvicted.Store(&f)
}

// detection is the listing of a's ban b: its score is the client's current one when it is
// still scored, else the score it was detected with, decayed since. The caller holds s.mu.
func (s *shard) detection(a netip.Addr, b *ban, set *resolvedSettings, ns int64) Detection {
	score := decayed(b.score, ns-b.scored, set.decay)
	if e := s.m[a]; e != nil {
		score = decayed(e.score, ns-e.scored, set.decay)
	}
	return Detection{Addr: a, Score: score, Signal: b.signal, Until: time.Unix(0, b.until), Shadow: b.shadow || set.shadow}
}

// Detections lists up to limit active detections (shadow ones included, marked), in no
// particular order. In shadow mode every one is marked shadow: none applies.
func (d *Detector) Detections(limit int) []Detection {
	now := d.now()
	ns := now.UnixNano()
	set := d.settings.Load()
	var out []Detection
	d.eachShard(func() { out = out[:0] }, func(s *shard) bool {
		for a, b := range s.bans {
			if b.until <= ns {
				continue
			}
			if len(out) >= limit {
				break
			}
			out = append(out, s.detection(a, b, set, ns))
		}
		return len(out) < limit
	})
	d.eachWide(func(k netip.Addr, w *wideEntry) {
		if w.until > ns && len(out) < limit {
			out = append(out, Detection{Addr: k, Bits: set.escBits, Signal: w.signal,
				Until: time.Unix(0, w.until), Shadow: w.shadow || set.shadow})
		}
	})
	return out
}

// TopDetections returns the k active detections (shadow ones included, marked) that come
// first by better, best first, and how many active detections there are in all. It looks at
// every detection but holds at most k, in a heap whose root is the worst kept, so its memory
// does not grow with them and its time is O(n log k): the admin API's ?limit= goes up to
// 100000, where keeping a sorted slice moved megabytes per insert.
func (d *Detector) TopDetections(k int, better func(a, b Detection) bool) ([]Detection, int) {
	ns := d.now().UnixNano()
	set := d.settings.Load()
	h := &worstFirst{better: better, ds: make([]Detection, 0, min(k, 1024))}
	n := 0
	consider := func(c Detection) {
		n++
		switch {
		case k == 0:
		case len(h.ds) < k:
			heap.Push(h, c)
		case better(c, h.ds[0]):
			h.ds[0] = c
			heap.Fix(h, 0)
		}
	}
	d.eachShard(func() { h.ds, n = h.ds[:0], 0 }, func(s *shard) bool {
		for a, b := range s.bans {
			if b.until > ns {
				consider(s.detection(a, b, set, ns))
			}
		}
		return true
	})
	d.eachWide(func(a netip.Addr, w *wideEntry) {
		if w.until > ns {
			consider(Detection{Addr: a, Bits: set.escBits, Signal: w.signal, Until: time.Unix(0, w.until),
				Shadow: w.shadow || set.shadow})
		}
	})
	sort.Slice(h.ds, func(i, j int) bool { return better(h.ds[i], h.ds[j]) })
	return h.ds, n
}

// worstFirst is a heap of detections whose root is the one every other comes before.
type worstFirst struct {
	better func(a, b Detection) bool
	ds     []Detection
}

func (h *worstFirst) Len() int           { return len(h.ds) }
func (h *worstFirst) Less(i, j int) bool { return h.better(h.ds[j], h.ds[i]) }
func (h *worstFirst) Swap(i, j int)      { h.ds[i], h.ds[j] = h.ds[j], h.ds[i] }
func (h *worstFirst) Push(x any)         { h.ds = append(h.ds, x.(Detection)) }
func (h *worstFirst) Pop() any {
	x := h.ds[len(h.ds)-1]
	h.ds = h.ds[:len(h.ds)-1]
	return x
}

// Counts returns the number of tracked clients, those with a score (bounded by MaxTracked:
// the bans, and the wider networks of escalation, have their own bounds), and of active (not
// shadow) detections, wider networks included: none in shadow mode.
func (d *Detector) Counts() (tracked, detected int) {
	ns := d.now().UnixNano()
	shadow := d.settings.Load().shadow
	d.eachShard(func() { tracked, detected = 0, 0 }, func(s *shard) bool {
		tracked += len(s.m)
		for _, b := range s.bans {
			if b.until > ns && !b.shadow && !shadow {
				detected++
			}
		}
		return true
	})
	d.eachWide(func(_ netip.Addr, w *wideEntry) {
		if w.until > ns && !w.shadow && !shadow {
			detected++
		}
	})
	return tracked, detected
}

// raiseBan applies a ban ending at u (unix ns) for sig to a detection's fields (an entry's
// or a wider network's): it replaces a shadow or earlier-ending detection and reports true,
// or keeps a later one and returns its end.
func raiseBan(until *int64, signal *Signal, shadow *bool, u int64, sig Signal) (later int64, raised bool) {
	if *shadow || *until < u {
		*until, *signal, *shadow = u, sig, false
		return u, true
	}
	return *until, false
}

// extendHorizon moves h to u when u is later.
func extendHorizon(h *atomic.Int64, u int64) {
	for {
		cur := h.Load()
		if u <= cur || h.CompareAndSwap(cur, u) {
			return
		}
	}
}

// insert adds a fresh entry, evicting the least useful of a sample first when the shard is
// full. The caller holds s.mu.
func (s *shard) insert(d *Detector, a netip.Addr, set *resolvedSettings, now int64) *entry {
	for len(s.m) >= s.limit {
		s.evictOne(now, set)
	}
	e := &entry{scored: now}
	s.m[a] = e
	return e
}

// trim sets the shard's share of set's MaxTracked among shards, and evicts scores and bans
// until it holds at most that of each (a reload lowered it). The caller holds s.mu.
func (s *shard) trim(d *Detector, set *resolvedSettings, now int64, shards int) {
	for s.limit = shardLimit(set, shards); len(s.m) > s.limit; {
		s.evictOne(now, set)
	}
	for len(s.bans) > s.limit {
		s.evictBan(d, now, set)
	}
}

// putBan sets a's ban to b. A client without one gets it after the bans that have ended are
// dropped and, while the table is still full, the one evictBan picks. The caller holds s.mu.
func (s *shard) putBan(d *Detector, a netip.Addr, b ban, set *resolvedSettings, now int64) {
	if cur := s.bans[a]; cur != nil {
		idx := cur.idx
		*cur = b
		cur.addr, cur.idx = a, idx
		heap.Fix(&s.byEnd, idx)
		return
	}
	for len(s.byEnd) > 0 && s.byEnd[0].until <= now {
		s.removeBan(s.byEnd[0])
	}
	for len(s.bans) >= s.limit {
		s.evictBan(d, now, set)
	}
	nb := &b
	nb.addr = a
	s.bans[a] = nb
	heap.Push(&s.byEnd, nb)
}

// removeBan drops b from the table. The caller holds s.mu.
func (s *shard) removeBan(b *ban) {
	delete(s.bans, b.addr)
	heap.Remove(&s.byEnd, b.idx)
}

// evictBan drops the ban that ends first, unless a random sample holds bans of a wider IPv6
// network with more detected clients (Settings.IPv6Escalate): the most crowded of those goes
// first (a network holding many detections must not flush the bans of others: each of its own
// goes before any of theirs), the one ending first among equals. An active ban evicted is
// counted and reported; an ended one is not. The caller holds s.mu.
func (s *shard) evictBan(d *Detector, now int64, set *resolvedSettings) {
	victim := s.byEnd[0]
	if victim.until > now && set.escBits > 0 {
		crowd := d.crowd(victim.addr, set, now)
		n := 0
		for a, b := range s.bans { // map iteration starts at a random position: a random sample
			if c := d.crowd(a, set, now); c > crowd || c == crowd && b.until < victim.until {
				victim, crowd = b, c
			}
			if n++; n >= evictSample {
				break
			}
		}
	}
	s.removeBan(victim)
	if victim.until > now {
		d.bansEvicted.Add(1)
		if f := d.onBanEvicted.Load(); f != nil {
			(*f)(s.detection(victim.addr, victim, set, now))
		}
	}
}

// shardLimit is a shard's share of MaxTracked: rounded down, so the shards together never
// hold more than MaxTracked (one at least, for a MaxTracked under minShardTracked).
func shardLimit(set *resolvedSettings, shards int) int {
	return max(1, set.maxTracked/shards)
}

// evictOne drops the least useful score of a sample: the lowest current one, counting what
// its buckets hold (the score it is on the way to). Bans are apart: evicting a detected
// client's score leaves its ban. The caller holds s.mu.
func (s *shard) evictOne(now int64, set *resolvedSettings) {
	var victim netip.Addr
	var victimKey float64
	n := 0
	for a, e := range s.m { // map iteration starts at a random position: a random sample
		key := decayed(e.score, now-e.scored, set.decay) + e.pending(now, set)
		if n == 0 || key < victimKey {
			victim, victimKey = a, key
		}
		if n++; n >= evictSample {
			break
		}
	}
	delete(s.m, victim)
}

// pending is the score of the signals e's buckets hold: what a scanner still within its
// allowance is on the way to.
func (e *entry) pending(now int64, set *resolvedSettings) float64 {
	p := 0.0
	for i, sig := range burstSignals {
		p += set.bursts[i].held(e.empty[i], now) * set.scores[sig]
	}
	return p
}

func decayed(score float64, elapsed int64, halfLife time.Duration) float64 {
	if elapsed <= 0 || score == 0 {
		return score
	}
	return score * math.Exp2(-float64(elapsed)/float64(halfLife))
}
