package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/swarmsec/caddy-hardening/internal/redisconn"
	"github.com/swarmsec/caddy-hardening/internal/testenv"
)

// recordingStore records which keys reach the store it wraps.
type recordingStore struct {
	Store
	calls atomic.Int64
	mu    sync.Mutex
	keys  map[string]int
}

func newRecordingStore(s Store) *recordingStore {
	return &recordingStore{Store: s, keys: make(map[string]int)}
}

func (r *recordingStore) Allow(ctx context.Context, policy, key string, l Limit) (Result, error) {
	r.calls.Add(1)
	r.mu.Lock()
	r.keys[key]++
	r.mu.Unlock()
	return r.Store.Allow(ctx, policy, key, l)
}

func (r *recordingStore) seen(key string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.keys[key]
}

// modeChanges records OnModeChange calls.
type modeChanges struct {
	mu    sync.Mutex
	calls []string
	errs  []error
}

func (m *modeChanges) record(from, to Mode, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls = append(m.calls, from.String()+"->"+to.String())
	m.errs = append(m.errs, err)
}

func (m *modeChanges) get() ([]string, []error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.calls...), append([]error(nil), m.errs...)
}

func waitForMode(t *testing.T, s *FailoverStore, want Mode, within time.Duration, poke func()) {
	t.Helper()
	deadline := time.Now().Add(within)
	for s.Mode() != want {
		if time.Now().After(deadline) {
			t.Fatalf("mode is still %v after %v, want %v", s.Mode(), within, want)
		}
		if poke != nil {
			poke()
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// load runs goroutines that decide until stop is closed, and records the slowest call.
type load struct {
	stop    chan struct{}
	once    sync.Once
	wg      sync.WaitGroup
	errs    atomic.Int64
	calls   atomic.Int64
	slowest atomic.Int64 // nanoseconds
}

func startLoad(s Store, goroutines int, l Limit) *load {
	ld := &load{stop: make(chan struct{})}
	for g := range goroutines {
		ld.wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-ld.stop:
					return
				default:
				}
				start := time.Now()
				_, err := s.Allow(context.Background(), "load", fmt.Sprintf("k%d-%d", g, i%10), l)
				took := int64(time.Since(start))
				for {
					old := ld.slowest.Load()
					if took <= old || ld.slowest.CompareAndSwap(old, took) {
						break
					}
				}
				ld.calls.Add(1)
				if err != nil {
					ld.errs.Add(1)
				}
			}
		})
	}
	return ld
}

func (ld *load) resetSlowest() time.Duration { return time.Duration(ld.slowest.Swap(0)) }

func (ld *load) finish() { ld.once.Do(func() { close(ld.stop) }); ld.wg.Wait() }

func TestFailoverStoreDecidesInRedisWhileItIsHealthy(t *testing.T) {
	r := testenv.StartRedis(t)
	fallback := newRecordingStore(NewMemoryStore(MemoryOptions{}))
	// Redis decides every request: the first one dials and loads the script, which a loaded
	// machine stalled past the default 50 ms timeout and sent to the fallback (11 of 60 runs
	// with four CPU burners on two cores).
	s := NewFailoverStore(newTestStore(t, r, RedisOptions{}), fallback, FailoverOptions{Timeout: 10 * time.Second})
	l := Limit{Rate: 1, Period: time.Hour, Burst: 2}
	got := []bool{mustAllow(t, s, "p", "k", l).Allowed, mustAllow(t, s, "p", "k", l).Allowed, mustAllow(t, s, "p", "k", l).Allowed}
	if !got[0] || !got[1] || got[2] || fallback.calls.Load() != 0 || s.Mode() != ModePrimary {
		t.Fatalf("allowed %v, fallback calls %d, mode %v; want [true true false] from Redis", got, fallback.calls.Load(), s.Mode())
	}
	if v, err := r.Do("EXISTS", "{p:"+StoredKey("k")+"}"); err != nil || v.(int64) != 1 {
		t.Fatalf("no key in Redis: %v %v", v, err)
	}
}

