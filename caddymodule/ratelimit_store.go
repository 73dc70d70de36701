package caddymodule

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"strings"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/swarmsec/caddy-hardening/internal/redisconn"
	"github.com/swarmsec/caddy-hardening/ratelimit"
)

// RateLimitConfig says where the rate limiter keeps its state.
type RateLimitConfig struct {
	// Store is `redis` (every instance shares exact limits through the hardening app's Redis)
	// or `memory` (each instance limits alone). Default: redis when the app has Redis, else
	// memory.
	Store string `json:"store,omitempty"`

	// MaxKeys bounds the keys the in-memory store tracks (in memory mode, and as the fallback
	// while Redis fails). When full, expired keys go first, then the oldest; an evicted key
	// starts again with a full bucket. At most 64 bytes per key. Default: 200000.
	MaxKeys int `json:"max_keys,omitempty"`

	// StoreTimeout bounds each Redis decision; a slower answer counts as a failure and the
	// request is decided by on_store_failure. Longer than the redis read_timeout or
	// write_timeout, it is still what bounds a decision: the limiter then uses a client of its
	// own with both raised to it. At most 5s. Default: 50ms.
	StoreTimeout caddy.Duration `json:"store_timeout,omitempty"`

	// DisableLeases makes every request of a key with a large burst (200 or more) a Redis
	// decision. By default such a key takes a hundredth of its burst from Redis at once and
	// admits those requests locally within a second: never more than the limit, one round trip
	// per lease instead of per request (see ratelimit.LeasingStore). Default: false.
	DisableLeases bool `json:"disable_leases,omitempty"`

	// OnStoreFailure decides requests while Redis fails: `fallback` (the in-memory store, with
	// the same policies, per instance), `allow` (admit everything) or `deny` (refuse
	// everything). Default: fallback.
	OnStoreFailure string `json:"on_store_failure,omitempty"`
}

// AdaptiveConfig tunes the load factor of adaptive policies: 1 while the edge is below its
// targets, falling towards MinFactor as CPU or in-flight requests rise above them.
type AdaptiveConfig struct {
	// CPUTarget is the CPU utilisation (0..1 of the CPU this container may use: its cgroup
	// quota, not the host's cores) above which adaptive limits shrink. Default: 0.75.
	CPUTarget float64 `json:"cpu_target,omitempty"`

	// MinFactor is the lowest factor: under full load, adaptive policies admit this share of
	// their rate. Default: 0.25.
	MinFactor float64 `json:"min_factor,omitempty"`

	// InFlightTarget is the number of requests in policy_rate_limit handlers of this instance
	// above which adaptive limits shrink. An admitted request counts until its response is
	// done, so long-lived ones (WebSocket, server-sent events) count for as long as they last.
	// Default: 0 (in-flight requests are not a signal).
	InFlightTarget int `json:"inflight_target,omitempty"`

	// Interval is how often the load is sampled. Default: 1s.
	Interval caddy.Duration `json:"interval,omitempty"`
}

// The store modes, as reported to monitoring and metrics.
const (
	storeModeMemory   = "memory"          // no Redis: each instance limits alone
	storeModeRedis    = "redis"           // Redis decides
	storeModeFallback = "memory-fallback" // Redis fails: the in-memory store decides
)

// limiterPool holds the limiter state by settings, so a reload that keeps them keeps the
// failover state and the smoothed load.
var limiterPool = caddy.NewUsagePool()

// memoryPool holds the in-memory buckets by max_keys alone, so a reload keeps them through a
// change of any other rate_limit or adaptive setting (a store_timeout or cpu_target tuned
// during an incident must not hand every limited client a full bucket).
var memoryPool = caddy.NewUsagePool()

// memoryEntry is a pooled set of in-memory stores; it holds nothing to release.
type memoryEntry struct{ stores *ratelimit.PolicyMemoryStores }

func (memoryEntry) Destruct() error { return nil }

