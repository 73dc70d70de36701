package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/swarmsec/caddy-hardening/breaker"
)

func init() {
	caddy.RegisterModule(&UpstreamBreaker{})
}

// breakerPool holds the breakers by name and trip settings, so routes of one config with the
// same name share one breaker, and a reload that keeps the settings keeps its state.
var breakerPool = caddy.NewUsagePool()

// configBreakers remembers, per config (its hardening app), the settings each breaker name was
// first given, to refuse one name with two different sets of breaker-level settings.
var configBreakers sync.Map // breakerInConfig -> []breakerSetting

type breakerInConfig struct {
	app  *App
	name string
}

// UpstreamBreaker is a circuit breaker around the rest of the route (typically reverse_proxy):
// it counts the outcomes of the requests it lets through, and once they show the upstream is
// failing it answers at once, without calling the upstream, until `open_for` has passed; then
// it lets `half_open_requests` probes through, which close it again or reopen it.
//
// A failure is an error from the next handler with a 5xx status or none (a refused dial is
// 502, a timeout 504), a response status in `failure_status`, or a response header slower than
// `slow_threshold`. An error with another status (file_server's 404) is judged by that status
// against `failure_status`: a failure when listed, otherwise not counted. A gRPC call is judged
// by the HTTP status its grpc-status stands for (UNAVAILABLE 503, DEADLINE_EXCEEDED 504,
// INTERNAL 500, ...; see breaker.GRPCStatus): from its header (a trailers-only response), or,
// when its header has none and the breaker is closed, from its trailers unless a message came
// first (a call that delivered a message was answered). A client that cancels (unless it
// waited longer than `slow_threshold`: slow), or whose request body cannot be read
// (reverse_proxy's 502 for a malformed chunked body), is not counted either, nor is a request
// that a policy_rate_limit or path_guard after the breaker refuses (the upstream never got it).
//
// While open, the breaker answers 503 with Retry-After (seconds until half-open) and an
// `application/problem+json` body (a gRPC call: HTTP 200 with grpc-status 14, UNAVAILABLE, and
// grpc-retry-pushback-ms), or runs the `fallback` routes instead. Before the fallback
// runs it sets these placeholders:
//
//	{http.vars.breaker_name}         the breaker's name
//	{http.vars.breaker_state}        open or half_open
//	{http.vars.breaker_retry_after}  seconds until half-open (1 when half-open)
//
// Breakers with the same name share one state across the routes of the instance and across
// config reloads that keep their trip settings. Within one config, the handlers of one name
// must agree on every setting but the fallback; a difference refuses the config. A request that
// reaches a breaker of a name it already passed (nested routes, a snippet imported twice) is
// counted once, by the outer one; the inner one lets it through. With
// `shared`, an instance whose breaker opens records it in the hardening app's Redis and every
// instance opens too (within `sync_interval`); Redis is never on a request's path, and without
// it each instance decides alone.
type UpstreamBreaker struct {
	// Name identifies the breaker in metrics, logs, health reports and Redis: letters, digits,
	// '.', '_' and '-', at most 64 bytes. Required.
	Name string `json:"name"`

	// ConsecutiveFailures opens the breaker after this many failures in a row. Default: 5 when
	// failure_ratio is not set either.
	ConsecutiveFailures int `json:"consecutive_failures,omitempty"`

	// FailureRatio (above 0, at most 1) opens the breaker when this share of the requests in
	// the rolling interval failed, once min_requests were counted. Both rules may be set: the
	// first that fires opens the breaker. Default: off.
	FailureRatio float64 `json:"failure_ratio,omitempty"`

	// MinRequests is how many requests the interval must hold before failure_ratio applies.
	// Refused without failure_ratio. Default: 10.
	MinRequests int `json:"min_requests,omitempty"`

	// Interval is the rolling window of failure_ratio (gobreaker's bucketed window, 10
	// buckets), at least 10ms. When set, consecutive failures older than the window are
	// forgotten too. Default: 1m with failure_ratio; otherwise no window.
	Interval caddy.Duration `json:"interval,omitempty"`

	// OpenFor is how long the breaker stays open before it lets probes through, at least
	// 100ms. Default: 30s.
	OpenFor caddy.Duration `json:"open_for,omitempty"`

	// HalfOpenRequests is how many probes the half-open breaker lets through; that many
	// successes close it, one failure opens it again. Default: 1.
	HalfOpenRequests int `json:"half_open_requests,omitempty"`

	// FailureStatus lists the response statuses that count as failures: codes ("503") or
	// classes ("5xx"), written or carried by a handler error (file_server's 404). A class
	// leaves out 501, an upstream's answer to a method it does not know, which any client can
	// send; write "501" to count it. Handler errors with a 5xx status or none are failures
	// whatever it says. A gRPC call's grpc-status (in its header, or, while the breaker is
	// closed, in its trailers when no message came before) is judged by the HTTP status it
	// stands for (UNAVAILABLE 503, UNIMPLEMENTED 501, INVALID_ARGUMENT 400, ...). Default: 5xx.
	FailureStatus []string `json:"failure_status,omitempty"`

	// SlowThreshold (at least 1ms) makes a response whose header took longer than this a failure, counted
	// from the end of the request body (or the request's start, for one without a body), so a
	// client that uploads slowly does not make the upstream slow. A client that gives up after
	// waiting longer, with no response header yet, counts as slow too. Default: off. A hung
	// upstream is only noticed once it answers or times out, or clients give up on it after
	// slow_threshold: give reverse_proxy a `response_header_timeout` so hangs become 504 errors.
	SlowThreshold caddy.Duration `json:"slow_threshold,omitempty"`

	// Shared keeps the open state in the hardening app's Redis so every instance opens
	// together. A start or reload that creates the breaker reads the shared state before it
	// serves (waiting at most 1s for all its shared breakers), so an instance joining while
	// the shared breaker is open opens at once. Without Redis configured it has no effect (a
	// configuration warning says so). Default: false.
	Shared bool `json:"shared,omitempty"`

	// SyncInterval is how often a shared breaker reads the shared state, from 100ms to 1m:
	// every instance reads Redis once per shared breaker each time, with or without traffic,
	// and follows another instance's trip only when it next reads.
	// Default: 500ms.
	SyncInterval caddy.Duration `json:"sync_interval,omitempty"`

	// Critical makes an open breaker fail readiness (monitoring's /ready) instead of only
	// warning in health. Default: false.
	Critical bool `json:"critical,omitempty"`

	// Fallback routes run instead of the rest of the route while the breaker refuses a
	// request: a static degraded page, a redirect, another upstream. If none of them writes a
	// response, the 503 problem is sent. Default: none (the 503 problem).
	Fallback caddyhttp.RouteList `json:"fallback,omitempty"`

	on         bool
	app        *App
	ctx        caddy.Context // for events: eventContext, not Provision's ctx
	key        string
	entry      *breakerEntry
	classifier breaker.Classifier
	fallback   caddyhttp.Handler
	series     *breakerSeries // held from Provision to Cleanup
	metrics    breakerMetrics // the series' metrics
	openReply  atomic.Pointer[renderedReply]
	heldVar    string // the request variable that says this breaker holds the request (nesting)
	inConfig   bool   // this handler's name is in configBreakers
	acquired   bool   // this handler holds a pool reference
}

