package caddymodule

import (
	"fmt"
	"time"

	"github.com/caddyserver/caddy/v2"
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
		Help: "Requests a breaker answered without the upstream, by state (open, half_open) and response (fallback: a fallback route answered; problem: the 503 problem, also after a fallback that wrote nothing).",
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
)

var breakerStates = [...]breaker.State{breaker.StateClosed, breaker.StateHalfOpen, breaker.StateOpen}

// breakerMetrics are one breaker's series, resolved once so a request only increments.
type breakerMetrics struct {
	state          [3]prometheus.Gauge
	transitions    [3]prometheus.Counter
	shortCircuited [3][2]prometheus.Counter // by state (nil for closed), response
	outcomes       [3]prometheus.Counter
}

// provisionBreakerMetrics registers the collectors on the config's registry and resolves the
// breaker's series.
func provisionBreakerMetrics(ctx caddy.Context, name string) (breakerMetrics, error) {
	reg := ctx.GetMetricsRegistry()
	for _, c := range []prometheus.Collector{breakerStateVec, breakerShortCircuitedVec, breakerRequestsVec, breakerTransitionsVec} {
		if _, err := registerCollector(reg, c); err != nil {
			return breakerMetrics{}, err
		}
	}
	return newBreakerMetrics(name), nil
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

// onTransition runs on the breaker's delivery goroutine, outside its lock.
func (e *breakerEntry) onTransition(t breaker.Transition) {
	e.since.Store(t.At.UnixNano())
	h := e.owner.Load()
	if h == nil {
		return
	}
	h.metrics.setState(t.To)
	h.metrics.transitions[t.To].Inc()
	level := zapcore.InfoLevel
	data := map[string]any{"breaker": t.Name, "from": breaker.StateName(t.From), "to": breaker.StateName(t.To), "cause": t.Cause}
	if t.To == breaker.StateOpen {
		level = zapcore.WarnLevel
		data["open_until"] = t.OpenUntil.UTC().Format(time.RFC3339Nano)
	}
	h.app.SecurityEvent(h.ctx, nil, level, EventBreakerStateChanged, data)
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
	if shared, ok, _ := e.b.SharedHealth(); shared {
		rep.Observed["shared"] = ok
		if !ok && rep.Status == HealthPass {
			rep.Status = HealthWarn
			rep.Output = "shared state unreachable (Redis): deciding locally"
		}
	}
	return rep
}