// TestFailoverStoreProbe: a probe of a live Redis changes nothing; of a dead one it puts
// decisions in the fallback before any decision, reported once with the cause.
func TestFailoverStoreProbe(t *testing.T) {
	r := testenv.StartRedis(t)
	var changes modeChanges
	live := NewFailoverStore(newTestStore(t, r, RedisOptions{}), NewMemoryStore(MemoryOptions{}), FailoverOptions{OnModeChange: changes.record})
	if err := live.Probe(context.Background(), time.Second); err != nil || live.Mode() != ModePrimary {
		t.Fatalf("probe of a live Redis: %v, mode %v", err, live.Mode())
	}
	r.Kill()
	fallback := newRecordingStore(NewMemoryStore(MemoryOptions{}))
	dead := NewFailoverStore(newTestStore(t, r, RedisOptions{}), fallback, FailoverOptions{OnModeChange: changes.record})
	err := dead.Probe(context.Background(), time.Second)
	if !errors.Is(err, ErrStoreUnavailable) || dead.Mode() != ModeFallback {
		t.Fatalf("probe of a dead Redis: %v, mode %v; want unavailable, fallback", err, dead.Mode())
	}
	if calls, causes := changes.get(); len(calls) != 1 || causes[0] == nil {
		t.Fatalf("mode changes %v (causes %v); want one, with its cause", calls, causes)
	}
	mustAllow(t, dead, "p", "k", Limit{Rate: 1, Period: time.Hour, Burst: 2})
	if fallback.calls.Load() != 1 {
		t.Fatal("the first decision after a failed probe did not go to the fallback")
	}
}

// TestFailoverStoreRunReturnsWhileIdle: with Run going, a store whose Redis came back returns
// to it, and reports it, without a single decision.
func TestFailoverStoreRunReturnsWhileIdle(t *testing.T) {
	r := testenv.StartRedis(t)
	var changes modeChanges
	s := NewFailoverStore(newTestStore(t, r, RedisOptions{}), NewMemoryStore(MemoryOptions{}),
		FailoverOptions{OpenFor: 200 * time.Millisecond, OnModeChange: changes.record})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go s.Run(ctx, time.Second)
	r.Kill()
	l := Limit{Rate: 1, Period: time.Hour, Burst: 2}
	for range 3 {
		mustAllow(t, s, "p", "k", l)
	}
	if s.Mode() != ModeFallback {
		t.Fatal("three failed decisions did not open the breaker")
	}
	r.Restart()
	testenv.WaitFor(t, 5*time.Second, "the return to Redis without decisions", func() bool { return s.Mode() == ModePrimary })
	if calls, _ := changes.get(); len(calls) != 2 {
		t.Fatalf("mode changes %v, want to fallback and back", calls)
	}
}

// TestFailoverStoreRunClosesTheBreakerOfAGoneMaster: the breaker of an address that is no
// longer a master of the Cluster (as after a failover) is closed by Run, so Mode does not stay
// in fallback for good; a master's address answers.
func TestFailoverStoreRunClosesTheBreakerOfAGoneMaster(t *testing.T) {
	c := testenv.StartCluster(t)
	store := newClusterStore(t, c, RedisOptions{})
	ctx := context.Background()
	if err := store.probeShard(ctx, c.Nodes[0].Addr); err != nil {
		t.Fatalf("a master's shard: %v", err)
	}
	gone := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	if err := store.probeShard(ctx, gone); !errors.Is(err, errShardGone) {
		t.Fatalf("an address that is no master: %v, want errShardGone", err)
	}
	s := NewFailoverStore(store, NewMemoryStore(MemoryOptions{}), FailoverOptions{OpenFor: 200 * time.Millisecond})
	breaker := s.breakerOf(gone)
	for range 3 {
		done, err := breaker.Allow()
		if err != nil {
			t.Fatal(err)
		}
		done(fmt.Errorf("%w: the master died", ErrStoreUnavailable))
	}
	if s.Mode() != ModeFallback {
		t.Fatal("the gone master's breaker is not open")
	}
	runCtx, cancel := context.WithCancel(ctx)
	t.Cleanup(cancel)
	go s.Run(runCtx, time.Second)
	testenv.WaitFor(t, 5*time.Second, "the gone master's breaker closed", func() bool { return s.Mode() == ModePrimary })
}

