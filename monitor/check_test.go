package monitor

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"
)

// scripted answers each run with the next outcome of its script (the last one repeats).
type scripted struct {
	runs   atomic.Int64
	script []Outcome
}

func (s *scripted) Check(ctx context.Context) Outcome {
	n := int(s.runs.Add(1)) - 1
	return s.script[min(n, len(s.script)-1)]
}

var (
	ok   = Outcome{Status: Pass}
	bad  = Failed(errors.New("connection refused"))
	slow = Outcome{Status: Warn, Output: "backlog 5 over 1"}
)

func TestFailuresBeforeDownAndRecovery(t *testing.T) {
	s := &scripted{script: []Outcome{ok, bad, bad, bad, ok}}
	c, err := NewCheck(Config{Name: "db", Interval: time.Second, Timeout: 100 * time.Millisecond, FailuresBeforeDown: 3}, s)
	if err != nil {
		t.Fatal(err)
	}
	if st := c.State(); st.Up || st.Checked || st.Status != Warn || st.Output != "not checked yet" {
		t.Fatalf("before the first run: %+v", st)
	}
	want := []struct {
		up     bool
		status Status
		fails  int
	}{{true, Pass, 0}, {true, Warn, 1}, {true, Warn, 2}, {false, Fail, 3}, {true, Pass, 0}}
	var changes []bool
	c.OnResult = func(_ State, changed bool) { changes = append(changes, changed) }
	for i, w := range want {
		st := c.RunOnce(context.Background())
		if st.Up != w.up || st.Status != w.status || st.ConsecutiveFailures != w.fails || st.Runs != int64(i+1) {
			t.Fatalf("run %d: up=%v status=%s fails=%d, want %+v", i+1, st.Up, st.Status, st.ConsecutiveFailures, w)
		}
	}
	if got := c.State(); got.LastSuccess.IsZero() || got.LastFailure.IsZero() || got.LastSuccess.Before(got.LastFailure) {
		t.Fatalf("last success/failure times: %+v", got)
	}
	if want := []bool{true, false, false, true, true}; len(changes) != len(want) || changes[0] != want[0] || changes[3] != want[3] || changes[4] != want[4] || changes[1] || changes[2] {
		t.Fatalf("up changes = %v, want %v", changes, want)
	}
}

func TestNeverSucceededIsDown(t *testing.T) {
	c, _ := NewCheck(Config{Name: "x", FailuresBeforeDown: 3}, &scripted{script: []Outcome{bad}})
	var reported bool
	c.OnResult = func(_ State, changed bool) { reported = changed }
	if st := c.RunOnce(context.Background()); st.Up || st.Status != Fail || !reported {
		t.Fatalf("a first failure before any success: %+v, reported as a change: %v", st, reported)
	}
}

func TestWarnOutcomeIsUp(t *testing.T) {
	c, _ := NewCheck(Config{Name: "w"}, &scripted{script: []Outcome{slow}})
	if st := c.RunOnce(context.Background()); !st.Up || st.Status != Warn || st.Output != "backlog 5 over 1" {
		t.Fatalf("%+v", st)
	}
}

func TestConfigDefaultsAndRefusals(t *testing.T) {
	c, err := NewCheck(Config{Name: "d"}, &scripted{script: []Outcome{ok}})
	if err != nil {
		t.Fatal(err)
	}
	if cfg := c.Config(); cfg.Interval != 10*time.Second || cfg.Timeout != 2*time.Second || cfg.FailuresBeforeDown != 3 || cfg.ComponentType != "component" {
		t.Fatalf("defaults: %+v", cfg)
	}
	c, _ = NewCheck(Config{Name: "short", Interval: time.Second}, &scripted{script: []Outcome{ok}})
	if c.Config().Timeout != 500*time.Millisecond {
		t.Fatalf("default timeout under a 1s interval: %s", c.Config().Timeout)
	}
	for _, cfg := range []Config{
		{},
		{Name: "a", Interval: time.Second, Timeout: time.Second},
		{Name: "a", Interval: time.Second, Timeout: 2 * time.Second},
		{Name: "a", Interval: -time.Second},
	} {
		if _, err := NewCheck(cfg, &scripted{script: []Outcome{ok}}); err == nil {
			t.Errorf("%+v accepted", cfg)
		}
	}
}

// blocking waits for its context: a run that would hang is cut at the timeout.
type blocking struct{}

func (blocking) Check(ctx context.Context) Outcome {
	<-ctx.Done()
	return Failed(ctx.Err())
}

func TestTimeoutBoundsARun(t *testing.T) {
	c, _ := NewCheck(Config{Name: "hang", Interval: time.Minute, Timeout: 50 * time.Millisecond, FailuresBeforeDown: 1}, blocking{})
	st := c.RunOnce(context.Background())
	if st.Up || !strings.HasPrefix(st.Output, "no answer within the check's timeout (50ms): ") {
		t.Fatalf("%+v", st)
	}
}

func TestStartRunsAtOnceAndStopEndsTheGoroutine(t *testing.T) {
	s := &scripted{script: []Outcome{ok}}
	c, _ := NewCheck(Config{Name: "s", Interval: time.Hour, Timeout: time.Second}, s)
	c.Start()
	deadline := time.Now().Add(5 * time.Second)
	for !c.State().Checked && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if !c.State().Up {
		t.Fatal("the first run did not happen at start")
	}
	c.Stop()
	select {
	case <-c.Stopped():
	default:
		t.Fatal("Stop returned with the goroutine still running")
	}
	if n := s.runs.Load(); n != 1 {
		t.Fatalf("runs = %d, want 1 within an hour's interval", n)
	}
	c.Stop() // twice is fine
}

