package ratelimit

import (
	"context"
	"encoding/binary"
	"hash/maphash"
	"math"
	"sync"
	"time"
)

const (
	// defaultMaxKeys is MemoryOptions.MaxKeys when left at zero: 5 to 13 MB of TATs.
	defaultMaxKeys = 200_000

	// maxShards is how many independently locked maps a store spreads its keys over, so
	// concurrent requests for different keys rarely wait for one another.
	maxShards = 128

	// evictionSample is how many entries of a full shard are examined to make room for a
	// new key: every expired one among them is dropped, else the one with the oldest TAT.
	evictionSample = 8

	// cleanupSample is how many entries are examined, and dropped when expired, on every
	// insertion into a shard that is not full, so the store shrinks when traffic moves on
	// to other keys without any background sweep.
	cleanupSample = 2

	// shrinkMinHighWater is the shard size below which a shard's map is never rebuilt:
	// a small map is not worth an allocation.
	shrinkMinHighWater = 64
)

// MemoryOptions configures a MemoryStore.
type MemoryOptions struct {
	// MaxKeys bounds how many (policy, key) pairs the store tracks at once, so a flood of
	// distinct keys costs bounded memory: 25 to 40 bytes per key, up to about 65 once a
	// flood has churned the maps. Shards fill unevenly, so eviction starts slightly before
	// MaxKeys keys are tracked. 0 or less means 200000.
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
// strings: a key costs the same few bytes whatever its length, and a client cannot choose
// keys that collide, since it cannot know the seed. Two distinct keys share a bucket only
// by chance: with n keys tracked, a new key collides with probability n / 2^64.
//
// The store holds at most MaxKeys keys. A TAT at or before now is a full bucket, which is
// exactly what a key never seen gets, so expired keys are dropped whenever they are met.
// When a new key arrives at a full shard, the store examines a few of the shard's entries
// (Go map iteration starts at a random place) and drops every expired one among them; if
// none had expired it evicts the one with the oldest TAT, as Redis approximates LRU. An
// evicted key starts again with a full bucket: that is why eviction prefers expired keys,
// which lose nothing, and then the oldest TATs, which are closest to full and lose the
// least; a client that is being limited has a TAT far ahead and is evicted last, so a
// flood of fresh keys does not easily reset it. Every insertion also examines a couple of
// entries and drops the expired ones, and a shard whose map has shrunk to a quarter of
// its peak is rebuilt, so memory follows traffic without a sweep or a goroutine.
type MemoryStore struct {
	seed       maphash.Seed
	now        func() int64
	shardShift uint // a key's shard is its hash >> shardShift
	shards     []memoryShard
}

// memoryShard is one independently locked part of a MemoryStore.
type memoryShard struct {
	mu sync.Mutex
	// tats maps the hash of (policy, key) to the key's TAT in nanoseconds.
	tats map[uint64]int64
	// maxKeys is this shard's share of MemoryOptions.MaxKeys (at least 1).
	maxKeys int
	// highWater is the most keys tats has held since it was last allocated: Go maps never
	// release memory on delete, so this estimates what the map occupies.
	highWater int
	// The padding keeps two shards' mutexes off one cache line (and the adjacent line the
	// CPU prefetches with it), so cores deciding on different shards do not contend.
	_ [128 - 32]byte
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
	// Fewer shards than keys would leave some shard unable to hold any key; a power of two
	// lets the top bits of the hash pick the shard.
	shardCount, shardShift := maxShards, uint(64-7)
	for shardCount > maxKeys {
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
		sh.tats = make(map[uint64]int64)
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
	tat, tracked := sh.tats[h]
	res, newTAT := Decide(tat, now, l)
	// A denied decision leaves the TAT as it is; a key never seen is always admitted
	// (Burst >= 1), so a denial never needs an insertion.
	if res.Allowed {
		if tracked {
			sh.tats[h] = newTAT
		} else {
			sh.insert(h, newTAT, now)
		}
	}
	sh.mu.Unlock()
	return res, nil
}

// Forget drops the state of key under policy: its next request finds a full bucket.
func (s *MemoryStore) Forget(policy, key string) {
	h := s.hash(policy, key)
	sh := &s.shards[h>>s.shardShift]
	sh.mu.Lock()
	delete(sh.tats, h)
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
		n += len(sh.tats)
		sh.mu.Unlock()
	}
	return n
}

// hash returns the 64-bit hash of (policy, key) under the store's seed. The policy's length
// comes first so that no two distinct pairs are the same byte string, whatever bytes the
// policy name holds.
func (s *MemoryStore) hash(policy, key string) uint64 { return keyHash(s.seed, policy, key) }

// keyHash is the seeded 64-bit hash of (policy, key) that in-memory maps are keyed by. The
// policy's length goes first, so ("logi", "nalice") and ("login", "alice") differ.
func keyHash(seed maphash.Seed, policy, key string) uint64 {
	var h maphash.Hash
	h.SetSeed(seed)
	var policyLen [8]byte
	binary.LittleEndian.PutUint64(policyLen[:], uint64(len(policy)))
	h.Write(policyLen[:])
	h.WriteString(policy)
	h.WriteString(key)
	return h.Sum64()
}

// insert adds h, a key the shard does not hold, with TAT tat. It first examines a few
// entries and drops the expired ones (TAT <= now); when the shard is full and none of them
// had expired, it evicts the examined entry with the oldest TAT. sh.mu must be held.
func (sh *memoryShard) insert(h uint64, tat, now int64) {
	full := len(sh.tats) >= sh.maxKeys
	sample := cleanupSample
	if full {
		sample = evictionSample
	}
	examined, dropped := 0, false
	oldestKey, oldestTAT := uint64(0), int64(math.MaxInt64)
	for k, t := range sh.tats {
		if t <= now {
			delete(sh.tats, k)
			dropped = true
		} else if t < oldestTAT {
			oldestKey, oldestTAT = k, t
		}
		if examined++; examined == sample {
			break
		}
	}
	if full && !dropped {
		delete(sh.tats, oldestKey)
	}
	if dropped {
		sh.shrinkIfSparse()
	}
	sh.tats[h] = tat
	sh.highWater = max(sh.highWater, len(sh.tats))
}

// shrinkIfSparse moves the shard's keys to a new map once they fill a quarter of the
// shard's peak, since a Go map keeps the memory of deleted entries. The copy costs O(keys
// left), paid for by the three times as many deletions that came before it. sh.mu must be
// held.
func (sh *memoryShard) shrinkIfSparse() {
	if sh.highWater < shrinkMinHighWater || len(sh.tats) > sh.highWater/4 {
		return
	}
	tats := make(map[uint64]int64, len(sh.tats))
	for k, t := range sh.tats {
		tats[k] = t
	}
	sh.tats = tats
	sh.highWater = len(tats)
}