// TestFailoverStoreRunKeepsARedisThatCannotDecideInFallback: a Redis that answers PING but
// fails the decision script — a read-only replica (READONLY), a primary full at maxmemory with
// noeviction (OOM) — keeps decisions in the fallback: one switch, named by Redis's error, and
// no flapping over several probe intervals while requests keep coming; once it takes writes
// again, Run brings decisions back without a request.
func TestFailoverStoreRunKeepsARedisThatCannotDecideInFallback(t *testing.T) {
	for _, tc := range []struct {
		name  string
		start func(t *testing.T) (r *testenv.Redis, heal []any)
		cause string
	}{
		{"read-only replica", func(t *testing.T) (*testenv.Redis, []any) {
			replica := testenv.StartReplica(t, testenv.StartRedis(t))
			return replica, []any{"REPLICAOF", "NO", "ONE"}
		}, "READONLY"},
		{"full at maxmemory", func(t *testing.T) (*testenv.Redis, []any) {
			r := testenv.StartRedis(t, "--maxmemory", "1mb", "--maxmemory-policy", "noeviction")
			if _, err := r.Do("SETRANGE", "fill", 1<<20, "x"); err != nil { // a 1 MiB string
				t.Fatal(err)
			}
			return r, []any{"CONFIG", "SET", "maxmemory", "0"}
		}, "OOM"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, heal := tc.start(t)
			if v, err := r.Do("PING"); err != nil || v != "PONG" {
				t.Fatalf("PING: %v %v; the server should answer it", v, err)
			}
			var changes modeChanges
			fallback := newRecordingStore(NewMemoryStore(MemoryOptions{}))
			const openFor = 200 * time.Millisecond
			s := NewFailoverStore(newTestStore(t, r, RedisOptions{}), fallback,
				FailoverOptions{Timeout: time.Second, OpenFor: openFor, OnModeChange: changes.record})
			ctx, cancel := context.WithCancel(context.Background())
			t.Cleanup(cancel)
			go s.Run(ctx, time.Second)
			l := Limit{Rate: 1000, Period: time.Second, Burst: 1000}
			decide := func() { // a few requests, as many as open a closed breaker
				for range 5 {
					mustAllow(t, s, "p", "k", l)
				}
			}
			waitForMode(t, s, ModeFallback, 5*time.Second, decide)
			// Requests now and then, with probe intervals between them: a probe that closed
			// the breaker would be seen, and the next requests would open it again.
			const rounds = 5
			for range rounds {
				time.Sleep(2 * openFor)
				decide()
			}
			calls, errs := changes.get()
			if len(calls) != 1 || s.Mode() != ModeFallback || errs[0] == nil || !strings.Contains(errs[0].Error(), tc.cause) {
				t.Fatalf("over %d probe intervals with requests: mode %v, changes %v (errors %v); want memory-fallback, switched once for %s",
					2*rounds, s.Mode(), calls, errs, tc.cause)
			}
			if fallback.calls.Load() == 0 {
				t.Fatal("no decision went to the fallback")
			}

			if _, err := r.Do(heal...); err != nil {
				t.Fatal(err)
			}
			testenv.WaitFor(t, 5*time.Second, "the return to Redis without decisions", func() bool { return s.Mode() == ModePrimary })
			if calls, _ := changes.get(); len(calls) != 2 {
				t.Fatalf("mode changes %v, want to fallback and back", calls)
			}
			before := fallback.calls.Load()
			mustAllow(t, s, "p", "after", Limit{Rate: 1, Period: time.Hour, Burst: 2}) // a key that lasts
			if v, err := r.Do("EXISTS", "{p:"+StoredKey("after")+"}"); err != nil || v.(int64) != 1 || fallback.calls.Load() != before {
				t.Fatalf("after the return the decision was not made in Redis: %v %v", v, err)
			}
		})
	}
}

