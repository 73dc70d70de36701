package monitor

import (
	"fmt"
	"math"
	"sort"
	"time"
)

// MediaType is the draft's content type.
const MediaType = "application/health+json"

// Document is a health+json response (draft-inadarei-api-health-check, section 3). Only
// Status is required; the rest is for authorized clients.
type Document struct {
	Status      Status                   `json:"status"`
	Version     string                   `json:"version,omitempty"`
	ReleaseID   string                   `json:"releaseId,omitempty"`
	Notes       []string                 `json:"notes,omitempty"`
	Output      string                   `json:"output,omitempty"`
	ServiceID   string                   `json:"serviceId,omitempty"`
	Description string                   `json:"description,omitempty"`
	Checks      map[string][]CheckResult `json:"checks,omitempty"`
	Links       map[string]string        `json:"links,omitempty"`
}

// CheckResult is one entry of the draft's "checks" object (section 4), keyed there by
// "<component>:<measurement>".
type CheckResult struct {
	ComponentID       string            `json:"componentId,omitempty"`
	ComponentType     string            `json:"componentType,omitempty"`
	ObservedValue     any               `json:"observedValue,omitempty"`
	ObservedUnit      string            `json:"observedUnit,omitempty"`
	Status            Status            `json:"status"`
	AffectedEndpoints []string          `json:"affectedEndpoints,omitempty"`
	Time              string            `json:"time,omitempty"`
	Output            string            `json:"output,omitempty"`
	Links             map[string]string `json:"links,omitempty"`
}

// Report is an internal component's state that another module registered (a breaker, the
// rate-limit store): it joins the checks in the document and, when critical and failing,
// takes readiness down.
type Report struct {
	Component string
	Type      string
	Status    Status
	Critical  bool
	Output    string
	Observed  map[string]any
	Time      time.Time
}

// Verdict is the aggregate of checks and reports.
type Verdict struct {
	Status Status
	Ready  bool
	// Reasons name what is not passing, for authorized clients ("postgres main is down").
	Reasons []string
}

// Aggregate folds states and reports: fail when a critical one fails, warn when any other is
// not passing, pass otherwise; ready unless a critical one is down (a critical check that has
// not succeeded yet counts as down) or draining is true. Each reason says what the item does
// to readiness, so a /ready that passes with notes does not read as a contradiction.
func Aggregate(states []State, reports []Report, draining bool) Verdict {
	const notCritical = ": not critical, so ready (health warns)"
	v := Verdict{Status: Pass, Ready: !draining}
	if draining {
		v.Reasons = append(v.Reasons, "draining: the server is shutting down: not ready")
	}
	for _, s := range states {
		if s.Up && s.Status == Pass {
			continue
		}
		what := "check " + s.Name + " " + checkCondition(s)
		switch {
		case !s.Up && s.Critical:
			v.Status, v.Ready = Fail, false
			v.Reasons = append(v.Reasons, "critical "+what+": not ready")
			continue
		case s.Critical && s.ConsecutiveFailures > 0:
			v.Reasons = append(v.Reasons, "critical "+what+": ready until it is down")
		case s.Critical:
			v.Reasons = append(v.Reasons, "critical "+what+": ready (only a down critical check makes it unready)")
		default:
			v.Reasons = append(v.Reasons, what+notCritical)
		}
		v.Status = Worse(v.Status, Warn)
	}
	for _, r := range reports {
		if r.Status == Pass {
			continue
		}
		what := "component " + r.Component + " warns"
		if r.Status == Fail {
			what = "component " + r.Component + " fails"
		}
		switch {
		case r.Status == Fail && r.Critical:
			v.Status, v.Ready = Fail, false
			v.Reasons = append(v.Reasons, "critical "+what+": not ready")
			continue
		case r.Critical:
			v.Reasons = append(v.Reasons, "critical "+what+": ready (only a failing critical component makes it unready)")
		default:
			v.Reasons = append(v.Reasons, what+notCritical)
		}
		v.Status = Worse(v.Status, Warn)
	}
	return v
}

