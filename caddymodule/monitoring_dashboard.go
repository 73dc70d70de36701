package caddymodule

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/swarmsec/caddy-hardening/dashboard"
	"github.com/swarmsec/caddy-hardening/internal/redisconn"
)

// The dashboard: two routes of the monitoring handler.
//
//	GET <mount>/dashboard       the page (always 200; it holds no data)
//	GET <mount>/dashboard/data  the data, for authorized clients only (?scope=local|all&range=15m|1h)
//
// The data is recorded in the background every 5 s by one recorder per process, kept in a
// caddy.UsagePool so a reload keeps the history.

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

	// process tells this process's publications from another's under the same instance name;
	// foreign and own count the samples in a row whose claim found another process's id, or
	// this one's; nameShared is set after two foreign ones, cleared after three own ones.
	process    string
	foreign    int
	own        int
	nameShared atomic.Bool

	// publishFailing is set while this instance's documents fail to reach Redis (see
	// notePublish); only the sampler's goroutine touches it.
	publishFailing bool

	// src is the newest started configuration's feeds; live the feeds of every started
	// configuration not cleaned up yet, oldest first (see publish and withdraw).
	src     atomic.Pointer[dashFeeds]
	liveMu  sync.Mutex
	live    []*dashFeeds
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
	err    error // why others lacks some, kept as long as they are
}

func newDashEntry() (caddy.Destructor, error) {
	var id [8]byte
	_, _ = rand.Read(id[:])
	e := &dashEntry{rec: dashboard.NewRecorder(), top: dashboard.NewTopK(), instance: dashboard.InstanceName(),
		process: hex.EncodeToString(id[:]),
		stop:    make(chan struct{}), done: make(chan struct{}), allCache: map[string]dashAll{}}
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
		if prev, err := dashboard.Claim(ctx, f.redis, f.prefix, e.instance, e.process, 3*dashSampleEvery); err == nil {
			e.noteClaim(prev, f.logger)
		}
		docs := map[string]dashboard.Document{}
		for _, res := range []dashboard.Resolution{dashboard.Fine, dashboard.Coarse} {
			docs[res.Name] = f.local(e, res, now)
		}
		e.notePublish(dashboard.Publish(ctx, f.redis, f.prefix, e.instance, docs, now), f)
	}
}

// notePublish tells the first failure of a run of failed publications at WARN, and the end of
// the run at INFO. A Redis that reads but refuses this instance's writes (full at maxmemory
// with noeviction, a read-only replica, an ACL without a write command) leaves it out of every
// other instance's all-instances view, which nothing else shows: logged at DEBUG, nobody heard
// of it. Once per run, not per sample (every 5 s).
func (e *dashEntry) notePublish(err error, f *dashFeeds) {
	switch {
	case err != nil && !e.publishFailing:
		e.publishFailing = true
		var opts redisconn.Options
		if f.app != nil && f.app.redis != nil {
			opts = f.app.redis.opts
		}
		f.logger.Warn("dashboard: publishing this instance's documents to Redis failed: the other instances' all-instances view leaves it out until it succeeds (logged once until then)",
			zap.String("instance", e.instance), zap.String("error", redactSecrets(err.Error(), opts)))
	case err != nil:
		f.logger.Debug("dashboard: publishing to Redis failed", zap.Error(err))
	case e.publishFailing:
		e.publishFailing = false
		f.logger.Info("dashboard: publishing this instance's documents to Redis works again", zap.String("instance", e.instance))
	}
}

