package caddymodule

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/swarmsec/caddy-hardening/internal/redisconn"
	"github.com/swarmsec/caddy-hardening/ipclass"
)

func init() {
	caddy.RegisterModule(&App{})
}

// App is the `hardening` app: the central security configuration every caddy-hardening module
// reads. It holds the environment that picks each module's defaults, the shared Redis
// connection, and the feature flags, and it gathers the configuration findings that modules
// report while they provision: warnings are logged once when Caddy starts; errors refuse the
// configuration.
//
// Without a `hardening` app in the config, modules behave as under an empty one: production,
// in-memory state, every feature on.
type App struct {
	// Environment picks the defaults of every module: `production`, `staging` or
	// `development`. A runtime placeholder such as `{env.HARDENING_ENV}` is resolved at load.
	// Default: production.
	Environment string `json:"environment,omitempty"`

	// Redis is the connection shared by every module and instance. Optional: without it,
	// every store is in memory and each instance keeps its own state.
	Redis *RedisConfig `json:"redis,omitempty"`

	// Features switches modules on or off by name: rate_limit, security_headers, csp_report,
	// path_guard, ip_classes, detection, upstream_breaker, monitoring. A disabled feature's
	// handlers pass requests through. Default: every feature on.
	Features map[string]bool `json:"features,omitempty"`

	// IPClasses lists the static trusted and suspicious prefixes. Without it every client is
	// default unless detected.
	IPClasses *IPClassesConfig `json:"ip_classes,omitempty"`

	// Detection tunes the automatic detection of suspicious clients. Detection runs with the
	// defaults when this is absent; switch it off with the `detection` feature.
	Detection *DetectionConfig `json:"detection,omitempty"`

	// Policies are the named rate-limit policies, by name, that `policy_rate_limit` handlers
	// refer to. The built-in policies (authentication, api_intensive, api, public, default)
	// exist without configuration; an entry with a built-in name changes the fields it sets.
	Policies map[string]*PolicyConfig `json:"policies,omitempty"`

	// Adaptive tunes the load factor that adaptive policies multiply their rates by.
	// Default: the defaults of AdaptiveConfig.
	Adaptive *AdaptiveConfig `json:"adaptive,omitempty"`

	// RateLimit says where rate-limit state is kept and what happens when Redis fails.
	// Default: Redis when configured, else memory; fallback to memory on failure.
	RateLimit *RateLimitConfig `json:"rate_limit,omitempty"`

	env       Environment
	redis     *sharedRedis
	redisKey  string
	redisHeld bool // a reference to redisPool's entry, released by Cleanup
	keyPrefix string
	findings  findingSet
	logger    *zap.Logger
	security  *securityEvents
	status    statusRegistry
	onStart   []func()
	validate  []func()
	// validating: the OnValidate checks run (every app is provisioned)
	validating bool
	ctx        caddy.Context // for metrics
	eventCtx   caddy.Context // for events: eventContext

	// parseChecks run once the Caddyfile's hardening block is read: checks that need the
	// whole block (a subdirective that needs another), each with its own line.
	parseChecks []func() error

	classifier   *ipclass.Classifier
	probes       *ipclass.ProbeMatcher
	detectorHeld bool
	// detection is this configuration's detection settings and eviction logger (nil with
	// detection off), applied to the pooled detector when it starts (see liveDetection).
	detection      *detectionSetup
	sharedBans     *ipclass.SharedBans
	sharedBansKey  string
	sharedBansHeld bool

	policies   map[string]*resolvedPolicy
	limiter    *limiterEntry // taken by the first policy_rate_limit handler
	limiterKey string
	// bucketSets are the sets of buckets this configuration's policy_rate_limit handlers
	// decide in (a policy, or a route's own key), each with the number of handlers that do:
	// the in-memory stores it keeps when it starts, and the sets a request may meet twice.
	bucketSets map[string]*int

	// breakerJoinBy is when this configuration stops waiting for its new shared breakers'
	// first read of the shared state: sharedJoinWait after the first one was provisioned.
	breakerJoinBy   time.Time
	breakerJoinOnce sync.Once
}

