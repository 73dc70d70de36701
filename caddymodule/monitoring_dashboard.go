package caddymodule

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/swarmsec/caddy-hardening/csp"
	"github.com/swarmsec/caddy-hardening/dashboard"
	"github.com/swarmsec/caddy-hardening/ipclass"
	"github.com/swarmsec/caddy-hardening/monitor"
)

// The dashboard: two routes of the monitoring handler.
//
//	GET <mount>/dashboard       the page (always 200; it holds no data)
//	GET <mount>/dashboard/data  the data, for authorized clients only (?scope=local|all&range=15m|1h)
//
// The data is recorded in the background every 5 s by one recorder per process, kept in a
// caddy.UsagePool so a reload keeps the history.

// dashboardPage renders the page for a nonce. The page of package dashboard/page replaces this
// built-in shell when it is merged (dashboardPage = page.Render).
var dashboardPage = builtinDashboardPage

// dashSampleEvery is how often the recorder samples (the finest bucket is 5 s; sampling
// more often only adds to the same buckets). Tests shorten it.
var dashSampleEvery = 5 * time.Second

// dashDecayEvery is how often the top-K of limited keys halves its counts.
const dashDecayEvery = 5 * time.Minute

// dashAllCacheFor bounds how often the "all instances" view reads Redis.
const dashAllCacheFor = 2 * time.Second

var dashPool = caddy.NewUsagePool()

// currentDash is the running dashboard entry; nil when no configuration has the dashboard on,
// so the event and refusal feeds cost one atomic load.
var currentDash atomic.Pointer[dashEntry]

// dashCounterFamilies maps the project's Prometheus counters to the dashboard's families.
var dashCounterFamilies = map[string]string{
	"caddy_hardening_ratelimit_decisions_total": dashboard.FamilyRateLimit,
	"caddy_hardening_path_blocked_total":        dashboard.FamilyPathBlocked,
	"caddy_hardening_ip_reclassified_total":     dashboard.FamilyDetections,
	"caddy_hardening_csp_violations_total":      dashboard.FamilyCSPViolations,
	"caddy_hardening_breaker_transitions_total": dashboard.FamilyBreakerTransitions,
}

// dashEntry is the process's dashboard state: the series, the top limited keys, the events.
type dashEntry struct {
	rec      *dashboard.Recorder
	top      *dashboard.TopK
	events   dashboard.Events
	instance string

	// src is the newest started configuration's feeds.
	src     atomic.Pointer[dashFeeds]
	once    sync.Once
	started atomic.Bool
	stop    chan struct{}
	done    chan struct{}

	allMu    sync.Mutex
	allCache map[string]dashAll // by range
}

type dashAll struct {
	at     time.Time
	others []dashboard.Document
}

func newDashEntry() (caddy.Destructor, error) {
	e := &dashEntry{rec: dashboard.NewRecorder(), top: dashboard.NewTopK(), instance: dashboard.InstanceName(),
		stop: make(chan struct{}), done: make(chan struct{}), allCache: map[string]dashAll{}}
	currentDash.Store(e)
	return e, nil
}

// Destruct stops the sampler when the last configuration with the dashboard is gone.
func (e *dashEntry) Destruct() error {
	currentDash.CompareAndSwap(e, nil)
	e.once.Do(func() {}) // a later start does nothing
	close(e.stop)
	if e.started.Load() {
		<-e.done
	}
	return nil
}

// start runs the sampler once per entry.
func (e *dashEntry) start() {
	e.once.Do(func() {
		e.started.Store(true)
		go e.run()
	})
}

func (e *dashEntry) run() {
	defer close(e.done)
	e.sample(time.Now())
	tick := time.NewTicker(dashSampleEvery)
	defer tick.Stop()
	lastDecay := time.Now()
	for {
		select {
		case <-e.stop:
			return
		case now := <-tick.C:
			e.sample(now)
			if now.Sub(lastDecay) >= dashDecayEvery {
				e.top.Decay()
				lastDecay = now
			}
		}
	}
}