func TestFailoverStoreSurvivesRedisKilledAndReturnsWhenItIsBack(t *testing.T) {
	r := testenv.StartRedis(t)
	fallback := newRecordingStore(NewMemoryStore(MemoryOptions{}))
	var changes modeChanges
	var s *FailoverStore
	s = NewFailoverStore(newTestStore(t, r, RedisOptions{}), fallback, FailoverOptions{
		OnModeChange: func(from, to Mode, err error) {
			s.Mode() // the callback may look at the store: no lock of a request is held
			changes.record(from, to, err)
		},
		// 500ms: a loaded CI machine under -race can stall a batch for 100ms with Redis up, and
		// a decision that times out goes to the fallback.
		Timeout: 500 * time.Millisecond, OpenFor: 300 * time.Millisecond,
	})
	l := Limit{Rate: 1000, Period: time.Second, Burst: 1000}
	mustAllow(t, s, "p", "warm", l) // a connection and the script in place
	ld := startLoad(s, 16, l)
	defer ld.finish()

	time.Sleep(100 * time.Millisecond)
	if fallback.calls.Load() != 0 {
		calls, errs := changes.get()
		t.Fatalf("%d decisions went to the fallback while Redis was up (mode changes %v, errors %v)", fallback.calls.Load(), calls, errs)
	}
	r.Kill()
	ld.resetSlowest()
	waitForMode(t, s, ModeFallback, 5*time.Second, nil)
	before := fallback.calls.Load()
	time.Sleep(200 * time.Millisecond)
	if fallback.calls.Load() == before {
		t.Fatal("no decisions from the fallback while Redis is down")
	}
	if slowest := ld.resetSlowest(); slowest > 5*time.Second {
		t.Errorf("a decision took %v with Redis down; the 500ms timeout should bound it", slowest)
	}
	calls, errs := changes.get()
	if len(calls) != 1 || calls[0] != "redis->memory-fallback" || !errors.Is(errs[0], ErrStoreUnavailable) {
		t.Fatalf("OnModeChange calls %v (errors %v), want one redis->memory-fallback with the Redis error", calls, errs)
	}

	// Back on the same port. Right after a restart go-redis may still refuse to dial for up
	// to a second (its own dial breaker) and the first requests can time out, so the mode may
	// switch back and forth a few times; within seconds it must settle on Redis.
	r.Restart()
	deadline := time.Now().Add(10 * time.Second)
	for {
		before, decided := fallback.calls.Load(), ld.calls.Load()
		time.Sleep(200 * time.Millisecond)
		if s.Mode() == ModePrimary && fallback.calls.Load() == before && ld.calls.Load() > decided {
			break // 200 ms of decisions, none by the fallback (on a loaded machine the load may stall)
		}
		if time.Now().After(deadline) {
			calls, errs := changes.get()
			t.Fatalf("decisions did not settle on Redis within 10s of its restart (mode %v, changes %v, errors %v)", s.Mode(), calls, errs)
		}
	}
	ld.finish()
	// The keys live a millisecond at this rate, so count the scripts the restarted Redis ran.
	if n := r.CommandCalls(t, "evalsha", "eval"); n == 0 {
		t.Fatal("the restarted Redis ran no decision")
	}
	// Switches alternate, each reported once, with the cause on the way to the fallback.
	calls, errs = changes.get()
	for i, call := range calls {
		want, wantErr := "redis->memory-fallback", true
		if i%2 == 1 {
			want, wantErr = "memory-fallback->redis", false
		}
		if call != want || (errs[i] != nil) != wantErr {
			t.Fatalf("OnModeChange call %d is %s (error %v), want %s; all: %v", i, call, errs[i], want, calls)
		}
	}
	if len(calls)%2 != 0 {
		t.Fatalf("OnModeChange calls %v do not end with the switch back to Redis", calls)
	}
	if len(calls) > 2 {
		t.Logf("the mode flapped while Redis restarted: %v (errors %v)", calls, errs)
	}
	if ld.errs.Load() != 0 {
		t.Fatalf("%d of %d decisions returned an error", ld.errs.Load(), ld.calls.Load())
	}
}

