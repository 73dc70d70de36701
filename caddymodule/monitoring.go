package caddymodule

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyevents"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap/zapcore"

	"github.com/swarmsec/caddy-hardening/apikey"
	"github.com/swarmsec/caddy-hardening/ipclass"
	"github.com/swarmsec/caddy-hardening/monitor"
)

func init() {
	caddy.RegisterModule(&Monitoring{})
}

// Monitoring serves health routes for load balancers, Kubernetes and operators, selected by
// the last segment of the request path (mount it with `handle_path /api/monitoring/*`):
//
//   - `simple-health`: 200 `ok`, no dependency (deployment checks).
//   - `live`: liveness; the process serves. Never depends on an external system.
//   - `ready`: readiness; 503 while a critical dependency is down, a critical internal
//     component fails (a breaker marked critical), or Caddy is shutting down or draining.
//   - `health`: the comprehensive `application/health+json` document with every component.
//   - `services`: each dependency's state and history.
//   - `metrics`: system resources, Go runtime figures and the project's counters, as JSON; a
//     Prometheus scrape (Accept: OpenMetrics or text/plain) gets the exposition format of the
//     configuration's whole registry instead, details only (401 otherwise).
//   - `dashboard`: the security dashboard page (no data in it; it asks for the API key) and
//     `dashboard/data`, its JSON (details only: 401 otherwise). See DisableDashboard.
//
// Dependencies are checked in the background on their own schedules; requests read cached
// results, so no request rate reaches a dependency. Details (component names, targets, errors)
// go only to clients in the trusted IP class or with a valid API key
// (`Authorization: Bearer <key>`); everyone else gets the status word only. Other paths get
// 404 and other methods than GET and HEAD get 405, as problem+json.
type Monitoring struct {
	// Checks are the dependencies probed in the background.
	Checks []*MonitorCheck `json:"checks,omitempty"`

	// APIKeys are the `sha256:<hex>` digests (from `caddy hardening keygen`) of the keys that
	// unlock details. An item may be a runtime placeholder (`{env.MONITORING_KEYS}`,
	// `{file./run/secrets/monitoring_keys}`) resolved at load, holding one or more digests
	// separated by spaces or commas; one that resolves to nothing is refused. A wrong Bearer key is a monitoring_access_denied event and an
	// auth_failure signal; another Authorization scheme (Basic from a basic_auth in front) is
	// no key. Default: none (only trusted clients see details).
	APIKeys []string `json:"api_keys,omitempty"`

	// DisableDashboard turns off the `dashboard` and `dashboard/data` routes (they answer 404).
	// The dashboard is a page plus a JSON document of the last 15 minutes (5 s buckets) or hour
	// (1 min buckets): rate-limit decisions, blocked paths, detections, CSP violations, breaker
	// transitions, the store mode, dependencies, system figures, the top limited keys, the
	// suspicious clients and the last security events; the data is for the same clients as
	// the other details. With Redis, `?scope=all` aggregates every instance. Default: false.
	DisableDashboard bool `json:"disable_dashboard,omitempty"`

	app      *App
	ctx      caddy.Context // for events: eventContext, not Provision's ctx
	enabled  bool
	keys     *apikey.Set
	checks   []*monitor.Check
	poolKeys []string
	registry *prometheus.Registry
	system   *monitor.SystemSampler
	dash     *dashEntry                // nil when the dashboard is off
	admin    adminEndpoint             // the configuration's admin API, for the unban commands
	started  atomic.Pointer[dashFeeds] // what this configuration gave the dashboard when it started
}

// CaddyModule returns the Caddy module information.
func (*Monitoring) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.monitoring",
		New: func() caddy.Module { return new(Monitoring) },
	}
}

// Provision starts (or joins, across reloads) the background checks.
func (m *Monitoring) Provision(ctx caddy.Context) error {
	app, err := hardeningApp(ctx)
	if err != nil {
		return err
	}
	m.app, m.ctx = app, eventContext(ctx)
	if err := m.Validate(); err != nil {
		return err
	}
	if m.enabled = app.FeatureEnabled("monitoring"); !m.enabled {
		app.OnValidate(func() { m.reportDisabled(ctx) })
		return nil
	}
	if m.keys, err = apiKeySet(m.APIKeys); err != nil {
		return err
	}
	app.OnValidate(func() {
		m.reportLiteralSecrets(ctx, app)
		m.reportCriticalAppRedis(ctx, app)
		m.checkDetailsBehindProxy(ctx)
		m.checkProbesBehindBlock(ctx)
		m.checkProbesRateLimited(ctx)
	})
	m.system = &monitor.SystemSampler{}
	repl := caddy.NewReplacer()
	for _, c := range m.Checks {
		check, key, err := acquireCheck(c, app, repl)
		if err != nil {
			m.release()
			return err
		}
		m.checks = append(m.checks, check)
		m.poolKeys = append(m.poolKeys, key)
	}
	m.startChecksWhenStarted(ctx)
	m.registry = ctx.GetMetricsRegistry()
	if err := registerMonitoring(m.registry, m); err != nil {
		m.release()
		return err
	}
	m.admin = configuredAdmin(ctx)
	if err := m.provisionDashboard(); err != nil {
		m.release()
		return err
	}
	return nil
}