// sample records one snapshot from the newest configuration and, with Redis, publishes this
// instance's documents for the "all instances" view.
func (e *dashEntry) sample(now time.Time) {
	f := e.src.Load()
	if f == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	e.rec.Record(f.snapshot(ctx, now))
	if f.redis != nil {
		docs := map[string]dashboard.Document{}
		for _, res := range []dashboard.Resolution{dashboard.Fine, dashboard.Coarse} {
			docs[res.Name] = f.local(e, res, now)
		}
		if err := dashboard.Publish(ctx, f.redis, f.prefix, e.instance, docs, now); err != nil {
			f.logger.Debug("dashboard: publishing to Redis failed", zap.Error(err))
		}
	}
}

// dashFeeds is what the dashboard reads from one configuration, taken when it starts: the
// sampler runs beside a reload and must not read fields a configuration's Cleanup changes.
type dashFeeds struct {
	app      *App // Statuses only (locked)
	registry *prometheus.Registry
	checks   []*monitor.Check
	system   *monitor.SystemSampler
	limiter  *limiterEntry // nil without policy_rate_limit
	redis    redis.UniversalClient
	prefix   string
	detector *ipclass.Detector
	logger   *zap.Logger
}

func (m *Monitoring) feeds() *dashFeeds {
	return &dashFeeds{app: m.app, registry: m.registry, checks: append([]*monitor.Check(nil), m.checks...), system: m.system,
		limiter: m.app.limiter, redis: m.app.RedisClient(), prefix: m.app.KeyPrefix(),
		detector: m.app.detector(), logger: m.app.logger}
}

func (f *dashFeeds) states() []monitor.State {
	out := make([]monitor.State, len(f.checks))
	for i, c := range f.checks {
		out[i] = c.State()
	}
	return out
}

// provisionDashboard joins the process's dashboard entry.
func (m *Monitoring) provisionDashboard() error {
	if m.DisableDashboard {
		return nil
	}
	v, _, err := dashPool.LoadOrNew("dashboard", newDashEntry)
	if err != nil {
		return err
	}
	e := v.(*dashEntry)
	m.dash = e
	currentDash.Store(e)
	m.app.OnStart(func() {
		m.started = m.feeds()
		e.src.Store(m.started)
		e.start()
	})
	return nil
}

// releaseDashboard leaves the entry; the last configuration to leave stops the sampler.
func (m *Monitoring) releaseDashboard() {
	if m.dash == nil {
		return
	}
	if m.started != nil {
		m.dash.src.CompareAndSwap(m.started, nil)
	}
	m.dash = nil
	_, _ = dashPool.Delete("dashboard")
}

// dashboardRoute names the dashboard route of a request path: "page", "data" or "".
func dashboardRoute(p string) string {
	p = strings.TrimSuffix(p, "/")
	switch {
	case p == "/dashboard" || p == "dashboard" || strings.HasSuffix(p, "/dashboard"):
		return "page"
	case p == "/dashboard/data" || p == "dashboard/data" || strings.HasSuffix(p, "/dashboard/data"):
		return "data"
	}
	return ""
}

// serveDashboard answers the page and the data routes.
func (m *Monitoring) serveDashboard(w http.ResponseWriter, r *http.Request, route string) error {
	if m.dash == nil {
		return writeProblem(w, http.StatusNotFound, "Not Found", "the dashboard is off (monitoring { dashboard off })", nil)
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		return writeProblem(w, http.StatusMethodNotAllowed, "Method Not Allowed", "", nil)
	}
	if route == "page" {
		return serveDashboardPage(w)
	}
	if !m.authorized(r, "dashboard/data") {
		w.Header().Set("WWW-Authenticate", `Bearer realm="caddy-hardening dashboard"`)
		return writeProblem(w, http.StatusUnauthorized, "Unauthorized",
			"the dashboard data needs a trusted client or Authorization: Bearer <key>", nil)
	}
	q := r.URL.Query()
	res, ok := dashboard.ParseRange(q.Get("range"))
	if !ok {
		return writeProblem(w, http.StatusBadRequest, "Bad Request", "range: expected 15m or 1h", nil)
	}
	scope := q.Get("scope")
	if scope != "" && scope != "local" && scope != "all" {
		return writeProblem(w, http.StatusBadRequest, "Bad Request", "scope: expected local or all", nil)
	}
	f := m.feeds()
	if scope == "all" && f.redis == nil {
		return writeProblem(w, http.StatusBadRequest, "Bad Request", "scope all needs Redis: configure redis in the hardening global option", nil)
	}
	now := time.Now()
	doc := f.local(m.dash, res, now)
	if scope == "all" {
		others, err := m.dash.others(r.Context(), f, res, now)
		if err != nil {
			f.logger.Warn("dashboard: reading the other instances from Redis failed", zap.Error(err))
		}
		doc = dashboard.Merge(doc, others)
	}
	return writeJSON(w, "application/json", http.StatusOK, doc)
}