func TestFailoverStoreIsBoundedByTheTimeoutWhenRedisIsSlow(t *testing.T) {
	r := testenv.StartRedis(t, "--enable-debug-command", "yes")
	fallback := newRecordingStore(NewMemoryStore(MemoryOptions{}))
	s := NewFailoverStore(newTestStore(t, r, RedisOptions{}), fallback, FailoverOptions{Timeout: 50 * time.Millisecond})
	l := Limit{Rate: 1000, Period: time.Second, Burst: 1000}
	mustAllow(t, s, "p", "warm", l)

	r.Sleep(t, 30*time.Second)
	ld := startLoad(s, 8, l)
	time.Sleep(time.Second)
	ld.finish()
	// A decision that waited for Redis would take the whole sleep; the bound leaves a loaded
	// machine seconds of slack over the 50 ms timeout (CI-like load: 1.46 s).
	if slowest := ld.resetSlowest(); slowest > 10*time.Second {
		t.Fatalf("a decision took %v while Redis slept 30s; the 50ms timeout should bound it", slowest)
	}
	if ld.errs.Load() != 0 || fallback.calls.Load() == 0 || s.Mode() != ModeFallback {
		t.Fatalf("%d errors, %d fallback decisions, mode %v; want no errors, decisions from the fallback",
			ld.errs.Load(), fallback.calls.Load(), s.Mode())
	}
}

func TestFailoverStoreFailureModes(t *testing.T) {
	r := testenv.StartRedis(t)
	primary := newTestStore(t, r, RedisOptions{})
	r.Kill() // a Redis that refuses connections
	l := Limit{Rate: 1, Period: time.Hour, Burst: 3}

	allow := NewFailoverStore(primary, nil, FailoverOptions{OnFailure: FailureAllow})
	deny := NewFailoverStore(primary, nil, FailoverOptions{OnFailure: FailureDeny})
	fallback := NewFailoverStore(primary, NewMemoryStore(MemoryOptions{}), FailoverOptions{})
	admitted := 0
	for range 10 { // past the breaker's threshold: open and closed breaker alike
		if res := mustAllow(t, allow, "p", "k", l); !res.Allowed || !res.Unmetered || res.Local {
			t.Fatalf("FailureAllow: %+v; want admitted, unmetered", res)
		}
		// The client used no quota: it may come back when Redis is asked again (OpenFor),
		// not after the limit's interval (an hour here).
		if res := mustAllow(t, deny, "p", "k", l); res.Allowed || !res.Unmetered || res.RetryAfter != defaultOpenFor {
			t.Fatalf("FailureDeny: %+v; want refused, unmetered, retry after %v", res, defaultOpenFor)
		}
		res := mustAllow(t, fallback, "p", "k", l)
		if !res.Local || res.Unmetered {
			t.Fatalf("FailureFallback: %+v; want a local, metered decision", res)
		}
		if res.Allowed {
			admitted++
		}
	}
	if admitted != int(l.Burst) {
		t.Fatalf("FailureFallback admitted %d of 10 back-to-back requests, want the burst %d", admitted, l.Burst)
	}
	for _, s := range []*FailoverStore{allow, deny, fallback} {
		if s.Mode() != ModeFallback {
			t.Fatalf("mode %v after 10 failures", s.Mode())
		}
	}
}