// CaddyModule returns the Caddy module information.
func (*UpstreamBreaker) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.upstream_breaker",
		New: func() caddy.Module { return new(UpstreamBreaker) },
	}
}

// settings turns the JSON fields into the core package's settings, checking them. An invalid
// setting is a *breaker.SettingError, so the Caddyfile parser can report its line.
func (h *UpstreamBreaker) settings() (breaker.Settings, error) {
	s := breaker.Settings{Name: h.Name, FailureRatio: h.FailureRatio,
		Interval: time.Duration(h.Interval), OpenFor: time.Duration(h.OpenFor)}
	for _, f := range []struct {
		name string
		v    int
		dst  *uint32
	}{{"consecutive_failures", h.ConsecutiveFailures, &s.ConsecutiveFailures},
		{"min_requests", h.MinRequests, &s.MinRequests},
		{"half_open_requests", h.HalfOpenRequests, &s.HalfOpenRequests}} {
		if f.v < 0 || f.v > 1_000_000 {
			return s, &breaker.SettingError{Setting: f.name, Msg: fmt.Sprintf("must be from 1 to 1000000 (0 for the default), got %d", f.v)}
		}
		*f.dst = uint32(f.v)
	}
	return s, s.Validate()
}

// validate checks every setting; an invalid one is a *breaker.SettingError.
func (h *UpstreamBreaker) validate() error {
	if _, err := h.settings(); err != nil {
		return err
	}
	if _, err := breaker.ParseStatuses(h.FailureStatus); err != nil {
		return &breaker.SettingError{Setting: "failure_status", Msg: "cannot list " + err.Error()}
	}
	for _, d := range []struct {
		name string
		v    caddy.Duration
	}{{"slow_threshold", h.SlowThreshold}, {"sync_interval", h.SyncInterval}} {
		if d.v < 0 {
			return &breaker.SettingError{Setting: d.name, Msg: fmt.Sprintf("must be positive, got %s", time.Duration(d.v))}
		}
	}
	if h.OpenFor > 0 && time.Duration(h.OpenFor) < minOpenFor {
		return &breaker.SettingError{Setting: "open_for", Msg: fmt.Sprintf("must be at least %s (a shorter one, a unit typo such as 1ns, half-opens at once and holds nothing back), got %s",
			minOpenFor, time.Duration(h.OpenFor))}
	}
	if h.SlowThreshold > 0 && time.Duration(h.SlowThreshold) < minSlowThreshold {
		return &breaker.SettingError{Setting: "slow_threshold", Msg: fmt.Sprintf("must be at least %s (a shorter one, a unit typo such as 1ns, makes every response slow), got %s",
			minSlowThreshold, time.Duration(h.SlowThreshold))}
	}
	if h.MinRequests != 0 && h.FailureRatio == 0 {
		return &breaker.SettingError{Setting: "min_requests", Msg: "applies to failure_ratio, which is not set"}
	}
	if h.SyncInterval != 0 && !h.Shared {
		return &breaker.SettingError{Setting: "sync_interval", Msg: "applies to a shared breaker only: add shared, or leave it out"}
	}
	if h.SyncInterval > 0 && time.Duration(h.SyncInterval) < minSyncInterval {
		return &breaker.SettingError{Setting: "sync_interval", Msg: fmt.Sprintf("must be at least %s (every instance reads Redis once per sync_interval), got %s",
			minSyncInterval, time.Duration(h.SyncInterval))}
	}
	if time.Duration(h.SyncInterval) > maxSyncInterval {
		return &breaker.SettingError{Setting: "sync_interval", Msg: fmt.Sprintf("must be at most %s (the other instances follow a trip only when they next read, so a longer one leaves them sending to an upstream that is open elsewhere), got %s",
			maxSyncInterval, time.Duration(h.SyncInterval))}
	}
	return nil
}

