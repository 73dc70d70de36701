package ratelimit

import (
	"context"
	"math/rand/v2"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// countingStore counts the decisions that reach the store it wraps.
type countingStore struct {
	Store
	calls atomic.Int64
}

func (c *countingStore) Allow(ctx context.Context, policy, key string, l Limit) (Result, error) {
	c.calls.Add(1)
	return c.Store.Allow(ctx, policy, key, l)
}

// TestDenialCacheNeverChangesADecision: with one clock for both, every decision through the
// cache equals the wrapped store's own, over random keys, limits and steps of time; and the
// refusals the cache answered never reached the store.
func TestDenialCacheNeverChangesADecision(t *testing.T) {
	var clock atomic.Int64
	clock.Store(1_000_000_000_000)
	now := func() int64 { return clock.Load() }
	reference := NewMemoryStore(MemoryOptions{Now: now})
	inner := &countingStore{Store: NewMemoryStore(MemoryOptions{Now: now})}
	cache := NewDenialCache(inner, CacheOptions{Now: now})
	limits := []Limit{{Rate: 5, Period: time.Second, Burst: 2}, {Rate: 1, Period: time.Minute, Burst: 1}, {Rate: 100, Period: time.Second, Burst: 10}}
	rng := rand.New(rand.NewPCG(1, 2))
	ctx := context.Background()
	denied := 0
	for i := range 200_000 {
		key := strconv.Itoa(rng.IntN(20))
		l := limits[rng.IntN(len(limits))]
		if i%3 == 0 { // most keys keep one limit, as a policy's row does
			l = limits[0]
		}
		want, _ := reference.Allow(ctx, "p", key, l)
		got, _ := cache.Allow(ctx, "p", key, l)
		if got.Allowed != want.Allowed || got.RetryAfter != want.RetryAfter {
			t.Fatalf("decision %d (key %s, %+v): cache %+v, store %+v", i, key, l, got, want)
		}
		if !got.Allowed {
			denied++
		}
		clock.Add(rng.Int64N(int64(50 * time.Millisecond)))
	}
	if saved := 200_000 - inner.calls.Load(); saved == 0 || denied == 0 {
		t.Fatalf("%d refusals, %d answered without the store: the cache did nothing", denied, saved)
	}
}

// TestDenialCacheAnswersRefusedKeysLocally: once refused, a key's requests do not reach the
// store until its retry time; another limit for the key asks the store.
func TestDenialCacheAnswersRefusedKeysLocally(t *testing.T) {
	var clock atomic.Int64
	clock.Store(1_000_000_000_000)
	now := func() int64 { return clock.Load() }
	inner := &countingStore{Store: NewMemoryStore(MemoryOptions{Now: now})}
	cache := NewDenialCache(inner, CacheOptions{Now: now})
	l := Limit{Rate: 1, Period: time.Second, Burst: 1}
	ctx := context.Background()
	if r, _ := cache.Allow(ctx, "p", "k", l); !r.Allowed {
		t.Fatal("first request refused")
	}
	for range 100 {
		if r, _ := cache.Allow(ctx, "p", "k", l); r.Allowed || r.RetryAfter <= 0 || r.RetryAfter > time.Second {
			t.Fatalf("refusal %+v", r)
		}
	}
	if n := inner.calls.Load(); n != 2 {
		t.Fatalf("%d decisions reached the store; want 2 (the first and the first refusal)", n)
	}
	if _, _ = cache.Allow(ctx, "p", "k", Limit{Rate: 10, Period: time.Second, Burst: 1}); inner.calls.Load() != 3 {
		t.Fatal("another limit must ask the store")
	}
	clock.Add(int64(time.Second))
	if r, _ := cache.Allow(ctx, "p", "k", l); !r.Allowed || inner.calls.Load() != 4 {
		t.Fatalf("after the retry time: %+v, %d store calls", r, inner.calls.Load())
	}
}

// fixedStore answers every decision with one result.
type fixedStore struct {
	res   Result
	calls atomic.Int64
}

func (f *fixedStore) Allow(context.Context, string, string, Limit) (Result, error) {
	f.calls.Add(1)
	return f.res, nil
}

// TestDenialCacheKeepsOnlyTheStoresRefusals: a refusal made while Redis failed, by the
// fallback store or by on_store_failure deny, is not remembered: once Redis answers again,
// the key's next request asks it (an outage must not lock a client out for a whole interval).
func TestDenialCacheKeepsOnlyTheStoresRefusals(t *testing.T) {
	for _, res := range []Result{
		{RetryAfter: time.Hour, ResetAfter: time.Hour, Local: true},
		{RetryAfter: time.Second, ResetAfter: time.Second, Unmetered: true},
	} {
		inner := &fixedStore{res: res}
		cache := NewDenialCache(inner, CacheOptions{})
		l := Limit{Rate: 1, Period: time.Hour, Burst: 1}
		for range 3 {
			cache.Allow(context.Background(), "p", "k", l)
		}
		if n := inner.calls.Load(); n != 3 || cache.Len() != 0 {
			t.Fatalf("refusal %+v: %d of 3 decisions reached the store, %d cached; want 3, 0", res, n, cache.Len())
		}
	}
}

// TestDenialCacheIsBounded: a flood of refused keys never holds more than MaxEntries.
func TestDenialCacheIsBounded(t *testing.T) {
	cache := NewDenialCache(NewMemoryStore(MemoryOptions{}), CacheOptions{MaxEntries: 640})
	l := Limit{Rate: 1, Period: time.Hour, Burst: 1}
	ctx := context.Background()
	for i := range 20_000 {
		key := strconv.Itoa(i)
		cache.Allow(ctx, "p", key, l)
		cache.Allow(ctx, "p", key, l) // refused: cached
		if n := cache.Len(); n > 640 {
			t.Fatalf("%d entries after %d keys; MaxEntries is 640", n, i+1)
		}
	}
	if cache.Len() < 600 {
		t.Fatalf("only %d entries kept", cache.Len())
	}
}

// goneStore refuses every request whose caller left, as FailoverStore does.
type goneStore struct{ calls atomic.Int64 }

func (g *goneStore) Allow(ctx context.Context, _, _ string, l Limit) (Result, error) {
	g.calls.Add(1)
	if ctx.Err() != nil {
		return Result{RetryAfter: time.Minute, ResetAfter: time.Minute}, nil
	}
	return Result{Allowed: true, Remaining: l.Burst - 1}, nil
}

func (g *goneStore) AllowN(ctx context.Context, policy, key string, l Limit, n int64) (Result, int64, error) {
	r, _ := g.Allow(ctx, policy, key, l)
	if !r.Allowed {
		return r, 0, nil
	}
	return r, n, nil
}

// TestCachesIgnoreRefusalsOfCallersThatLeft: the refusal a caller got because it left is not
// remembered for the key's other requests, by the denial cache or the leases.
func TestCachesIgnoreRefusalsOfCallersThatLeft(t *testing.T) {
	gone, cancel := context.WithCancel(context.Background())
	cancel()
	l := Limit{Rate: 1000, Period: time.Second, Burst: 1000}
	inner := new(goneStore)
	for name, s := range map[string]Store{
		"denial cache": NewDenialCache(inner, CacheOptions{}),
		"leases":       NewLeasingStore(inner, CacheOptions{}),
	} {
		if r, _ := s.Allow(gone, "p", name, l); r.Allowed {
			t.Fatalf("%s: a caller that left was admitted", name)
		}
		if r, _ := s.Allow(context.Background(), "p", name, l); !r.Allowed {
			t.Fatalf("%s: the refusal of a caller that left was remembered: %+v", name, r)
		}
	}
}