func TestFailoverStoreCallerCancellationIsNotAFailure(t *testing.T) {
	r := testenv.StartRedis(t, "--enable-debug-command", "yes")
	fallback := newRecordingStore(NewMemoryStore(MemoryOptions{}))
	var changes modeChanges
	s := NewFailoverStore(newTestStore(t, r, RedisOptions{}), fallback, FailoverOptions{
		Timeout: 5 * time.Second, ConsecutiveFailures: 1, OnModeChange: changes.record,
	})
	l := Limit{Rate: 1, Period: time.Hour, Burst: 5}
	mustAllow(t, s, "p", "warm", l)

	// Callers that left before asking.
	gone, cancel := context.WithCancel(context.Background())
	cancel()
	for range 5 {
		if res, err := s.Allow(gone, "p", "k", l); err != nil || res.Allowed {
			t.Fatalf("cancelled caller: %+v %v, want a denial and no error", res, err)
		}
	}
	// Callers that leave while Redis is busy.
	r.Sleep(t, time.Second)
	var wg sync.WaitGroup
	for range 5 {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
			defer cancel()
			s.Allow(ctx, "p", "k", l)
		})
	}
	wg.Wait()
	if calls, _ := changes.get(); s.Mode() != ModePrimary || len(calls) != 0 || fallback.calls.Load() != 0 {
		t.Fatalf("after cancelled callers: mode %v, mode changes %v, %d fallback calls; want none", s.Mode(), calls, fallback.calls.Load())
	}
}

func TestFailoverStoreClusterMasterDownFallsBackOnlyForItsKeys(t *testing.T) {
	c := testenv.StartCluster(t)
	for _, n := range c.Nodes { // the other masters keep serving their slots
		if _, err := n.Do("CONFIG", "SET", "cluster-require-full-coverage", "no"); err != nil {
			t.Fatal(err)
		}
	}
	// The client a Caddy config builds (redisconn: one dial per attempt, one retry, context
	// deadlines on the socket), so the dead master refuses each decision within
	// milliseconds, as in production. With go-redis's defaults (5 dials with backoff per
	// attempt) each of its decisions, and the probe, held their whole 1 s bound: the rounds
	// ran 3.6-6.9 s after the kill, a live master's decision took 270 ms meanwhile on a
	// loaded machine, and a stall past the bound sends a live key to the fallback. Every
	// bound is generous instead: the dead master's keys reach the fallback by its refusals,
	// not by any timeout, and the live masters must decide every request of theirs.
	client, err := redisconn.New(redisconn.Options{
		ClusterAddrs: c.Addrs(), MaxRetries: 1,
		DialTimeout: 10 * time.Second, ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	store := NewRedisStore(client, RedisOptions{})
	t.Cleanup(func() { store.Close() })
	fallback := newRecordingStore(NewMemoryStore(MemoryOptions{}))
	var changes modeChanges
	s := NewFailoverStore(store, fallback, FailoverOptions{Timeout: 10 * time.Second, OnModeChange: changes.record})

	// Five keys on each master.
	keysOf := make(map[string][]string)
	for i := 0; len(keysOf) < 3 || len(keysOf[c.Nodes[0].Addr]) < 5 || len(keysOf[c.Nodes[1].Addr]) < 5 || len(keysOf[c.Nodes[2].Addr]) < 5; i++ {
		key := fmt.Sprintf("client-%d", i)
		master := store.shardOf(context.Background(), "p", key)
		if master == "" { // the client loads its slot map in the background
			if i > 10000 {
				t.Fatal("the Cluster client never loaded its slot map")
			}
			time.Sleep(time.Millisecond)
			continue
		}
		if len(keysOf[master]) < 5 {
			keysOf[master] = append(keysOf[master], key)
		}
	}
	dead := c.Nodes[0]
	dead.Kill()
	// Two masters still answer: a probe does not send every key to the fallback.
	if err := s.Probe(context.Background(), 10*time.Second); err != nil || s.Mode() != ModePrimary {
		t.Fatalf("probe with one master of three down: %v, mode %v; want nil, primary", err, s.Mode())
	}

	l := Limit{Rate: 1, Period: time.Hour, Burst: 3}
	admitted := make(map[string]int)
	for range 6 {
		for _, keys := range keysOf {
			for _, key := range keys {
				if mustAllow(t, s, "p", key, l).Allowed {
					admitted[key]++
				}
			}
		}
	}
	for master, keys := range keysOf {
		for _, key := range keys {
			if admitted[key] != int(l.Burst) {
				t.Errorf("key %s on %s: admitted %d of 6, want %d", key, master, admitted[key], l.Burst)
			}
			if master == dead.Addr {
				if fallback.seen(key) == 0 {
					t.Errorf("key %s on the dead master never reached the fallback", key)
				}
				continue
			}
			if n := fallback.seen(key); n != 0 {
				t.Errorf("key %s on live master %s went to the fallback %d times", key, master, n)
			}
		}
	}
	// Each live master holds its five keys and no other. KEYS, not DBSIZE: the probe's key
	// (a millisecond's life) is still counted by DBSIZE until Redis's expiry cycle removes
	// it, which the decisions, now quick, need not outlast.
	for _, n := range c.Nodes[1:] {
		var want []string
		for _, key := range keysOf[n.Addr] {
			want = append(want, store.redisKey("p", key))
		}
		v, err := n.Do("KEYS", "*")
		got := fmt.Sprint(v)
		if keys, ok := v.([]any); ok {
			held := make([]string, 0, len(keys))
			for _, k := range keys {
				held = append(held, fmt.Sprint(k))
			}
			slices.Sort(held)
			got = strings.Join(held, " ")
		}
		slices.Sort(want)
		if err != nil || got != strings.Join(want, " ") {
			t.Errorf("live master %s holds %s (%v), want its keys %s", n.Addr, got, err, strings.Join(want, " "))
		}
	}
	if calls, _ := changes.get(); s.Mode() != ModeFallback || len(calls) != 1 {
		t.Fatalf("mode %v, mode changes %v; want memory-fallback, once", s.Mode(), calls)
	}
}

func TestFailoverStoreClusterUnreachableFromTheStart(t *testing.T) {
	// No server on these ports: the client can never load its slot map.
	client := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{
		fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)), fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)),
	}})
	t.Cleanup(func() { client.Close() })
	store := NewRedisStore(client, RedisOptions{})
	t.Cleanup(func() { store.Close() })
	fallback := newRecordingStore(NewMemoryStore(MemoryOptions{}))
	s := NewFailoverStore(store, fallback, FailoverOptions{Timeout: 50 * time.Millisecond})
	l := Limit{Rate: 1, Period: time.Hour, Burst: 2}
	for i := range 5 {
		start := time.Now()
		res := mustAllow(t, s, "p", "k", l)
		if took := time.Since(start); took > time.Second {
			t.Fatalf("decision %d took %v; the 50ms timeout should bound it", i, took)
		}
		if res.Allowed != (i < 2) {
			t.Fatalf("decision %d: %+v, want the fallback's GCRA", i, res)
		}
	}
	if fallback.calls.Load() != 5 {
		t.Fatalf("%d decisions from the fallback, want 5", fallback.calls.Load())
	}
}

