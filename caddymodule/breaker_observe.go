package caddymodule

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap/zapcore"

	"github.com/swarmsec/caddy-hardening/breaker"
)

// The breaker's metrics, at package level so counts survive reloads (see registerCollector).
var (
	breakerStateVec = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "caddy", Subsystem: "hardening", Name: "breaker_state",
		Help: "1 for the breaker's current state (closed, half_open, open), 0 for the other two.",
	}, []string{"breaker", "state"})
	breakerShortCircuitedVec = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "hardening", Name: "breaker_short_circuited_total",
		Help: "Requests a breaker answered without the upstream, by state (open, half_open) and response (fallback: a fallback route answered below 500; fallback_5xx: the fallback answered a 5xx, returned an error (e.g. its own upstream is down too) or aborted without an answer; problem: the 503 problem, also after a fallback that wrote nothing).",
	}, []string{"breaker", "state", "response"})
	breakerRequestsVec = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "hardening", Name: "breaker_requests_total",
		Help: "Requests a breaker let through, by outcome (success, failure, excluded).",
	}, []string{"breaker", "outcome"})
	breakerTransitionsVec = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "hardening", Name: "breaker_transitions_total",
		Help: "State changes of a breaker, by the state entered.",
	}, []string{"breaker", "to"})
)

const (
	responseProblem = iota
	responseFallback
	responseFallback5xx
	responseKinds
)

var breakerStates = [...]breaker.State{breaker.StateClosed, breaker.StateHalfOpen, breaker.StateOpen}

// breakerMetrics are one breaker's series, resolved once so a request only increments.
type breakerMetrics struct {
	state          [3]prometheus.Gauge
	transitions    [3]prometheus.Counter
	shortCircuited [3][responseKinds]prometheus.Counter // by state (nil for closed), response
	outcomes       [3]prometheus.Counter
}

var breakerVecs = [...]interface {
	prometheus.Collector
	DeletePartialMatch(prometheus.Labels) int
}{breakerStateVec, breakerShortCircuitedVec, breakerRequestsVec, breakerTransitionsVec}

// registerBreakerMetrics registers the collectors on the config's registry.
func registerBreakerMetrics(reg *prometheus.Registry) error {
	for _, c := range breakerVecs {
		if _, err := registerCollector(reg, c); err != nil {
			return err
		}
	}
	return nil
}

func newBreakerMetrics(name string) breakerMetrics {
	var m breakerMetrics
	for _, s := range breakerStates {
		n := breaker.StateName(s)
		m.state[s] = breakerStateVec.WithLabelValues(name, n)
		m.transitions[s] = breakerTransitionsVec.WithLabelValues(name, n)
		if s != breaker.StateClosed { // a closed breaker lets every request through
			m.shortCircuited[s][responseProblem] = breakerShortCircuitedVec.WithLabelValues(name, n, "problem")
			m.shortCircuited[s][responseFallback] = breakerShortCircuitedVec.WithLabelValues(name, n, "fallback")
			m.shortCircuited[s][responseFallback5xx] = breakerShortCircuitedVec.WithLabelValues(name, n, "fallback_5xx")
		}
	}
	for _, o := range []breaker.Outcome{breaker.Success, breaker.Failure, breaker.Excluded} {
		m.outcomes[o] = breakerRequestsVec.WithLabelValues(name, o.String())
	}
	return m
}

func (m *breakerMetrics) setState(to breaker.State) {
	for _, s := range breakerStates {
		v := 0.0
		if s == to {
			v = 1
		}
		m.state[s].Set(v)
	}
}

// causeReload is the cause of a state change made by a reload: the running configuration's
// breaker was replaced by one with other trip rules, which starts closed.
const causeReload = "reload"

// breakerSeries is one breaker name as the outside sees it: its metric series, and the state
// they and the events last reported. Every provisioned handler with the name holds it until
// its Cleanup, so a reload that keeps the name keeps its series (counters go on), and the last
// handler to go, when a reload removes the name, deletes them: /metrics shows the configured
// breakers only, and a removed breaker's state gauge cannot keep an alert firing.
//
// While a reload gives the name new trip rules, the name has two breakers (pool entries): the
// running configuration's and the new one's. The oldest live one reports (entries[0]): the
// running configuration's until it is cleaned up, so a new configuration that fails to load
// never reports. When it goes, the next one reports from then on, and its state, when it
// differs from the one last reported (an open breaker replaced by a new, closed one), is
// reported as a state change with cause "reload".
type breakerSeries struct {
	name    string
	metrics breakerMetrics
	refs    int // handlers holding it; guarded by breakerSeriesMu

	mu      sync.Mutex
	entries []*breakerEntry // live pool entries with this name, oldest first
	state   breaker.State   // the state last reported
}

var (
	breakerSeriesMu     sync.Mutex
	breakerSeriesByName = map[string]*breakerSeries{}
)

// anyBreakerSeries reports whether a handler holds a breaker's series.
func anyBreakerSeries() bool {
	breakerSeriesMu.Lock()
	defer breakerSeriesMu.Unlock()
	return len(breakerSeriesByName) > 0
}

