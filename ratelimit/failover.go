package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"
)

// Mode says where a FailoverStore sends decisions.
type Mode int32

const (
	// ModePrimary: every decision goes to the primary store (Redis).
	ModePrimary Mode = iota
	// ModeFallback: the primary failed, and decisions for some or all keys are made by the
	// failure policy (by default the fallback store, in memory) until the primary answers a
	// probe again.
	ModeFallback
)

// String is the mode's name in logs and metrics: "redis" or "memory-fallback".
func (m Mode) String() string {
	switch m {
	case ModePrimary:
		return "redis"
	case ModeFallback:
		return "memory-fallback"
	default:
		return fmt.Sprintf("mode(%d)", int32(m))
	}
}

// FailureMode is what a FailoverStore decides when the primary store cannot.
type FailureMode int

const (
	// FailureFallback asks the fallback store, with the same policy, key and limit: each
	// instance then limits on its own, exactly but not shared.
	FailureFallback FailureMode = iota
	// FailureAllow admits the request (fail open): Result{Allowed: true, Unmetered: true}.
	FailureAllow
	// FailureDeny refuses the request (fail closed): Result{Unmetered: true}, with RetryAfter
	// the time a breaker stays open (when the primary is asked again), not the limit's
	// interval: the client used no quota.
	FailureDeny
)

// String is the failure mode's name: "fallback", "allow" or "deny".
func (f FailureMode) String() string {
	switch f {
	case FailureFallback:
		return "fallback"
	case FailureAllow:
		return "allow"
	case FailureDeny:
		return "deny"
	default:
		return fmt.Sprintf("failure-mode(%d)", int(f))
	}
}

// Defaults of FailoverOptions.
const (
	defaultFailoverTimeout     = 50 * time.Millisecond
	defaultConsecutiveFailures = 3
	defaultOpenFor             = time.Second
	// maxBreakers bounds the breakers a FailoverStore keeps. There is one per primary server
	// (Cluster master), which no client controls; the bound is a backstop.
	maxBreakers = 1024
)

// FailoverOptions configures a FailoverStore. The zero value is usable.
type FailoverOptions struct {
	// Timeout bounds each call to the primary store; a call that takes longer counts as a
	// failure and the request is decided by OnFailure at once. Decisions share pipelines, so
	// one Redis stall longer than Timeout fails every decision in flight and opens the
	// breaker: set it above Redis's worst usual latency. Default: 50ms.
	Timeout time.Duration
	// OnFailure is what decides a request when the primary fails or its breaker is open.
	// Default: FailureFallback.
	OnFailure FailureMode
	// OnModeChange, if set, is called once for each switch of Mode, with the error that
	// caused a switch to ModeFallback (nil when switching back). It runs on the goroutine of
	// the request that saw the switch, after the breaker has released its lock, so it may
	// call Mode; calls are made one at a time and in order. It should return quickly:
	// requests that see a later switch meanwhile do not wait for it, but that request does.
	OnModeChange func(from, to Mode, err error)
	// ConsecutiveFailures is how many failures in a row of the primary open its circuit
	// breaker; while it is open the primary is not asked at all. Default: 3 — one lost
	// packet does not move decisions, and a dead Redis costs at most three timeouts.
	ConsecutiveFailures uint32
	// OpenFor is how long a breaker stays open before one probe request goes to the primary
	// again (half-open); when the probe succeeds, decisions return to the primary. Default: 1s.
	OpenFor time.Duration
}

// FailoverStore decides in a primary store (Redis) and, when the primary fails, times out
// or is known to be down, decides at once by the failure policy — by default in a fallback
// store (memory). It never returns an error: no request fails because Redis failed.
//
// A circuit breaker (sony/gobreaker) guards the primary: after ConsecutiveFailures failures
// in a row it opens and requests skip the primary for OpenFor, then one probe goes to the
// primary and, if it answers, decisions return to it. When the primary is a RedisStore on a
// Redis Cluster, there is one breaker per master: with a master down only the keys it holds
// are decided by the fallback, and every other key keeps its exact, shared limit.
//
// While the primary answers, a fallback that can (MemoryStore, PolicyMemoryStores) is given
// the state of every bucket the primary decided, so a switch goes on from the shared state:
// each instance admits what its last look at Redis left plus what replenishes meanwhile, not
// a full burst of every key.
//
// A caller that goes away (its own context ends) is not a failure of the primary.
type FailoverStore struct {
	primary   Store
	fallback  Store
	mirror    mirror       // fallback, when it keeps a copy of the primary's buckets; nil otherwise
	sharded   shardedStore // primary, when it spreads keys over servers; nil otherwise
	timeout   time.Duration
	onFailure FailureMode
	onChange  func(from, to Mode, err error)
	settings  gobreaker.Settings
	threshold uint32 // ConsecutiveFailures

	breakersMu sync.RWMutex
	breakers   map[string]*gobreaker.TwoStepCircuitBreaker[struct{}]

	// openBreakers counts breakers not closed; Mode is ModeFallback while it is positive.
	// Only the breakers' state-change hook writes it.
	openBreakers atomic.Int32
	// reported is the last Mode passed to OnModeChange; notifyMu serializes the calls.
	reported atomic.Int32
	notifyMu sync.Mutex
	// lastFailure is the latest error of the primary, the cause OnModeChange reports.
	lastFailure atomic.Pointer[error]
}

