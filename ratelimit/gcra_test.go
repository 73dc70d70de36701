package ratelimit

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// t0 is an arbitrary instant (2026) in Unix nanoseconds, far from zero so that a TAT of 0
// (a key never seen) is far in the past, as it is for a real clock.
const t0 = int64(1_790_000_000_000_000_000)

// specLimits are the limits every Decide specification runs over: a burst of one, a burst
// equal to the rate, an interval that does not divide the period, and a slow limit with a
// large burst.
var specLimits = []struct {
	name string
	l    Limit
}{
	{"10/s burst 1", Limit{Rate: 10, Period: time.Second, Burst: 1}},
	{"10/s burst 10", Limit{Rate: 10, Period: time.Second, Burst: 10}},
	{"3/s burst 2", Limit{Rate: 3, Period: time.Second, Burst: 2}},
	{"1/min burst 100", Limit{Rate: 1, Period: time.Minute, Burst: 100}},
	{"1/µs burst 7", Limit{Rate: 1_000_000, Period: time.Second, Burst: 7}},
}

// spend applies Decide n times at now from tat, requires every decision to be admitted
// with the exact headers GCRA prescribes for a key that starts with 'before' requests
// admissible, and returns the resulting TAT.
func spend(t *testing.T, tat, now int64, l Limit, n, before int64) int64 {
	t.Helper()
	interval := l.Interval()
	for i := range n {
		res, next := Decide(tat, now, l)
		want := Result{
			Allowed:    true,
			Remaining:  before - 1 - i,
			ResetAfter: time.Duration(max(tat, now)-now) + interval,
		}
		if res != want {
			t.Fatalf("request %d of %d at %d: got %+v, want %+v", i+1, n, now, res, want)
		}
		if next != max(tat, now)+int64(interval) {
			t.Fatalf("request %d: TAT %d, want %d", i+1, next, max(tat, now)+int64(interval))
		}
		tat = next
	}
	return tat
}

// denied requires Decide at now to deny with RetryAfter retry and leave tat unchanged.
func denied(t *testing.T, tat, now int64, l Limit, retry time.Duration) {
	t.Helper()
	res, next := Decide(tat, now, l)
	want := Result{RetryAfter: retry, ResetAfter: time.Duration(tat - now)}
	if res != want {
		t.Fatalf("at %d with TAT %d: got %+v, want %+v", now, tat, res, want)
	}
	if next != tat {
		t.Fatalf("a denied decision moved the TAT from %d to %d", tat, next)
	}
}

func TestDecideFreshKeyAdmitsExactlyBurstThenWaitsOneInterval(t *testing.T) {
	for _, tc := range specLimits {
		t.Run(tc.name, func(t *testing.T) {
			l := tc.l
			tat := spend(t, 0, t0, l, l.Burst, l.Burst)
			if want := t0 + l.Burst*int64(l.Interval()); tat != want {
				t.Fatalf("TAT after the burst is %d, want now + Burst*Interval = %d", tat, want)
			}
			// Denials at the same instant do not move the TAT, however many there are.
			for range 3 {
				denied(t, tat, t0, l, l.Interval())
			}
		})
	}
}

func TestDecideAdmitsOneMorePerIntervalWaited(t *testing.T) {
	for _, tc := range specLimits {
		for _, k := range []int64{1, 2, 5} {
			if k > tc.l.Burst {
				continue // waiting longer than the burst replenishes only Burst
			}
			t.Run(fmt.Sprintf("%s/wait %d", tc.name, k), func(t *testing.T) {
				l, interval := tc.l, int64(tc.l.Interval())
				tat := spend(t, 0, t0, l, l.Burst, l.Burst)

				// Just before k intervals have passed, only k-1 are admitted, and the
				// next one waits exactly for the remaining nanosecond.
				now := t0 + k*interval - 1
				tat1 := spend(t, tat, now, l, k-1, k-1)
				denied(t, tat1, now, l, 1)

				// At k intervals exactly, k are admitted, then one interval to wait.
				now = t0 + k*interval
				tat = spend(t, tat, now, l, k, k)
				denied(t, tat, now, l, l.Interval())

				// Halfway through the next interval: the wait is the other half.
				denied(t, tat, now+interval/2, l, time.Duration(interval-interval/2))
			})
		}
	}
}