// startChecksWhenStarted starts the checks once every app of the configuration has started
// (Caddy's "started" event), not with the hardening app: Caddy starts its apps in no set
// order, so the hardening app often starts before the http app listens, and a check of a site
// this Caddy serves (Caddyfile.example's) was refused, logged "dependency down" and stayed
// down for a whole interval. Without the events app (a context that is not a whole
// configuration), they start with the hardening app. A configuration that is only validated
// starts them in neither case; Start is a no-op for a check that already runs.
func (m *Monitoring) startChecksWhenStarted(ctx caddy.Context) {
	if len(m.checks) == 0 {
		return
	}
	checks := m.checks
	start := func() {
		for _, c := range checks {
			c.Start()
		}
	}
	if v, err := ctx.App("events"); err == nil {
		if events, ok := v.(*caddyevents.App); ok && events.On("started", onEvent(start)) == nil {
			return
		}
	}
	m.app.OnStart(start)
}

// onEvent is a function as a handler of Caddy events.
type onEvent func()

// Handle implements caddyevents.Handler.
func (f onEvent) Handle(context.Context, caddy.Event) error {
	f()
	return nil
}

// Validate checks the configuration without side effects.
func (m *Monitoring) Validate() error {
	names := map[string]bool{}
	for i, c := range m.Checks {
		if c == nil { // `"checks": [null]`: refused, not dereferenced (it panicked the load)
			return fmt.Errorf("monitoring: checks[%d] is null; expected a check object such as {\"type\": \"tcp\", \"name\": \"db\", \"address\": \"db:5432\"}", i)
		}
		if err := c.validate(); err != nil {
			return err
		}
		if names[c.name()] {
			return fmt.Errorf("monitoring: two checks are named %q; give each a distinct name", c.name())
		}
		names[c.name()] = true
	}
	_, err := apiKeySet(m.APIKeys)
	return err
}

// Cleanup stops this configuration's checks (a check the next configuration kept goes on).
func (m *Monitoring) Cleanup() error {
	unregisterMonitoring(m.registry, m)
	m.release()
	m.releaseDashboard()
	return nil
}

// release gives back this configuration's check references. m.checks stays: on a reload Caddy
// cleans up the old configuration without waiting for its servers' last requests, which still
// read the checks' cached states.
func (m *Monitoring) release() {
	for _, k := range m.poolKeys {
		_, _ = checkPool.Delete(k)
	}
	m.poolKeys = nil
}

// ServeHTTP answers the monitoring routes.
func (m *Monitoring) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if !m.enabled {
		return next.ServeHTTP(w, r)
	}
	if d := dashboardRoute(r.URL.Path); d != "" {
		return m.serveDashboard(w, r, d)
	}
	route := path.Base(strings.TrimSuffix(r.URL.Path, "/"))
	switch route {
	case "simple-health", "live", "ready", "health", "services", "metrics":
	default:
		return writeProblem(w, http.StatusNotFound, "Not Found",
			"monitoring routes: simple-health, live, ready, health, services, metrics, dashboard, dashboard/data", nil)
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		return writeProblem(w, http.StatusMethodNotAllowed, "Method Not Allowed", "", nil)
	}
	switch route {
	case "simple-health":
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		return writeBody(w, http.StatusOK, []byte("ok\n"))
	case "live":
		return writeJSON(w, monitor.MediaType, http.StatusOK, monitor.Document{Status: monitor.Pass})
	}

	states := m.states()
	reports := m.reports()
	verdict := monitor.Aggregate(states, reports, draining(r))
	detail := m.authorized(r, route)
	switch route {
	case "ready":
		code, status := http.StatusOK, monitor.Pass
		if !verdict.Ready {
			code, status = http.StatusServiceUnavailable, monitor.Fail
		}
		doc := monitor.Document{Status: status}
		if detail {
			doc.Notes = verdict.Reasons
		}
		return writeJSON(w, monitor.MediaType, code, doc)
	case "health":
		doc := monitor.Document{Status: verdict.Status}
		if detail {
			doc.Notes = verdict.Reasons
			doc.Version = caddyVersion()
			doc.Checks = monitor.Checks(states, reports)
		}
		return writeJSON(w, monitor.MediaType, healthCode(verdict.Status), doc)
	case "services":
		if !detail {
			return writeJSON(w, "application/json", http.StatusOK, monitor.Document{Status: verdict.Status})
		}
		return writeJSON(w, "application/json", http.StatusOK, servicesView{
			Status: verdict.Status, Ready: verdict.Ready, Reasons: verdict.Reasons,
			Dependencies: monitor.Details(states), Components: componentsView(reports)})
	default: // metrics
		if wantsExposition(r) {
			return m.serveExposition(w, r, detail)
		}
		if !detail {
			return writeJSON(w, "application/json", http.StatusOK, monitor.Document{Status: verdict.Status})
		}
		return writeJSON(w, "application/json", http.StatusOK, metricsView{
			Status: verdict.Status, System: m.system.Sample(r.Context()), Counters: projectCounters(m.registry)})
	}
}