// minOpenFor and minSlowThreshold are the shortest open_for and slow_threshold: shorter ones
// are unit typos (1ns for 1s), which turn the breaker into one that never holds a request back,
// or one that opens on a healthy upstream.
const (
	minOpenFor       = 100 * time.Millisecond
	minSlowThreshold = time.Millisecond
)

// minSyncInterval is the shortest sync_interval: each instance reads Redis once per shared
// breaker every sync_interval, idle or not, so a unit typo (1ns, 1us) would turn a fleet into
// a Redis load generator.
const minSyncInterval = 100 * time.Millisecond

// maxSyncInterval is the longest sync_interval: an instance learns of another's trip when it
// next reads, and a shared breaker that others follow minutes late (or, at 1000000h, never)
// shares nothing.
const maxSyncInterval = time.Minute

// Validate checks the configuration.
func (h *UpstreamBreaker) Validate() error {
	if h.Name == "" {
		return fmt.Errorf(`upstream_breaker: a breaker needs a name ("name": letters, digits, '.', '_' or '-', at most %d)`, breaker.MaxNameLength)
	}
	if err := h.validate(); err != nil {
		return fmt.Errorf("upstream_breaker %s: %v", h.Name, err)
	}
	return nil
}

// syncEvery is sync_interval as in effect.
func (h *UpstreamBreaker) syncEvery() time.Duration {
	if h.SyncInterval == 0 {
		return breaker.DefaultSyncInterval
	}
	return time.Duration(h.SyncInterval)
}

// breakerSetting is one breaker-level setting as in effect (defaults filled in).
type breakerSetting struct{ name, value string }