// TestFailoverStoreFallbackGoesOnFromTheSharedBucket: the instances' memory stores follow
// the buckets Redis decided, so when Redis fails no instance starts a drained key afresh.
// Before, each instance's fallback held a full bucket: a 200 ms stall of a Redis shared by
// three instances let each admit a whole burst again (3705 admitted for 1100 allowed).
func TestFailoverStoreFallbackGoesOnFromTheSharedBucket(t *testing.T) {
	r := testenv.StartRedis(t)
	l := Limit{Rate: 1, Period: time.Hour, Burst: 3}
	// Redis decides every request until it is killed: a stall of the loaded machine longer
	// than the default 50 ms timeout would send one to memory (CI-like load did, and Redis
	// then admitted past the burst). Once it is killed, a probe sends decisions to memory,
	// as the store's own probe does, rather than each waiting on the client's dial retries.
	opts := FailoverOptions{Timeout: time.Second}
	a := NewFailoverStore(newTestStore(t, r, RedisOptions{}), NewPolicyMemoryStores(MemoryOptions{}), opts)
	b := NewFailoverStore(newTestStore(t, r, RedisOptions{}), NewPolicyMemoryStores(MemoryOptions{}), opts)
	for i := range 3 {
		if !mustAllow(t, a, "p", "k", l).Allowed {
			t.Fatalf("request %d of the burst refused", i+1)
		}
	}
	if mustAllow(t, b, "p", "k", l).Allowed {
		t.Fatal("Redis admitted past the burst")
	}
	r.Kill()
	for name, s := range map[string]*FailoverStore{"the instance that drained the key": a, "the instance that was refused": b} {
		if err := s.Probe(context.Background(), time.Second); !errors.Is(err, ErrStoreUnavailable) || s.Mode() != ModeFallback {
			t.Fatalf("%s: probe of the killed Redis: %v, mode %v", name, err, s.Mode())
		}
		res := mustAllow(t, s, "p", "k", l)
		if !res.Local {
			t.Fatalf("%s: the decision with Redis down was not made in memory", name)
		}
		if res.Allowed || res.RetryAfter < 59*time.Minute {
			t.Errorf("%s: with Redis down the drained key got %+v; want refused for about an hour, as in Redis", name, res)
		}
	}
	if res := mustAllow(t, a, "p", "other", l); !res.Allowed || !res.Local {
		t.Errorf("a key Redis never saw: %+v; want admitted from a full bucket in memory", res)
	}
}

