//go:build chaos

package chaos

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// keyTally is what the load saw of one rate-limit key.
type keyTally struct {
	first, last    time.Time // sending times of its first and last request
	admitted       int64
	admittedBefore int64 // admitted among the requests answered before the run's cutoff
}

// rlRun is a load on the /rl/ route: every key continuously (a request per key every few
// tens of milliseconds), each key's requests spread over the three instances in turn.
type rlRun struct {
	keys    []string
	rate    int
	runFor  time.Duration
	cutoff  time.Duration // admittedBefore counts requests answered before start+cutoff (0: none)
	observe func(Result)  // when set, sees every result too
	tallies map[string]*keyTally
	start   time.Time
}

// run sends the load for runFor while faults(start) runs beside it.
func (r *rlRun) run(t *testing.T, s *stack, faults func(start time.Time)) Stats {
	t.Helper()
	r.tallies = map[string]*keyTally{}
	for _, k := range r.keys {
		r.tallies[k] = &keyTally{}
	}
	n := int64(len(r.keys))
	l := &Load{Targets: s.urls, Rate: r.rate, Workers: 16,
		Next: func(i int64) Request {
			return Request{Instance: int((i / n) % 3), Path: "/rl/x", ClientIP: r.keys[i%n]}
		},
	}
	r.start = time.Now()
	cutoff := r.start.Add(r.cutoff)
	l.OnResult = func(res Result) {
		if r.observe != nil {
			r.observe(res)
		}
		k := r.tallies[res.ClientIP]
		if k.first.IsZero() || res.Sent.Before(k.first) {
			k.first = res.Sent
		}
		if res.Sent.After(k.last) {
			k.last = res.Sent
		}
		if res.Status == 200 {
			k.admitted++
			if res.Sent.Add(res.Latency).Before(cutoff) { // decided before the cutoff
				k.admittedBefore++
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), r.runFor)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); faults(r.start) }()
	stats := l.Run(ctx)
	wg.Wait()
	return stats
}

// allowance is GCRA's exact count for a key asked continuously from first to x: the burst,
// then one per interval. near says x falls within margin of an interval boundary, where the
// request timing on the client cannot tell which side Redis saw (then the count may be one
// off).
func allowance(first, x time.Time) (n int64, near bool) {
	el := x.Sub(first)
	if el < 0 {
		return 0, false
	}
	rem := el % rlInterval
	const margin = 150 * time.Millisecond
	return rlBurst + int64(el/rlInterval), rem < margin || rem > rlInterval-margin
}

// checkExact asserts a key's admitted count is GCRA's allowance (one off only at a boundary).
func checkExact(t *testing.T, what string, got int64, first, x time.Time) int64 {
	t.Helper()
	want, near := allowance(first, x)
	if got == want || (near && (got == want-1 || got == want+1)) {
		return want
	}
	t.Errorf("%s: admitted %d, GCRA allows exactly %d over %v (near a boundary: %v)", what, got, want, x.Sub(first), near)
	return want
}

// checkOutage asserts every key's total around an outage of the shared store, from fault to
// back (the last instance's return): before r.cutoff, GCRA's exact allowance; over the run,
// at most Redis's allowance plus one burst (a bucket Redis lost or had not replicated) plus
// three in-memory allowances over the outage (each instance limits alone), and at least
// Redis's allowance less the outage. It returns the sums for the figures.
func (r *rlRun) checkOutage(t *testing.T, fault, back time.Time) (admitted, bound, exactBefore int64) {
	t.Helper()
	outage := back.Sub(fault)
	for _, k := range r.keys {
		tl := r.tallies[k]
		checkExact(t, "before the fault, key "+k, tl.admittedBefore, tl.first, r.start.Add(r.cutoff))
		exactBefore += tl.admittedBefore
		redisPart, _ := allowance(tl.first, tl.last)
		memPart, _ := allowance(fault, back)
		b := redisPart + rlBurst + 1 + 3*(memPart+1)
		if tl.admitted > b {
			t.Errorf("key %s: admitted %d, more than the bound %d (outage %v)", k, tl.admitted, b, outage)
		}
		if tl.admitted < redisPart-int64(outage/rlInterval)-1 {
			t.Errorf("key %s: admitted %d, fewer than Redis alone allows outside the outage (%d)", k, tl.admitted, redisPart-int64(outage/rlInterval))
		}
		admitted += tl.admitted
		bound += b
	}
	return admitted, bound, exactBefore
}

// checkStatuses asserts every answer was a 200 or a 429: no 5xx, no transport error.
func checkStatuses(t *testing.T, st Stats) {
	t.Helper()
	for code, n := range st.ByStatus {
		if code != 200 && code != 429 {
			t.Errorf("%d answers with status %d (0: transport error); want only 200 and 429", n, code)
		}
	}
	if st.ByStatus[200] == 0 || st.ByStatus[429] == 0 {
		t.Errorf("statuses %v: the load should see both admitted and limited requests", st.ByStatus)
	}
}

func ipKeys(n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("198.51.100.%d", i+1)
	}
	return keys
}
