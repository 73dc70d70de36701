package monitor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of a check's schedule.
const (
	DefaultInterval           = 10 * time.Second
	DefaultTimeout            = 2 * time.Second
	DefaultFailuresBeforeDown = 3
	// jitterFraction spreads runs by up to ±10% of the interval, so instances started together
	// do not probe a dependency in lockstep.
	jitterFraction = 0.1
)

// Checker probes one dependency once. ctx carries the check's timeout. Implementations are
// called from one goroutine at a time.
type Checker interface {
	Check(ctx context.Context) Outcome
}

// Outcome is the result of one probe. Pass and Warn count as success (the dependency
// answered); Fail counts toward FailuresBeforeDown.
type Outcome struct {
	Status   Status
	Output   string        // why a warn or fail; redacted before it is stored
	Observed []Observation // figures beyond the response time (queue backlog, heartbeat age)
	// Abandoned: the probe could not ask (a client closed under it as its configuration was
	// torn down). It is no result: the state is left as it was and OnResult is not called.
	Abandoned bool
}

// Observation is one observed figure, shown as a health+json check entry.
type Observation struct {
	Name  string // measurement name: "backlog", "heartbeatAge"
	Value any
	Unit  string
}

// Failed is the outcome of a probe that returned err.
func Failed(err error) Outcome { return Outcome{Status: Fail, Output: err.Error()} }

// Config describes a check and its schedule.
type Config struct {
	Name   string // unique within a configuration; health+json key "<name>:responseTime"
	Type   string // redis, postgres, http, tcp, worker
	Target string // where it probes, without credentials; shown only to authorized clients
	// ComponentType is the draft's componentType: "datastore", "component" or "system".
	ComponentType string
	Interval      time.Duration // between runs; default 10s
	Timeout       time.Duration // of one run; default 2s; must be below Interval
	// Critical makes readiness depend on the check.
	Critical bool
	// FailuresBeforeDown is how many consecutive failures mark the dependency down; one
	// success marks it up again. Default 3.
	FailuresBeforeDown int
	// Secrets are removed from every output (passwords the checker knows).
	Secrets []string
}

func (c *Config) setDefaults() error {
	if c.Name == "" {
		return errors.New("a check needs a name")
	}
	if c.Interval == 0 {
		c.Interval = DefaultInterval
	}
	if c.Timeout == 0 {
		c.Timeout = min(DefaultTimeout, c.Interval/2)
	}
	if c.FailuresBeforeDown == 0 {
		c.FailuresBeforeDown = DefaultFailuresBeforeDown
	}
	if c.ComponentType == "" {
		c.ComponentType = "component"
	}
	switch {
	case c.Interval < 0 || c.Timeout < 0 || c.FailuresBeforeDown < 0:
		return fmt.Errorf("check %s: interval, timeout and failures_before_down must be positive", c.Name)
	case c.Timeout >= c.Interval:
		return fmt.Errorf("check %s: timeout %s must be shorter than interval %s", c.Name, c.Timeout, c.Interval)
	}
	return nil
}

// State is what requests read: the last result and its history, with no secret in it.
type State struct {
	Name, Type, Target, ComponentType string
	Critical                          bool

	// Status is pass or warn while up (warn also while failing below the threshold), fail
	// when down, and warn before the first run ended.
	Status Status
	// Up is false until the first success and after FailuresBeforeDown consecutive failures
	// (or, for a check resumed from the one it replaces, until its first run: that one's).
	Up bool
	// Checked is false until the first run ended (a resumed check starts checked).
	Checked             bool
	Output              string
	Observed            []Observation
	Latency             time.Duration
	LastCheck           time.Time
	LastSuccess         time.Time
	LastFailure         time.Time
	ConsecutiveFailures int
	FailuresBeforeDown  int
	Interval            time.Duration
	Runs                int64
}

// Check runs a Checker on its schedule and keeps its State.
type Check struct {
	cfg     Config
	checker Checker

	// OnResult, when set before Start, is called after every run (for metrics and logs) with
	// the new state and whether Up changed (always true after the first run, unless the check
	// resumed a predecessor's result: then against that result).
	OnResult func(s State, changed bool)

	mu      sync.RWMutex
	state   State
	resumed bool // state started from a predecessor's (Resume)

	started  atomic.Bool
	stopOnce sync.Once
	stop     chan struct{}
	done     chan struct{}
}

// NewCheck validates cfg (filling defaults) and returns a check that has not run yet.
func NewCheck(cfg Config, checker Checker) (*Check, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	return &Check{
		cfg:     cfg,
		checker: checker,
		state: State{Name: cfg.Name, Type: cfg.Type, Target: cfg.Target, ComponentType: cfg.ComponentType,
			Critical: cfg.Critical, Status: Warn, Output: "not checked yet",
			FailuresBeforeDown: cfg.FailuresBeforeDown, Interval: cfg.Interval},
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}, nil
}