func TestDecideWaitingLongerThanAFullReplenishAdmitsOnlyBurst(t *testing.T) {
	for _, tc := range specLimits {
		t.Run(tc.name, func(t *testing.T) {
			l := tc.l
			tat := spend(t, 0, t0, l, l.Burst, l.Burst)
			now := t0 + 10*l.Burst*int64(l.Interval())
			tat = spend(t, tat, now, l, l.Burst, l.Burst)
			denied(t, tat, now, l, l.Interval())
		})
	}
}

func TestDecideTATInThePastIsAFreshKey(t *testing.T) {
	for _, tc := range specLimits {
		t.Run(tc.name, func(t *testing.T) {
			fresh, freshTAT := Decide(0, t0, tc.l)
			for _, tat := range []int64{math.MinInt64, -1, 1, t0 - int64(366*24*time.Hour), t0 - 1, t0} {
				res, next := Decide(tat, t0, tc.l)
				if res != fresh || next != freshTAT {
					t.Errorf("TAT %d: got %+v → %d, want the fresh key's %+v → %d", tat, res, next, fresh, freshTAT)
				}
			}
		})
	}
}

// TestDecideTATBeyondTheLimitIsADrainedBucket: a TAT further ahead than the limit in force can
// reach (written under a stricter limit: before a reload raised it, or a client's earlier
// class) is a drained bucket of this limit, not a deeper one. Before, a client that spent 1/1h
// was refused for 59 minutes after the limit was raised to 100/1m.
func TestDecideTATBeyondTheLimitIsADrainedBucket(t *testing.T) {
	strict := Limit{Rate: 1, Period: time.Hour, Burst: 1}
	_, tat := Decide(0, t0, strict)
	raised := Limit{Rate: 100, Period: time.Minute, Burst: 100}
	now := t0 + int64(time.Second)
	res, next := Decide(tat, now, raised)
	if res.Allowed || res.RetryAfter != raised.Interval() || res.ResetAfter != time.Minute {
		t.Fatalf("after 1/1h, under 100/1m: %+v; want a drained bucket: refused for one interval (%v), full after a minute", res, raised.Interval())
	}
	if next > now+int64(time.Minute) {
		t.Fatalf("the refusal left the TAT %v ahead, beyond what 100/1m reaches", time.Duration(next-now))
	}
	spend(t, next, now+int64(raised.Interval()), raised, 1, 1)
	// A TAT the limit can reach is decided as ever.
	_, tat = Decide(0, t0, raised)
	if _, again := Decide(tat, t0, raised); again != tat+int64(raised.Interval()) {
		t.Fatalf("a reachable TAT moved to %d, want %d", again, tat+int64(raised.Interval()))
	}
}

func TestDecideResetAfterIsTheTimeToAFullBucket(t *testing.T) {
	l := Limit{Rate: 10, Period: time.Second, Burst: 5}
	res, tat := Decide(0, t0, l)
	res, tat = Decide(tat, t0, l)
	if res.ResetAfter != 200*time.Millisecond || res.Remaining != 3 {
		t.Fatalf("after 2 of 5: %+v", res)
	}
	// After ResetAfter the bucket is full: the TAT is at or before now.
	if tat > t0+int64(res.ResetAfter) {
		t.Fatalf("TAT %d is after now + ResetAfter %d", tat, t0+int64(res.ResetAfter))
	}
	spend(t, tat, t0+int64(res.ResetAfter), l, l.Burst, l.Burst)
}

