package ratelimit

import (
	"context"
	"hash/maphash"
	"sync"
	"time"
	"unsafe"
)

const (
	// defaultMaxKeys is MemoryOptions.MaxKeys when left at zero: at most 12.8 MB of slots.
	defaultMaxKeys = 200_000

	// maxShards is how many independently locked tables a store spreads its keys over, so
	// concurrent requests for different keys rarely wait for one another.
	maxShards = 128

	// minShardKeys is the least share of MaxKeys a shard gets (unless MaxKeys is smaller): keys
	// fall into shards unevenly, and a shard of a few keys would fill, and evict, long before
	// the store holds MaxKeys. With 1024 or more, a store at 90 % of MaxKeys evicts nothing.
	minShardKeys = 1024

	// ways is how many slots a set holds: 8 slots of 16 bytes, two adjacent cache lines.
	ways = 8

	// A shard's table doubles when more than half its slots are in use, or when a key finds
	// both sets it may live in full, up to four slots per key of its share; it is rebuilt a
	// quarter full once fewer than an eighth of its slots are in use, so memory follows traffic.
	growAbove, shrinkBelow, maxSlotsPerKey = 2, 8, 4
)

// MemoryOptions configures a MemoryStore.
type MemoryOptions struct {
	// MaxKeys bounds how many (policy, key) pairs the store tracks at once, so a flood of
	// distinct keys costs bounded memory: 16 bytes a slot, two to eight slots a key, at most 64
	// bytes per key of MaxKeys. 0 or less means 200000.
	MaxKeys int

	// Now returns the current time in nanoseconds. Tests inject a fake clock; nil means a
	// monotonic clock on the Unix epoch scale, so a step of the wall clock (NTP, a VM
	// resume) neither resets nor freezes buckets.
	Now func() int64
}

// MemoryStore is a Store that keeps one theoretical arrival time (TAT) per (policy, key) in
// this process. It never returns an error. Decisions are exact under concurrency: each
// shard's mutex serializes the decisions on the keys it holds.
//
// Keys are held as a 64-bit hash of (policy, key) under a random per-store seed, never as
// strings: a key costs the same 16 bytes whatever its length, and a client cannot choose
// keys that collide or that crowd one set, since it cannot know the seed. Two distinct keys
// share a bucket only by chance: with n keys tracked, a new key collides with probability
// n / 2^64.
//
// Each shard is a set-associative table: the hash names a set of 8 slots (two adjacent cache
// lines), and the key lives there or, when that set is full, in the next one. A TAT at or
// before now is a full bucket, which is exactly what a key never seen gets, so an insertion
// drops every expired key it meets in the two sets. The store holds at most MaxKeys keys. A
// new key that finds its shard full and nothing expired in its two sets evicts the oldest TAT
// among their 16 slots, as Redis approximates LRU from a sample. An evicted key starts again
// with a full bucket: that is why eviction prefers expired keys, which lose nothing, and then
// the oldest TATs, which are closest to full and lose the least; a client that is being
// limited has a TAT far ahead and is evicted last, so a flood of fresh keys does not easily
// reset it. A table grows before a key's two sets are full, so
// below MaxKeys nothing live is evicted (a table at its largest, a quarter full, would need
// 16 keys in two sets that average 4: about one chance in a million per pair). Tables shrink
// when their keys expire, so memory follows traffic without a sweep or a goroutine. A
// decision reads one set, or two when its key overflowed; an insertion the two; none
// allocates except a resize, which moves the shard's keys in O(keys).
type MemoryStore struct {
	seed       maphash.Seed
	now        func() int64
	shardShift uint // a key's shard is its hash >> shardShift
	shards     []memoryShard
}

// slot is one tracked key: the hash of (policy, key), never 0, and its TAT in nanoseconds. A
// zero hash marks a free slot.
type slot struct {
	h   uint64
	tat int64
}

// shardTable is one independently locked part of a MemoryStore.
type shardTable struct {
	mu sync.Mutex
	// slots holds sets*ways slots; set i is slots[i*ways : (i+1)*ways].
	slots []slot
	sets  uint64
	// maxSets is the size the table stops growing at: maxSlotsPerKey slots per key of maxKeys.
	maxSets uint64
	// count is how many slots hold a key, expired ones not yet dropped included.
	count int
	// maxKeys is this shard's share of MemoryOptions.MaxKeys (at least 1).
	maxKeys int
}

// memoryShard pads a shardTable to two cache lines (and the adjacent line the CPU prefetches
// with one), so cores deciding on different shards do not contend.
type memoryShard struct {
	shardTable
	_ [128 - unsafe.Sizeof(shardTable{})%128]byte
}