// limiterEntry is the rate limiter's shared state: the stores, the failover around Redis and
// the adaptive factor.
type limiterEntry struct {
	memory   *ratelimit.PolicyMemoryStores // one store per policy, from memoryPool
	memKey   string                        // memory's key in memoryPool
	redis    *ratelimit.RedisStore         // nil without Redis
	failover *ratelimit.FailoverStore      // nil without Redis
	store    ratelimit.Store               // what handlers call: memory, or leases > denials > failover
	adaptive *ratelimit.Adaptive
	started  atomic.Bool
	// clientKey is the redisPool key of the client redis decides through when it is the
	// limiter's own (store_timeout above read_timeout: see limiterClient); "" otherwise.
	clientKey string
	// runCtx bounds the failover store's Run (its startup probe, then the probes that bring
	// an idle instance back to Redis); stop ends it when the entry is destructed.
	runCtx context.Context
	stop   context.CancelFunc

	// trackInFlight: in-flight requests are a load signal, so handlers count them.
	trackInFlight bool

	// loadLogged: the first adaptive policy's handler has logged what CPU load the factor
	// follows (once per limiter, which a reload keeps).
	loadLogged atomic.Bool

	// reporter is the newest configuration's app: the one that reports mode switches.
	reporter atomic.Pointer[App]

	// retired is set when the entry is destructed. On a reload Caddy cleans up the old
	// configuration while its requests are still in flight, and their handlers still decide
	// here: from then on they decide in memory, and the closed Redis store's errors are not
	// a Redis outage (no mode switch, no event, no refusal by on_store_failure deny).
	retired atomic.Bool
}

// Destruct stops the adaptive sampler and the Redis batching goroutines when the last
// configuration using the entry is gone.
func (e *limiterEntry) Destruct() error {
	e.retired.Store(true)
	e.stop()
	e.adaptive.Stop()
	_, _ = memoryPool.Delete(e.memKey)
	if e.redis == nil {
		return nil
	}
	err := e.redis.Close()
	if e.clientKey != "" {
		_, _ = redisPool.Delete(e.clientKey) // after Close: no worker uses the client any more
	}
	return err
}

// mode is the store mode now.
func (e *limiterEntry) mode() string {
	if e.failover == nil {
		return storeModeMemory
	}
	if e.failover.Mode() == ratelimit.ModeFallback {
		return storeModeFallback
	}
	return storeModeRedis
}

// limiterSettings is everything that shapes a limiterEntry; its digest is the pool key.
type limiterSettings struct {
	Redis     string         `json:"redis,omitempty"` // the shared client's pool key
	Prefix    string         `json:"prefix,omitempty"`
	MaxKeys   int            `json:"max_keys"`
	Timeout   time.Duration  `json:"timeout"`
	OnFailure string         `json:"on_failure"`
	NoLeases  bool           `json:"no_leases,omitempty"`
	Adaptive  AdaptiveConfig `json:"adaptive"`
}

// rateLimiter returns this configuration's limiter, taking it from the pool the first time a
// policy_rate_limit handler asks.
func (a *App) rateLimiter() (*limiterEntry, error) {
	if a.limiter != nil {
		return a.limiter, nil
	}
	s, err := a.limiterSettings()
	if err != nil {
		return nil, err
	}
	raw, _ := json.Marshal(s)
	sum := sha256.Sum256(raw)
	key := "ratelimit:" + hex.EncodeToString(sum[:])
	v, _, err := limiterPool.LoadOrNew(key, func() (caddy.Destructor, error) {
		return a.newLimiter(s)
	})
	if err != nil {
		return nil, err
	}
	e := v.(*limiterEntry)
	a.limiter, a.limiterKey = e, key
	if err := registerRateLimitMetrics(a.ctx.GetMetricsRegistry()); err != nil {
		return nil, err
	}
	a.RegisterStatus("ratelimit:store", e.status)
	// Only a configuration that starts speaks for the limiter (liveLimiterApps): one refused
	// while another runs leaves the gauges and the stores of the running one alone.
	a.OnStart(func() {
		liveLimiterApps.started(a)
		if e.started.CompareAndSwap(false, true) && e.failover != nil {
			go e.failover.Run(e.runCtx, storeProbeTimeout)
		}
	})
	return e, nil
}

// usesAdaptive reports whether a policy_rate_limit handler of this configuration uses an
// adaptive policy.
func (a *App) usesAdaptive() bool {
	for name := range a.ratePolicies() {
		if p := a.policies[name]; p != nil && p.adaptive {
			return true
		}
	}
	return false
}

// ratePolicies are the policies this configuration's policy_rate_limit handlers use.
func (a *App) ratePolicies() map[string]bool {
	used := make(map[string]bool, len(a.bucketSets))
	for set := range a.bucketSets {
		policy, _, _ := strings.Cut(set, "~")
		used[policy] = true
	}
	return used
}

// liveLimiterApps are the live configurations that use a rate limiter. What the limiter
// shares between configurations follows them: the newest reports mode switches and feeds the
// gauges, and no in-memory store or series that a live one uses is dropped.
var liveLimiterApps = liveConfigs{settle: settleLimiters}