func TestLimitValidate(t *testing.T) {
	year := 366 * 24 * time.Hour
	for _, tc := range []struct {
		name    string
		l       Limit
		wantErr string // "" when valid
	}{
		{"10 per second", Limit{Rate: 10, Period: time.Second, Burst: 20}, ""},
		{"exactly one per microsecond", Limit{Rate: 1_000_000, Period: time.Second, Burst: 1}, ""},
		{"one per 366 days", Limit{Rate: 1, Period: year, Burst: 1}, ""},
		{"a burst that takes exactly 366 days", Limit{Rate: 1, Period: time.Second, Burst: int64(year / time.Second)}, ""},
		{"zero rate", Limit{Rate: 0, Period: time.Second, Burst: 1}, "rate"},
		{"negative rate", Limit{Rate: -5, Period: time.Second, Burst: 1}, "rate"},
		{"zero period", Limit{Rate: 1, Period: 0, Burst: 1}, "period"},
		{"negative period", Limit{Rate: 1, Period: -time.Second, Burst: 1}, "period"},
		{"zero burst", Limit{Rate: 1, Period: time.Second, Burst: 0}, "burst"},
		{"negative burst", Limit{Rate: 1, Period: time.Second, Burst: -1}, "burst"},
		{"more than one per microsecond", Limit{Rate: 1_000_001, Period: time.Second, Burst: 1}, "microsecond"},
		{"more requests than nanoseconds", Limit{Rate: 2_000_000_000, Period: time.Second, Burst: 1}, "microsecond"},
		{"a burst one second longer than 366 days", Limit{Rate: 1, Period: time.Second, Burst: int64(year/time.Second) + 1}, "takes more than 8784h0m0s (366 days) to replenish: at most 31622400"},
		{"a burst that would overflow", Limit{Rate: 1, Period: time.Second, Burst: math.MaxInt64}, "replenish"},
		// Said "burst 1 at 1 per 8808h0m0s takes more than 8784h0m0s to replenish", of a burst the
		// user never wrote.
		{"one per 367 days", Limit{Rate: 1, Period: year + 24*time.Hour, Burst: 1}, "1 per 8808h0m0s is slower than one request per 8784h0m0s (366 days), the slowest limit"},
		{"the longest period", Limit{Rate: 1, Period: math.MaxInt64, Burst: 1}, "the slowest limit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.l.Validate()
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("%+v: unexpected error %v", tc.l, err)
			case tc.wantErr != "" && err == nil:
				t.Fatalf("%+v: accepted, want an error about %s", tc.l, tc.wantErr)
			case err != nil && !strings.Contains(err.Error(), tc.wantErr):
				t.Fatalf("%+v: error %q does not mention %s", tc.l, err, tc.wantErr)
			}
		})
	}
}

