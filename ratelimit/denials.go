package ratelimit

import (
	"context"
	"time"
)

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
	inner   Store
	now     func() int64
	denials *expiringMap[denial]
}

// denial is a cached refusal: until when, and under which limit.
type denial struct {
	until int64 // unix nanoseconds
	limit Limit
}

// NewDenialCache wraps inner.
func NewDenialCache(inner Store, opts CacheOptions) *DenialCache {
	opts = opts.withDefaults()
	return &DenialCache{inner: inner, now: opts.Now,
		denials: newExpiringMap(opts.MaxEntries, func(d denial) int64 { return d.until })}
}

// Allow answers a cached refusal locally, and asks the wrapped store otherwise.
func (c *DenialCache) Allow(ctx context.Context, policy, key string, l Limit) (Result, error) {
	res, _, err := c.decide(ctx, policy, key, l, func() (Result, int64, error) {
		res, err := c.inner.Allow(ctx, policy, key, l)
		return res, 0, err
	})
	return res, err
}

// AllowN is Allow for up to n requests (a lease, see LeasingStore): a cached refusal grants
// none. A wrapped store that is no Reserver is asked for one request.
func (c *DenialCache) AllowN(ctx context.Context, policy, key string, l Limit, n int64) (Result, int64, error) {
	return c.decide(ctx, policy, key, l, func() (Result, int64, error) {
		if r, ok := c.inner.(Reserver); ok {
			return r.AllowN(ctx, policy, key, l, n)
		}
		res, err := c.inner.Allow(ctx, policy, key, l)
		if err != nil || !res.Allowed {
			return res, 0, err
		}
		return res, 1, nil
	})
}

// decide answers a cached refusal, or asks the wrapped store with ask and remembers what it
// refused.
func (c *DenialCache) decide(ctx context.Context, policy, key string, l Limit, ask func() (Result, int64, error)) (Result, int64, error) {
	h, sh := c.denials.shard(policy, key)
	start := c.now()
	sh.mu.Lock()
	d, ok := sh.entries[h]
	sh.mu.Unlock()
	if ok && d.limit == l && start < d.until {
		wait := time.Duration(d.until - start)
		return Result{RetryAfter: wait, ResetAfter: wait + time.Duration(l.Burst-1)*l.Interval()}, 0, nil
	}
	res, granted, err := ask()
	// A refusal made because the caller left (its context ended) says nothing about the key,
	// and one made without the store (Redis failing) says nothing about the store's bucket.
	if err != nil || res.Allowed || res.RetryAfter <= 0 || ctx.Err() != nil || res.Local || res.Unmetered {
		if ok {
			sh.mu.Lock()
			delete(sh.entries, h)
			sh.mu.Unlock()
		}
		return res, granted, err
	}
	sh.mu.Lock()
	sh.put(h, denial{until: start + int64(res.RetryAfter), limit: l}, start)
	sh.mu.Unlock()
	return res, 0, nil
}

// NewCachedStore puts the per-instance caches in front of a remote store (Redis): refusals
// answered locally until their retry time (DenialCache) and, with leases, keys with a large
// burst served from leases (LeasingStore) in front of that. The leases come first: a refusal
// Redis gave one request of a leased key, while another request of it was taking the burst's
// last lease, says nothing about the requests that lease holds (with the refusals first, the
// key was refused until its retry time while the instance held leased requests).
func NewCachedStore(remote Reserver, leases bool, opts CacheOptions) Store {
	denials := NewDenialCache(remote, opts)
	if !leases {
		return denials
	}
	return NewLeasingStore(denials, opts)
}

// Interface guard.
var _ Reserver = (*DenialCache)(nil)

// Len is the number of refusals remembered.
func (c *DenialCache) Len() int { return c.denials.len() }