// settleLimiters points what the limiters share at the live configurations.
func settleLimiters(apps []*App) {
	if len(apps) == 0 {
		return
	}
	// Limiters with the same max_keys share their memory stores (memoryPool): keep by stores.
	sets := make(map[*ratelimit.PolicyMemoryStores]map[string]bool)
	policies := make(map[string]bool)
	for _, a := range apps { // oldest first: the newest using an entry reports for it
		e := a.limiter
		e.reporter.Store(a)
		if sets[e.memory] == nil {
			sets[e.memory] = make(map[string]bool)
		}
		for set := range a.bucketSets {
			sets[e.memory][set] = true
		}
		maps.Copy(policies, a.ratePolicies())
	}
	for stores, keep := range sets {
		stores.Retain(keep)
	}
	// The load sampler reads the CPU every interval: only while a live configuration uses an
	// adaptive policy. A reload that removes the last one stops it (the factor goes back to
	// 1); one that adds one starts it again. A limiter no live configuration uses any more is
	// destructed, which stops its sampler.
	adaptive := make(map[*limiterEntry]bool)
	for _, a := range apps {
		adaptive[a.limiter] = adaptive[a.limiter] || a.usesAdaptive()
	}
	for e, use := range adaptive {
		if use {
			e.adaptive.Start()
		} else {
			e.adaptive.Stop()
		}
	}
	keepPolicySeries(policies)
	newest := apps[len(apps)-1].limiter
	setStoreModeMetric(newest.mode())
	memoryKeys.stores.Store(newest.memory)
	adaptiveFactor.adaptive.Store(newest.adaptive)
}

func (a *App) releaseLimiter() {
	if a.limiter == nil {
		return
	}
	liveLimiterApps.cleanedUp(a)
	a.limiter = nil
	_, _ = limiterPool.Delete(a.limiterKey)
}

func (a *App) limiterSettings() (limiterSettings, error) {
	cfg := RateLimitConfig{}
	if a.RateLimit != nil {
		cfg = *a.RateLimit
	}
	s := limiterSettings{MaxKeys: cfg.MaxKeys, Timeout: time.Duration(cfg.StoreTimeout), OnFailure: cfg.OnStoreFailure, NoLeases: cfg.DisableLeases}
	if s.MaxKeys < 0 {
		return s, fmt.Errorf("rate_limit max_keys: expected a positive number (0 for the default %d), got %d", defaultRateLimitMaxKeys, s.MaxKeys)
	}
	if s.Timeout < 0 || s.Timeout > maxStoreTimeout {
		return s, fmt.Errorf("rate_limit store_timeout: expected a positive duration of at most %s (0 for the default %s), got %s", maxStoreTimeout, defaultStoreTimeout, s.Timeout)
	}
	if s.MaxKeys == 0 {
		s.MaxKeys = defaultRateLimitMaxKeys
	}
	if s.Timeout == 0 {
		s.Timeout = defaultStoreTimeout
	}
	if s.OnFailure == "" {
		s.OnFailure = "fallback"
	}
	if _, err := parseFailureMode(s.OnFailure); err != nil {
		return s, fmt.Errorf("rate_limit on_store_failure: %v", err)
	}
	switch cfg.Store {
	case "", "redis":
		if a.redis != nil {
			s.Redis, s.Prefix = a.redisKey, a.keyPrefix+"rl:"
		} else if cfg.Store == "redis" {
			return s, fmt.Errorf("rate_limit store redis: the hardening app has no redis configured")
		}
	case "memory":
	default:
		return s, fmt.Errorf("rate_limit store: expected redis or memory, got %q", cfg.Store)
	}
	if a.Adaptive != nil {
		s.Adaptive = *a.Adaptive
	}
	if iv := time.Duration(s.Adaptive.Interval); iv != 0 && iv < minAdaptiveInterval {
		return s, fmt.Errorf("adaptive interval %v is shorter than %v", iv, minAdaptiveInterval)
	}
	if iv := time.Duration(s.Adaptive.Interval); iv > maxAdaptiveInterval {
		return s, fmt.Errorf("adaptive interval %v is longer than %v (%s)", iv, maxAdaptiveInterval, maxAdaptiveIntervalWhy)
	}
	return s, nil
}