// NewMemoryStore returns an empty store configured by opts.
func NewMemoryStore(opts MemoryOptions) *MemoryStore {
	maxKeys := opts.MaxKeys
	if maxKeys <= 0 {
		maxKeys = defaultMaxKeys
	}
	now := opts.Now
	if now == nil {
		now = monotonicNow()
	}
	// A power of two lets the top bits of the hash pick the shard.
	shardCount, shardShift := maxShards, uint(64-7)
	for shardCount > 1 && shardCount*minShardKeys > maxKeys {
		shardCount /= 2
		shardShift++
	}
	s := &MemoryStore{
		seed:       maphash.MakeSeed(),
		now:        now,
		shardShift: shardShift,
		shards:     make([]memoryShard, shardCount),
	}
	// The remainder goes one key each to the first shards, so the shares sum to maxKeys
	// exactly.
	for i := range s.shards {
		sh := &s.shards[i]
		sh.maxKeys = maxKeys / shardCount
		if i < maxKeys%shardCount {
			sh.maxKeys++
		}
		sh.maxSets = setsFor(sh.maxKeys)
		sh.resize(1)
	}
	return s
}

// monotonicNow returns a clock that reads the monotonic clock and reports it on the Unix
// epoch scale of the moment it was made.
func monotonicNow() func() int64 {
	start := time.Now()
	base := start.UnixNano()
	return func() int64 { return base + int64(time.Since(start)) }
}

// Allow decides one request for key under policy at the store's current time. l must be
// valid (Limit.Validate): like Decide, Allow divides by l.Rate. The error is always nil.
func (s *MemoryStore) Allow(_ context.Context, policy, key string, l Limit) (Result, error) {
	h := s.hash(policy, key)
	// The clock is read outside the lock: a decision that waited for the lock is taken at
	// its arrival time, which Decide handles like any time before the key's TAT.
	now := s.now()
	sh := &s.shards[h>>s.shardShift]
	sh.mu.Lock()
	set, i := sh.lookup(h)
	var tat int64
	if i >= 0 {
		tat = set[i].tat
	}
	res, newTAT := Decide(tat, now, l)
	// A denied decision leaves the TAT as it is, unless it was beyond what l reaches (Decide
	// drained it to l); a key never seen is always admitted (Burst >= 1), so a denial never
	// needs an insertion.
	if res.Allowed || (i >= 0 && newTAT != tat) {
		if i >= 0 {
			set[i].tat = newTAT
		} else {
			sh.insert(h, newTAT, now)
		}
	}
	sh.mu.Unlock()
	return res, nil
}

// Mirror sets key's bucket under policy to a state another store decided: full again after
// resetAfter. A FailoverStore keeps its fallback a copy of the buckets Redis decides this way,
// so a switch to memory goes on from the shared state; from full buckets, every instance
// would admit a whole burst of each key again during a stall of a fraction of a second.
func (s *MemoryStore) Mirror(policy, key string, resetAfter time.Duration) {
	h := s.hash(policy, key)
	now := s.now()
	sh := &s.shards[h>>s.shardShift]
	sh.mu.Lock()
	set, i := sh.lookup(h)
	switch {
	case i >= 0:
		set[i].tat = now + int64(resetAfter)
	case resetAfter > 0: // a full bucket needs no slot
		sh.insert(h, now+int64(resetAfter), now)
	}
	sh.mu.Unlock()
}

// Forget drops the state of key under policy: its next request finds a full bucket.
func (s *MemoryStore) Forget(policy, key string) {
	h := s.hash(policy, key)
	sh := &s.shards[h>>s.shardShift]
	sh.mu.Lock()
	if set, i := sh.lookup(h); i >= 0 {
		set[i] = slot{}
		sh.count--
	}
	sh.mu.Unlock()
}

// Len returns how many keys the store tracks, expired ones not yet dropped included. It
// locks one shard at a time, so under concurrent use it is a close estimate, never more
// than MaxKeys.
func (s *MemoryStore) Len() int {
	n := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		n += sh.count
		sh.mu.Unlock()
	}
	return n
}

// hash returns the 64-bit hash of (policy, key) under the store's seed.
func (s *MemoryStore) hash(policy, key string) uint64 { return keyHash(s.seed, policy, key) }

// keyHash is the seeded 64-bit hash of (policy, key) that in-memory tables are keyed by, never
// 0. Each part is hashed on its own, so no two distinct pairs are one byte string whatever
// bytes they hold, and the policy's hash is multiplied by an odd constant before the two are
// mixed, so (a, b) and (b, a) differ. Two one-shot hashes cost half of one streamed hash.
func keyHash(seed maphash.Seed, policy, key string) uint64 {
	if sum := maphash.String(seed, key) ^ maphash.String(seed, policy)*0x9e3779b97f4a7c15; sum != 0 {
		return sum
	}
	return 1 // 0 marks a free slot
}

// setAt returns set i of the table.
func (sh *shardTable) setAt(i uint64) []slot {
	return sh.slots[i*ways : i*ways+ways : i*ways+ways]
}

// setIndex is the first set h may live in: the low 32 bits of h scaled to the number of sets
// (the shard was chosen by the top bits). The second is the next set, wrapping.
func (sh *shardTable) setIndex(h uint64) uint64 { return uint64(uint32(h)) * sh.sets >> 32 }

