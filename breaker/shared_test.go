package breaker

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/sony/gobreaker/v2"

	"github.com/swarmsec/caddy-hardening/internal/testenv"
)

func redisClient(t *testing.T, r *testenv.Redis) redis.UniversalClient {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: r.Addr, MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	t.Cleanup(func() { c.Close() })
	return c
}

// healthLog collects onHealth calls.
type healthLog struct {
	mu   sync.Mutex
	errs []error
}

func (h *healthLog) add(err error) { h.mu.Lock(); h.errs = append(h.errs, err); h.mu.Unlock() }
func (h *healthLog) get() []error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]error(nil), h.errs...)
}

func sharedBreaker(t *testing.T, c redis.UniversalClient, h *healthLog) *Breaker {
	t.Helper()
	b := newBreaker(t, Settings{Name: "billing", ConsecutiveFailures: 2, OpenFor: time.Hour})
	b.Share(NewRedisStore(c, "hardening:", "billing"), 20*time.Millisecond, h.add)
	return b
}

func TestSharedBreakersOpenTogether(t *testing.T) {
	r := testenv.StartRedis(t)
	c := redisClient(t, r)
	var ha, hb healthLog
	a, b := sharedBreaker(t, c, &ha), sharedBreaker(t, c, &hb)
	got := make(chan Transition, 4)
	b.Listen(func(tr Transition) { got <- tr })

	run(t, a, Failure)
	run(t, a, Failure)
	if a.State() != StateOpen {
		t.Fatal("a did not open")
	}
	waitState(t, b, StateOpen)
	if tr := <-got; tr.Cause != CauseShared || tr.To != StateOpen {
		t.Fatalf("b's transition %+v, want open caused by the shared state", tr)
	}
	// The state lives under the prefix, with a hash tag, in gobreaker's format.
	raw, err := c.Get(context.Background(), "hardening:breaker:{billing}:gobreaker:state:billing").Bytes()
	if err != nil {
		t.Fatalf("shared state not under the expected key: %v", err)
	}
	var st gobreaker.SharedState
	if err := json.Unmarshal(raw, &st); err != nil || st.State != StateOpen {
		t.Fatalf("shared state %s (%v), want open", raw, err)
	}
	if ttl := c.TTL(context.Background(), "hardening:breaker:{billing}:gobreaker:state:billing").Val(); ttl <= 0 || ttl > stateTTL {
		t.Fatalf("shared state TTL %s", ttl)
	}
	if len(ha.get())+len(hb.get()) != 0 {
		t.Fatalf("health errors with Redis up: %v %v", ha.get(), hb.get())
	}
}

func TestSharedStateKeyIsGobreakers(t *testing.T) {
	r := testenv.StartRedis(t)
	store := NewRedisStore(redisClient(t, r), "p:", "k")
	if _, err := gobreaker.NewDistributedCircuitBreaker[struct{}](store, gobreaker.Settings{Name: "k"}); err != nil {
		t.Fatal(err)
	}
	if data, err := store.GetData(sharedStateKey("k")); err != nil || len(data) == 0 {
		t.Fatalf("gobreaker did not write its state under %q (%v): update sharedStateKey", sharedStateKey("k"), err)
	}
}

