// Package ratelimit is the GCRA rate limiter of caddy-hardening: the algorithm, and stores
// that keep one theoretical arrival time (TAT) per key — in memory, in Redis, and a failover
// store that moves decisions from Redis to memory when Redis fails. It imports nothing of
// Caddy.
//
// GCRA (the generic cell rate algorithm) admits Burst requests at once and then one every
// Period/Rate. Each key needs one timestamp; a decision is exact and costs O(1). Every store
// decides with the same arithmetic (Decide in Go, the same steps in the Redis script).
package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"
)

// maxReplenish bounds the time a full burst takes to replenish, so TAT arithmetic never
// overflows and no key is kept longer than this.
const maxReplenish = 366 * 24 * time.Hour

// Limit is Rate requests per Period, with up to Burst admitted at once.
type Limit struct {
	// Rate is how many requests Period admits once the burst is spent.
	Rate int64
	// Period is the window Rate is counted in.
	Period time.Duration
	// Burst is how many requests are admitted back to back from a full bucket (>= 1).
	Burst int64
}

// Interval is the emission interval: the time one request's share takes to replenish.
func (l Limit) Interval() time.Duration { return l.Period / time.Duration(l.Rate) }

// MaxBurst is the largest burst of l's rate that replenishes within 366 days, the bound
// Validate holds it to (0 for a rate slower than that). The Caddyfile parser names it when a
// burst does not even fit an int64.
func (l Limit) MaxBurst() int64 {
	if l.Rate <= 0 || l.Period <= 0 || l.Interval() <= 0 {
		return 0
	}
	return int64(maxReplenish / l.Interval())
}

// Validate reports why l cannot be used.
func (l Limit) Validate() error {
	switch {
	case l.Rate <= 0:
		return fmt.Errorf("rate must be positive, got %d", l.Rate)
	case l.Period <= 0:
		return fmt.Errorf("period must be positive, got %v", l.Period)
	case l.Burst <= 0:
		return fmt.Errorf("burst must be positive, got %d", l.Burst)
	case l.Interval() < time.Microsecond:
		return fmt.Errorf("%d per %v is more than one request per microsecond", l.Rate, l.Period)
	case l.Interval() > maxReplenish:
		return fmt.Errorf("%d per %v is slower than one request per %v (366 days), the slowest limit", l.Rate, l.Period, maxReplenish)
	case l.Burst > l.MaxBurst():
		return fmt.Errorf("burst %d at %d per %v takes more than %v (366 days) to replenish: at most %d", l.Burst, l.Rate, l.Period, maxReplenish, l.MaxBurst())
	}
	return nil
}

// Scale returns l slowed down by factor f in (0, 1]: the interval grows by 1/f, so the rate
// becomes Rate*f per Period; the burst shrinks by f (at least 1). f >= 1 returns l, and so
// do f <= 0 and NaN. The interval grows to one request per 366 days at most, and a full
// burst takes 366 days at most: a longer one would fail Validate, and a period past int64
// would wrap negative and admit every request. Scaling a valid limit gives a valid limit.
func (l Limit) Scale(f float64) Limit {
	if !(f > 0 && f < 1) || l.Rate <= 0 || l.Period < time.Duration(l.Rate) {
		return l // no slowdown asked, or no interval to stretch
	}
	longest := time.Duration(math.MaxInt64)
	if l.Rate <= int64(longest/maxReplenish) {
		longest = maxReplenish * time.Duration(l.Rate)
	}
	scaled := float64(l.Period) / f
	l.Period = longest
	if scaled < float64(longest) {
		l.Period = min(time.Duration(scaled), longest)
	}
	// Rounding the interval down before scaling can leave the burst a hair past 366 days.
	l.Burst = min(max(1, int64(float64(l.Burst)*f)), int64(maxReplenish/l.Interval()))
	return l
}

// Result is one decision: what the response headers need.
type Result struct {
	// Allowed is whether the request is admitted.
	Allowed bool
	// Remaining is how many more requests would be admitted right now.
	Remaining int64
	// ResetAfter is the time until the bucket is full again (the key is then forgotten).
	ResetAfter time.Duration
	// RetryAfter is the time until the next request would be admitted; 0 when Allowed.
	RetryAfter time.Duration
	// Local is set when the primary store (Redis) failed and the fallback store (memory)
	// decided: the decision is exact for this instance only, so a cache in front of the
	// primary must not keep it.
	Local bool
	// Unmetered is set when no store decided: the primary failed and the failure policy
	// (allow or deny) answered. Remaining and ResetAfter then describe no bucket, and the
	// decision says nothing about the key.
	Unmetered bool
	// Abandoned is set when the caller's context ended while it waited for a store (Redis, or
	// another request's lease refill), before anything was decided for it: Allowed is false,
	// but nothing refused the key, and nobody waits for the answer.
	Abandoned bool
}

// Decide applies GCRA at time now (nanoseconds) to a key whose theoretical arrival time is tat
// (0 for a key never seen), and returns the decision and the key's new TAT (tat unchanged when
// denied, but see below). A TAT at or before now means a full bucket: the key can be
// forgotten. A TAT further ahead than l can reach (Burst intervals), written under a stricter
// limit (before a reload raised it, or under the client's earlier class), is a drained bucket
// of l: the limit in force applies at once, and the client waits at most l's own interval.
// Such a denial returns the drained bucket's TAT, which the store must keep (a store that kept
// the old one would find it drained again at every request, and refuse the key until the old
// TAT came within reach).
func Decide(tat, now int64, l Limit) (Result, int64) {
	interval := int64(l.Interval())
	if tat < now {
		tat = now
	}
	if drained := now + interval*l.Burst; tat > drained {
		tat = drained
	}
	newTAT := tat + interval
	allowAt := newTAT - interval*l.Burst
	if diff := now - allowAt; diff < 0 {
		return Result{RetryAfter: time.Duration(-diff), ResetAfter: time.Duration(tat - now)}, tat
	} else {
		return Result{Allowed: true, Remaining: diff / interval, ResetAfter: time.Duration(newTAT - now)}, newTAT
	}
}

// Store decides requests. policy namespaces keys (the same client has one bucket per policy);
// key is the caller's partition key (a client IP, an API key, a user ID) and may be long or
// hostile: stores bound what they keep per key. A request's decisions for one (policy, key)
// share one TAT whatever the limit, so a client whose class or adaptive factor changes keeps
// its history, as far as the limit in force reaches (see Decide).
type Store interface {
	Allow(ctx context.Context, policy, key string, l Limit) (Result, error)
}

// Reserver is a Store that can grant several requests of a key in one decision, so a caller
// may keep them and admit them without asking again (see LeasingStore). RedisStore and
// FailoverStore are Reservers.
type Reserver interface {
	Store
	// AllowN grants up to n requests, as many as fit now, and says how many (0: denied).
	AllowN(ctx context.Context, policy, key string, l Limit, n int64) (Result, int64, error)
}

// ErrStoreUnavailable wraps every failure of a remote store (refused, timed out, breaker
// open): the caller's failover policy applies.
var ErrStoreUnavailable = errors.New("rate limit store unavailable")