// Resume makes a check that has not run yet report prev's result (up or down, status,
// output, failure count, times) until its own first run ends. A check that replaces another
// one watching the same dependency (a reload that changed its interval or timeout) thus keeps
// the last known state instead of starting down: a critical one does not fail readiness for
// the length of its first run. The check's own settings (critical, interval,
// failures_before_down) and run count stay its own; its first run is reported as a change
// (OnResult) only when Up differs from prev's. A prev that never ran changes nothing.
func (c *Check) Resume(prev State) {
	if !prev.Checked {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	s := &c.state
	if s.Checked { // its own result wins
		return
	}
	s.Status, s.Up, s.Checked, s.Output, s.Observed = prev.Status, prev.Up, true, prev.Output, prev.Observed
	s.Latency, s.LastCheck, s.LastSuccess, s.LastFailure = prev.Latency, prev.LastCheck, prev.LastSuccess, prev.LastFailure
	s.ConsecutiveFailures = prev.ConsecutiveFailures
	c.resumed = true
}

// Config returns the check's configuration with defaults filled in.
func (c *Check) Config() Config { return c.cfg }

// Start runs the check now and then every interval (±10% jitter) until Stop.
func (c *Check) Start() {
	if !c.started.CompareAndSwap(false, true) {
		return
	}
	// Stop cancels a run in progress: a reload or a shutdown does not wait for a dependency
	// that does not answer (up to the check's timeout, for each check it stops).
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-c.stop
		cancel()
	}()
	go func() {
		defer close(c.done)
		for {
			c.RunOnce(ctx)
			jitter := time.Duration((rand.Float64()*2 - 1) * jitterFraction * float64(c.cfg.Interval))
			t := time.NewTimer(c.cfg.Interval + jitter)
			select {
			case <-c.stop:
				t.Stop()
				return
			case <-t.C:
			}
		}
	}()
}

// Stop ends the schedule, cancels a run in progress (one whose checker does not see the
// cancellation is abandoned, not waited for: see probe), waits for the schedule's goroutine,
// and closes the checker if it holds connections. A run cut short by Stop is no result. A check that was never started just
// closes.
func (c *Check) Stop() {
	c.stopOnce.Do(func() {
		close(c.stop)
		if c.started.Load() {
			select {
			case <-c.done:
			case <-time.After(c.cfg.Timeout + time.Second):
			}
		}
		if cl, ok := c.checker.(io.Closer); ok {
			_ = cl.Close()
		}
	})
}

// Stopped is closed when a started check's goroutine has ended.
func (c *Check) Stopped() <-chan struct{} { return c.done }

// RunOnce probes the dependency once, within the timeout, and records the result. A run
// whose ctx ends before it does (Stop, for a started check) records nothing.
func (c *Check) RunOnce(parent context.Context) State {
	ctx, cancel := context.WithTimeout(parent, c.cfg.Timeout)
	start := time.Now()
	out := c.probe(parent, ctx)
	timedOut := errors.Is(ctx.Err(), context.DeadlineExceeded)
	cancel()
	if out.Abandoned || parent.Err() != nil {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.state
	}
	if timedOut && out.Status == Fail { // the checker's own words are "context deadline exceeded"
		out.Output = fmt.Sprintf("no answer within the check's timeout (%s): %s", c.cfg.Timeout, out.Output)
	}
	return c.record(out, start, time.Since(start))
}

// probe runs the checker, and gives up on it when parent ends (Stop): go-redis bounds a read
// by its ReadTimeout, not by the context, so a Redis that accepts and never answers held Stop,
// and with it a reload, for the rest of the check's timeout. The abandoned run ends at its own
// timeout at the latest, sooner when Stop closes the checker's client under it; its outcome
// is dropped.
func (c *Check) probe(parent, ctx context.Context) Outcome {
	done := make(chan Outcome, 1)
	go func() { done <- c.checker.Check(ctx) }()
	select {
	case out := <-done:
		return out
	case <-parent.Done():
		return Outcome{Abandoned: true}
	}
}

func (c *Check) record(out Outcome, start time.Time, latency time.Duration) State {
	if _, ok := ParseStatus(string(out.Status)); !ok {
		out.Status = Fail
	}
	c.mu.Lock()
	s := &c.state
	wasUp := s.Up
	s.Checked = true
	s.Runs++
	s.Latency = latency
	s.LastCheck = start
	s.Observed = out.Observed
	s.Output = Redact(out.Output, c.cfg.Secrets...)
	if out.Status == Fail {
		s.ConsecutiveFailures++
		s.LastFailure = start
		if s.ConsecutiveFailures >= c.cfg.FailuresBeforeDown {
			s.Up = false
		}
		s.Status = Fail
		if s.Up {
			s.Status = Warn
			s.Output = fmt.Sprintf("failing (%d of %d before down): %s", s.ConsecutiveFailures, c.cfg.FailuresBeforeDown, s.Output)
		}
	} else {
		s.ConsecutiveFailures = 0
		s.LastSuccess = start
		s.Up = true
		s.Status = out.Status
	}
	snapshot := *s
	first := s.Runs == 1 && !c.resumed // a resumed check compares with its predecessor's result
	c.mu.Unlock()
	if c.OnResult != nil {
		c.OnResult(snapshot, snapshot.Up != wasUp || first) // the first run always reports
	}
	return snapshot
}

// State returns the cached state; it never probes.
func (c *Check) State() State {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.state
}
