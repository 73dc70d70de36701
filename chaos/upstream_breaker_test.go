//go:build chaos

package chaos

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// TestUpstreamDownAndBack: the application behind the three instances hangs (connections
// accepted, never answered, closed after 2 s) for 7 s, then serves again. Each instance's
// breaker opens after 3 failures and answers 503 with Retry-After at once, without dialling
// the upstream; after open_for one probe goes through, and once the upstream is back the
// breaker closes and stays closed.
func TestUpstreamDownAndBack(t *testing.T) {
	up := startUpstream(t)
	s := startStack(t, stackConfig{Upstream: up.Addr, Store: "memory"})

	const (
		workers           = 16
		downAt, upAt      = 4 * time.Second, 11 * time.Second
		hold              = 2 * time.Second
		openFor           = 2 * time.Second // the Caddyfile's open_for
		consecutiveFails  = 3               // the Caddyfile's consecutive_failures
		fastBound         = time.Second     // an open breaker's answer, far below hold
		runFor            = 22 * time.Second
		clients           = 100
		requestsPerSecond = 150
	)
	var mu sync.Mutex
	var results []Result
	l := &Load{Targets: s.urls, Rate: requestsPerSecond, Workers: workers,
		Next: func(i int64) Request {
			return Request{Instance: int(i % 3), Path: "/app/x", ClientIP: fmt.Sprintf("198.51.100.%d", 1+(i/3)%clients)}
		},
		OnResult: func(r Result) { mu.Lock(); results = append(results, r); mu.Unlock() },
	}
	ctx, cancel := context.WithTimeout(context.Background(), runFor)
	defer cancel()
	start := time.Now()
	var downed, upped time.Time
	var acceptsWhileDown int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		time.Sleep(time.Until(start.Add(downAt)))
		downed = time.Now()
		up.down(t, hold)
		time.Sleep(time.Until(start.Add(upAt)))
		upped = time.Now()
		acceptsWhileDown = up.accepts.Load()
		up.up(t)
	}()
	st := l.Run(ctx)
	<-done

	var before, failures, open, openSlow, openNoRetry int64
	var openLatencies []time.Duration
	recovered := make([]time.Time, len(s.urls))
	afterRecovery := make([]int64, len(s.urls)) // non-200 answers after the instance's first 200 once back
	for _, r := range results {
		switch {
		case r.Sent.Add(r.Latency).Before(downed): // answered before the fault; one in flight then may fail
			before++
			if r.Status != 200 {
				t.Errorf("before the upstream went down: status %d from instance %d", r.Status, r.Instance)
			}
			continue
		case r.Status == 502 || r.Status == 504:
			failures++
		case r.Status == 503:
			open++
			openLatencies = append(openLatencies, r.Latency)
			if r.Latency >= fastBound {
				openSlow++
			}
			if r.RetryAfter == "" {
				openNoRetry++
			}
		case r.Status == 200:
		default:
			t.Errorf("status %d from instance %d (want 200, 502/504 while the breaker learns, 503 while open)", r.Status, r.Instance)
		}
		if r.Sent.After(upped) {
			if r.Status == 200 && (recovered[r.Instance].IsZero() || r.Sent.Before(recovered[r.Instance])) {
				recovered[r.Instance] = r.Sent
			}
		}
	}
	for _, r := range results {
		if !recovered[r.Instance].IsZero() && r.Sent.After(recovered[r.Instance].Add(hold)) && r.Status != 200 {
			afterRecovery[r.Instance]++
		}
	}
	var recoverAfter time.Duration
	for i, at := range recovered {
		if at.IsZero() {
			t.Errorf("instance %d: no 200 after the upstream came back", i)
			continue
		}
		recoverAfter = max(recoverAfter, at.Sub(upped))
		if afterRecovery[i] > 0 {
			t.Errorf("instance %d: %d non-200 answers after it recovered", i, afterRecovery[i])
		}
	}
	// Dialled while down: the requests in flight when it went down (at most one per worker),
	// the failures that open each breaker, then one half-open probe per open period.
	maxDials := int64(workers + len(s.urls)*(consecutiveFails+int((upAt-downAt)/openFor)+1))
	if acceptsWhileDown > maxDials {
		t.Errorf("the upstream was dialled %d times while down, more than %d: the open breaker lets requests through", acceptsWhileDown, maxDials)
	}
	if open == 0 || open < 5*acceptsWhileDown {
		t.Errorf("%d answers from an open breaker for %d dials of the hung upstream: the breaker did not open", open, acceptsWhileDown)
	}
	if openSlow > 0 {
		t.Errorf("%d of %d open-breaker answers took %v or more: they waited on the upstream", openSlow, open, fastBound)
	}
	if openNoRetry > 0 {
		t.Errorf("%d open-breaker answers without Retry-After", openNoRetry)
	}
	if st.ByStatus[0] > 0 {
		t.Errorf("%d transport errors", st.ByStatus[0])
	}
	openStats := Stats{latencies: openLatencies}
	newFigures("upstream_down_and_back").
		set("requests", st.Requests).set("skipped", st.Skipped).set("2xx", st.ByStatus[200]).
		set("before_down", before).set("502_504", failures).set("503_open", open).set("upstream_dials_while_down", acceptsWhileDown).
		set("max_dials_allowed", maxDials).set("open_p50_ms", ms(openStats.Percentile(.5))).
		set("open_p99_ms", ms(openStats.Percentile(.99))).set("hung_upstream_ms", ms(hold)).
		set("recover_after_ms", ms(recoverAfter)).set("by_instance", st.ByInstance).print(t)
}
