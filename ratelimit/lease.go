package ratelimit

import (
	"context"
	"math"
	"time"
)

const (
	// leaseDivisor sets the lease size: a hundredth of the burst. Below a burst of 200 a lease
	// would hold one request, so such keys are decided one request at a time.
	leaseDivisor = 100

	// maxLeaseWaits is how many refills one request waits for before it asks the inner store
	// itself: under a limit nearly spent, refills bring little and others may take it first.
	maxLeaseWaits = 3

	// maxLeaseLife is how long leased requests may wait to be used, unless the bucket in Redis
	// still counts them then (see settle). It bounds how far a leased request can move from the
	// moment Redis counted it.
	maxLeaseLife = time.Second
)

// LeasingStore lets an instance take, for a key with a large burst, a hundredth of the burst
// from a Reserver (Redis) in one decision, and admit those requests locally: a busy key (an
// API client allowed thousands of requests a second) then costs one round trip per lease, not
// one per request.
//
// Leasing never admits more than the limit: a leased request is counted in Redis when it is
// granted, before it is used, so the requests admitted by every instance from the start are
// at most what GCRA allows. What moves is when a request counts: a leased request is used up
// to a second after Redis counted it, so within one window the instances may admit up to one
// lease each (1 % of the burst) more than the rate, and a lease that expires unused (after a
// second, or when its key's limit changes) is lost: that key admits up to 1 % less. A lease
// whose requests the bucket in Redis still counts after its second (a slow key) is kept while
// it does: using those is exact, and the key loses nothing. Keys with
// a burst under 200 are never leased, so ordinary per-client limits stay exact per request.
//
// At most MaxEntries leases are kept; when a shard is full, expired leases go first, else the
// one expiring soonest (its remaining requests are lost).
type LeasingStore struct {
	inner  Reserver
	now    func() int64
	leases *expiringMap[lease]
}

// lease is requests granted to this instance and not used yet, for one limit of one key.
type lease struct {
	left      int64 // requests left
	remaining int64 // the bucket's remaining in Redis when granted
	expires   int64 // unix nanoseconds
	resetAt   int64 // when the bucket was full again, as of the grant
	limit     Limit

	// refill is open while one request asks the inner store for the next lease; the key's
	// other requests wait for it rather than each asking Redis.
	refill chan struct{}
	// refused is the inner store's last refusal, valid until deniedUntil: the key's requests
	// take it rather than ask again, until a lease arrives (a refill another request had sent
	// before the refusal may still bring one).
	refused     Result
	deniedUntil int64
}

// NewLeasingStore wraps inner.
func NewLeasingStore(inner Reserver, opts CacheOptions) *LeasingStore {
	opts = opts.withDefaults()
	return &LeasingStore{inner: inner, now: opts.Now, leases: newExpiringMap(opts.MaxEntries, func(ls lease) int64 {
		if ls.refill != nil {
			return math.MaxInt64 // a request is asking: keep the entry its waiters look for
		}
		return max(ls.expires, ls.deniedUntil)
	})}
}

