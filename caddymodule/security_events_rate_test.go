package caddymodule

import (
	"testing"
	"time"
)

// TestSecurityEventLoggingIsBounded: a flood of one event is logged at eventLogRate per second;
// the next logged one says how many were left out.
func TestSecurityEventLoggingIsBounded(t *testing.T) {
	s := &securityEvents{buckets: map[string]*eventBucket{}}
	t0 := time.Unix(1_800_000_000, 0)
	logged := 0
	for range 3 * eventLogRate {
		if _, ok := s.admit(EventPathBlocked, t0); ok {
			logged++
		}
	}
	if logged != eventLogRate {
		t.Fatalf("logged %d of a burst, want %d", logged, eventLogRate)
	}
	if _, ok := s.admit(EventIPReclassified, t0); !ok {
		t.Fatal("another event name shares the flood's budget")
	}
	suppressed, ok := s.admit(EventPathBlocked, t0.Add(time.Second/eventLogRate))
	if !ok || suppressed != 2*eventLogRate {
		t.Fatalf("after refill: ok=%v suppressed=%d, want true and %d", ok, suppressed, 2*eventLogRate)
	}
	if suppressed, _ := s.admit(EventPathBlocked, t0.Add(2*time.Second)); suppressed != 0 {
		t.Fatalf("the count of left-out events was not reset: %d", suppressed)
	}
}