func TestSharedRecoveryDoesNotReopenItself(t *testing.T) {
	r := testenv.StartRedis(t)
	c := redisClient(t, r)
	b, err := New(Settings{Name: "svc", ConsecutiveFailures: 1, OpenFor: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	b.Share(NewRedisStore(c, "", "svc"), 10*time.Millisecond, nil)
	run(t, b, Failure)
	waitState(t, b, StateHalfOpen)
	run(t, b, Success)
	// Its own trip, recorded in Redis a moment after it opened locally, must not open it again.
	for range 20 {
		time.Sleep(10 * time.Millisecond)
		if b.State() != StateClosed {
			t.Fatal("the breaker reopened from its own shared trip")
		}
	}
}

func TestSharedRedisDownKeepsLocalBreaker(t *testing.T) {
	r := testenv.StartRedis(t)
	c := redisClient(t, r)
	var h healthLog
	a := sharedBreaker(t, c, &h)
	a.SyncNow()
	r.Kill()
	deadline := time.Now().Add(5 * time.Second)
	for len(h.get()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no health error after Redis died")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if shared, ok, msg := a.SharedHealth(); !shared || ok || msg == "" {
		t.Fatalf("SharedHealth = %v %v %q, want degraded with a message", shared, ok, msg)
	}
	// Requests are decided locally, without waiting for Redis.
	start := time.Now()
	run(t, a, Failure)
	run(t, a, Failure)
	if a.State() != StateOpen {
		t.Fatal("the local breaker did not open while Redis is down")
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("requests waited %s for Redis", d)
	}
	r.Restart()
	deadline = time.Now().Add(10 * time.Second)
	for {
		errs := h.get()
		if len(errs) >= 2 && errs[len(errs)-1] == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no recovery reported after Redis restarted: %v", errs)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The trip made while Redis was down is recorded once Redis is back.
	deadline = time.Now().Add(10 * time.Second)
	for {
		raw, _ := r.Do("GET", "hardening:breaker:{billing}:gobreaker:state:billing")
		var st gobreaker.SharedState
		if s, ok := raw.(string); ok && json.Unmarshal([]byte(s), &st) == nil && st.State == StateOpen {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the pending trip was not recorded after Redis came back: %v", raw)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestSharedOverRedisCluster(t *testing.T) {
	cl := testenv.StartCluster(t)
	c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: cl.Addrs(), MaxRetries: -1})
	t.Cleanup(func() { c.Close() })
	var ha, hb healthLog
	a, b := sharedBreaker(t, c, &ha), sharedBreaker(t, c, &hb)
	run(t, a, Failure)
	run(t, a, Failure)
	waitState(t, b, StateOpen)
	if errs := append(ha.get(), hb.get()...); len(errs) != 0 {
		t.Fatalf("store errors on a cluster (CROSSSLOT?): %v", errs)
	}
}

// TestSharedBreakersFollowTripsAfterRedisLosesItsData: when Redis loses the shared state (FLUSHALL, a
// restart without persistence), gobreaker counts its generations from 0 again, so a new trip
// can carry a generation another instance already followed. Every trip must still be followed.
func TestSharedBreakersFollowTripsAfterRedisLosesItsData(t *testing.T) {
	r := testenv.StartRedis(t)
	c := redisClient(t, r)
	// open_for outlasts gobreaker's wait for its Redis lock (500 ms), which a and b contend for
	// when both create the state again after the loss.
	settings := Settings{Name: "flushed", ConsecutiveFailures: 1, OpenFor: 2 * time.Second}
	a, b := newBreaker(t, settings), newBreaker(t, settings)
	a.Share(NewRedisStore(c, "", "flushed"), 10*time.Millisecond, nil)
	b.Share(NewRedisStore(c, "", "flushed"), 10*time.Millisecond, nil)
	followed := make(chan Transition, 8)
	b.Listen(func(tr Transition) {
		if tr.To == StateOpen {
			followed <- tr
		}
	})
	for round, loss := range []string{"", "FLUSHALL", "FLUSHALL", "restart"} {
		switch loss {
		case "FLUSHALL":
			if _, err := r.Do("FLUSHALL"); err != nil {
				t.Fatal(err)
			}
		case "restart": // no persistence: the state is gone
			r.Restart()
		}
		run(t, a, Failure) // a trips; b's upstream is fine
		select {
		case tr := <-followed:
			if tr.Cause != CauseShared {
				t.Fatalf("round %d (after %q): b opened with cause %s, want shared", round, loss, tr.Cause)
			}
		case <-time.After(settings.OpenFor):
			raw, _ := r.Do("GET", "breaker:{flushed}:gobreaker:state:flushed")
			t.Fatalf("round %d (after %q): b did not follow a's trip; shared state %v", round, loss, raw)
		}
		// Both recover, and have recorded it, before the next round.
		waitState(t, a, StateHalfOpen)
		run(t, a, Success)
		waitState(t, b, StateHalfOpen)
		run(t, b, Success)
		waitRecorded(t, a)
		waitRecorded(t, b)
	}
}

// waitRecorded waits until the breaker has recorded its local trips and recoveries in the shared
// state. (gobreaker's DistributedCircuitBreaker reads the state before it takes its lock, so a
// recovery recorded while another instance records a trip can write over that trip.)
func waitRecorded(t *testing.T, b *Breaker) {
	t.Helper()
	s := b.shared.Load()
	deadline := time.Now().Add(5 * time.Second)
	for s.pendingTrip.Load() || s.pendingClose.Load() {
		if time.Now().After(deadline) {
			t.Fatal("the breaker's local transitions are still not recorded in the shared state")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestSharedTripIntoAnOpenBreakerJoinsIt: b trips locally after a's trip is in Redis but before
// b has read it. Recording b's trip meets the open shared breaker; that is b joining a's trip,
// not a Redis failure: no health error (a false store_failover), and the trip is not recorded
// again later, which would reopen the shared breaker when it half-opens.
func TestSharedTripIntoAnOpenBreakerJoinsIt(t *testing.T) {
	r := testenv.StartRedis(t)
	c := redisClient(t, r)
	settings := Settings{Name: "joined", ConsecutiveFailures: 1, OpenFor: 400 * time.Millisecond}
	a, b := newBreaker(t, settings), newBreaker(t, settings)
	var ha, hb healthLog
	a.Share(NewRedisStore(c, "", "joined"), 10*time.Millisecond, ha.add)
	// b reads only when it trips, after a first read that must come before a's trip.
	bStore := &pausingStore{SharedStore: NewRedisStore(c, "", "joined"), skip: -1}
	bStore.arm(0)
	b.Share(bStore, time.Hour, hb.add)
	<-bStore.paused
	close(bStore.resume)
	run(t, a, Failure)
	waitRecorded(t, a)
	run(t, b, Failure)
	waitRecorded(t, b)
	if errs := append(ha.get(), hb.get()...); len(errs) != 0 {
		t.Fatalf("health errors with Redis up: %v", errs)
	}
	// Once the shared open time is up, nobody trips it again.
	waitState(t, a, StateHalfOpen)
	run(t, a, Success)
	waitRecorded(t, a)
	time.Sleep(3 * 10 * time.Millisecond)
	if raw, err := r.Do("GET", "breaker:{joined}:gobreaker:state:joined"); err != nil {
		t.Fatal(err)
	} else if st := sharedState(t, raw); st.State == StateOpen {
		t.Fatalf("the shared breaker reopened after recovering: %+v", st)
	}
}

func sharedState(t *testing.T, raw any) gobreaker.SharedState {
	t.Helper()
	var st gobreaker.SharedState
	s, _ := raw.(string)
	if err := json.Unmarshal([]byte(s), &st); err != nil {
		t.Fatalf("shared state %v: %v", raw, err)
	}
	return st
}

// pausingStore pauses one GetData call (the one whose number is armed) until resumed or
// 500 ms pass, to put another instance's record in the middle of this one's.
type pausingStore struct {
	SharedStore
	mu     sync.Mutex
	skip   int // GetData calls to let through before the paused one; -1: not armed
	paused chan struct{}
	resume chan struct{}
}

func (p *pausingStore) arm(skip int) {
	p.mu.Lock()
	p.skip, p.paused, p.resume = skip, make(chan struct{}), make(chan struct{})
	p.mu.Unlock()
}

func (p *pausingStore) GetData(key string) ([]byte, error) {
	data, err := p.SharedStore.GetData(key)
	p.mu.Lock()
	pause := p.skip == 0
	if p.skip >= 0 {
		p.skip--
	}
	paused, resume := p.paused, p.resume
	p.mu.Unlock()
	if pause {
		close(paused)
		select {
		case <-resume:
		case <-time.After(500 * time.Millisecond):
		}
	}
	return data, err
}

// TestSharedRecordsDoNotOverwriteEachOther: a records its recovery and, between gobreaker's
// read of the shared state and its write, b records a trip. gobreaker v2.4.0 reads before it
// locks, so a's write (closed) used to replace b's trip and a never followed it; with the
// record lock, b's record waits for a's and reads what a wrote, and a follows the trip.
func TestSharedRecordsDoNotOverwriteEachOther(t *testing.T) {
	r := testenv.StartRedis(t)
	c := redisClient(t, r)
	settings := Settings{Name: "raced", ConsecutiveFailures: 1, OpenFor: time.Second}
	a, b := newBreaker(t, settings), newBreaker(t, settings)
	aStore := &pausingStore{SharedStore: NewRedisStore(c, "", "raced"), skip: -1}
	a.Share(aStore, 10*time.Millisecond, nil)
	followed := make(chan struct{}, 8)
	a.Listen(func(tr Transition) {
		if tr.To == StateOpen && tr.Cause == CauseShared {
			followed <- struct{}{}
		}
	})

	run(t, a, Failure) // a trips, records it, half-opens and recovers
	waitRecorded(t, a)
	waitState(t, a, StateHalfOpen)
	waitSharedOpenTimeUp(t, a)
	// a's next sync reads the state (one GetData), then records its recovery: gobreaker reads
	// again (the second), and there a pauses.
	aStore.arm(1)
	run(t, a, Success)
	select {
	case <-aStore.paused:
	case <-time.After(2 * time.Second):
		t.Fatal("a did not record its recovery")
	}
	// b joins now (it never saw a's trip) and trips while a is in the middle of its record.
	b.Share(NewRedisStore(c, "", "raced"), 20*time.Millisecond, nil)
	run(t, b, Failure)
	for deadline := time.Now().Add(400 * time.Millisecond); b.shared.Load().pendingTrip.Load() && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	close(aStore.resume)
	select {
	case <-followed:
	case <-time.After(2 * time.Second):
		raw, _ := r.Do("GET", "breaker:{raced}:gobreaker:state:raced")
		t.Fatalf("a never followed b's trip: a's recovery overwrote it (shared state %v)", raw)
	}
}

// waitSharedOpenTimeUp waits until the shared breaker's open time is up. It began when b's trip
// was recorded, a little after b's local trip (tens of milliseconds under load), so it ends
// after b half-opens. Until then, b's recovery is not recorded (gobreaker refuses it as
// open), and an instance that joins follows the trip at its first read.
func waitSharedOpenTimeUp(t *testing.T, b *Breaker) {
	t.Helper()
	st, err := b.shared.Load().read()
	if err != nil || st == nil {
		t.Fatalf("shared state: %v, %v", st, err)
	}
	if st.State == StateOpen {
		time.Sleep(time.Until(st.Expiry) + 5*time.Millisecond)
	}
}

// TestSharedStateUnreadableIsAnErrorNotACrash: gobreaker v2.4.0's constructor dereferenced
// nil when the shared state could not be read after it took its lock (Redis gone in between;
// here, deterministically, a state that is not JSON), which crashed Caddy from the
// syncer's goroutine. It is a store failure now, the lock is released, and the breaker goes
// on locally and reports the failure to its health callback.
func TestSharedStateUnreadableIsAnErrorNotACrash(t *testing.T) {
	r := testenv.StartRedis(t)
	c := redisClient(t, r)
	store := NewRedisStore(c, "p:", "svc")
	if err := c.Set(context.Background(), store.Key(sharedStateKey("svc")), "not a state", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := newDistributedBreaker(store, gobreaker.Settings{Name: "svc"}); err == nil {
		t.Fatal("a state that is not gobreaker's JSON: no error")
	}
	if n := c.Exists(context.Background(), store.Key(gobreakerMutexKey("svc"))).Val(); n != 0 {
		t.Fatal("the lock is still held after the failure")
	}

	b := newBreaker(t, Settings{Name: "svc", ConsecutiveFailures: 1, OpenFor: time.Second})
	var h healthLog
	b.Share(store, 10*time.Millisecond, h.add)
	deadline := time.Now().Add(5 * time.Second)
	for len(h.get()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the failing shared state was never reported")
		}
		time.Sleep(10 * time.Millisecond)
	}
	run(t, b, Failure)
	waitState(t, b, StateOpen)
}

// A breaker shared after another instance tripped is open once Joined is closed, after one
// read of the shared state: not after gobreaker's mutex, which another instance may hold for up
// to recordLockWait (its lock TTL is 2 s), nor at the next tick.
func TestSharedJoinerIsOpenWhenJoined(t *testing.T) {
	r := testenv.StartRedis(t)
	c := redisClient(t, r)
	a := sharedBreaker(t, c, &healthLog{})
	run(t, a, Failure)
	run(t, a, Failure)
	testenv.WaitFor(t, 5*time.Second, "a's trip recorded", func() bool {
		raw, err := c.Get(context.Background(), "hardening:breaker:{billing}:gobreaker:state:billing").Bytes()
		var st gobreaker.SharedState
		return err == nil && json.Unmarshal(raw, &st) == nil && st.State == StateOpen
	})
	a.Close()
	// Another instance holds gobreaker's mutex (in the middle of a record).
	if err := c.Set(context.Background(), "hardening:breaker:{billing}:"+gobreakerMutexKey("billing"), "other", 2*time.Second).Err(); err != nil {
		t.Fatal(err)
	}

	b := newBreaker(t, Settings{Name: "billing", ConsecutiveFailures: 2, OpenFor: time.Hour})
	if b.Joined() == nil {
		t.Fatal("nil Joined")
	}
	select {
	case <-b.Joined():
	default: // a breaker that is not shared has joined at once
		t.Fatal("a local breaker's Joined is not closed")
	}
	start := time.Now()
	b.Share(NewRedisStore(c, "hardening:", "billing"), time.Minute, nil)
	select {
	case <-b.Joined():
	case <-time.After(500 * time.Millisecond):
		t.Fatal("Joined not closed within 500 ms with Redis up")
	}
	if b.State() != StateOpen {
		t.Fatalf("joined after %s but %s: a new instance must follow the open shared breaker at its first read", time.Since(start), StateName(b.State()))
	}
}

// With Redis down, Joined is closed as soon as the first read fails: the breaker decides
// locally and the caller does not wait for nothing.
func TestSharedJoinedWhenRedisIsDown(t *testing.T) {
	r := testenv.StartRedis(t)
	c := redisClient(t, r)
	r.Kill()
	b := newBreaker(t, Settings{Name: "billing", ConsecutiveFailures: 2, OpenFor: time.Hour})
	b.Share(NewRedisStore(c, "hardening:", "billing"), time.Minute, nil)
	select {
	case <-b.Joined():
	case <-time.After(storeTimeout + 500*time.Millisecond):
		t.Fatal("Joined not closed after the first read failed")
	}
	if b.State() != StateClosed {
		t.Fatalf("%s without Redis, want closed (local decisions)", StateName(b.State()))
	}
}

// tripSharedDirectly trips name's shared breaker in Redis as another instance would, through
// gobreaker's DistributedCircuitBreaker with open time openFor, and returns the shared state.
func tripSharedDirectly(t *testing.T, c redis.UniversalClient, prefix, name string, openFor time.Duration) gobreaker.SharedState {
	t.Helper()
	store := NewRedisStore(c, prefix, name)
	dcb, err := gobreaker.NewDistributedCircuitBreaker[struct{}](store, gobreaker.Settings{
		Name: name, Timeout: openFor,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= 1 },
	})
	if err != nil {
		t.Fatal(err)
	}
	_, _ = dcb.Execute(func() (struct{}, error) { return struct{}{}, errFailure })
	raw, err := store.GetData(sharedStateKey(name))
	var st gobreaker.SharedState
	if err != nil || json.Unmarshal(raw, &st) != nil || st.State != StateOpen {
		t.Fatalf("the direct trip left %s (%v)", raw, err)
	}
	return st
}

// A breaker that follows a shared trip, at its join or at a sync, stays open until the shared
// breaker's open time is up, not for its own OpenFor from the moment it followed: every
// instance half-opens, and answers the same Retry-After, at the shared breaker's time. Its next
// trip of its own is open for its own OpenFor again.
func TestSharedFollowerOpenEndsWithTheSharedTrip(t *testing.T) {
	r := testenv.StartRedis(t)
	c := redisClient(t, r)
	st := tripSharedDirectly(t, c, "hardening:", "billing", 1500*time.Millisecond)
	b := newBreaker(t, Settings{Name: "billing", ConsecutiveFailures: 2, OpenFor: time.Hour})
	b.Share(NewRedisStore(c, "hardening:", "billing"), 20*time.Millisecond, nil)
	<-b.Joined()
	if b.State() != StateOpen {
		t.Fatalf("%s after joining an open shared breaker", StateName(b.State()))
	}
	if !b.OpenUntil().Equal(st.Expiry) {
		t.Fatalf("open until %s, want the shared breaker's %s", b.OpenUntil(), st.Expiry)
	}
	if ra := b.RetryAfter(time.Now()); ra > 1500*time.Millisecond {
		t.Fatalf("Retry-After %s, more than the shared breaker's open time left", ra)
	}
	waitState(t, b, StateHalfOpen)
	run(t, b, Failure) // the probe fails: open for its own OpenFor
	if b.State() != StateOpen || time.Until(b.OpenUntil()) < 59*time.Minute {
		t.Fatalf("%s until %s after a failed probe, want open for an hour", StateName(b.State()), b.OpenUntil())
	}
	time.Sleep(2 * 1500 * time.Millisecond)
	if b.State() != StateOpen {
		t.Fatalf("%s after a failed probe: the shared breaker's open time applied to a trip of its own", StateName(b.State()))
	}
}