func TestOutputIsRedacted(t *testing.T) {
	c, _ := NewCheck(Config{Name: "r", FailuresBeforeDown: 1, Secrets: []string{"hunter2"}},
		&scripted{script: []Outcome{Failed(errors.New("dial redis://app:s3cret@db:6379 with password=hunter2 and host=x password='a b'"))}})
	st := c.RunOnce(context.Background())
	for _, secret := range []string{"s3cret", "hunter2", "a b"} {
		if strings.Contains(st.Output, secret) {
			t.Fatalf("output shows %q: %s", secret, st.Output)
		}
	}
	if !strings.Contains(st.Output, "redis://app:xxxxx@db:6379") {
		t.Fatalf("output lost its useful part: %s", st.Output)
	}
}

func TestRedactBoundsLength(t *testing.T) {
	if got := Redact(strings.Repeat("a", 10000)); len(got) != maxOutput+3 {
		t.Fatalf("len = %d", len(got))
	}
}

// TestRedactCutsOnARuneBoundary: an output cut at maxOutput bytes could end in half a
// character (a PostgreSQL server with lc_messages fr_FR says "la base de données « x »
// n'existe pas"), which the JSON routes and the logs showed as U+FFFD.
func TestRedactCutsOnARuneBoundary(t *testing.T) {
	msg := "FATAL: " + strings.Repeat("données ", 60) // 'é' is two bytes: bytes 299 and 300 are one
	got := Redact(msg)
	if !utf8.ValidString(got) || !strings.HasSuffix(got, "...") || len(got) > maxOutput+3 {
		t.Fatalf("Redact cut %q", got)
	}
}

// TestResume: a check resumed from the one it replaces reports that one's result until its own
// first run, then counts on from it (failures toward its own threshold); a result of its own is
// never overwritten, and a predecessor that never ran changes nothing.
func TestResume(t *testing.T) {
	old, _ := NewCheck(Config{Name: "db", FailuresBeforeDown: 3}, &scripted{script: []Outcome{ok, bad}})
	old.RunOnce(context.Background())
	old.RunOnce(context.Background()) // up, failing 1 of 3

	c, _ := NewCheck(Config{Name: "db", Interval: time.Minute, FailuresBeforeDown: 2, Critical: true}, &scripted{script: []Outcome{bad}})
	c.Resume(old.State())
	st := c.State()
	if !st.Up || !st.Checked || st.Status != Warn || st.ConsecutiveFailures != 1 || st.Runs != 0 ||
		!st.Critical || st.Interval != time.Minute || st.FailuresBeforeDown != 2 || st.LastSuccess != old.State().LastSuccess {
		t.Fatalf("resumed before its first run: %+v", st)
	}
	if st := c.RunOnce(context.Background()); st.Up || st.ConsecutiveFailures != 2 || st.Runs != 1 {
		t.Fatalf("its first run (a failure, 2 of its own 2): %+v", st)
	}
	c.Resume(old.State()) // it has run: nothing changes
	if st := c.State(); st.Up || st.Runs != 1 {
		t.Fatalf("resumed after a run of its own: %+v", st)
	}

	fresh, _ := NewCheck(Config{Name: "db"}, &scripted{script: []Outcome{ok}})
	never, _ := NewCheck(Config{Name: "db"}, &scripted{script: []Outcome{ok}})
	fresh.Resume(never.State())
	if st := fresh.State(); st.Up || st.Checked || st.Output != "not checked yet" {
		t.Fatalf("resumed from a check that never ran: %+v", st)
	}
}

// TestStopCancelsARunInProgress: stopping a check (a reload that drops or changes it, a
// shutdown) cuts short a run that waits for a dependency that does not answer, instead of
// waiting out the check's timeout (a reload took 19 s with a 20 s timeout), and the run cut
// short is no result.
func TestStopCancelsARunInProgress(t *testing.T) {
	arrived := make(chan struct{}, 1)
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case arrived <- struct{}{}:
		default:
		}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	checker, err := NewHTTPChecker(HTTPOptions{URL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	stopDuringRun(t, "hang", checker, arrived)
}

// stopDuringRun starts a check of checker, waits for its first run to reach the dependency
// (arrived), which then never answers, and checks that Stop returns at once (the check's
// timeout is an hour) and that the run it cut short is no result.
func stopDuringRun(t *testing.T, name string, checker Checker, arrived <-chan struct{}) {
	t.Helper()
	c, err := NewCheck(Config{Name: name, Interval: 2 * time.Hour, Timeout: time.Hour}, checker)
	if err != nil {
		t.Fatal(err)
	}
	var results atomic.Int64
	c.OnResult = func(State, bool) { results.Add(1) }
	c.Start()
	select {
	case <-arrived:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: the first run did not reach the dependency", name)
	}
	stopped := make(chan struct{})
	go func() { c.Stop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: Stop waits for the run in progress (its timeout is an hour)", name)
	}
	if st := c.State(); results.Load() != 0 || st.Checked || st.Runs != 0 {
		t.Fatalf("%s: the run Stop cut short was recorded: %d results, state %+v", name, results.Load(), st)
	}
}