// inEffect lists the breaker-level settings, everything but the fallback, as in effect: the
// handlers that share a name must agree on all of them.
func (h *UpstreamBreaker) inEffect(s breaker.Settings) []breakerSetting {
	s = s.WithDefaults()
	statuses, _ := breaker.ParseStatuses(h.FailureStatus)
	dur := func(d time.Duration) string {
		if d == 0 {
			return "off"
		}
		return d.String()
	}
	return []breakerSetting{
		{"consecutive_failures", strconv.FormatUint(uint64(s.ConsecutiveFailures), 10)},
		{"failure_ratio", strconv.FormatFloat(s.FailureRatio, 'g', -1, 64)},
		{"min_requests", strconv.FormatUint(uint64(s.MinRequests), 10)},
		{"interval", dur(s.Interval)},
		{"open_for", s.OpenFor.String()},
		{"half_open_requests", strconv.FormatUint(uint64(s.HalfOpenRequests), 10)},
		{"failure_status", statuses.String()},
		{"slow_threshold", dur(time.Duration(h.SlowThreshold))},
		{"shared", strconv.FormatBool(h.Shared)},
		{"sync_interval", h.syncEvery().String()},
		{"critical", strconv.FormatBool(h.Critical)},
	}
}

// Provision takes the breaker from the pool (creating it on first use), starts the shared
// state when asked, and registers metrics, events and the health report.
func (h *UpstreamBreaker) Provision(ctx caddy.Context) error {
	app, err := hardeningApp(ctx)
	if err != nil {
		return err
	}
	h.ctx, h.app = eventContext(ctx), app
	h.on = app.FeatureEnabled("upstream_breaker")
	if !h.on {
		return nil
	}
	if err := h.Validate(); err != nil {
		return err
	}
	settings, _ := h.settings()
	h.classifier.Statuses, _ = breaker.ParseStatuses(h.FailureStatus)
	h.classifier.SlowThreshold = time.Duration(h.SlowThreshold)
	h.heldVar = "upstream_breaker_held." + h.Name

	if err := h.acquire(ctx, app, settings); err != nil {
		return err
	}
	app.OnValidate(func() { h.checkPlacement(ctx) }) // needs the provisioned routes around it
	if len(h.Fallback) > 0 {
		if err := h.Fallback.Provision(ctx); err != nil {
			return fmt.Errorf("upstream_breaker %s: fallback: %v", h.Name, err)
		}
		h.fallback = h.Fallback.Compile(caddyhttp.HandlerFunc(h.fallbackEnd))
	}
	e, name, critical := h.entry, h.Name, h.Critical
	app.RegisterStatus("breaker:"+name, func() StatusReport { return e.status(name, critical) })
	return nil
}

// acquire takes this name's breaker from the pool, creating (and sharing) it on first use.
func (h *UpstreamBreaker) acquire(ctx caddy.Context, app *App, settings breaker.Settings) error {
	redis := app.RedisClient()
	shared := h.Shared && redis != nil // without Redis: breaker.shared_without_redis (checkPlacement)
	effective := h.inEffect(settings)
	prev, loaded := configBreakers.LoadOrStore(breakerInConfig{app, h.Name}, effective)
	h.inConfig = true
	if loaded {
		if _, _, _, differ := firstDifference(prev.([]breakerSetting), effective); differ {
			return h.sameNameConflict(ctx, prev.([]breakerSetting), effective)
		}
	}
	// The pool key: what the breaker itself depends on, as in effect, so a reload that only
	// spells out a default keeps the state. Redis and the key prefix count only for a shared
	// breaker: tuning Redis must not close a local breaker that is open.
	h.key = fmt.Sprintf("%+v|shared=false", settings.WithDefaults())
	if shared {
		h.key = fmt.Sprintf("%+v|shared=true|redis=%s|prefix=%s|sync=%s", settings.WithDefaults(), app.redisKey, app.KeyPrefix(), h.syncEvery())
	}
	if err := registerBreakerMetrics(ctx.GetMetricsRegistry()); err != nil {
		return err
	}
	series := holdBreakerSeries(h.Name)
	h.series, h.metrics = series, series.metrics
	val, loaded, err := breakerPool.LoadOrNew(h.key, func() (caddy.Destructor, error) {
		b, err := breaker.New(settings)
		if err != nil {
			return nil, err
		}
		e := &breakerEntry{b: b, series: series}
		e.join(h) // before anything can change its state: the first transition has an owner
		series.add(e)
		b.Listen(e.onTransition)
		if shared {
			b.Share(breaker.NewRedisStore(redis, app.KeyPrefix(), h.Name), time.Duration(h.SyncInterval), e.onSharedHealth)
		}
		return e, nil
	})
	if err != nil {
		return err
	}
	h.entry, h.acquired = val.(*breakerEntry), true
	if loaded {
		h.entry.join(h)
	}
	if shared {
		h.awaitShared(app)
	}
	return nil
}