// Allow admits from the key's lease when it holds one for this limit, else asks the inner
// store, for a new lease when the burst is large enough. While one request asks, the key's
// other requests wait for its answer (at most their context's deadline).
func (s *LeasingStore) Allow(ctx context.Context, policy, key string, l Limit) (Result, error) {
	want := l.Burst / leaseDivisor
	if want < 2 {
		return s.inner.Allow(ctx, policy, key, l)
	}
	h, sh := s.leases.shard(policy, key)
	for waits := 0; ; waits++ {
		now := s.now()
		sh.mu.Lock()
		ls, ok := sh.entries[h]
		ok = ok && ls.limit == l
		switch {
		case ok && now < ls.expires && ls.left > 0:
			ls.left--
			sh.entries[h] = ls
			sh.mu.Unlock()
			// The time to the next unit is the bucket's in Redis as of the grant. Once Redis has
			// had its units back (a fast key, within the lease's second) it is full: say what
			// memory says after admitting from a full bucket, one interval, rather than 0 ("more
			// quota now") beside an r that has not grown since the grant.
			reset := ls.resetAt - now
			if reset <= 0 {
				reset = int64(l.Interval())
			}
			return Result{Allowed: true, Remaining: ls.remaining + ls.left, ResetAfter: time.Duration(reset)}, nil
		case ok && now < ls.deniedUntil:
			sh.mu.Unlock()
			refused := ls.refused
			refused.RetryAfter = time.Duration(ls.deniedUntil - now)
			return refused, nil
		case ok && ls.refill != nil && waits < maxLeaseWaits:
			refill := ls.refill
			sh.mu.Unlock()
			select {
			case <-refill:
				continue
			case <-ctx.Done():
				return Result{RetryAfter: l.Interval(), ResetAfter: l.Interval(), Abandoned: true}, nil
			}
		}
		// This request asks for the next lease; the others wait for it.
		refill := make(chan struct{})
		if !ok {
			ls = lease{limit: l}
		}
		ls.left, ls.refill = 0, refill
		sh.put(h, ls, now)
		sh.mu.Unlock()
		res, granted, err := s.inner.AllowN(ctx, policy, key, l, want)
		settled, settleErr := granted, err
		if ctx.Err() != nil { // the answer to a caller that left is no refusal for the others
			settled, settleErr = 0, ctx.Err()
		}
		s.settle(h, sh, l, now, res, settled, settleErr)
		close(refill)
		if settled > 0 {
			res.Remaining += settled - 1
		}
		return res, err
	}
}

// settle records the answer of a refill: a new lease, or a refusal the waiting requests take.
// Requests left from a lease another refill brought meanwhile are kept, expiring as they would
// have.
func (s *LeasingStore) settle(h uint64, sh *expiringShard[lease], l Limit, asked int64, res Result, granted int64, err error) {
	ls := lease{limit: l}
	switch {
	case err == nil && granted > 1:
		ls.left, ls.remaining = granted-1, res.Remaining
		ls.expires = asked + int64(min(maxLeaseLife, l.Period))
		ls.resetAt = asked + int64(res.ResetAfter)
		// The leased requests hold the last left*interval of the bucket's time in Redis
		// (resetAt is at or before its TAT). While that time is still ahead, Redis still counts
		// them: using one then is a request GCRA admits (its share is still in the bucket), so
		// they stay usable past the second. A slow key (1000/1h, a unit every 3.6 s) lost its
		// lease's requests after a second: a client told r=5 that waited got a 429, and the key
		// admitted 995 of its 1000. A lease the fallback (memory) granted keeps the second.
		if held := ls.resetAt - ls.left*int64(l.Interval()); !res.Local && held > ls.expires {
			ls.expires = held
		}
	case err == nil && granted == 0 && !res.Local && !res.Unmetered: // the store's own refusal
		ls.refused, ls.deniedUntil = res, asked+int64(res.RetryAfter)
	}
	sh.mu.Lock()
	if prev, ok := sh.entries[h]; ok && prev.limit == l && prev.left > 0 && asked < prev.expires {
		// The kept requests expire when they would have; with a new lease beside them, all
		// expire at the sooner of the two times. A refill that brought no lease (a refusal, one
		// request, an error) has no expiry of its own to take: taking its ask time (already
		// past) instead expired the kept requests at once, and the next request threw them away.
		if ls.left > 0 {
			ls.expires = min(prev.expires, ls.expires)
		} else {
			ls.expires = prev.expires
		}
		ls.left += prev.left
		ls.remaining = res.Remaining
		ls.resetAt = max(prev.resetAt, ls.resetAt)
		ls.refused, ls.deniedUntil = Result{}, 0
	}
	sh.put(h, ls, asked)
	sh.mu.Unlock()
}

// Len is the number of keys holding a lease (used up or not).
func (s *LeasingStore) Len() int { return s.leases.len() }