// shardedStore is a primary whose keys live on several servers that fail independently.
// RedisStore implements it: a shard is a Cluster master.
type shardedStore interface {
	shardOf(ctx context.Context, policy, key string) string
	// probeShard asks the server of shard to decide as requests need it to (a server that
	// answers but cannot decide fails); errShardGone when the primary no longer has that
	// server (a master replaced by a failover).
	probeShard(ctx context.Context, shard string) error
}

// mirror is a fallback store that can take the state of a bucket the primary decided
// (MemoryStore, PolicyMemoryStores).
type mirror interface {
	Mirror(policy, key string, resetAfter time.Duration)
}

// errShardGone is probeShard's answer for a server the primary no longer has.
var errShardGone = errors.New("no longer a server of the primary")

// errCallerGone marks a primary call abandoned because the caller's context ended.
var errCallerGone = errors.New("caller went away")

// errRefusalWroteNothing marks a primary decision that refused: neither a success nor a
// failure for the breaker (IsExcluded: it does not wrap ErrStoreUnavailable).
var errRefusalWroteNothing = errors.New("refused without a write")

// NewFailoverStore returns a store that decides in primary and, on failure, by
// opts.OnFailure (in fallback for FailureFallback; fallback may be nil otherwise).
func NewFailoverStore(primary Store, fallback Store, opts FailoverOptions) *FailoverStore {
	if opts.Timeout <= 0 {
		opts.Timeout = defaultFailoverTimeout
	}
	if opts.ConsecutiveFailures == 0 {
		opts.ConsecutiveFailures = defaultConsecutiveFailures
	}
	if opts.OpenFor <= 0 {
		opts.OpenFor = defaultOpenFor
	}
	s := &FailoverStore{
		primary:   primary,
		fallback:  fallback,
		timeout:   opts.Timeout,
		onFailure: opts.OnFailure,
		onChange:  opts.OnModeChange,
		breakers:  make(map[string]*gobreaker.TwoStepCircuitBreaker[struct{}]),
		threshold: opts.ConsecutiveFailures,
	}
	s.sharded, _ = primary.(shardedStore)
	if opts.OnFailure == FailureFallback {
		s.mirror, _ = fallback.(mirror)
	}
	threshold := opts.ConsecutiveFailures
	s.settings = gobreaker.Settings{
		MaxRequests: 1, // one probe while half-open
		Timeout:     opts.OpenFor,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= threshold },
		// Only an unavailable primary counts; a caller that left or an invalid limit does not.
		IsExcluded: func(err error) bool {
			return err != nil && (errors.Is(err, errCallerGone) || !errors.Is(err, ErrStoreUnavailable))
		},
		// Runs under the breaker's lock: only count here; OnModeChange is called by publish.
		OnStateChange: func(_ string, from, to gobreaker.State) {
			switch {
			case from == gobreaker.StateClosed:
				s.openBreakers.Add(1)
			case to == gobreaker.StateClosed:
				s.openBreakers.Add(-1)
			}
		},
	}
	return s
}

// LastFailure is the primary's latest error, nil before any: while Mode is ModeFallback, why.
func (s *FailoverStore) LastFailure() error {
	if last := s.lastFailure.Load(); last != nil {
		return *last
	}
	return nil
}

// Mode reports where decisions go: ModeFallback while any breaker is open or half-open.
func (s *FailoverStore) Mode() Mode {
	if s.openBreakers.Load() > 0 {
		return ModeFallback
	}
	return ModePrimary
}