func TestLimitScale(t *testing.T) {
	base := Limit{Rate: 10, Period: time.Second, Burst: 10}
	for _, tc := range []struct {
		name         string
		l            Limit
		f            float64
		wantInterval time.Duration
		wantBurst    int64
	}{
		{"half halves rate and burst", base, 0.5, 200 * time.Millisecond, 5},
		{"a quarter", base, 0.25, 400 * time.Millisecond, 2},
		{"an eighth leaves a burst of one", base, 0.125, 800 * time.Millisecond, 1},
		{"the burst never drops below one", base, 1.0 / 64, 6400 * time.Millisecond, 1},
		{"an odd burst rounds down", Limit{Rate: 10, Period: time.Second, Burst: 3}, 0.5, 200 * time.Millisecond, 1},
		{"a burst of one stays one", Limit{Rate: 10, Period: time.Second, Burst: 1}, 0.5, 200 * time.Millisecond, 1},
		{"one is the identity", base, 1, 100 * time.Millisecond, 10},
		{"more than one is the identity", base, 3, 100 * time.Millisecond, 10},
		{"infinity is the identity", base, math.Inf(1), 100 * time.Millisecond, 10},
		{"zero is the identity", base, 0, 100 * time.Millisecond, 10},
		{"a negative factor is the identity", base, -0.5, 100 * time.Millisecond, 10},
		{"a period at the int64 limit stays there", Limit{Rate: math.MaxInt64 / 2, Period: math.MaxInt64, Burst: 1}, 0.5, 2, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.l.Scale(tc.f)
			if got.Interval() != tc.wantInterval || got.Burst != tc.wantBurst {
				t.Fatalf("%+v.Scale(%v) = %+v: interval %v burst %d, want interval %v burst %d",
					tc.l, tc.f, got, got.Interval(), got.Burst, tc.wantInterval, tc.wantBurst)
			}
			if err := got.Validate(); err != nil && tc.l.Validate() == nil {
				t.Fatalf("%+v.Scale(%v) = %+v is invalid: %v", tc.l, tc.f, got, err)
			}
		})
	}
	// Scaling an invalid limit returns it as it is rather than panicking: Validate reports it.
	for _, l := range []Limit{{}, {Rate: 0, Period: time.Second}, {Rate: -1, Period: time.Second}, {Rate: 10, Period: 5}} {
		if got := l.Scale(0.5); got != l {
			t.Errorf("%+v.Scale(0.5) = %+v, want it unchanged", l, got)
		}
	}
}

// TestLimitScaleNeverFailsOpen: a factor computed from a degenerate measurement (0/0 is
// NaN) or one so small that the scaled period would overflow int64 must never produce a
// limit whose interval is zero or negative, since Decide then admits every request.
func TestLimitScaleNeverFailsOpen(t *testing.T) {
	base := Limit{Rate: 10, Period: time.Second, Burst: 10}
	for _, f := range []float64{math.NaN(), 1e-9, 1e-12, 1e-300, math.SmallestNonzeroFloat64} {
		got := base.Scale(f)
		if got.Period <= 0 || got.Interval() <= 0 {
			t.Errorf("Scale(%v) = %+v: the interval %v is not positive", f, got, got.Interval())
			continue
		}
		if err := got.Validate(); err != nil {
			t.Errorf("Scale(%v) = %+v is invalid: %v", f, got, err)
		}
		// The scaled limit still limits: a fresh key gets its burst, then a denial.
		tat := spend(t, 0, t0, got, got.Burst, got.Burst)
		if res, _ := Decide(tat, t0, got); res.Allowed {
			t.Errorf("Scale(%v) = %+v admits more than its burst", f, got)
		}
	}
}

// TestLimitScaleKeepsAValidLimitValid: whatever the factor, scaling a valid limit gives a
// valid limit, so a caller that validated its configuration once never decides with a limit
// that overflows.
func TestLimitScaleKeepsAValidLimitValid(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	periods := []time.Duration{time.Millisecond, time.Second, time.Minute, time.Hour, 24 * time.Hour, 366 * 24 * time.Hour}
	factors := []float64{math.NaN(), -1, 0, math.SmallestNonzeroFloat64, 1e-300, 1e-18, 1e-12, 1e-9, 1e-6, 1e-3, 0.1, 0.5, 0.999999, 1}
	for range 100_000 {
		period := periods[rng.IntN(len(periods))]
		l := Limit{Rate: 1 + rng.Int64N(int64(period/time.Microsecond)), Period: period}
		l.Burst = 1 + rng.Int64N(int64(maxReplenish/l.Interval()))
		if err := l.Validate(); err != nil {
			t.Fatalf("generated an invalid limit %+v: %v", l, err)
		}
		f := factors[rng.IntN(len(factors))]
		if rng.IntN(2) == 0 {
			f = rng.Float64()
		}
		if err := l.Scale(f).Validate(); err != nil {
			t.Fatalf("%+v.Scale(%v) = %+v: %v", l, f, l.Scale(f), err)
		}
	}
}
