package caddymodule

import (
	"sort"
	"sync"
	"time"
)

// Health is a component's state in the IETF health-check vocabulary.
type Health string

// The health states, from good to bad.
const (
	HealthPass Health = "pass"
	HealthWarn Health = "warn"
	HealthFail Health = "fail"
)

// StatusReport is what a module tells the monitoring handler about one of its components: the
// rate-limit store (memory fallback is warn), a breaker (open is warn, fail when critical), the
// detector. The monitoring handler reads every report when it answers /health and /ready.
type StatusReport struct {
	// Component names it in health+json, e.g. "breaker:billing" or "ratelimit:store".
	Component string
	// Type is the health+json componentType, e.g. "component" or "datastore".
	Type string
	// Status is pass, warn or fail.
	Status Health
	// Critical makes a fail take readiness down.
	Critical bool
	// Output explains a warn or fail in one line, with no secret in it.
	Output string
	// Observed holds figures worth showing (e.g. "state": "open", "tracked": 1234).
	Observed map[string]any
	// Time is when the state last changed or was observed.
	Time time.Time
}

// statusRegistry holds the report functions modules register while they provision. It lives in
// the app, so each config load starts with an empty one.
type statusRegistry struct {
	mu  sync.RWMutex
	fns map[string]func() StatusReport
}

// RegisterStatus adds (or replaces) the report function of a component. fn is called on every
// health request: it must be cheap and safe for concurrent use.
func (a *App) RegisterStatus(component string, fn func() StatusReport) {
	a.status.mu.Lock()
	defer a.status.mu.Unlock()
	if a.status.fns == nil {
		a.status.fns = make(map[string]func() StatusReport)
	}
	a.status.fns[component] = fn
}

// Statuses calls every registered report function, sorted by component name.
func (a *App) Statuses() []StatusReport {
	a.status.mu.RLock()
	fns := make([]func() StatusReport, 0, len(a.status.fns))
	for _, name := range sortedKeys(a.status.fns) {
		fns = append(fns, a.status.fns[name])
	}
	a.status.mu.RUnlock()
	out := make([]StatusReport, 0, len(fns))
	for _, fn := range fns {
		out = append(out, fn())
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Component < out[j].Component })
	return out
}
