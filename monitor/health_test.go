package monitor

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestAggregate(t *testing.T) {
	up := State{Name: "a", Up: true, Status: Pass}
	upWarn := State{Name: "b", Up: true, Status: Warn}
	down := State{Name: "c", Up: false, Status: Fail}
	critDown := State{Name: "d", Up: false, Status: Fail, Critical: true}
	pending := State{Name: "e", Status: Warn, Critical: true}
	cases := []struct {
		name     string
		states   []State
		reports  []Report
		draining bool
		status   Status
		ready    bool
	}{
		{"all pass", []State{up}, nil, false, Pass, true},
		{"nothing configured", nil, nil, false, Pass, true},
		{"a warn", []State{up, upWarn}, nil, false, Warn, true},
		{"a non-critical down", []State{up, down}, nil, false, Warn, true},
		{"a critical down", []State{up, critDown}, nil, false, Fail, false},
		{"a critical pending", []State{pending}, nil, false, Fail, false},
		{"draining", []State{up}, nil, true, Pass, false},
		{"report warn", []State{up}, []Report{{Component: "ratelimit:store", Status: Warn}}, false, Warn, true},
		{"report fail not critical", nil, []Report{{Component: "breaker:x", Status: Fail}}, false, Warn, true},
		{"report fail critical", nil, []Report{{Component: "breaker:x", Status: Fail, Critical: true}}, false, Fail, false},
	}
	for _, c := range cases {
		v := Aggregate(c.states, c.reports, c.draining)
		if v.Status != c.status || v.Ready != c.ready {
			t.Errorf("%s: status=%s ready=%v, want %s %v (%v)", c.name, v.Status, v.Ready, c.status, c.ready, v.Reasons)
		}
		if (c.status != Pass || !c.ready) && len(v.Reasons) == 0 {
			t.Errorf("%s: no reason given", c.name)
		}
	}
}

// draftFields are the member names draft-inadarei-api-health-check defines: section 3 for the
// document, section 4 for a check entry.
var (
	draftDocument = map[string]bool{"status": true, "version": true, "releaseId": true, "notes": true, "output": true,
		"checks": true, "links": true, "serviceId": true, "description": true}
	draftCheck = map[string]bool{"componentId": true, "componentType": true, "observedValue": true, "observedUnit": true,
		"status": true, "affectedEndpoints": true, "time": true, "output": true, "links": true}
)

func TestDocumentUsesTheDraftFieldNames(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	states := []State{{Name: "celery", ComponentType: "component", Up: true, Checked: true, Status: Warn, Output: "backlog",
		Latency: 1500 * time.Microsecond, LastCheck: now, Observed: []Observation{{Name: "backlog", Value: 12, Unit: "messages"}}}}
	reports := []Report{{Component: "breaker:billing", Type: "component", Status: Warn, Observed: map[string]any{"state": "open"}, Time: now}}
	doc := Document{Status: Warn, Version: "1", ReleaseID: "r", Notes: []string{"n"}, Output: "o", ServiceID: "s",
		Description: "d", Checks: Checks(states, reports), Links: map[string]string{"about": "x"}}
	raw, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	for k := range m {
		if !draftDocument[k] {
			t.Errorf("document member %q is not in the draft", k)
		}
	}
	var checks map[string][]map[string]any
	if err := json.Unmarshal(m["checks"], &checks); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"celery:responseTime", "celery:backlog", "breaker:billing"} {
		if len(checks[key]) != 1 {
			t.Fatalf("checks[%q] = %v; all: %s", key, checks[key], m["checks"])
		}
		for k := range checks[key][0] {
			if !draftCheck[k] {
				t.Errorf("check member %q of %s is not in the draft", k, key)
			}
		}
	}
	rt := checks["celery:responseTime"][0]
	if rt["observedValue"] != 1.5 || rt["observedUnit"] != "ms" || rt["time"] != "2026-01-02T03:04:05Z" || rt["componentId"] != "celery" {
		t.Fatalf("responseTime entry: %v", rt)
	}
	if b := checks["celery:backlog"][0]; b["observedValue"] != 12.0 || b["observedUnit"] != "messages" {
		t.Fatalf("backlog entry: %v", b)
	}
}

func TestDetails(t *testing.T) {
	d := Details([]State{{Name: "b"}, {Name: "a", Observed: []Observation{{Name: "backlog", Value: 3}}, LastSuccess: time.Now()}})
	if d[0].Name != "a" || d[0].ObservedValues["backlog"] != 3 || d[0].LastSuccess == nil || d[0].LastFailure != nil {
		t.Fatalf("%+v", d)
	}
}

// TestAggregateReasonsSayReadiness: the notes of /ready (and /health) named what was not
// passing ("check cache is down", "check db: warn") without saying whether it made the
// instance unready, so a 200 from /ready with "check cache is down" read like a contradiction
// and a critical check failing its first runs looked the same as a non-critical one. Each note
// now says what it does to readiness, as the README's critical / non-critical rules say.
func TestAggregateReasonsSayReadiness(t *testing.T) {
	ok := time.Now()
	cases := []struct {
		state  *State
		report *Report
		want   string
	}{
		{state: &State{Name: "db", Critical: true, Status: Fail, LastSuccess: ok},
			want: "critical check db is down: not ready"},
		{state: &State{Name: "db", Critical: true, Status: Warn},
			want: "critical check db is down (no success yet): not ready"},
		{state: &State{Name: "db", Critical: true, Up: true, Status: Warn, ConsecutiveFailures: 1, FailuresBeforeDown: 3, LastSuccess: ok},
			want: "critical check db is failing (1 of 3 before down): ready until it is down"},
		{state: &State{Name: "celery", Critical: true, Up: true, Status: Warn, LastSuccess: ok},
			want: "critical check celery warns: ready (only a down critical check makes it unready)"},
		{state: &State{Name: "cache", Status: Fail, LastSuccess: ok},
			want: "check cache is down: not critical, so ready (health warns)"},
		{state: &State{Name: "cache", Up: true, Status: Warn, ConsecutiveFailures: 2, FailuresBeforeDown: 3, LastSuccess: ok},
			want: "check cache is failing (2 of 3 before down): not critical, so ready (health warns)"},
		{report: &Report{Component: "breaker:pay", Critical: true, Status: Fail},
			want: "critical component breaker:pay fails: not ready"},
		{report: &Report{Component: "breaker:pay", Critical: true, Status: Warn},
			want: "critical component breaker:pay warns: ready (only a failing critical component makes it unready)"},
		{report: &Report{Component: "ratelimit:store", Status: Warn},
			want: "component ratelimit:store warns: not critical, so ready (health warns)"},
		{report: &Report{Component: "breaker:x", Status: Fail},
			want: "component breaker:x fails: not critical, so ready (health warns)"},
	}
	for _, c := range cases {
		var states []State
		var reports []Report
		if c.state != nil {
			states = []State{*c.state}
		}
		if c.report != nil {
			reports = []Report{*c.report}
		}
		v := Aggregate(states, reports, false)
		if len(v.Reasons) != 1 || v.Reasons[0] != c.want {
			t.Errorf("reasons %q, want [%q]", v.Reasons, c.want)
		}
		if strings.HasSuffix(c.want, ": not ready") == v.Ready {
			t.Errorf("%q with ready=%v", c.want, v.Ready)
		}
	}
	if v := Aggregate(nil, nil, true); len(v.Reasons) != 1 || v.Reasons[0] != "draining: the server is shutting down: not ready" {
		t.Errorf("draining: %q", v.Reasons)
	}
}