// holdBreakerSeries takes a reference to the name's series, creating them (closed) if no
// handler holds them.
func holdBreakerSeries(name string) *breakerSeries {
	breakerSeriesMu.Lock()
	defer breakerSeriesMu.Unlock()
	s := breakerSeriesByName[name]
	if s == nil {
		s = &breakerSeries{name: name, metrics: newBreakerMetrics(name), state: breaker.StateClosed}
		s.metrics.setState(breaker.StateClosed)
		breakerSeriesByName[name] = s
	}
	s.refs++
	return s
}

// release drops a reference; the last one deletes the name's series from every family.
func (s *breakerSeries) release() {
	breakerSeriesMu.Lock()
	defer breakerSeriesMu.Unlock()
	if s.refs--; s.refs > 0 {
		return
	}
	delete(breakerSeriesByName, s.name)
	for _, v := range breakerVecs {
		v.DeletePartialMatch(prometheus.Labels{"breaker": s.name})
	}
}

// add lists a new pool entry of the name (before it can change state); the first reports.
func (s *breakerSeries) add(e *breakerEntry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !slices.Contains(s.entries, e) {
		s.entries = append(s.entries, e)
	}
}

// retire forgets an entry no handler uses any more. When it was the reporting one, the next
// reports, and a state that differs from the one last reported is reported (cause reload).
func (s *breakerSeries) retire(e *breakerEntry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := slices.Index(s.entries, e)
	if i < 0 {
		return
	}
	s.entries = slices.Delete(s.entries, i, i+1)
	if i != 0 || len(s.entries) == 0 {
		return
	}
	next := s.entries[0]
	if next.state == s.state {
		return
	}
	now := time.Now()
	t := breaker.Transition{Name: s.name, From: s.state, To: next.state, At: now, Cause: causeReload}
	if t.To == breaker.StateOpen {
		t.OpenUntil = next.b.OpenUntil()
	}
	next.since.Store(now.UnixNano())
	s.report(next.owner.Load(), t)
}

// report publishes a state change: the gauge, the transition count, and (with a handler to
// report through) the security log and Caddy event. The caller holds s.mu, so reports are
// published in order.
func (s *breakerSeries) report(h *UpstreamBreaker, t breaker.Transition) {
	s.state = t.To
	s.metrics.setState(t.To)
	s.metrics.transitions[t.To].Inc()
	if h == nil {
		return
	}
	level := zapcore.InfoLevel
	data := map[string]any{"breaker": t.Name, "from": breaker.StateName(t.From), "to": breaker.StateName(t.To), "cause": t.Cause}
	if t.To == breaker.StateOpen {
		level = zapcore.WarnLevel
		data["open_until"] = t.OpenUntil.UTC().Format(time.RFC3339Nano)
	}
	h.app.SecurityEvent(h.ctx, nil, level, EventBreakerStateChanged, data)
}

// onTransition runs on the breaker's delivery goroutine, outside its lock. Only the name's
// reporting entry publishes; another one (a reload's new breaker, not running yet) only
// records its state, for retire.
func (e *breakerEntry) onTransition(t breaker.Transition) {
	e.since.Store(t.At.UnixNano())
	s := e.series
	s.mu.Lock()
	defer s.mu.Unlock()
	e.state = t.To
	if len(s.entries) == 0 || s.entries[0] != e {
		return
	}
	s.report(e.owner.Load(), t)
}

// onSharedHealth reports the shared store going away (the breaker decides locally) and back.
func (e *breakerEntry) onSharedHealth(err error) {
	h := e.owner.Load()
	if h == nil {
		return
	}
	if err != nil {
		h.app.SecurityEvent(h.ctx, nil, zapcore.WarnLevel, EventStoreFailover, map[string]any{
			"breaker": h.Name, "store": "redis", "to": "local", "error": err.Error()})
		return
	}
	h.app.SecurityEvent(h.ctx, nil, zapcore.InfoLevel, EventStoreFailover, map[string]any{
		"breaker": h.Name, "store": "redis", "to": "shared"})
}

// status is the breaker's health report: open is warn (fail when critical), half-open warn,
// a shared breaker without its store warn.
func (e *breakerEntry) status(name string, critical bool) StatusReport {
	now := time.Now()
	st := e.b.State()
	rep := StatusReport{Component: "breaker:" + name, Type: "component", Status: HealthPass, Critical: critical,
		Observed: map[string]any{"state": breaker.StateName(st)}}
	if ns := e.since.Load(); ns != 0 {
		rep.Time = time.Unix(0, ns)
	} else {
		rep.Time = now
	}
	switch st {
	case breaker.StateOpen:
		secs := int((e.b.RetryAfter(now) + time.Second - 1) / time.Second)
		rep.Status = HealthWarn
		if critical {
			rep.Status = HealthFail
		}
		rep.Observed["retry_after_s"] = secs
		rep.Output = fmt.Sprintf("open: requests are answered without the upstream for %d s more", secs)
	case breaker.StateHalfOpen:
		rep.Status = HealthWarn
		rep.Output = "half-open: probing the upstream"
	}
	if shared, ok, lastErr := e.b.SharedHealth(); shared {
		rep.Observed["shared"] = ok
		if !ok && rep.Status == HealthPass {
			rep.Status = HealthWarn
			rep.Output = "shared state unreachable (Redis): deciding locally"
			if h := e.owner.Load(); h != nil {
				if msg, refused := h.app.redisRefusal(errors.New(lastErr), "deciding locally, not with the other instances", false); refused {
					rep.Output = msg
				}
			}
		}
	}
	return rep
}
