package testenv

import (
	"testing"
	"time"
)

// WaitFor polls cond every 10 ms until it holds; the test stops when it does not within the
// given time. The bound catches a hang; it is not a timing assertion.
func WaitFor(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(within); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s", within, what)
		}
	}
}