// checkLimiterSettings checks the rate_limit and adaptive settings. The limiter is built when a
// policy_rate_limit handler first asks for it; without this, a JSON config with no such handler
// (yet) passed `caddy validate` with settings that one would refuse.
func (a *App) checkLimiterSettings() error {
	s, err := a.limiterSettings()
	if err != nil {
		return err
	}
	_, err = ratelimit.NewAdaptive(ratelimit.AdaptiveOptions{
		CPUTarget: s.Adaptive.CPUTarget, MinFactor: s.Adaptive.MinFactor,
		InFlightTarget: s.Adaptive.InFlightTarget, Interval: time.Duration(s.Adaptive.Interval),
		Source: idleLoad{}, // nothing is sampled: no cgroup is read for a check
	})
	if err != nil {
		return fmt.Errorf("hardening adaptive: %v", err)
	}
	return nil
}

// idleLoad is a load source that reads nothing, for checking adaptive options.
type idleLoad struct{}

func (idleLoad) Load() (ratelimit.Load, error) { return ratelimit.Load{}, nil }

// adaptiveLoadSource replaces the system's CPU reading in tests (nil: the cgroup's CPU).
var adaptiveLoadSource ratelimit.LoadSource

const (
	// minAdaptiveInterval is the shortest load sampling period: a CPU reading over less means
	// little, and sampling more often burns the CPU it measures.
	minAdaptiveInterval = 100 * time.Millisecond
	// maxAdaptiveInterval bounds it the other way: the smoothed load needs a few samples to
	// move, so sampled every hour (accepted before) adaptive limits never followed a load
	// spike at all.
	maxAdaptiveInterval    = 10 * time.Second
	maxAdaptiveIntervalWhy = "the smoothed load moves over a few samples: sampled less often, adaptive limits follow no load spike"

	defaultRateLimitMaxKeys = 200000
	defaultStoreTimeout     = 50 * time.Millisecond
	// maxStoreTimeout bounds store_timeout: every request waits up to it while Redis is slow
	// (the breaker opens after 3 such waits), so a longer one holds requests for Redis where
	// the limiter is meant to fall back to memory at once.
	maxStoreTimeout = 5 * time.Second

	// storeProbeTimeout bounds the question a new limiter asks Redis when it starts (without
	// an answer, decisions go to memory at once rather than after three requests have each
	// waited store_timeout), and each later probe while Redis is failing. Longer than
	// store_timeout, so that a first dial (TLS included) is not taken for an outage.
	storeProbeTimeout = time.Second
)

func parseFailureMode(s string) (ratelimit.FailureMode, error) {
	switch s {
	case "fallback":
		return ratelimit.FailureFallback, nil
	case "allow":
		return ratelimit.FailureAllow, nil
	case "deny":
		return ratelimit.FailureDeny, nil
	}
	return 0, fmt.Errorf("expected fallback, allow or deny, got %q", s)
}

func (a *App) newLimiter(s limiterSettings) (*limiterEntry, error) {
	e := &limiterEntry{memKey: fmt.Sprintf("ratelimit-memory:%d", s.MaxKeys)}
	e.runCtx, e.stop = context.WithCancel(context.Background())
	mem, _, _ := memoryPool.LoadOrNew(e.memKey, func() (caddy.Destructor, error) {
		return memoryEntry{ratelimit.NewPolicyMemoryStores(ratelimit.MemoryOptions{MaxKeys: s.MaxKeys})}, nil
	})
	e.memory = mem.(memoryEntry).stores
	e.store = e.memory
	var err error
	logger := a.logger
	e.adaptive, err = ratelimit.NewAdaptive(ratelimit.AdaptiveOptions{
		CPUTarget: s.Adaptive.CPUTarget, MinFactor: s.Adaptive.MinFactor,
		InFlightTarget: s.Adaptive.InFlightTarget, Interval: time.Duration(s.Adaptive.Interval),
		Source: adaptiveLoadSource,
		OnError: func(err error) {
			logger.Debug("adaptive rate limits: the CPU load could not be read; it counts as idle", zap.Error(err))
		},
	})
	if err != nil {
		_, _ = memoryPool.Delete(e.memKey)
		return nil, fmt.Errorf("hardening adaptive: %v", err)
	}
	e.trackInFlight = s.Adaptive.InFlightTarget > 0
	if s.Redis == "" {
		return e, nil
	}
	mode, _ := parseFailureMode(s.OnFailure)
	client, clientKey, err := a.limiterClient(s.Timeout)
	if err != nil {
		_, _ = memoryPool.Delete(e.memKey)
		return nil, err
	}
	e.clientKey = clientKey
	e.redis = ratelimit.NewRedisStore(client, ratelimit.RedisOptions{Prefix: s.Prefix})
	e.failover = ratelimit.NewFailoverStore(e.redis, e.memory, ratelimit.FailoverOptions{
		Timeout: s.Timeout, OnFailure: mode,
		OnModeChange: func(from, to ratelimit.Mode, err error) { e.modeChanged(to, err) },
	})
	// Keys with a large burst lease requests from Redis; refused keys are answered locally
	// until their retry time, so a flood of refused requests costs Redis nothing (see
	// ratelimit.NewCachedStore).
	e.store = ratelimit.NewCachedStore(e.failover, !s.NoLeases, ratelimit.CacheOptions{})
	return e, nil
}

