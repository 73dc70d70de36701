package ratelimit

import (
	"context"
	"hash/maphash"
	"sync"
	"time"
)

// denialShards spreads a DenialCache over independently locked maps.
const denialShards = 64

// DenialCache wraps a remote store (Redis) and answers locally for a key that the store
// refused, until the time the store said the next request may come. A refused client that
// keeps sending (a flood, a broken retry loop) then costs no round trip and no Redis work.
//
// It is exact, not an approximation: a key's theoretical arrival time only ever moves
// forward, whichever instance decides, so a request the store refused with RetryAfter d at
// time t cannot be admitted anywhere before t+d under the same limit. The cache counts d from
// the moment the request was sent, which is no later than the moment the store decided, so it
// expires no later than the store's own refusal would; past that, the store decides again. A
// cached refusal applies only to the same limit: a client whose class changes, or an adaptive
// factor that loosens the limit, asks the store.
//
// At most MaxEntries refusals are kept; when a shard is full, expired entries go first, else
// the one closest to expiring.
type DenialCache struct {
	inner  Store
	seed   maphash.Seed
	now    func() int64
	shards [denialShards]denialShard
}

type denialShard struct {
	mu      sync.Mutex
	entries map[uint64]denial
	max     int
}

// denial is a cached refusal: until when, and under which limit.
type denial struct {
	until int64 // unix nanoseconds
	limit Limit
}

// DenialCacheOptions configures a DenialCache.
type DenialCacheOptions struct {
	// MaxEntries bounds the refused keys remembered. Default: 65536 (about 5 MB at most).
	MaxEntries int
	// Now returns the time in nanoseconds; tests inject a clock. Default: time.Now.
	Now func() int64
}

// NewDenialCache wraps inner.
func NewDenialCache(inner Store, opts DenialCacheOptions) *DenialCache {
	if opts.MaxEntries <= 0 {
		opts.MaxEntries = 65536
	}
	if opts.Now == nil {
		opts.Now = func() int64 { return time.Now().UnixNano() }
	}
	c := &DenialCache{inner: inner, seed: maphash.MakeSeed(), now: opts.Now}
	for i := range c.shards {
		c.shards[i].entries = make(map[uint64]denial)
		c.shards[i].max = max(1, opts.MaxEntries/denialShards)
	}
	return c
}

// Allow answers a cached refusal locally, and asks the wrapped store otherwise.
func (c *DenialCache) Allow(ctx context.Context, policy, key string, l Limit) (Result, error) {
	h := keyHash(c.seed, policy, key)
	sh := &c.shards[h%denialShards]
	start := c.now()
	sh.mu.Lock()
	d, ok := sh.entries[h]
	sh.mu.Unlock()
	if ok && d.limit == l && start < d.until {
		wait := time.Duration(d.until - start)
		return Result{RetryAfter: wait, ResetAfter: wait + time.Duration(l.Burst-1)*l.Interval()}, nil
	}
	res, err := c.inner.Allow(ctx, policy, key, l)
	if err != nil || res.Allowed || res.RetryAfter <= 0 {
		if ok {
			sh.mu.Lock()
			delete(sh.entries, h)
			sh.mu.Unlock()
		}
		return res, err
	}
	sh.mu.Lock()
	if _, present := sh.entries[h]; !present && len(sh.entries) >= sh.max {
		sh.evict(start)
	}
	sh.entries[h] = denial{until: start + int64(res.RetryAfter), limit: l}
	sh.mu.Unlock()
	return res, nil
}

// evict drops the expired entries among a few (map iteration starts at a random place), or
// else the one that expires first among them.
func (sh *denialShard) evict(now int64) {
	var victim uint64
	soonest, seen, dropped := int64(0), 0, false
	for h, d := range sh.entries {
		if d.until <= now {
			delete(sh.entries, h)
			dropped = true
		} else if seen == 0 || d.until < soonest {
			victim, soonest = h, d.until
		}
		if seen++; seen == 8 {
			break
		}
	}
	if !dropped {
		delete(sh.entries, victim)
	}
}

// Len is the number of refusals remembered.
func (c *DenialCache) Len() int {
	n := 0
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		n += len(sh.entries)
		sh.mu.Unlock()
	}
	return n
}
