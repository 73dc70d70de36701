package breaker

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func newBreaker(t *testing.T, s Settings) *Breaker {
	t.Helper()
	if s.Name == "" {
		s.Name = "test"
	}
	b, err := New(s)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b
}

// run admits one request and reports o; it fails the test when the breaker refuses it.
func run(t *testing.T, b *Breaker, o Outcome) {
	t.Helper()
	tk, err := b.Allow()
	if err != nil {
		t.Fatalf("request refused in state %s: %v", StateName(b.State()), err)
	}
	tk.Report(o)
}

// waitState waits (bounded) until the breaker reaches want, e.g. after OpenFor.
func waitState(t *testing.T, b *Breaker, want State) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for b.State() != want {
		if time.Now().After(deadline) {
			t.Fatalf("state %s, want %s", StateName(b.State()), StateName(want))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestConsecutiveFailuresOpen(t *testing.T) {
	b := newBreaker(t, Settings{ConsecutiveFailures: 3})
	run(t, b, Failure)
	run(t, b, Failure)
	run(t, b, Success) // resets the run
	run(t, b, Failure)
	run(t, b, Failure)
	if b.State() != StateClosed {
		t.Fatal("opened before 3 failures in a row")
	}
	run(t, b, Failure)
	if b.State() != StateOpen {
		t.Fatal("still closed after 3 failures in a row")
	}
	if _, err := b.Allow(); !errors.Is(err, ErrOpen) {
		t.Fatalf("open breaker admitted a request: %v", err)
	}
}

func TestDefaultIsFiveConsecutiveFailures(t *testing.T) {
	b := newBreaker(t, Settings{})
	for range 4 {
		run(t, b, Failure)
	}
	if b.State() != StateClosed {
		t.Fatal("opened before 5 failures")
	}
	run(t, b, Failure)
	if b.State() != StateOpen {
		t.Fatal("closed after 5 failures")
	}
}

func TestFailureRatioNeedsMinRequests(t *testing.T) {
	b := newBreaker(t, Settings{FailureRatio: 0.5, MinRequests: 6, Interval: time.Hour})
	for _, o := range []Outcome{Failure, Success, Failure, Success, Failure} {
		run(t, b, o)
	}
	if b.State() != StateClosed {
		t.Fatal("opened with 5 requests, below min_requests 6")
	}
	run(t, b, Success) // 3/6 failures, but a success never trips
	if b.State() != StateClosed {
		t.Fatal("a success tripped the breaker")
	}
	run(t, b, Failure) // 4/7 >= 0.5
	if b.State() != StateOpen {
		t.Fatalf("closed at 4/7 failures; counts %+v", b.Counts())
	}
}

func TestFailureRatioBelowThresholdStaysClosed(t *testing.T) {
	b := newBreaker(t, Settings{FailureRatio: 0.5, MinRequests: 4})
	for range 20 {
		run(t, b, Success)
		run(t, b, Success)
		run(t, b, Failure) // 1/3 < 0.5
	}
	if b.State() != StateClosed {
		t.Fatal("opened below the ratio")
	}
}

func TestExcludedNeitherTripsNorCounts(t *testing.T) {
	b := newBreaker(t, Settings{ConsecutiveFailures: 2})
	run(t, b, Failure)
	for range 10 {
		run(t, b, Excluded)
	}
	if c := b.Counts(); c.TotalExclusions != 10 || c.ConsecutiveFailures != 1 {
		t.Fatalf("counts %+v", c)
	}
	run(t, b, Failure)
	if b.State() != StateOpen {
		t.Fatal("exclusions broke the run of failures")
	}
}

func TestHalfOpenAdmitsExactlyNAndSuccessCloses(t *testing.T) {
	b := newBreaker(t, Settings{ConsecutiveFailures: 1, OpenFor: 50 * time.Millisecond, HalfOpenRequests: 2})
	run(t, b, Failure)
	if ra := b.RetryAfter(time.Now()); ra != time.Second {
		t.Fatalf("Retry-After %s, want the 1 s floor", ra)
	}
	waitState(t, b, StateHalfOpen)
	t1, err1 := b.Allow()
	t2, err2 := b.Allow()
	_, err3 := b.Allow()
	if err1 != nil || err2 != nil || !errors.Is(err3, ErrTooManyRequests) {
		t.Fatalf("half-open admitted: %v %v %v; want 2 then ErrTooManyRequests", err1, err2, err3)
	}
	t1.Report(Success)
	if b.State() != StateHalfOpen {
		t.Fatal("closed after 1 of 2 probes")
	}
	t2.Report(Success)
	if b.State() != StateClosed {
		t.Fatal("2 successful probes did not close it")
	}
}

func TestHalfOpenFailureReopens(t *testing.T) {
	b := newBreaker(t, Settings{ConsecutiveFailures: 1, OpenFor: 30 * time.Millisecond})
	got := make(chan Transition, 10)
	b.Listen(func(tr Transition) { got <- tr })
	run(t, b, Failure)
	waitState(t, b, StateHalfOpen)
	run(t, b, Failure)
	// The transition, not State(): 30 ms after the failed probe the breaker is half-open
	// again, and a loaded machine can take that long before the next line.
	for {
		select {
		case tr := <-got:
			if tr.From == StateHalfOpen && tr.To == StateOpen {
				return
			}
		case <-time.After(5 * time.Second):
			t.Fatal("a failed probe did not reopen the breaker")
		}
	}
}

func TestRetryAfterCountsDown(t *testing.T) {
	b := newBreaker(t, Settings{ConsecutiveFailures: 1, OpenFor: 30 * time.Second})
	run(t, b, Failure)
	now := time.Now()
	if ra := b.RetryAfter(now); ra < 29*time.Second || ra > 30*time.Second {
		t.Fatalf("Retry-After %s just after opening for 30s", ra)
	}
	if ra := b.RetryAfter(now.Add(20 * time.Second)); ra > 10*time.Second || ra < 9*time.Second {
		t.Fatalf("Retry-After %s 20s later", ra)
	}
}

func TestTransitionsDeliveredInOrder(t *testing.T) {
	b := newBreaker(t, Settings{ConsecutiveFailures: 1, OpenFor: 20 * time.Millisecond})
	got := make(chan Transition, 10)
	b.Listen(func(tr Transition) { got <- tr })
	run(t, b, Failure)
	waitState(t, b, StateHalfOpen)
	run(t, b, Success)
	want := []struct{ from, to State }{{StateClosed, StateOpen}, {StateOpen, StateHalfOpen}, {StateHalfOpen, StateClosed}}
	for i, w := range want {
		select {
		case tr := <-got:
			if tr.From != w.from || tr.To != w.to || tr.Cause != CauseLocal || tr.Name != "test" {
				t.Fatalf("transition %d: %+v, want %s -> %s", i, tr, StateName(w.from), StateName(w.to))
			}
			if tr.To == StateOpen && tr.OpenUntil.Sub(tr.At) != 20*time.Millisecond {
				t.Fatalf("open transition without OpenUntil: %+v", tr)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("transition %d not delivered", i)
		}
	}
}

func TestForceOpen(t *testing.T) {
	b := newBreaker(t, Settings{ConsecutiveFailures: 100})
	got := make(chan Transition, 1)
	b.Listen(func(tr Transition) { got <- tr })
	until := time.Now().Add(time.Minute)
	if !b.openUntilShared(until) || b.State() != StateOpen {
		t.Fatal("openUntilShared did not open a closed breaker")
	}
	if tr := <-got; tr.Cause != CauseShared || !tr.OpenUntil.Equal(until) || !b.OpenUntil().Equal(until) {
		t.Fatalf("transition %+v (open until %s), want open until %s, caused by the shared state", tr, b.OpenUntil(), until)
	}
	if b.openUntilShared(time.Now().Add(-time.Second)) {
		t.Fatal("openUntilShared followed a trip whose open time is up")
	}
}

func TestSettingsValidate(t *testing.T) {
	for _, tc := range []struct {
		s    Settings
		want string
	}{
		{Settings{Name: ""}, "needs a name"},
		{Settings{Name: "a b"}, "breaker name"},
		{Settings{Name: strings.Repeat("a", 65)}, "at most 64"},
		{Settings{Name: "a", FailureRatio: 1.5}, "failure_ratio must be in (0, 1]"},
		{Settings{Name: "a", FailureRatio: -0.1}, "failure_ratio"},
		{Settings{Name: "a", Interval: -time.Second}, "interval must be positive"},
		{Settings{Name: "a", OpenFor: -time.Second}, "open_for must be positive"},
		{Settings{Name: "a", Interval: time.Millisecond}, "interval must be at least"},
		{Settings{Name: "billing-v2.eu_1", FailureRatio: 1}, ""},
	} {
		err := tc.s.Validate()
		if tc.want == "" {
			if err != nil {
				t.Errorf("%+v: %v", tc.s, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want %q", tc.s, err, tc.want)
		}
	}
}