// CaddyModule returns the Caddy module information.
func (*App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "hardening",
		New: func() caddy.Module { return new(App) },
	}
}

// Provision resolves placeholders, checks the configuration, takes the shared Redis client
// from the pool and records the app's own findings.
func (a *App) Provision(ctx caddy.Context) error {
	a.logger, a.ctx, a.eventCtx = ctx.Logger(), ctx, eventContext(ctx)
	a.findings.lint = checkHook.provisioned(a)
	repl := caddy.NewReplacer()
	var err error
	if a.security, err = newSecurityEvents(ctx); err != nil {
		return err
	}

	env := a.Environment
	if env == "" {
		env = string(Production)
	}
	resolved := repl.ReplaceKnown(env, "")
	if a.env, err = ParseEnvironment(resolved); err != nil {
		if resolved == "" {
			return fmt.Errorf("%w (from %s: set the variable)", err, env)
		}
		if resolved != env { // set, to something else: "set the variable" would point nowhere
			return fmt.Errorf("%w (from %s: change the variable's value)", err, env)
		}
		return err
	}
	for name := range a.Features {
		if err := checkFeature(name); err != nil {
			return err
		}
	}
	a.reportDisabledFeatures()
	if err := registerIPClassMetrics(ctx.GetMetricsRegistry()); err != nil {
		return err
	}
	if a.Redis != nil {
		if err := a.provisionRedis(repl); err != nil {
			return err
		}
	} else {
		_ = a.Report(Finding{Code: "redis.absent", Severity: Info, Module: "hardening", Config: "apps.hardening.redis",
			Message: "production without Redis: rate limits, detected clients and breaker states are per instance",
			Fix:     "for several instances, configure `redis` in the hardening global option"},
			Production)
	}
	if a.policies, err = resolvePolicies(a.Policies, a.env); err != nil {
		return err
	}
	if err := a.checkLimiterSettings(); err != nil {
		return err
	}
	a.OnValidate(a.checkProxiesStrict)
	return a.provisionClasses(ctx, repl)
}