// TestFailoverStoreRefusalsDoNotBringBackARedisThatCannotWrite: a server that answers but
// cannot write (a read-only replica, a Redis full at maxmemory with noeviction) still decides
// a refusal, which writes nothing. Such a refusal, made by the probe of a half-open breaker,
// closed it: the next admissions failed and opened it again, a mode switch (and a
// store_failover line) each OpenFor while a drained key kept asking.
func TestFailoverStoreRefusalsDoNotBringBackARedisThatCannotWrite(t *testing.T) {
	drained := Limit{Rate: 1, Period: time.Hour, Burst: 1}
	drain := func(t *testing.T, r *testenv.Redis) {
		s := newTestStore(t, r, RedisOptions{})
		mustAllow(t, s, "p", "drained", drained)
		if mustAllow(t, s, "p", "drained", drained).Allowed {
			t.Fatal("the key is not drained")
		}
	}
	for _, tc := range []struct {
		name  string
		start func(t *testing.T) *testenv.Redis
		cause string
	}{
		{"read-only replica", func(t *testing.T) *testenv.Redis {
			master := testenv.StartRedis(t)
			drain(t, master)
			return testenv.StartReplica(t, master)
		}, "READONLY"},
		{"full at maxmemory", func(t *testing.T) *testenv.Redis {
			r := testenv.StartRedis(t)
			drain(t, r)
			r.Fill(t)
			return r
		}, "OOM"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.start(t)
			var changes modeChanges
			const openFor = 100 * time.Millisecond
			s := NewFailoverStore(newTestStore(t, r, RedisOptions{}), NewMemoryStore(MemoryOptions{}),
				FailoverOptions{Timeout: time.Second, OpenFor: openFor, OnModeChange: changes.record})
			admit := Limit{Rate: 1000, Period: time.Second, Burst: 1000}
			decide := func() { // as many admissions as open a closed breaker
				for range 5 {
					mustAllow(t, s, "p", "k", admit)
				}
			}
			waitForMode(t, s, ModeFallback, 5*time.Second, decide)
			for range 5 {
				time.Sleep(2 * openFor) // half-open: the next decision is the probe
				if mustAllow(t, s, "p", "drained", drained).Allowed {
					t.Fatal("the drained key was admitted")
				}
				decide()
			}
			calls, errs := changes.get()
			if len(calls) != 1 || s.Mode() != ModeFallback || !strings.Contains(fmt.Sprint(errs[0]), tc.cause) {
				t.Fatalf("refusals between admissions: mode %v, changes %v (errors %v); want memory-fallback, switched once for %s",
					s.Mode(), calls, errs, tc.cause)
			}
		})
	}
}