// sharedJoinWait bounds how long a configuration's start (or reload) waits for its new shared
// breakers to read the shared state: all of them together, from the first one's provisioning.
const sharedJoinWait = time.Second

// awaitShared waits until the shared breaker has read the shared state once (at most until the
// configuration's deadline), so that an instance starting or reloading while the shared breaker
// is open does not serve a first request to the failing upstream before its first sync. A
// breaker kept from the previous configuration has read it long ago: no wait.
func (h *UpstreamBreaker) awaitShared(app *App) {
	app.breakerJoinOnce.Do(func() { app.breakerJoinBy = time.Now().Add(sharedJoinWait) })
	t := time.NewTimer(time.Until(app.breakerJoinBy))
	defer t.Stop()
	select {
	case <-h.entry.b.Joined():
	case <-t.C:
		select {
		case <-h.entry.b.Joined():
		default:
			app.logger.Warn("the shared breaker state was not read in time: deciding locally until Redis answers",
				zap.String("breaker", h.Name), zap.Duration("waited_at_most", sharedJoinWait))
		}
	}
}

// Cleanup releases this config's references to the breaker and to its name's metric series
// (also after a failed Provision).
func (h *UpstreamBreaker) Cleanup() error {
	if h.inConfig {
		configBreakers.Delete(breakerInConfig{h.app, h.Name})
		h.inConfig = false
	}
	var err error
	if h.acquired {
		h.acquired = false // the entry stays readable: a request still draining can finish
		if h.entry.leave(h) == 0 {
			h.series.retire(h.entry)
		}
		_, err = breakerPool.Delete(h.key)
	}
	if h.series != nil {
		h.series.release()
		h.series = nil // h.metrics stays: a request still draining counts into detached series
	}
	return err
}

// ServeHTTP asks the breaker, runs the rest of the route when allowed, and reports how it went.
func (h *UpstreamBreaker) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if !h.on {
		return next.ServeHTTP(w, r)
	}
	vars, _ := r.Context().Value(caddyhttp.VarsCtxKey).(map[string]any)
	hold, _ := vars[h.heldVar].(*breakerHold)
	if hold != nil && hold.entry.Load() == h.entry { // this breaker already holds the request, further out
		return next.ServeHTTP(w, r)
	}
	b := h.entry.b
	tk, err := b.Allow()
	if err != nil {
		return h.refuse(w, r, err)
	}
	rec := &breakerRecorder{ResponseWriterWrapper: caddyhttp.ResponseWriterWrapper{ResponseWriter: w},
		h: h, tk: tk, start: time.Now(), vars: vars}
	if vars != nil {
		if hold == nil {
			hold = &rec.hold
			vars[h.heldVar] = hold
		}
		hold.entry.Store(h.entry)
	}
	if r.Body != nil && r.Body != http.NoBody {
		rec.body.ReadCloser = r.Body
		r.Body = &rec.body
	}
	defer func() {
		if hold != nil {
			hold.entry.Store(nil) // handle_errors routes run after: they may hold it again
		}
		if rec.reported {
			return
		}
		// A panic in the route: the upstream did not answer well. reverse_proxy panics too
		// when a body it streams is cut, the client's going away included: a pending gRPC
		// call whose client left is not counted.
		if rec.grpcPending {
			rec.grpcSettle(errRoutePanicked, errors.Is(r.Context().Err(), context.Canceled))
			return
		}
		rec.report(breaker.Result{Err: errRoutePanicked})
	}()
	err = next.ServeHTTP(rec, r)
	if rec.grpcPending && !rec.reported { // a gRPC call without a message: its trailers say
		rec.grpcSettle(err, errors.Is(r.Context().Err(), context.Canceled))
	}
	if !rec.reported { // no response header was written: judge by the error
		res := breaker.Result{Err: err, Latency: rec.latency(),
			ClientGone: errors.Is(r.Context().Err(), context.Canceled)}
		if err != nil {
			var he caddyhttp.HandlerError // declared here: it escapes, so only errors pay for it
			if errors.As(err, &he) {
				res.ErrStatus = he.StatusCode
			}
		}
		rec.report(res)
	}
	return err
}

