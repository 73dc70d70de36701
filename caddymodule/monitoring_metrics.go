package caddymodule

import (
	"fmt"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/swarmsec/caddy-hardening/monitor"
)

// Counters of check runs, package level so they survive reloads (registered per config); a
// check's series go when it stops and no live check has its name and type (forgetCheckSeries).
var (
	checkDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "caddy", Subsystem: "hardening", Name: "dependency_check_duration_seconds",
		Help:    "Duration of dependency checks run by the monitoring handler.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
	}, []string{"check", "type"})
	checkRuns = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "hardening", Name: "dependency_checks_total",
		Help: "Dependency checks run, by the outcome of the run (pass, warn, fail).",
	}, []string{"check", "type", "result"})
)

// observeCheck counts one run. A failing run below failures_before_down shows as warn in
// the state; the counter records the run's own outcome.
func observeCheck(s monitor.State) {
	result := s.Status
	if s.ConsecutiveFailures > 0 {
		result = monitor.Fail
	}
	checkDuration.WithLabelValues(s.Name, s.Type).Observe(s.Latency.Seconds())
	checkRuns.WithLabelValues(s.Name, s.Type, string(result)).Inc()
}

// forgetCheckSeries deletes the run counters and the latency histogram of a stopped check
// once no live check has its name and type: a check that a reload removes (or gives another
// type) leaves no frozen series behind, as a removed breaker's or policy's series go. A check
// that the reload only tunes is replaced by one of the same name and type, adopted before the
// old one stops, so its counters go on.
func forgetCheckSeries(cfg monitor.Config) {
	liveChecks.mu.Lock()
	defer liveChecks.mu.Unlock()
	for _, checks := range liveChecks.m {
		for _, c := range checks {
			if o := c.Config(); o.Name == cfg.Name && o.Type == cfg.Type {
				return
			}
		}
	}
	checkDuration.DeleteLabelValues(cfg.Name, cfg.Type)
	checkRuns.DeletePartialMatch(prometheus.Labels{"check": cfg.Name, "type": cfg.Type})
}

var (
	depUpDesc = prometheus.NewDesc("caddy_hardening_dependency_up",
		"1 when the dependency is up (its last failures are fewer than failures_before_down), else 0.",
		[]string{"check", "type", "critical"}, nil)
	depStatusDesc = prometheus.NewDesc("caddy_hardening_dependency_status",
		"The dependency's health status: 1 for the current one of pass, warn, fail.",
		[]string{"check", "status"}, nil)
	componentStatusDesc = prometheus.NewDesc("caddy_hardening_component_status",
		"The status other modules report for internal components (breakers, rate-limit store): 1 for the current one of pass, warn, fail.",
		[]string{"component", "status"}, nil)
)

// stateCollector reports, at scrape time, the checks and components of every monitoring
// handler of one configuration: a removed check leaves no stale series behind.
type stateCollector struct {
	mu       sync.Mutex
	handlers map[*Monitoring]bool
	seq      uint64 // order of creation: the newest configuration's is the largest
}

var (
	stateCollectorsMu sync.Mutex
	stateCollectors   = map[*prometheus.Registry]*stateCollector{}
	stateCollectorSeq uint64
)

// registerCheckMetrics registers the check counters on a configuration's registry.
func registerCheckMetrics(reg *prometheus.Registry) error {
	for _, c := range []prometheus.Collector{checkDuration, checkRuns} {
		if _, err := registerCollector(reg, c); err != nil {
			return err
		}
	}
	return nil
}

// newestStateCollectorBut returns the state collector of the newest configuration with a
// monitoring handler, or nil when reg has its own (it reports for itself) or none exists.
func newestStateCollectorBut(reg *prometheus.Registry) *stateCollector {
	stateCollectorsMu.Lock()
	defer stateCollectorsMu.Unlock()
	if stateCollectors[reg] != nil {
		return nil
	}
	var newest *stateCollector
	for _, sc := range stateCollectors {
		if newest == nil || sc.seq > newest.seq {
			newest = sc
		}
	}
	return newest
}

// registerMonitoring adds m to its configuration's collector. Two handlers of one
// configuration may share a check (the same configuration runs once); two different checks
// with one name would make ambiguous series and are refused.
func registerMonitoring(reg *prometheus.Registry, m *Monitoring) error {
	if reg == nil {
		return nil
	}
	if err := registerCheckMetrics(reg); err != nil {
		return err
	}
	stateCollectorsMu.Lock()
	defer stateCollectorsMu.Unlock()
	sc := stateCollectors[reg]
	if sc == nil {
		stateCollectorSeq++
		sc = &stateCollector{handlers: map[*Monitoring]bool{}, seq: stateCollectorSeq}
		if err := reg.Register(sc); err != nil {
			return err
		}
		stateCollectors[reg] = sc
	}
	sc.mu.Lock()
	defer sc.mu.Unlock()
	for other := range sc.handlers {
		for _, a := range other.checks {
			for _, b := range m.checks {
				if a != b && a.Config().Name == b.Config().Name {
					return fmt.Errorf("monitoring: two monitoring handlers configure a check named %q differently; give them distinct names", a.Config().Name)
				}
			}
		}
	}
	sc.handlers[m] = true
	return nil
}

func unregisterMonitoring(reg *prometheus.Registry, m *Monitoring) {
	if reg == nil {
		return
	}
	stateCollectorsMu.Lock()
	defer stateCollectorsMu.Unlock()
	sc := stateCollectors[reg]
	if sc == nil {
		return
	}
	sc.mu.Lock()
	delete(sc.handlers, m)
	empty := len(sc.handlers) == 0
	sc.mu.Unlock()
	if empty {
		reg.Unregister(sc)
		delete(stateCollectors, reg)
	}
}

// Describe implements prometheus.Collector.
func (sc *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- depUpDesc
	ch <- depStatusDesc
	ch <- componentStatusDesc
}

// Collect implements prometheus.Collector.
func (sc *stateCollector) Collect(ch chan<- prometheus.Metric) {
	sc.mu.Lock()
	seen := map[string]bool{}
	var states []monitor.State
	var app *App
	for m := range sc.handlers {
		app = m.app // one app per configuration
		for _, c := range m.checks {
			if s := c.State(); !seen[s.Name] {
				seen[s.Name] = true
				states = append(states, s)
			}
		}
	}
	sc.mu.Unlock()
	for _, s := range states {
		up := 0.0
		if s.Up {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(depUpDesc, prometheus.GaugeValue, up, s.Name, s.Type, fmt.Sprint(s.Critical))
		for _, st := range []monitor.Status{monitor.Pass, monitor.Warn, monitor.Fail} {
			ch <- prometheus.MustNewConstMetric(depStatusDesc, prometheus.GaugeValue, boolFloat(s.Status == st), s.Name, string(st))
		}
	}
	if app == nil {
		return
	}
	for _, r := range app.Statuses() {
		for _, st := range []Health{HealthPass, HealthWarn, HealthFail} {
			ch <- prometheus.MustNewConstMetric(componentStatusDesc, prometheus.GaugeValue, boolFloat(r.Status == st), r.Component, string(st))
		}
	}
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