// next is the set after set i, wrapping.
func (sh *shardTable) next(i uint64) uint64 {
	if i+1 == sh.sets {
		return 0
	}
	return i + 1
}

// window returns the two sets h may live in, the second nil in a table of one set.
func (sh *shardTable) window(h uint64) (first, second []slot) {
	si := sh.setIndex(h)
	if sh.sets == 1 {
		return sh.setAt(si), nil
	}
	return sh.setAt(si), sh.setAt(sh.next(si))
}

// lookup returns where h is: its set and slot, or a slot of -1.
func (sh *shardTable) lookup(h uint64) (set []slot, i int) {
	a, b := sh.window(h)
	if i = find(a, h); i >= 0 || b == nil {
		return a, i
	}
	return b, find(b, h)
}

// find returns the index of h in set, or -1.
func find(set []slot, h uint64) int {
	for i := range set {
		if set[i].h == h {
			return i
		}
	}
	return -1
}

// insert adds h, a key the shard does not hold, with TAT tat. sh.mu must be held.
func (sh *shardTable) insert(h uint64, tat, now int64) {
	for {
		a, b := sh.window(h)
		freeA, oldA := sh.sweep(a, now)
		freeB, oldB := sh.sweep(b, now) // -1, -1 for a nil b
		// The oldest live TAT of the two sets, the key's own: what a full shard evicts when
		// nothing nearby has expired.
		oldSet, old := a, oldA
		if oldB >= 0 && (old < 0 || b[oldB].tat < a[oldA].tat) {
			oldSet, old = b, oldB
		}
		target, free := a, freeA
		if free < 0 {
			target, free = b, freeB
		}
		if free < 0 { // both sets hold live keys only
			if sh.sets < sh.maxSets {
				sh.resize(2 * sh.sets)
				continue
			}
			oldSet[old] = slot{h, tat} // an eviction: count unchanged
			return
		}
		if sh.count >= sh.maxKeys {
			sh.evictNear(sh.setIndex(h), oldSet, old, now)
		}
		target[free] = slot{h, tat}
		sh.count++
		switch {
		case sh.count*growAbove > len(sh.slots) && sh.sets < sh.maxSets:
			sh.resize(2 * sh.sets)
		case sh.count*shrinkBelow < len(sh.slots) && sh.sets > 1:
			sh.resize(setsFor(sh.count))
		}
		return
	}
}

// sweep drops the expired keys of set and returns a free slot (-1 when none) and the slot of
// the oldest live TAT (-1 when none).
func (sh *shardTable) sweep(set []slot, now int64) (free, oldest int) {
	free, oldest = -1, -1
	for i := range set {
		switch {
		case set[i].h == 0:
		case set[i].tat <= now:
			set[i] = slot{}
			sh.count--
		case oldest < 0 || set[i].tat < set[oldest].tat:
			oldest = i
			continue
		default:
			continue
		}
		if free < 0 {
			free = i
		}
	}
	return free, oldest
}

// evictNear frees a slot in a full shard for a new key of set si, whose two sets hold no
// expired key: it evicts their oldest TAT (oldSet[old]), or, when they hold no key at all, the
// oldest of the first set after them that holds one (dropping its expired keys instead, if
// it has any).
func (sh *shardTable) evictNear(si uint64, oldSet []slot, old int, now int64) {
	before := sh.count
	for i, n := sh.next(si), 2; old < 0 && n < int(sh.sets); n++ {
		i = sh.next(i)
		oldSet = sh.setAt(i)
		if _, old = sh.sweep(oldSet, now); sh.count < before {
			return
		}
	}
	if old >= 0 {
		oldSet[old] = slot{}
		sh.count--
	}
}

// setsFor is the table size that holds n keys a quarter full: maxSlotsPerKey slots each.
func setsFor(n int) uint64 { return uint64(max(1, (maxSlotsPerKey*n+ways-1)/ways)) }

// resize moves the shard's keys to a table of sets sets (at most maxSets). A key whose two
// sets are full takes the slot of an older TAT or is dropped, as an eviction would.
func (sh *shardTable) resize(sets uint64) {
	old := sh.slots
	sh.sets = min(sets, sh.maxSets)
	sh.slots = make([]slot, sh.sets*ways)
	sh.count = 0
	for _, e := range old {
		if e.h != 0 {
			sh.place(e)
		}
	}
}

// place puts e into the first free slot of its two sets, or over their oldest TAT when that
// is older than e's; otherwise e is dropped.
func (sh *shardTable) place(e slot) {
	a, b := sh.window(e.h)
	var oldSet []slot
	old := -1
	for _, set := range [2][]slot{a, b} {
		for i := range set {
			if set[i].h == 0 {
				set[i] = e
				sh.count++
				return
			}
			if old < 0 || set[i].tat < oldSet[old].tat {
				oldSet, old = set, i
			}
		}
	}
	if oldSet[old].tat < e.tat {
		oldSet[old] = e
	}
}