// others reads the other instances' documents, at most once per dashAllCacheFor per range.
func (e *dashEntry) others(ctx context.Context, f *dashFeeds, res dashboard.Resolution, now time.Time) ([]dashboard.Document, error) {
	e.allMu.Lock()
	defer e.allMu.Unlock()
	if c, ok := e.allCache[res.Name]; ok && now.Sub(c.at) < dashAllCacheFor {
		return c.others, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	docs, err := dashboard.Fetch(ctx, f.redis, f.prefix, res.Name, e.instance, now)
	e.allCache[res.Name] = dashAll{at: now, others: docs}
	return docs, err
}

// dashboardCSP is the page's policy; %[1]s is the nonce.
const dashboardCSP = "default-src 'none'; script-src 'nonce-%[1]s'; style-src 'nonce-%[1]s'; img-src 'self' data:; " +
	"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// serveDashboardPage writes the page under its own CSP. When security_headers wraps the route,
// its nonce is the one the page carries: its HTML rewriting then keeps the page's nonces
// instead of stripping them, and our policy replaces its CSP header (a replaced value stays).
func serveDashboardPage(w http.ResponseWriter) error {
	nonce := ""
	if sw := findSecurityWriter(w); sw != nil {
		nonce = sw.nonce
	}
	if nonce == "" {
		nonce = csp.NewNonce()
	}
	h := w.Header()
	h.Set("Content-Security-Policy", fmt.Sprintf(dashboardCSP, nonce))
	h.Del("Content-Security-Policy-Report-Only")
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Referrer-Policy", "no-referrer")
	return writeBody(w, http.StatusOK, dashboardPage(nonce))
}

// findSecurityWriter finds security_headers' writer among the wrappers of w.
func findSecurityWriter(w http.ResponseWriter) *securityWriter {
	for i := 0; i < 16 && w != nil; i++ {
		if sw, ok := w.(*securityWriter); ok {
			return sw
		}
		u, ok := w.(interface{ Unwrap() http.ResponseWriter })
		if !ok {
			return nil
		}
		w = u.Unwrap()
	}
	return nil
}

// dashSnapshot reads the feeds: the project's counters, the checks, the system, the store mode.
func (f *dashFeeds) snapshot(ctx context.Context, now time.Time) dashboard.Snapshot {
	s := dashboard.Snapshot{Time: now, Values: map[string][]dashboard.Point{}, States: map[string]string{}}
	// The configuration's registry is what Caddy's /metrics serves: a collector no module of
	// this configuration registered (csp_report absent) is absent here too, so the totals are
	// /metrics' values.
	var families []*dto.MetricFamily
	if f.registry != nil {
		families, _ = f.registry.Gather() // a partial result is still worth recording
	}
	for _, fam := range families {
		name, ok := dashCounterFamilies[fam.GetName()]
		if !ok || fam.GetType() != dto.MetricType_COUNTER {
			continue
		}
		for _, mt := range fam.GetMetric() {
			labels := make([]dashboard.Label, len(mt.GetLabel()))
			for i, l := range mt.GetLabel() {
				labels[i] = dashboard.Label{Name: l.GetName(), Value: l.GetValue()}
			}
			s.Values[name] = append(s.Values[name], dashboard.Point{Labels: labels, Value: mt.GetCounter().GetValue()})
		}
	}
	for _, st := range f.states() {
		l := []dashboard.Label{{Name: "name", Value: st.Name}}
		s.Values[dashboard.FamilyDependencyUp] = append(s.Values[dashboard.FamilyDependencyUp], dashboard.Point{Labels: l, Value: boolFloat(st.Up)})
		if st.Checked {
			s.Values[dashboard.FamilyDependencyLatency] = append(s.Values[dashboard.FamilyDependencyLatency],
				dashboard.Point{Labels: l, Value: float64(st.Latency.Microseconds()) / 1000})
		}
	}
	sys := f.system.Sample(ctx)
	s.Values[dashboard.FamilyCPUPercent] = []dashboard.Point{{Value: sys.Process.CPUPercent}}
	s.Values[dashboard.FamilyMemoryBytes] = []dashboard.Point{{Value: float64(sys.Process.RSS)}}
	s.Values[dashboard.FamilyGoroutines] = []dashboard.Point{{Value: float64(sys.Runtime.Goroutines)}}
	if l := f.limiter; l != nil {
		s.States[dashboard.StateStoreMode] = l.mode()
	}
	return s
}

// dashLocal builds this instance's document at res, tables included (they are published too,
// so the "all instances" view has them).
func (f *dashFeeds) local(e *dashEntry, res dashboard.Resolution, now time.Time) dashboard.Document {
	doc := dashboard.Document{Instance: e.instance, Instances: []string{e.instance}, Scope: "local", Generated: now.UTC().Truncate(time.Second)}
	end := e.rec.Last()
	if end.IsZero() {
		end = now
	}
	e.rec.Window(res, end).Fill(&doc)
	doc.Current = f.current()
	doc.TopLimited = e.top.Top(dashboard.TopShown, displayKey)
	doc.Suspicious = f.suspicious(now)
	doc.Events = e.events.Last()
	return doc
}

// displayKey shows an IP key as it is and any other key as a digest: a key may be a
// credential (an API key), which the page must not show.
func displayKey(_, key string) string {
	if _, err := netip.ParseAddr(key); err == nil {
		return key
	}
	sum := sha256.Sum256([]byte(key))
	return "sha256:" + hex.EncodeToString(sum[:8])
}

// dashCurrent is the state now: the health verdict and what degrades the edge.
func (f *dashFeeds) current() dashboard.Current {
	states, reports := f.states(), appReports(f.app)
	v := monitor.Aggregate(states, reports, caddy.Exiting())
	c := dashboard.Current{Status: string(v.Status), Ready: v.Ready, Reasons: v.Reasons,
		Degraded: []dashboard.Degraded{}, Breakers: []dashboard.BreakerState{}, Dependencies: []dashboard.DependencyCurrent{}}
	if c.Reasons == nil {
		c.Reasons = []string{}
	}
	for _, r := range reports {
		switch {
		case r.Component == "ratelimit:store":
			if mode, _ := r.Observed["mode"].(string); mode == storeModeFallback {
				c.Degraded = append(c.Degraded, dashboard.Degraded{Kind: dashboard.DegradedRateLimitFallback, Component: r.Component, Message: r.Output})
			}
		case strings.HasPrefix(r.Component, "breaker:"):
			state, _ := r.Observed["state"].(string)
			c.Breakers = append(c.Breakers, dashboard.BreakerState{Name: strings.TrimPrefix(r.Component, "breaker:"), State: state})
			if state == "open" {
				c.Degraded = append(c.Degraded, dashboard.Degraded{Kind: dashboard.DegradedBreakerOpen, Component: r.Component, Message: r.Output})
			}
		case r.Status == monitor.Fail:
			c.Degraded = append(c.Degraded, dashboard.Degraded{Kind: dashboard.DegradedComponentFail, Component: r.Component, Message: r.Output})
		}
	}
	for _, s := range states {
		d := dashboard.DependencyCurrent{Name: s.Name, Status: string(s.Status), Critical: s.Critical}
		if s.Checked {
			ms := float64(s.Latency.Microseconds()) / 1000
			d.LatencyMS = &ms
		}
		if s.Status != monitor.Pass {
			d.Error = s.Output
		}
		c.Dependencies = append(c.Dependencies, d)
		if s.Critical && !s.Up {
			c.Degraded = append(c.Degraded, dashboard.Degraded{Kind: dashboard.DegradedDependencyDown, Component: s.Name,
				Message: fmt.Sprintf("critical dependency %s is down: %s", s.Name, s.Output)})
		}
	}
	return c
}

// dashMaxDetections bounds the detections read to pick the top ones by score.
const dashMaxDetections = 1000

func (f *dashFeeds) suspicious(now time.Time) []dashboard.Suspicious {
	out := []dashboard.Suspicious{}
	det := f.detector
	if det == nil {
		return out
	}
	admin := "http://" + caddy.DefaultAdminListen
	for _, d := range det.Detections(dashMaxDetections) {
		out = append(out, dashboard.NewSuspicious(d.Addr.String(), d.Score, d.Signal.String(), d.Until, d.Shadow, now, admin))
	}
	dashboard.SortSuspicious(out)
	if len(out) > dashboard.MaxSuspicious {
		out = out[:dashboard.MaxSuspicious]
	}
	return out
}

// recordDashboardEvent puts a security event in the dashboard's ring (rate-bounded; nothing
// is built for an event the ring does not take).
func recordDashboardEvent(a *App, r *http.Request, level zapcore.Level, name string, data map[string]any) {
	e := currentDash.Load()
	if e == nil {
		return
	}
	now := time.Now()
	if !e.events.Admit(now) {
		return
	}
	ev := dashboard.Event{Time: now.UTC(), Event: name, Level: level.String()}
	if r != nil {
		ev.ClientIP, _ = caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string)
		ev.IPClass = a.ClassOf(r).String()
		ev.URI = r.RequestURI
	}
	if len(data) > 0 {
		ev.Fields = make(map[string]string, len(data))
		for k, v := range data {
			if len(ev.Fields) == dashboard.MaxEventFields {
				break
			}
			ev.Fields[k] = eventValue(v)
		}
	}
	e.events.Add(ev)
}