// noteClaim follows who published under this instance's name before this sample: another
// process twice in a row is a shared name (a restarted process finds its predecessor's id
// once, then its own), logged at WARN and shown in the banner until this process has found
// its own id three times in a row.
func (e *dashEntry) noteClaim(prev string, logger *zap.Logger) {
	if prev != "" && prev != e.process {
		e.foreign, e.own = e.foreign+1, 0
	} else {
		e.foreign, e.own = 0, e.own+1
	}
	switch {
	case e.foreign >= 2 && !e.nameShared.Load():
		e.nameShared.Store(true)
		logger.Warn("dashboard: another Caddy process publishes to Redis under this instance name; the two overwrite each other's dashboard documents and each leaves the other out of its all-instances view: give each process its own $"+dashboard.InstanceEnv,
			zap.String("instance", e.instance))
	case e.own >= 3 && e.nameShared.Load():
		e.nameShared.Store(false)
		logger.Info("dashboard: no other process publishes under this instance name any more", zap.String("instance", e.instance))
	}
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
		f := m.feeds()
		m.started.Store(f)
		e.publish(f)
		e.start()
	})
	return nil
}

// publish makes f, a configuration that starts, the one the sampler reads.
func (e *dashEntry) publish(f *dashFeeds) {
	e.liveMu.Lock()
	defer e.liveMu.Unlock()
	e.live = append(e.live, f)
	e.src.Store(f)
}

// withdraw forgets f, whose configuration is cleaned up, and points the sampler back at the
// newest configuration still alive. Caddy starts apps in map order: when another app of a
// new configuration fails to start after ours did, that configuration is cleaned up and the
// one before it keeps running, so it must keep being recorded.
func (e *dashEntry) withdraw(f *dashFeeds) {
	e.liveMu.Lock()
	defer e.liveMu.Unlock()
	e.live = slices.DeleteFunc(e.live, func(g *dashFeeds) bool { return g == f })
	var cur *dashFeeds
	if n := len(e.live); n > 0 {
		cur = e.live[n-1]
	}
	e.src.Store(cur)
}

// releaseDashboard leaves the entry; the last configuration to leave stops the sampler.
func (m *Monitoring) releaseDashboard() {
	if m.dash == nil {
		return
	}
	if f := m.started.Load(); f != nil {
		m.dash.withdraw(f)
	}
	// m.dash stays: a request of this configuration may still be answered beside its Cleanup.
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
	f := m.started.Load() // requests may run beside Cleanup: read what Start took, not m
	if f == nil {
		f = m.feeds() // not started yet: nothing is cleaning up either
	}
	if scope == "all" && f.redis == nil {
		return writeProblem(w, http.StatusBadRequest, "Bad Request", "scope all needs Redis: configure redis in the hardening global option", nil)
	}
	now := time.Now()
	doc := f.local(m.dash, res, now)
	if scope == "all" {
		others, err := m.dash.others(r.Context(), f, res, now)
		doc = dashboard.Merge(doc, others)
		if err != nil {
			doc.Current.Degraded = append(doc.Current.Degraded, dashboard.Degraded{Kind: dashboard.DegradedInstancesUnread,
				Component: "dashboard", Instance: m.dash.instance,
				Message: "the other instances' data could not all be read from Redis: this view lacks them (the Caddy log says why)"})
		}
		// A row from another instance carries that instance's command; an unban through
		// this one reaches every instance through Redis, and is the one the reader can run.
		for i := range doc.Suspicious {
			doc.Suspicious[i].Unban = f.admin.unban(doc.Suspicious[i].IP)
		}
	}
	return writeJSON(w, "application/json", http.StatusOK, doc)
}

// others reads the other instances' documents, at most once per dashAllCacheFor per range.
func (e *dashEntry) others(ctx context.Context, f *dashFeeds, res dashboard.Resolution, now time.Time) ([]dashboard.Document, error) {
	e.allMu.Lock()
	defer e.allMu.Unlock()
	if c, ok := e.allCache[res.Name]; ok && now.Sub(c.at) < dashAllCacheFor {
		return c.others, c.err
	}
	// Every reader shares the answer: one that goes away does not cut it short.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	docs, err := dashboard.Fetch(ctx, f.redis, f.prefix, res.Name, e.instance, now)
	if err != nil {
		f.logger.Warn("dashboard: reading the other instances from Redis failed", zap.Error(err)) // once per cache period
	}
	e.allCache[res.Name] = dashAll{at: now, others: docs, err: err}
	return docs, err
}