// Allow decides in the primary store, or by the failure policy when the primary cannot
// answer within Timeout. The error is always nil. When the caller's own context ends first,
// the result is a denial marked Abandoned: nobody is waiting for it.
func (s *FailoverStore) Allow(ctx context.Context, policy, key string, l Limit) (Result, error) {
	result, _, err := s.AllowN(ctx, policy, key, l, 1)
	return result, err
}

// AllowN is Allow for up to n requests at once when the primary is a Reserver (RedisStore);
// it returns how many were granted. Decisions made without the primary grant one request.
func (s *FailoverStore) AllowN(ctx context.Context, policy, key string, l Limit, n int64) (Result, int64, error) {
	breaker := s.breakerFor(ctx, policy, key)
	done, err := breaker.Allow()
	if err != nil { // open, or half-open with its probe in flight
		return granted1(s.decideWithoutPrimary(ctx, policy, key, l))
	}
	callCtx, cancel := context.WithTimeout(ctx, s.timeout)
	var result Result
	granted := int64(0)
	if r, ok := s.primary.(Reserver); ok && n > 1 {
		result, granted, err = r.AllowN(callCtx, policy, key, l, n)
	} else {
		result, err = s.primary.Allow(callCtx, policy, key, l)
		if result.Allowed {
			granted = 1
		}
	}
	cancel()
	if err != nil && ctx.Err() != nil {
		done(errCallerGone)
		return Result{RetryAfter: l.Interval(), ResetAfter: l.Interval(), Abandoned: true}, 0, nil
	}
	if err != nil {
		s.lastFailure.Store(&err)
	}
	if err == nil && granted == 0 {
		// A refusal wrote nothing, so it says nothing of a server that cannot write (a
		// read-only replica, a Redis full at maxmemory): it must not close a half-open
		// breaker (the next admission would fail and open it again, a mode switch each
		// OpenFor), nor reset the count of failures in a row.
		done(errRefusalWroteNothing)
	} else {
		done(err)
	}
	s.publish()
	if err != nil {
		return granted1(s.decideWithoutPrimary(ctx, policy, key, l))
	}
	if s.mirror != nil {
		s.mirror.Mirror(policy, key, result.ResetAfter)
	}
	return result, granted, nil
}

// granted1 is a single decision as AllowN reports it.
func granted1(r Result) (Result, int64, error) {
	if r.Allowed {
		return r, 1, nil
	}
	return r, 0, nil
}

// decideWithoutPrimary applies OnFailure. A failing fallback store admits the request: the
// fallback is the last line, and a rate limiter that refuses all traffic is an outage.
func (s *FailoverStore) decideWithoutPrimary(ctx context.Context, policy, key string, l Limit) Result {
	switch s.onFailure {
	case FailureDeny:
		return Result{RetryAfter: s.settings.Timeout, ResetAfter: s.settings.Timeout, Unmetered: true}
	case FailureFallback:
		if s.fallback != nil {
			if result, err := s.fallback.Allow(ctx, policy, key, l); err == nil {
				result.Local = true
				return result
			}
		}
	}
	return Result{Allowed: true, Remaining: l.Burst - 1, Unmetered: true}
}

// Probe asks the primary (a shardedStore: RedisStore) to decide a probe within timeout. When
// it cannot, Probe counts ConsecutiveFailures failures against the primary's breaker:
// decisions go by OnFailure at once, and Mode says so, instead of after the first requests
// have each waited Timeout. It is meant for startup, before any decision. A primary that
// decides changes nothing; so does a ctx that ends first. It returns the primary's error.
//
// With a sharded primary (Cluster) the probe judges the whole: it fails only when no master
// decides, and opens the breaker that keys use until the slot map is known, the only one
// such a Cluster ever uses.
func (s *FailoverStore) Probe(ctx context.Context, timeout time.Duration) error {
	if s.sharded == nil {
		return nil // a primary that cannot be asked
	}
	probeCtx, cancel := context.WithTimeout(ctx, timeout)
	err := s.sharded.probeShard(probeCtx, "")
	cancel()
	if err == nil || ctx.Err() != nil {
		return err
	}
	if !errors.Is(err, ErrStoreUnavailable) {
		err = fmt.Errorf("%w: %w", ErrStoreUnavailable, err)
	}
	s.lastFailure.Store(&err)
	breaker := s.breakerOf("")
	for range s.threshold {
		done, open := breaker.Allow()
		if open != nil {
			break
		}
		done(err)
	}
	s.publish()
	return err
}