func (a *App) provisionRedis(repl *caddy.Replacer) error {
	opts := a.Redis.options(repl)
	if a.Redis.URL != "" && opts.URL == "" && len(opts.ClusterAddrs) == 0 && opts.SentinelMaster == "" && len(opts.SentinelAddrs) == 0 {
		return fmt.Errorf("redis: the URL %s is empty once resolved; set the variable, or leave the URL out and give cluster or sentinel", redisconn.Redact(a.Redis.URL))
	}
	if len(a.Redis.Cluster) > 0 && len(opts.ClusterAddrs) == 0 {
		return fmt.Errorf("redis: cluster %s is empty once resolved; set the variable to one or more host:port addresses (separated by spaces or commas)", strings.Join(a.Redis.Cluster, " "))
	}
	if s := a.Redis.Sentinel; s != nil && s.Master != "" && opts.SentinelMaster == "" {
		return fmt.Errorf("redis: the sentinel master name %s is empty once resolved; set the variable to the name the sentinels know the master by (sentinel monitor <name> ...)", s.Master)
	}
	if s := a.Redis.Sentinel; s != nil && len(s.Addresses) > 0 && len(opts.SentinelAddrs) == 0 {
		return fmt.Errorf("redis: sentinel addresses %s are empty once resolved; set the variable to one or more host:port addresses (separated by spaces or commas)", strings.Join(s.Addresses, " "))
	}
	if err := a.Redis.checkEmptyCredentials(opts); err != nil {
		return err
	}
	if err := a.Redis.checkURLCredentials(repl, opts.URL); err != nil {
		return err
	}
	if err := opts.Validate(); err != nil {
		return err
	}
	prefix, err := a.Redis.keyPrefix(repl)
	if err != nil {
		return err
	}
	a.keyPrefix = prefix
	for _, field := range a.Redis.literalSecrets() {
		_ = a.Report(Finding{Code: "redis.literal_password", Severity: Warning, Module: "hardening",
			Config:  "apps.hardening.redis." + field,
			Message: "the Redis password is written in the configuration: it is kept in the JSON config, the admin API's GET /config/ and autosave.json (a Caddyfile {$VAR} is substituted before that, so it counts as written)",
			Fix:     "use a runtime placeholder: password {env.REDIS_PASSWORD} or {file./run/secrets/redis_password}"},
			Production, Staging)
	}
	if opts.InsecureSkipVerify {
		f := Finding{Code: "redis.tls_insecure", Module: "hardening", Config: "apps.hardening.redis.tls.insecure_skip_verify",
			Message: "TLS certificate verification to Redis is off: anyone on the path can impersonate Redis and read or forge shared security state",
			Fix:     "remove insecure_skip_verify and trust the server's CA with ca_file"}
		f.Severity = Warning
		if a.env.IsProduction() {
			f.Severity = Error
		}
		if err := a.Report(f, Production, Staging); err != nil {
			return err
		}
	}
	switch {
	case opts.TLSEnabled():
	case !allLoopback(opts):
		_ = a.Report(Finding{Code: "redis.plaintext", Severity: Warning, Module: "hardening", Config: "apps.hardening.redis",
			Message: "Redis is reached without TLS over the network: passwords and shared security state cross it in clear",
			Fix:     "use rediss:// (or the tls subdirective), or keep Redis on loopback or a Unix socket"},
			Production)
	case opts.Mode() == redisconn.Sentinel:
		// The sentinels are local, but the master they name is only known at run time.
		_ = a.Report(Finding{Code: "redis.plaintext", Severity: Info, Module: "hardening", Config: "apps.hardening.redis",
			Message: "Sentinel without TLS: the sentinels are on loopback, but the master they name may be on another host, and its connections (password included) would cross the network in clear",
			Fix:     "use the tls subdirective if the master can be remote; otherwise nothing to do"},
			Production)
	}
	if !allLoopback(opts) && !authenticates(opts) {
		_ = a.Report(Finding{Code: "redis.no_auth", Severity: Warning, Module: "hardening", Config: "apps.hardening.redis",
			Message: "Redis is reached over the network with neither a password nor a client certificate: whoever reaches it can read and rewrite the shared security state (lift bans, reset rate limits, close breakers); TLS alone does not authenticate this client",
			Fix:     "give Redis a password (requirepass) or an ACL user and set password {env.REDIS_PASSWORD} (and username), or a client certificate (tls cert_file and key_file); or keep Redis on loopback or a Unix socket"},
			Production)
	}
	shared, key, err := acquireRedis(opts, a.logger)
	if err != nil {
		return errors.New(redactSecrets(err.Error(), opts)) // already "redis: ..."
	}
	a.redis, a.redisKey, a.redisHeld = shared, key, true
	return nil
}

// authenticates reports whether the client proves itself to the data nodes: a password (in a
// field or the URL) or a client certificate. A sentinel's password opens the sentinels only.
func authenticates(o redisconn.Options) bool {
	if o.Password != "" || o.CertFile != "" {
		return true
	}
	o.SentinelPassword = ""
	return o.HasPassword()
}

// allLoopback reports whether every address is a Unix socket, localhost or a loopback IP.
func allLoopback(o redisconn.Options) bool {
	if strings.HasPrefix(o.URL, "unix://") {
		return true
	}
	for _, ep := range o.Endpoints() {
		host, _, err := net.SplitHostPort(ep)
		if err != nil {
			return false
		}
		if host == "localhost" {
			continue
		}
		ip, err := netip.ParseAddr(host)
		if err != nil || !ip.IsLoopback() {
			return false
		}
	}
	return true
}

// Start logs, once for this configuration, the findings and the disabled features, and runs the
// functions modules registered with OnStart.
func (a *App) Start() error {
	a.runValidations()
	for _, fn := range a.onStart {
		fn()
	}
	a.findings.log(a.logger)
	for _, name := range sortedKeys(features) {
		if on, set := a.Features[name]; set && !on {
			log := a.logger.Info
			if a.env.IsProduction() {
				if _, found := instead[name]; found {
					continue // logged as the finding features.disabled
				}
				log = a.logger.Warn
			}
			log("feature disabled: its handlers pass requests through", zap.String("feature", name), zap.String("governs", features[name]))
		}
	}
	return nil
}

