package ipclass

import (
	"container/heap"
	"hash/maphash"
	"math"
	"math/rand/v2"
	"net/netip"
	"sync"
	"time"
)

// Escalation: once EscalateCount distinct clients (IPv6 networks of IPv6Prefix bits) of one
// wider IPv6 network (IPv6Escalate bits) are detected within one another's ban, the wider
// network is detected as a whole, as one entry. A holder of a /48 (65536 /64s) otherwise got
// a fresh client, with a fresh allowance, per /64, and could fill the table with detections.

const (
	// wideShards is how many independently locked maps hold the wider networks' entries.
	wideShards = 64
	// MaxEscalateCount bounds Settings.EscalateCount: a wider network's entry remembers the
	// clients it counted, as 16-bit hashes, to count each once (a collision undercounts).
	MaxEscalateCount = 16
	// wideShare: the wider networks' entries take at most MaxTracked / wideShare. Eviction
	// weighs a detection by its wider network's count (crowd), which an evicted entry loses:
	// the table must hold a network for every /48 of a /32 (65536) under the default
	// MaxTracked, or a /32's holder gets counts evicted and its detections weigh as a lone
	// client's again. At about 100 bytes an entry, 10 MiB at most under the default.
	wideShare = 2
	// minWideShardTracked is the least a wide shard holds.
	minWideShardTracked = 32
)

// wideEntry is a wider network's: the detected clients counted in it, and its own detection.
type wideEntry struct {
	until int64 // unix ns: the network is detected until then (0: not)
	// seen is the latest end of the client detections counted: past it, none is active any
	// more and the count starts afresh.
	seen    int64
	clients [MaxEscalateCount]uint16 // hashes of the clients counted (under the detector's seed)
	n       uint8                    // how many of clients are set
	// bits is the network's length: a signal that loaded the settings before a reload changed
	// IPv6Escalate may add an entry after the reload cleared the table; its key, read with the
	// new length, would name another network (2001:db8:1::/48 is also 2001:db8:1::/56).
	bits   uint8
	signal Signal
	shadow bool
	// key is the network's first address (its key in the shard); banned says whether it is
	// in the shard's byEnd (a detection, possibly ended), at slot, else in plain at slot.
	key    netip.Addr
	banned bool
	slot   int
}

// wideShard holds wider networks' entries, each either a detection (a ban, in byEnd by its
// end, as the ban table keeps the clients') or a mere count of detected clients (in plain).
// A full shard drops the counts first (a sample's least), then the ban that ends first: a
// detection is never evicted while a count could make the room, nor before one ending sooner.
type wideShard struct {
	mu    sync.Mutex
	m     map[netip.Addr]*wideEntry
	byEnd endHeap[*wideEntry]
	plain []*wideEntry
}

func (w *wideEntry) end() int64     { return w.until }
func (w *wideEntry) setIndex(i int) { w.slot = i }

// add makes w, keyed k, an entry of the shard: a count. The caller holds ws.mu.
func (ws *wideShard) add(k netip.Addr, w *wideEntry) {
	w.key, w.banned, w.slot = k, false, len(ws.plain)
	ws.plain = append(ws.plain, w)
	ws.m[k] = w
}

// unplain takes w out of plain. The caller holds ws.mu.
func (ws *wideShard) unplain(w *wideEntry) {
	last := ws.plain[len(ws.plain)-1]
	ws.plain[w.slot], last.slot = last, w.slot
	ws.plain[len(ws.plain)-1] = nil
	ws.plain = ws.plain[:len(ws.plain)-1]
}

// remove forgets w. The caller holds ws.mu.
func (ws *wideShard) remove(w *wideEntry) {
	if w.banned {
		heap.Remove(&ws.byEnd, w.slot)
	} else {
		ws.unplain(w)
	}
	delete(ws.m, w.key)
}

// setBanned puts w's detection (its until just set) in its place by end. The caller holds ws.mu.
func (ws *wideShard) setBanned(w *wideEntry) {
	if w.banned {
		heap.Fix(&ws.byEnd, w.slot)
		return
	}
	ws.unplain(w)
	w.banned = true
	heap.Push(&ws.byEnd, w)
}

