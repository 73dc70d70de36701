package ratelimit

import (
	"testing"
	"time"
)

// FuzzDecide drives one key through arbitrary limits and arrival times and checks the GCRA
// contract every store relies on:
//   - conformance: from any decision on, the admitted requests never exceed the burst plus
//     one per interval elapsed since then;
//   - a refusal leaves the TAT unchanged and says when to retry, and a request at that time
//     is admitted;
//   - Remaining stays below the burst;
//   - Scale keeps a valid limit valid.
func FuzzDecide(f *testing.F) {
	f.Add(int64(10), int64(time.Second), int64(5), []byte{0, 0, 0, 0, 0, 0, 0, 200, 0, 0})
	f.Add(int64(1), int64(time.Minute), int64(1), []byte{1, 2, 3, 255, 255})
	f.Add(int64(1000), int64(time.Millisecond*10), int64(200), []byte{0, 1, 0, 1, 0, 1})
	f.Add(int64(3), int64(time.Hour), int64(100), []byte{9, 9, 9})
	f.Fuzz(func(t *testing.T, rate, period, burst int64, gaps []byte) {
		l := Limit{Rate: rate, Period: time.Duration(period), Burst: burst}
		if l.Validate() != nil || len(gaps) > 512 {
			return
		}
		for _, factor := range []float64{0.5, 0.25, 0.01, 1e-9} {
			if err := l.Scale(factor).Validate(); err != nil {
				t.Fatalf("%+v scaled by %v: %v", l, factor, err)
			}
		}
		interval := int64(l.Interval())
		now, tat := int64(1_000_000_000), int64(0)
		var times []int64 // arrival time of each admitted request
		for _, g := range gaps {
			// Gaps from 0 to 255 sixteenths of an interval: bursts, steady traffic and pauses.
			now += interval * int64(g) / 16
			if now > 1<<61 {
				return // far past any real clock; keeps the arithmetic below from overflowing
			}
			res, next := Decide(tat, now, l)
			if res.Remaining < 0 || res.Remaining >= l.Burst {
				t.Fatalf("remaining %d outside [0, burst %d)", res.Remaining, l.Burst)
			}
			if !res.Allowed {
				if next != tat || res.RetryAfter <= 0 {
					t.Fatalf("refusal moved the TAT (%d -> %d) or gave retry %v", tat, next, res.RetryAfter)
				}
				if later, _ := Decide(tat, now+int64(res.RetryAfter), l); !later.Allowed {
					t.Fatalf("a request after retry %v is refused", res.RetryAfter)
				}
				continue
			}
			if res.RetryAfter != 0 || next <= tat {
				t.Fatalf("admission gave retry %v, TAT %d -> %d", res.RetryAfter, tat, next)
			}
			tat = next
			times = append(times, now)
			// Conformance, checked from every earlier admission: n requests in [start, now].
			for i, start := range times {
				n := int64(len(times) - i)
				if bound := l.Burst + (now-start)/interval; n > bound {
					t.Fatalf("%d admitted in %v, bound %d (%+v)", n, time.Duration(now-start), bound, l)
				}
			}
		}
	})
}