// refuse answers a request the breaker did not let through: the fallback, or the 503 problem.
func (h *UpstreamBreaker) refuse(w http.ResponseWriter, r *http.Request, cause error) error {
	state := breaker.StateOpen
	if errors.Is(cause, breaker.ErrTooManyRequests) {
		state = breaker.StateHalfOpen
	}
	if h.fallback == nil {
		h.metrics.shortCircuited[state][responseProblem].Inc()
		return h.writeOpen(w, r, state)
	}
	caddyhttp.SetVar(r.Context(), "breaker_name", h.Name)
	caddyhttp.SetVar(r.Context(), "breaker_state", breaker.StateName(state))
	caddyhttp.SetVar(r.Context(), "breaker_retry_after", strconv.Itoa(h.retryAfter(state)))
	fr := &fallbackRun{state: state}
	fr.w.ResponseWriter = w
	returned := false
	defer func() {
		if !returned { // a panic, counted before it goes on to net/http (see errFallbackAborted)
			h.metrics.shortCircuited[state][fr.response(errFallbackAborted)].Inc()
		}
	}()
	err := h.fallback.ServeHTTP(&fr.w, r.WithContext(context.WithValue(r.Context(), fallbackRunKey{}, fr)))
	returned = true
	h.metrics.shortCircuited[state][fr.response(err)].Inc()
	return err
}

// errFallbackAborted stands for a fallback that panicked: Caddy's `abort` (http.ErrAbortHandler:
// the client gets no answer, counted as a 5xx), or a reverse_proxy whose upstream cut the body
// it was streaming (its header went out: counted by its status).
var errFallbackAborted = errors.New("the fallback aborted")

// retryAfter is Retry-After in whole seconds: until half-open, or 1 while probes run.
func (h *UpstreamBreaker) retryAfter(state breaker.State) int {
	if state != breaker.StateOpen {
		return 1
	}
	d := h.entry.b.RetryAfter(time.Now())
	return int((d + time.Second - 1) / time.Second)
}

// breakerEntry is one breaker in the pool, with the handlers using it. Its transitions are
// reported when it is its name's reporting entry (see breakerSeries), through the owner: the
// most recently provisioned handler not yet cleaned up, so the newest config's app, logger and
// events. A config refused after one of its handlers joined cleans that handler up, and the
// running config's handler owns the entry again.
type breakerEntry struct {
	b      *breaker.Breaker
	series *breakerSeries
	since  atomic.Int64  // unix nanoseconds of the last transition
	state  breaker.State // the last transition delivered; guarded by series.mu

	mu    sync.Mutex
	live  []*UpstreamBreaker // provisioned and not cleaned up, oldest first
	owner atomic.Pointer[UpstreamBreaker]
}

// join makes a provisioned handler the owner.
func (e *breakerEntry) join(h *UpstreamBreaker) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.live = append(e.live, h)
	e.owner.Store(h)
}

// leave forgets a cleaned-up handler; the newest remaining one becomes the owner. It returns
// how many handlers remain.
func (e *breakerEntry) leave(h *UpstreamBreaker) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.live = slices.DeleteFunc(e.live, func(x *UpstreamBreaker) bool { return x == h })
	n := len(e.live)
	if n > 0 {
		e.owner.Store(e.live[n-1])
	} else {
		e.owner.Store(nil)
	}
	return n
}

// Destruct stops the breaker's goroutines once no config uses it.
func (e *breakerEntry) Destruct() error {
	e.b.Close()
	return nil
}

// Interface guards.
var (
	_ caddy.Provisioner           = (*UpstreamBreaker)(nil)
	_ caddy.Validator             = (*UpstreamBreaker)(nil)
	_ caddy.CleanerUpper          = (*UpstreamBreaker)(nil)
	_ caddyhttp.MiddlewareHandler = (*UpstreamBreaker)(nil)
	_ caddy.Destructor            = (*breakerEntry)(nil)
)
