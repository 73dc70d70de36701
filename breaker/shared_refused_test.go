package breaker

import (
	"errors"
	"testing"
	"time"

	"github.com/swarmsec/caddy-hardening/internal/testenv"
)

// TestSharedSyncGivesUpAtOnceWhenRedisRefusesWrites: a Redis that answers but refuses writes
// (full at maxmemory with noeviction; a read-only replica, an ACL without write grants does the
// same) refuses the lock a sync takes before it writes the shared state. gobreaker v2.4.0 takes
// its lock in a loop that retries any error every 500 ms for 5 s, so each sync asked Redis ten
// times and the breaker's health said "deciding locally" only 5 s after Redis began refusing
// (and every shared trip was followed 5 s late meanwhile). A sync now asks once and reports
// the refusal: counted in Redis's own command statistics, not timed.
func TestSharedSyncGivesUpAtOnceWhenRedisRefusesWrites(t *testing.T) {
	r := testenv.StartRedis(t)
	r.Fill(t)
	b := newBreaker(t, Settings{Name: "full", ConsecutiveFailures: 1, OpenFor: time.Hour})
	s := &syncer{b: b, store: NewRedisStore(redisClient(t, r), "", "full"), quit: make(chan struct{})}
	before := r.CommandAttempts(t, "set")
	if err := s.syncOnce(time.Now()); err == nil {
		t.Fatal("a sync against a full Redis reported no error")
	}
	if n := r.CommandAttempts(t, "set") - before; n != 1 {
		t.Fatalf("one sync sent %d SETs that Redis refused, want 1: the lock was retried", n)
	}
}

// TestSharedSyncWaitsForGobreakersMutex: the syncer takes gobreaker's mutex itself; another
// instance holding it (gobreaker's own code in an older version, or one that died holding it
// until its TTL) is still waited for, and nothing is written meanwhile.
func TestSharedSyncWaitsForGobreakersMutex(t *testing.T) {
	r := testenv.StartRedis(t)
	store := NewRedisStore(redisClient(t, r), "", "held")
	if _, err := r.Do("SET", store.Key(gobreakerMutexKey("held")), "another instance", "EX", 60); err != nil {
		t.Fatal(err)
	}
	b := newBreaker(t, Settings{Name: "held", ConsecutiveFailures: 1, OpenFor: time.Hour})
	s := &syncer{b: b, store: store, quit: make(chan struct{})}
	if err := s.syncOnce(time.Now()); !errors.Is(err, errLocked) {
		t.Fatalf("sync with gobreaker's mutex held elsewhere: %v, want %v", err, errLocked)
	}
	if n, _ := r.Do("EXISTS", store.Key(sharedStateKey("held"))); n != int64(0) {
		t.Fatal("the shared state was written while another instance held gobreaker's mutex")
	}
	if v, _ := r.Do("GET", store.Key(gobreakerMutexKey("held"))); v != "another instance" {
		t.Fatalf("gobreaker's mutex is %v now: the other instance's lock was released", v)
	}
	if _, err := r.Do("DEL", store.Key(gobreakerMutexKey("held"))); err != nil {
		t.Fatal(err)
	}
	if err := s.syncOnce(time.Now()); err != nil {
		t.Fatalf("sync once the mutex is free: %v", err)
	}
	if n, _ := r.Do("EXISTS", store.Key(gobreakerMutexKey("held"))); n != int64(0) {
		t.Fatal("the syncer left gobreaker's mutex held")
	}
}
