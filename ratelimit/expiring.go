package ratelimit

import (
	"hash/maphash"
	"sync"
	"time"
)

// CacheOptions configures the per-instance caches in front of a remote store: DenialCache and
// LeasingStore.
type CacheOptions struct {
	// MaxEntries bounds the keys the cache holds. Default: 65536 (a few MB at most).
	MaxEntries int
	// Now returns the time in nanoseconds; tests inject a clock. Default: time.Now.
	Now func() int64
}

func (o CacheOptions) withDefaults() CacheOptions {
	if o.MaxEntries <= 0 {
		o.MaxEntries = 65536
	}
	if o.Now == nil {
		o.Now = func() int64 { return time.Now().UnixNano() }
	}
	return o
}

// expiringShards spreads an expiringMap over independently locked maps.
const expiringShards = 64

// expiringMap is a sharded map, keyed by keyHash, of values that expire, holding at most a
// fixed number of them: when a shard is full, the expired values among a few examined (map
// iteration starts at a random place) go first, else the one expiring soonest among them. The
// denial cache and the leases use it.
type expiringMap[V any] struct {
	seed   maphash.Seed
	shards [expiringShards]expiringShard[V]
}

type expiringShard[V any] struct {
	mu      sync.Mutex
	entries map[uint64]V
	max     int
	expiry  func(V) int64 // unix nanoseconds after which the value is useless
}

func newExpiringMap[V any](maxEntries int, expiry func(V) int64) *expiringMap[V] {
	m := &expiringMap[V]{seed: maphash.MakeSeed()}
	for i := range m.shards {
		m.shards[i] = expiringShard[V]{entries: make(map[uint64]V), max: max(1, maxEntries/expiringShards), expiry: expiry}
	}
	return m
}

// shard returns the hash of (policy, key) and the shard holding it; callers lock sh.mu.
func (m *expiringMap[V]) shard(policy, key string) (uint64, *expiringShard[V]) {
	h := keyHash(m.seed, policy, key)
	return h, &m.shards[h%expiringShards]
}

// put stores v under h, making room first when the shard is full. sh.mu must be held.
func (sh *expiringShard[V]) put(h uint64, v V, now int64) {
	if _, present := sh.entries[h]; !present && len(sh.entries) >= sh.max {
		var victim uint64
		soonest, seen, dropped := int64(0), 0, false
		for k, e := range sh.entries {
			if exp := sh.expiry(e); exp <= now {
				delete(sh.entries, k)
				dropped = true
			} else if seen == 0 || exp < soonest {
				victim, soonest = k, exp
			}
			if seen++; seen == 8 {
				break
			}
		}
		if !dropped {
			delete(sh.entries, victim)
		}
	}
	sh.entries[h] = v
}

// len counts the values held.
func (m *expiringMap[V]) len() int {
	n := 0
	for i := range m.shards {
		sh := &m.shards[i]
		sh.mu.Lock()
		n += len(sh.entries)
		sh.mu.Unlock()
	}
	return n
}