// Stop does nothing: shared clients are released in Cleanup, after the next config started.
func (a *App) Stop() error { return nil }

// Cleanup releases this configuration's references to the shared Redis client, the detector
// and the sync of detections. The pointers stay: on a reload Caddy cleans up the old
// configuration without waiting for its servers' last requests, which may still read them
// (a released client or sync fails its calls, which those paths handle).
func (a *App) Cleanup() error {
	a.releaseLimiter()
	liveDetection.cleanedUp(a)
	if a.sharedBansHeld {
		a.sharedBansHeld = false
		_, _ = sharedBansPool.Delete(a.sharedBansKey)
	}
	if a.detectorHeld {
		a.detectorHeld = false
		_, _ = detectorPool.Delete("detector")
	}
	if a.redisHeld {
		a.redisHeld = false
		_, err := redisPool.Delete(a.redisKey)
		return err
	}
	return nil
}

// OnStart registers fn (from a module's Provision) to run when the configuration starts: work
// that must not happen when a configuration is only validated (`caddy validate`,
// `caddy adapt --validate`), such as background checks that reach other systems. Checks that
// need the whole provisioned configuration go to OnValidate.
func (a *App) OnStart(fn func()) { a.onStart = append(a.onStart, fn) }

// OnValidate registers fn (from a module's Provision) as a check that needs the whole
// provisioned configuration, such as the other handlers of a route. It may Report. It runs in
// Start, before the findings are logged, and in `caddy hardening check`, which never starts.
func (a *App) OnValidate(fn func()) { a.validate = append(a.validate, fn) }

// runValidations runs the OnValidate checks once.
func (a *App) runValidations() {
	fns := a.validate
	a.validate, a.validating = nil, true
	for _, fn := range fns {
		fn()
	}
}

// Env is the environment every module picks its defaults from.
func (a *App) Env() Environment { return a.env }

// RedisClient is the shared client, or nil when no Redis is configured.
func (a *App) RedisClient() redis.UniversalClient {
	if a.redis == nil {
		return nil
	}
	return a.redis.client
}

// KeyPrefix starts every Redis key a module writes.
func (a *App) KeyPrefix() string { return a.keyPrefix }

// FeatureEnabled reports whether the named feature is on (every feature is on by default).
// It panics on an unknown name: feature names are constants of this package.
func (a *App) FeatureEnabled(name string) bool {
	if _, ok := features[name]; !ok {
		panic("caddy-hardening: unknown feature " + name)
	}
	on, set := a.Features[name]
	return !set || on
}

// Report records a finding when the environment is one of envs (all when none is given). An
// Error finding comes back as an error, which the reporting module returns from Provision.
func (a *App) Report(f Finding, envs ...Environment) error {
	if len(envs) > 0 {
		match := false
		for _, e := range envs {
			match = match || e == a.env
		}
		if !match {
			return nil
		}
	}
	cause := ""
	if a.validating {
		// Only once every app is provisioned: asking for the http app while it provisions
		// would load it a second time.
		cause = findingCause(a.ctx, f)
	}
	return a.findings.add(f, cause)
}

// Findings lists what validation found in this configuration so far.
func (a *App) Findings() []Finding { return a.findings.all() }

// hardeningApp returns the configured `hardening` app, or one with the defaults when the
// config has none (loading it into the config like any app).
func hardeningApp(ctx caddy.Context) (*App, error) {
	v, err := ctx.App("hardening")
	if err != nil {
		return nil, err
	}
	return v.(*App), nil
}

// Interface guards.
var (
	_ caddy.App          = (*App)(nil)
	_ caddy.Provisioner  = (*App)(nil)
	_ caddy.CleanerUpper = (*App)(nil)
)