// modeChanged reports a switch between Redis and the fallback, through the newest config.
func (e *limiterEntry) modeChanged(to ratelimit.Mode, cause error) {
	if e.retired.Load() {
		return // its store was closed under the old configuration's last requests
	}
	mode := e.mode()
	setStoreModeMetric(mode)
	a := e.reporter.Load()
	if a == nil {
		return
	}
	data := map[string]any{"store": "ratelimit", "to": mode}
	level := zapcore.InfoLevel
	if to == ratelimit.ModeFallback {
		level = zapcore.WarnLevel
		if cause != nil {
			data["error"] = cause.Error()
		}
	}
	a.SecurityEvent(a.eventCtx, nil, level, EventStoreFailover, data)
}

// status is the store's report to monitoring: a fallback is warn (limits are per instance).
func (e *limiterEntry) status() StatusReport {
	mode := e.mode()
	r := StatusReport{Component: "ratelimit:store", Type: "datastore", Status: HealthPass,
		Observed: map[string]any{"mode": mode, "keys_in_memory": e.memory.Len()}, Time: time.Now()}
	if mode == storeModeFallback {
		r.Status = HealthWarn
		r.Output = "Redis is failing: rate limits are decided in memory, per instance, until it answers again"
		if cause := e.failover.LastFailure(); cause != nil {
			// The cause tells an outage from a Redis that answers but cannot decide (READONLY,
			// OOM, an ACL's NOPERM), which waiting does not end.
			var opts redisconn.Options
			a := e.reporter.Load()
			if a != nil && a.redis != nil {
				opts = a.redis.opts
			}
			if a != nil {
				if msg, refused := a.redisRefusal(cause, "rate limits are decided in memory, per instance", true); refused {
					r.Output = msg
					return r
				}
			}
			msg := redactSecrets(cause.Error(), opts)
			r.Output = "Redis is failing (" + msg + "): rate limits are decided in memory, per instance, until it answers again"
		}
	}
	return r
}

// storeFor is what a handler of the policy asks: in memory mode the policy's own store, with
// no lookup per request; with Redis the chain in front of it (which falls back to the
// policy's memory store).
func (e *limiterEntry) storeFor(policy string) ratelimit.Store {
	if e.failover == nil {
		return e.memory.For(policy)
	}
	return e.store
}

// decide runs one decision in store (storeFor's), timing it for the store latency histogram
// when Redis is in play. No store fails a request: the failover store answers from memory (or
// by on_store_failure). A retired entry (an old configuration's last requests) decides in
// memory.
func (e *limiterEntry) decide(ctx context.Context, store ratelimit.Store, policy, key string, l ratelimit.Limit) ratelimit.Result {
	if e.failover == nil {
		res, _ := store.Allow(ctx, policy, key, l)
		return res
	}
	if e.retired.Load() {
		res, _ := e.memory.Allow(ctx, policy, key, l)
		return res
	}
	start := time.Now()
	res, _ := store.Allow(ctx, policy, key, l)
	storeDuration.Observe(time.Since(start).Seconds())
	if res.Unmetered && e.retired.Load() {
		// Decided by on_store_failure because the store closed while it waited: decide in
		// memory, as the requests after it.
		res, _ = e.memory.Allow(ctx, policy, key, l)
	}
	return res
}

// logLoadSource says, once per limiter, which CPU load the adaptive factor follows: the
// cgroup (v2 or v1, the group whose quota binds, and the CPUs it may use) or the host's, where
// no cgroup could be read. Without it an operator could not tell whether a container's quota
// is what adaptive policies measure.
func (e *limiterEntry) logLoadSource(logger *zap.Logger) {
	src, ok := e.adaptive.Source().(fmt.Stringer)
	if !ok || !e.loadLogged.CompareAndSwap(false, true) {
		return
	}
	logger.Info("adaptive rate limits follow the CPU load of "+src.String(), zap.String("cpu_load", src.String()))
}