// checkCondition is how a check that is not passing stands: down (before its first success,
// or after failures_before_down failures), failing on its way down, or warning while up.
func checkCondition(s State) string {
	switch {
	case !s.Up && s.LastSuccess.IsZero():
		return "is down (no success yet)"
	case !s.Up:
		return "is down"
	case s.ConsecutiveFailures > 0:
		return fmt.Sprintf("is failing (%d of %d before down)", s.ConsecutiveFailures, s.FailuresBeforeDown)
	}
	return "warns"
}

// Checks builds the draft's "checks" object: "<name>:responseTime" per check (in ms) plus
// one entry per extra observation, and "<component>" per report.
func Checks(states []State, reports []Report) map[string][]CheckResult {
	out := make(map[string][]CheckResult, len(states)+len(reports))
	for _, s := range states {
		base := CheckResult{ComponentID: s.Name, ComponentType: s.ComponentType, Status: s.Status, Output: s.Output}
		if s.Checked {
			base.Time = s.LastCheck.UTC().Format(time.RFC3339Nano)
		}
		rt := base
		if s.Checked {
			rt.ObservedValue = math.Round(float64(s.Latency.Microseconds())) / 1000
			rt.ObservedUnit = "ms"
		}
		out[s.Name+":responseTime"] = []CheckResult{rt}
		for _, o := range s.Observed {
			e := base
			e.ObservedValue, e.ObservedUnit = o.Value, o.Unit
			out[s.Name+":"+o.Name] = append(out[s.Name+":"+o.Name], e)
		}
	}
	for _, r := range reports {
		e := CheckResult{ComponentID: r.Component, ComponentType: r.Type, Status: r.Status, Output: r.Output}
		if len(r.Observed) > 0 {
			e.ObservedValue = r.Observed
		}
		if !r.Time.IsZero() {
			e.Time = r.Time.UTC().Format(time.RFC3339Nano)
		}
		out[r.Component] = append(out[r.Component], e)
	}
	return out
}

// Detail is one dependency in the /services view: the state with its history.
type Detail struct {
	Name                string         `json:"name"`
	Type                string         `json:"type"`
	Target              string         `json:"target,omitempty"`
	Critical            bool           `json:"critical"`
	Status              Status         `json:"status"`
	Up                  bool           `json:"up"`
	Output              string         `json:"output,omitempty"`
	ObservedValues      map[string]any `json:"observed,omitempty"`
	LatencyMS           float64        `json:"latency_ms"`
	LastCheck           *time.Time     `json:"last_check,omitempty"`
	LastSuccess         *time.Time     `json:"last_success,omitempty"`
	LastFailure         *time.Time     `json:"last_failure,omitempty"`
	ConsecutiveFailures int            `json:"consecutive_failures"`
	FailuresBeforeDown  int            `json:"failures_before_down"`
	IntervalSeconds     float64        `json:"interval_seconds"`
	Runs                int64          `json:"runs"`
}

// Details lists states for /services, sorted by name.
func Details(states []State) []Detail {
	out := make([]Detail, 0, len(states))
	for _, s := range states {
		d := Detail{Name: s.Name, Type: s.Type, Target: s.Target, Critical: s.Critical, Status: s.Status, Up: s.Up,
			Output: s.Output, LatencyMS: math.Round(float64(s.Latency.Microseconds())) / 1000,
			LastCheck: timePtr(s.LastCheck), LastSuccess: timePtr(s.LastSuccess), LastFailure: timePtr(s.LastFailure),
			ConsecutiveFailures: s.ConsecutiveFailures, FailuresBeforeDown: s.FailuresBeforeDown,
			IntervalSeconds: s.Interval.Seconds(), Runs: s.Runs}
		if len(s.Observed) > 0 {
			d.ObservedValues = make(map[string]any, len(s.Observed))
			for _, o := range s.Observed {
				d.ObservedValues[o.Name] = o.Value
			}
		}
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}