func eventValue(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case fmt.Stringer:
		return x.String()
	}
	return fmt.Sprint(v)
}

// recordRefusal counts a refused key for the dashboard's top limited keys.
func recordRefusal(policy, key string) {
	if e := currentDash.Load(); e != nil {
		e.top.Add(policy, key)
	}
}

// builtinDashboardPage is a minimal page (a sign-in prompt and the data as text) until the
// real page is merged.
func builtinDashboardPage(nonce string) []byte {
	return []byte(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>caddy-hardening dashboard</title>
<style nonce="` + nonce + `">body{font:14px system-ui,sans-serif;margin:2em}pre{white-space:pre-wrap}</style>
</head><body><h1>caddy-hardening</h1>
<form id="login" hidden><label>API key <input id="key" type="password" autocomplete="off"></label> <button>Sign in</button></form>
<pre id="out"></pre>
<script nonce="` + nonce + `">
(function () {
  var K = "hardening.dashboard.key", form = document.getElementById("login"), out = document.getElementById("out");
  form.addEventListener("submit", function (e) {
    e.preventDefault();
    sessionStorage.setItem(K, document.getElementById("key").value);
    load();
  });
  function load() {
    var key = sessionStorage.getItem(K), h = {};
    if (key) { h.Authorization = "Bearer " + key; }
    fetch("dashboard/data", {headers: h, cache: "no-store"}).then(function (r) {
      if (r.status === 401) { form.hidden = false; out.textContent = ""; return null; }
      form.hidden = true;
      return r.json();
    }).then(function (d) {
      if (d) { out.textContent = d.instance + " " + d.current.status + "\n" + JSON.stringify(d.totals, null, 1); }
    });
  }
  load();
  setInterval(load, 5000);
})();
</script></body></html>
`)
}