// dropEnded takes the detections that have ended off byEnd: an entry still counting detected
// clients becomes a count, any other is forgotten. The caller holds ws.mu.
func (ws *wideShard) dropEnded(now int64) {
	for len(ws.byEnd) > 0 && ws.byEnd[0].until <= now {
		w := heap.Pop(&ws.byEnd).(*wideEntry)
		w.banned = false
		if w.seen > now {
			w.slot = len(ws.plain)
			ws.plain = append(ws.plain, w)
		} else {
			delete(ws.m, w.key)
		}
	}
}

// wideKey is the wider network holding client a, by its first address (the caller checked
// that escalation is on and a is IPv6).
func wideKey(a netip.Addr, set *resolvedSettings) netip.Addr {
	return netip.PrefixFrom(a, set.escBits).Masked().Addr()
}

func (d *Detector) wideShard(k netip.Addr) *wideShard {
	b := k.As16()
	return &d.wide[maphash.Bytes(d.seed, b[:])&(wideShards-1)]
}

// escalates reports whether escalation applies to client a under set.
func (set *resolvedSettings) escalates(a netip.Addr) bool {
	return set.escBits > 0 && a.Is6()
}

// wideActive reports whether client a lies in a wider network detected at now (not a shadow
// detection). The caller checked set.escalates(a).
func (d *Detector) wideActive(a netip.Addr, set *resolvedSettings, now int64) bool {
	if now >= d.wideHorizon.Load() {
		return false
	}
	k := wideKey(a, set)
	ws := d.wideShard(k)
	ws.mu.Lock()
	w := ws.m[k]
	active := w != nil && int(w.bits) == set.escBits && !w.shadow && w.until > now
	ws.mu.Unlock()
	return active
}

// escalate counts the detection of client a (ending at until) in its wider network, and
// detects the network when it holds EscalateCount detected clients. It returns that detection.
// The caller holds a's shard lock (shard before wide shard: the one lock order).
func (d *Detector) escalate(a netip.Addr, sig Signal, score float64, until int64, set *resolvedSettings, now int64) (Detection, bool) {
	k := wideKey(a, set)
	ws := d.wideShard(k)
	ws.mu.Lock()
	defer ws.mu.Unlock()
	w := ws.entry(d, k, set, now)
	if w.seen <= now {
		w.n = 0 // every detection counted has ended
	}
	w.seen = max(w.seen, until)
	b := a.As16()
	sum := maphash.Bytes(d.seed, b[:])
	h := uint16(sum>>48) ^ uint16(sum)
	counted := false
	for _, c := range w.clients[:w.n] {
		counted = counted || c == h
	}
	if !counted && int(w.n) < len(w.clients) {
		w.clients[w.n] = h
		w.n++
	}
	if int(w.n) < set.escCount || (w.until > now && (!w.shadow || set.shadow)) {
		return Detection{}, false
	}
	end := time.Unix(0, now).Add(set.banFor)
	w.until, w.signal, w.shadow = end.UnixNano(), sig, set.shadow
	ws.setBanned(w)
	if !set.shadow {
		extendHorizon(&d.wideHorizon, w.until)
	}
	return Detection{Addr: k, Bits: set.escBits, Score: score, Signal: sig, Until: end, Shadow: set.shadow}, true
}

// crowd is how many detected clients share client a's wider network, as eviction weighs them:
// 1 for a client alone in it (or IPv4, or escalation off), and the most of all for a client
// whose wider network is detected (its own detection adds nothing). The caller holds a's shard
// lock.
func (d *Detector) crowd(a netip.Addr, set *resolvedSettings, now int64) int {
	if !set.escalates(a) {
		return 1
	}
	k := wideKey(a, set)
	ws := d.wideShard(k)
	ws.mu.Lock()
	defer ws.mu.Unlock()
	w := ws.m[k]
	switch {
	case w == nil || int(w.bits) != set.escBits || w.seen <= now && w.until <= now:
		return 1
	case w.until > now && !w.shadow:
		return math.MaxInt
	}
	return max(1, int(w.n))
}

// wideLimit is a wide shard's share: MaxTracked / wideShare over the wide shards, at least
// minWideShardTracked.
func wideLimit(set *resolvedSettings) int {
	return max(minWideShardTracked, set.maxTracked/wideShare/wideShards)
}

// entry is the network k's entry, made (evicting first when the shard is full) when it has
// none, or afresh when it was counted under other settings' bits. The caller holds ws.mu.
func (ws *wideShard) entry(d *Detector, k netip.Addr, set *resolvedSettings, now int64) *wideEntry {
	w := ws.m[k]
	if w != nil && int(w.bits) == set.escBits {
		return w
	}
	if w != nil {
		ws.remove(w)
	}
	ws.dropEnded(now)
	for len(ws.m) >= wideLimit(set) {
		ws.evictOne(d, set, now)
	}
	w = &wideEntry{bits: uint8(set.escBits)}
	ws.add(k, w)
	return w
}