// authorized reports whether the client may see details: the trusted IP class, or a valid key.
// A Bearer key that does not match is a monitoring_access_denied event and an auth_failure
// signal (key guessing raises the client's score). No key, or another scheme (Basic from a
// basic_auth in front, a browser's cached credentials), is an ordinary probe: it was never a
// monitoring key, and counting it would ban the operators that basic_auth lets in.
func (m *Monitoring) authorized(r *http.Request, route string) bool {
	if m.app.ClassOf(r) == ipclass.Trusted {
		return true
	}
	scheme, key, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	if !strings.EqualFold(scheme, "bearer") {
		return false
	}
	if m.keys.Match(strings.TrimSpace(key)) {
		return true
	}
	m.app.SecurityEvent(m.ctx, r, zapcore.WarnLevel, EventMonitoringDenied, map[string]any{"route": route})
	m.app.Signal(m.ctx, r, ipclass.SignalAuthFailure)
	return false
}

func (m *Monitoring) states() []monitor.State {
	out := make([]monitor.State, len(m.checks))
	for i, c := range m.checks {
		out[i] = c.State()
	}
	return out
}

// reports are the internal components other modules registered with the app.
func (m *Monitoring) reports() []monitor.Report { return appReports(m.app) }

// appReports turns the app's component statuses into monitor reports.
func appReports(a *App) []monitor.Report {
	st := a.Statuses()
	out := make([]monitor.Report, len(st))
	for i, s := range st {
		status, ok := monitor.ParseStatus(string(s.Status))
		if !ok {
			status = monitor.Fail // an unknown state is not a healthy one
		}
		out[i] = monitor.Report{Component: s.Component, Type: s.Type, Status: status, Critical: s.Critical,
			Output: s.Output, Observed: s.Observed, Time: s.Time}
	}
	return out
}

// draining is true once the process is exiting, and while Caddy's shutdown_delay runs before
// this server closes ({http.shutting_down}): load balancers should stop sending new requests.
func draining(r *http.Request) bool {
	if caddy.Exiting() {
		return true
	}
	repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if !ok {
		return false
	}
	v, _ := repl.Get("http.shutting_down")
	b, _ := v.(bool)
	return b
}

// healthCode follows the draft: 5xx for fail, 2xx for pass and warn.
func healthCode(s monitor.Status) int {
	if s == monitor.Fail {
		return http.StatusServiceUnavailable
	}
	return http.StatusOK
}

func caddyVersion() string {
	v, _ := caddy.Version()
	return v
}

func writeJSON(w http.ResponseWriter, contentType string, code int, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", contentType)
	return writeBody(w, code, append(b, '\n'))
}

// writeBody answers uncached: every health answer is about now.
func writeBody(w http.ResponseWriter, code int, body []byte) error {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(code)
	_, err := w.Write(body)
	return err
}

// Interface guards.
var (
	_ caddy.Provisioner           = (*Monitoring)(nil)
	_ caddy.Validator             = (*Monitoring)(nil)
	_ caddy.CleanerUpper          = (*Monitoring)(nil)
	_ caddyhttp.MiddlewareHandler = (*Monitoring)(nil)
	_ caddyevents.Handler         = onEvent(nil)
)