// Run keeps Mode true without waiting for requests, until ctx ends. It probes the primary
// once (Probe, bounded by timeout), then, every OpenFor while a breaker is not closed, asks
// that breaker's server to decide a probe (within timeout, then again within Timeout, as
// decisions must: see probeAsDecisions): one that decides closes its breaker, so decisions
// return to it and Mode says so on an idle instance too; one that answers but cannot decide
// (a read-only replica, a Redis full at maxmemory) keeps it open, so Mode does not flap; the
// breaker of a server the primary no longer has (a Cluster master replaced by its replica) is
// closed, since no key reaches it again and it would otherwise hold Mode in ModeFallback, and
// hide every later outage, for good.
func (s *FailoverStore) Run(ctx context.Context, timeout time.Duration) {
	if s.sharded == nil {
		return // a primary that cannot be asked: requests' probes bring decisions back
	}
	_ = s.Probe(ctx, timeout)
	tick := time.NewTicker(s.settings.Timeout)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if s.openBreakers.Load() > 0 {
			s.recoverIdle(ctx, timeout)
		}
	}
}

// recoverIdle is one round of Run's probing.
func (s *FailoverStore) recoverIdle(ctx context.Context, timeout time.Duration) {
	s.breakersMu.RLock()
	notClosed := make(map[string]*gobreaker.TwoStepCircuitBreaker[struct{}])
	for shard, breaker := range s.breakers {
		if breaker.State() != gobreaker.StateClosed {
			notClosed[shard] = breaker
		}
	}
	s.breakersMu.RUnlock()
	for shard, breaker := range notClosed {
		err := s.probeAsDecisions(ctx, shard, timeout)
		if err != nil && !errors.Is(err, errShardGone) {
			continue
		}
		// Half-open (OpenFor has passed) admits one call, and its success closes the
		// breaker; still open, or a request's probe in flight: the next round.
		if done, notYet := breaker.Allow(); notYet == nil {
			done(nil)
		}
	}
	s.publish()
}

// probeAsDecisions asks shard's server to decide a probe within timeout (long enough to dial
// it again), and once it has, once more within Timeout, the bound of every decision: a server
// that answers, but slower than decisions may wait, still fails them all, and closing its
// breaker would only send the next requests to wait for it and open it again, every OpenFor,
// with two mode switches each time.
func (s *FailoverStore) probeAsDecisions(ctx context.Context, shard string, timeout time.Duration) error {
	for _, d := range [...]time.Duration{timeout, s.timeout} {
		probeCtx, cancel := context.WithTimeout(ctx, d)
		err := s.sharded.probeShard(probeCtx, shard)
		cancel()
		if err != nil {
			return err
		}
	}
	return nil
}

// breakerFor returns the breaker of the primary server holding (policy, key).
func (s *FailoverStore) breakerFor(ctx context.Context, policy, key string) *gobreaker.TwoStepCircuitBreaker[struct{}] {
	shard := ""
	if s.sharded != nil {
		shard = s.sharded.shardOf(ctx, policy, key)
	}
	return s.breakerOf(shard)
}

// breakerOf returns the breaker of a shard ("" without Cluster), creating it on first use.
func (s *FailoverStore) breakerOf(shard string) *gobreaker.TwoStepCircuitBreaker[struct{}] {
	s.breakersMu.RLock()
	breaker, ok := s.breakers[shard]
	s.breakersMu.RUnlock()
	if ok {
		return breaker
	}
	s.breakersMu.Lock()
	defer s.breakersMu.Unlock()
	if breaker, ok = s.breakers[shard]; ok {
		return breaker
	}
	if len(s.breakers) >= maxBreakers {
		shard = "" // backstop: share one breaker rather than grow
		if breaker, ok = s.breakers[shard]; ok {
			return breaker
		}
	}
	settings := s.settings
	settings.Name = shard
	breaker = gobreaker.NewTwoStepCircuitBreaker[struct{}](settings)
	s.breakers[shard] = breaker
	return breaker
}

// publish calls OnModeChange for each switch of Mode not reported yet. One goroutine
// reports at a time; one that finds another reporting leaves it the work, and the reporter
// looks again after each call, so no switch is lost and none is reported twice.
func (s *FailoverStore) publish() {
	if s.onChange == nil {
		return
	}
	for Mode(s.reported.Load()) != s.Mode() {
		if !s.notifyMu.TryLock() {
			return
		}
		from, to := Mode(s.reported.Load()), s.Mode()
		if from != to {
			s.reported.Store(int32(to))
			var cause error
			if last := s.lastFailure.Load(); last != nil && to == ModeFallback {
				cause = *last
			}
			s.onChange(from, to, cause)
		}
		s.notifyMu.Unlock()
	}
}