// evictOne drops, among a sample of the counts, the one with the fewest detected clients
// still counted; when every entry is a detection, the one that ends first, counted in
// BansEvicted and reported as the ban table's evictions are. The caller holds ws.mu, after
// dropEnded.
func (ws *wideShard) evictOne(d *Detector, set *resolvedSettings, now int64) {
	if len(ws.plain) == 0 {
		w := ws.byEnd[0]
		ws.remove(w)
		if w.until > now {
			d.bansEvicted.Add(1)
			if f := d.onBanEvicted.Load(); f != nil {
				(*f)(Detection{Addr: w.key, Bits: int(w.bits), Signal: w.signal, Until: time.Unix(0, w.until), Shadow: w.shadow || set.shadow})
			}
		}
		return
	}
	var victim *wideEntry
	var victimKey int
	for range min(evictSample, len(ws.plain)) {
		w := ws.plain[rand.IntN(len(ws.plain))]
		key := int(w.n)
		if w.seen <= now {
			key = 0
		}
		if victim == nil || key < victimKey {
			victim, victimKey = w, key
		}
	}
	ws.remove(victim)
}

// BanNetwork makes the wider network p (of the settings' IPv6Escalate bits, as escalations
// name it) suspicious until the given time, at most MaxBanFor from now: a detection another
// instance escalated, or an operator's ban. It reports false, and does nothing, for a prefix
// of another length, or with escalation off. It returns the ban's end, as Ban does.
func (d *Detector) BanNetwork(p netip.Prefix, until time.Time, sig Signal) (time.Time, bool) {
	set := d.settings.Load()
	if !set.escalates(p.Addr()) || p.Bits() != set.escBits || p.Addr().Is4In6() {
		return until, false
	}
	now := d.now()
	if until.Sub(now) > MaxBanFor {
		until = now.Add(MaxBanFor)
	}
	ns, u := now.UnixNano(), until.UnixNano()
	if u <= ns {
		return until, true
	}
	k := p.Masked().Addr()
	ws := d.wideShard(k)
	ws.mu.Lock()
	w := ws.entry(d, k, set, ns)
	if later, raised := raiseBan(&w.until, &w.signal, &w.shadow, u, sig); !raised {
		until = time.Unix(0, later)
	} else {
		ws.setBanned(w)
	}
	ws.mu.Unlock()
	extendHorizon(&d.wideHorizon, u)
	extendHorizon(&d.banHorizon, u) // Suspicious looks nowhere past it
	return until, true
}

// UnbanNetwork forgets the wider network p's detection and its count of detected clients. It
// reports whether p was an active detection.
func (d *Detector) UnbanNetwork(p netip.Prefix) bool {
	set := d.settings.Load()
	if !set.escalates(p.Addr()) || p.Bits() != set.escBits {
		return false
	}
	k := p.Masked().Addr()
	ws := d.wideShard(k)
	ws.mu.Lock()
	defer ws.mu.Unlock()
	w := ws.m[k]
	if w == nil {
		return false
	}
	ws.remove(w)
	return !w.shadow && w.until > d.now().UnixNano()
}

// EscalatePrefix is how many leading bits name the wider IPv6 networks that escalation
// detects as a whole; 0 when escalation is off.
func (d *Detector) EscalatePrefix() int { return d.settings.Load().escBits }

// eachWide runs f on every wider network's entry of the current length, each shard under its
// lock.
func (d *Detector) eachWide(f func(k netip.Addr, w *wideEntry)) {
	bits := d.settings.Load().escBits
	for i := range d.wide {
		ws := &d.wide[i]
		ws.mu.Lock()
		for k, w := range ws.m {
			if int(w.bits) == bits {
				f(k, w)
			}
		}
		ws.mu.Unlock()
	}
}

// clearWide forgets every wider network's entry (their length changed).
func (d *Detector) clearWide() {
	for i := range d.wide {
		ws := &d.wide[i]
		ws.mu.Lock()
		clear(ws.m)
		clear(ws.byEnd)
		clear(ws.plain)
		ws.byEnd, ws.plain = ws.byEnd[:0], ws.plain[:0]
		ws.mu.Unlock()
	}
}
