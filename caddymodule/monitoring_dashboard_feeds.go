package caddymodule

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/swarmsec/caddy-hardening/dashboard"
	"github.com/swarmsec/caddy-hardening/ipclass"
	"github.com/swarmsec/caddy-hardening/monitor"
)

// The feeds of the dashboard: what the recorder samples and what a data request shows.

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
	admin    adminEndpoint // what the unban commands address
	logger   *zap.Logger
}

func (m *Monitoring) feeds() *dashFeeds {
	return &dashFeeds{app: m.app, registry: m.registry, checks: append([]*monitor.Check(nil), m.checks...), system: m.system,
		limiter: m.app.limiter, redis: m.app.RedisClient(), prefix: m.app.KeyPrefix(),
		detector: m.app.detector(), admin: m.admin, logger: m.app.logger}
}

func (f *dashFeeds) states() []monitor.State {
	out := make([]monitor.State, len(f.checks))
	for i, c := range f.checks {
		out[i] = c.State()
	}
	return out
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
		if !st.Checked {
			continue // not checked yet: unknown, not down (a bucket would average it in as 0)
		}
		l := []dashboard.Label{{Name: "name", Value: st.Name}}
		s.Values[dashboard.FamilyDependencyUp] = append(s.Values[dashboard.FamilyDependencyUp], dashboard.Point{Labels: l, Value: boolFloat(st.Up)})
		s.Values[dashboard.FamilyDependencyLatency] = append(s.Values[dashboard.FamilyDependencyLatency],
			dashboard.Point{Labels: l, Value: float64(st.Latency.Microseconds()) / 1000})
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
	if e.nameShared.Load() {
		doc.Current.Degraded = append(doc.Current.Degraded, dashboard.Degraded{Kind: dashboard.DegradedInstanceNameShared,
			Component: "dashboard", Instance: e.instance,
			Message: "another Caddy process publishes to Redis under this instance name: the two overwrite each other's documents, and the All instances view shows only one of them; give each process its own $" + dashboard.InstanceEnv})
	}
	doc.TopLimited = e.top.Top(dashboard.TopShown)
	doc.Suspicious, doc.SuspiciousCount = f.suspicious(now)
	doc.Admin = f.admin.name
	doc.Events = e.events.Last()
	return doc
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

// suspicious is the MaxSuspicious detections with the highest scores (then the latest ends),
// picked from all of them, and how many there are.
func (f *dashFeeds) suspicious(now time.Time) ([]dashboard.Suspicious, int) {
	out := []dashboard.Suspicious{}
	det := f.detector
	if det == nil {
		return out, 0
	}
	top, n := det.TopDetections(dashboard.MaxSuspicious, func(a, b ipclass.Detection) bool {
		if a.Score != b.Score {
			return a.Score > b.Score
		}
		if !a.Until.Equal(b.Until) {
			return a.Until.After(b.Until)
		}
		return a.Addr.Less(b.Addr)
	})
	for _, d := range top {
		ip := det.DetectionString(d)
		out = append(out, dashboard.NewSuspicious(ip, d.Score, d.Signal.String(), d.Until, d.Shadow, now, f.admin.unban(ip)))
	}
	dashboard.SortSuspicious(out)
	return out, n
}

// recordDashboardEvent puts a security event in the dashboard's ring (rate-bounded; nothing
// is built for an event the ring does not take).
func recordDashboardEvent(a *App, r *http.Request, level zapcore.Level, name string, data map[string]any) {
	e := currentDash.Load()
	if e == nil {
		return
	}
	now := time.Now()
	if !e.events.Admit(name, eventClient(r), now) {
		return
	}
	ev := dashboard.Event{Time: now.UTC(), Event: name, Level: level.String()}
	if r != nil {
		ev.ClientIP, _ = caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string)
		ev.IPClass = a.ClassOf(r).String()
		ev.URI = loggedURI(r) // as in the security log
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

// recordRefusal counts a refused key for the dashboard's top limited keys; clientIP says
// whether the key is the client IP (shown as it is) or another key (shown as a digest).
func recordRefusal(policy, key string, clientIP bool) {
	if e := currentDash.Load(); e != nil {
		e.top.Add(policy, key, clientIP)
	}
}
