package ratelimit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/swarmsec/caddy-hardening/internal/testenv"
)

// newTestClient is a client of server r, closed when the test ends.
func newTestClient(t testing.TB, r *testenv.Redis) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: r.Addr})
	t.Cleanup(func() { c.Close() })
	return c
}

// newTestStore is a RedisStore on its own client of r, closed when the test ends.
func newTestStore(t testing.TB, r *testenv.Redis, opts RedisOptions) *RedisStore {
	t.Helper()
	s := NewRedisStore(newTestClient(t, r), opts)
	t.Cleanup(func() { s.Close() })
	return s
}

// newClusterStore is a RedisStore on its own client of the Cluster c, both closed when the
// test ends.
func newClusterStore(t testing.TB, c *testenv.Cluster, opts RedisOptions) *RedisStore {
	t.Helper()
	client := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()})
	t.Cleanup(func() { client.Close() })
	s := NewRedisStore(client, opts)
	t.Cleanup(func() { s.Close() })
	return s
}

func mustAllow(t testing.TB, s Store, policy, key string, l Limit) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := s.Allow(ctx, policy, key, l)
	if err != nil {
		t.Fatalf("Allow(%q, %q): %v", policy, key, err)
	}
	return res
}

func TestRedisStoreFollowsGCRA(t *testing.T) {
	s := newTestStore(t, testenv.StartRedis(t), RedisOptions{Prefix: "t:"})
	l := Limit{Rate: 1, Period: time.Hour, Burst: 3}
	for i := int64(0); i < 3; i++ {
		res := mustAllow(t, s, "p", "k", l)
		if !res.Allowed || res.Remaining != 2-i || res.RetryAfter != 0 {
			t.Fatalf("request %d: %+v, want allowed with %d remaining", i, res, 2-i)
		}
		if want := time.Duration(i+1) * time.Hour; res.ResetAfter > want || res.ResetAfter < want-time.Second {
			t.Fatalf("request %d: reset after %v, want about %v", i, res.ResetAfter, want)
		}
	}
	res := mustAllow(t, s, "p", "k", l)
	if res.Allowed || res.Remaining != 0 {
		t.Fatalf("fourth request: %+v, want denied", res)
	}
	if res.RetryAfter > time.Hour || res.RetryAfter < time.Hour-time.Second {
		t.Fatalf("retry after %v, want about 1h", res.RetryAfter)
	}
	if res.ResetAfter > 3*time.Hour || res.ResetAfter < 3*time.Hour-time.Second {
		t.Fatalf("reset after %v, want about 3h", res.ResetAfter)
	}
	// Another policy and another key each have their own bucket.
	if !mustAllow(t, s, "q", "k", l).Allowed || !mustAllow(t, s, "p", "other", l).Allowed {
		t.Fatal("buckets are shared across policies or keys")
	}
}

// TestRedisStoreKeepsIntervalsBelowAMicrosecond: an interval that is not a whole number of
// microseconds (600000/1s is one request every 1.667 µs) moves the bucket by exactly that much
// in Redis, as in memory. Truncated to whole microseconds, a burst of 600000 took 0.6 s to
// replenish instead of 1 s: Redis admitted 1,000,000 a second.
func TestRedisStoreKeepsIntervalsBelowAMicrosecond(t *testing.T) {
	r := testenv.StartRedis(t)
	s := newTestStore(t, r, RedisOptions{Prefix: "t:"})
	for _, l := range []Limit{
		{Rate: 600000, Period: time.Second, Burst: 600000},
		{Rate: 3, Period: 10 * time.Microsecond, Burst: 3000},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		res, granted, err := s.AllowN(ctx, "p", fmt.Sprint(l), l, l.Burst)
		cancel()
		if err != nil || granted != l.Burst {
			t.Fatalf("%+v: granted %d, %v; want the whole burst", l, granted, err)
		}
		// The whole burst was granted at Redis's now: the bucket is full again after burst
		// intervals, less the time between Redis reading its clock and answering (none).
		if want := time.Duration(l.Burst) * l.Interval(); res.ResetAfter != want {
			t.Fatalf("%+v: reset after %v, want %v (burst × interval %v)", l, res.ResetAfter, want, l.Interval())
		}
	}

	// A bucket an earlier version wrote (whole microseconds, no '.') reads as it did: an hour
	// ahead of Redis's clock, a limit of 1/1h refuses for that hour.
	c := newTestClient(t, r)
	now, err := c.Time(context.Background()).Result()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Set(context.Background(), s.redisKey("p", "old"), strconv.FormatInt(now.Add(time.Hour).UnixMicro(), 10), time.Hour).Err(); err != nil {
		t.Fatal(err)
	}
	res := mustAllow(t, s, "p", "old", Limit{Rate: 1, Period: time.Hour, Burst: 1})
	if res.Allowed || res.RetryAfter > time.Hour || res.RetryAfter < time.Hour-time.Minute {
		t.Fatalf("a bucket in whole microseconds an hour ahead: %+v, want refused for about an hour", res)
	}
}

func TestRedisStoreAdmitsExactlyBurstUnderConcurrency(t *testing.T) {
	s := newTestStore(t, testenv.StartRedis(t), RedisOptions{})
	l := Limit{Rate: 1, Period: time.Hour, Burst: 10}
	var allowed, failed atomic.Int64
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			res, err := s.Allow(context.Background(), "p", "one-key", l)
			if err != nil {
				failed.Add(1)
			} else if res.Allowed {
				allowed.Add(1)
			}
		})
	}
	wg.Wait()
	if failed.Load() != 0 || allowed.Load() != l.Burst {
		t.Fatalf("50 concurrent requests: %d allowed, %d failed; want exactly %d allowed", allowed.Load(), failed.Load(), l.Burst)
	}
}

// hammerStores sends requests for keys from every store in stores, from 8 goroutines per
// store, until window has passed and, when drain is set, until every key has been refused once
// (its burst is spent: on a loaded machine a window alone can end before some keys were asked
// enough, or at all); it returns how many each key was admitted and the elapsed time.
func hammerStores(t *testing.T, stores []Store, keys []string, l Limit, window time.Duration, drain bool) (map[string]int64, time.Duration) {
	t.Helper()
	var mu sync.Mutex
	admitted := make(map[string]int64)
	refused := make([]atomic.Bool, len(keys))
	drained := func() bool {
		for i := range refused {
			if !refused[i].Load() {
				return false
			}
		}
		return true
	}
	var errs atomic.Int64
	start := time.Now()
	more := func() bool {
		since := time.Since(start)
		return since < window || drain && since < 30*time.Second && !drained()
	}
	var wg sync.WaitGroup
	for _, s := range stores {
		for g := range 8 {
			wg.Go(func() {
				for i := g; more(); i++ {
					key := keys[i%len(keys)]
					res, err := s.Allow(context.Background(), "hammer", key, l)
					if err != nil {
						errs.Add(1)
						continue
					}
					if !res.Allowed {
						refused[i%len(keys)].Store(true)
						continue
					}
					mu.Lock()
					admitted[key]++
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	elapsed := time.Since(start)
	if errs.Load() != 0 {
		t.Fatalf("%d requests failed", errs.Load())
	}
	if drain && !drained() {
		t.Fatalf("some keys were never refused in %v", elapsed)
	}
	return admitted, elapsed
}

// checkAdmitted asserts GCRA's bound for each key: from a full bucket, at most
// Burst + elapsed/Interval requests over elapsed (1% and one request of tolerance), and
// that each key was admitted at least its burst (the store is not denying everything).
func checkAdmitted(t *testing.T, admitted map[string]int64, keys []string, l Limit, elapsed time.Duration) {
	t.Helper()
	bound := float64(l.Burst) + float64(elapsed)/float64(l.Interval())
	bound = bound*1.01 + 1
	var total int64
	for _, key := range keys {
		n := admitted[key]
		total += n
		if float64(n) > bound {
			t.Errorf("key %q admitted %d times in %v; GCRA allows at most %.1f", key, n, elapsed, bound)
		}
		if n < l.Burst {
			t.Errorf("key %q admitted only %d times, less than its burst %d", key, n, l.Burst)
		}
	}
	t.Logf("%d keys admitted %d requests in %v (bound %.1f per key)", len(keys), total, elapsed, bound)
}

func TestRedisStoreInstancesShareOneLimit(t *testing.T) {
	r := testenv.StartRedis(t)
	var stores []Store
	for range 3 { // three instances, three clients
		stores = append(stores, newTestStore(t, r, RedisOptions{Prefix: "shared:"}))
	}
	l := Limit{Rate: 20, Period: time.Second, Burst: 5}
	keys := []string{"a", "b", "c", "d"}
	admitted, elapsed := hammerStores(t, stores, keys, l, time.Second, true)
	checkAdmitted(t, admitted, keys, l, elapsed)
}

func TestRedisStoreClusterInstancesShareOneLimit(t *testing.T) {
	c := testenv.StartCluster(t)
	var stores []Store
	for range 3 {
		stores = append(stores, newClusterStore(t, c, RedisOptions{Prefix: "shared:"}))
	}
	l := Limit{Rate: 20, Period: time.Second, Burst: 5}
	var keys []string
	for i := range 30 {
		keys = append(keys, fmt.Sprintf("client-%d", i))
	}
	admitted, elapsed := hammerStores(t, stores, keys, l, time.Second, true)
	checkAdmitted(t, admitted, keys, l, elapsed)

	// The keys really are spread over the three masters: each ran decisions. Counted by the
	// scripts each ran, not by DBSIZE: a key lives until its bucket is full again (250 ms
	// here), and a loaded machine that paused that long after the hammering found a master
	// whose keys had all expired (1 of 10 runs with three CPU burners on two cores).
	for _, n := range c.Nodes {
		if runs := n.CommandCalls(t, "evalsha", "eval"); runs == 0 {
			t.Errorf("master %s ran no decision script; the keys are not spread", n.Addr)
		}
	}
}

func TestRedisStoreSentinel(t *testing.T) {
	master := testenv.StartRedis(t)
	sentinel := testenv.StartSentinel(t, master, "rl")
	client := redis.NewFailoverClient(&redis.FailoverOptions{MasterName: "rl", SentinelAddrs: []string{sentinel.Addr}})
	t.Cleanup(func() { client.Close() })
	s := NewRedisStore(client, RedisOptions{Prefix: "s:"})
	t.Cleanup(func() { s.Close() })
	l := Limit{Rate: 1, Period: time.Hour, Burst: 2}
	got := []bool{mustAllow(t, s, "p", "k", l).Allowed, mustAllow(t, s, "p", "k", l).Allowed, mustAllow(t, s, "p", "k", l).Allowed}
	if !got[0] || !got[1] || got[2] {
		t.Fatalf("through Sentinel: allowed %v, want [true true false]", got)
	}
	if v, err := master.Do("EXISTS", "s:{p:"+StoredKey("k")+"}"); err != nil || v.(int64) != 1 {
		t.Fatalf("the key is not on the master Sentinel names: %v %v", v, err)
	}
}

func TestRedisStoreKeyLivesUntilTheBucketIsFull(t *testing.T) {
	r := testenv.StartRedis(t)
	s := newTestStore(t, r, RedisOptions{Prefix: "ttl:"})

	slow := Limit{Rate: 1, Period: 10 * time.Second, Burst: 5}
	mustAllow(t, s, "p", "slow", slow)
	res := mustAllow(t, s, "p", "slow", slow)
	pttl, err := r.Do("PTTL", "ttl:{p:"+StoredKey("slow")+"}")
	if err != nil {
		t.Fatal(err)
	}
	ttl := time.Duration(pttl.(int64)) * time.Millisecond
	if ttl > res.ResetAfter+time.Millisecond || ttl < res.ResetAfter-time.Second {
		t.Fatalf("PTTL %v, want about the reset time %v", ttl, res.ResetAfter)
	}

	fast := Limit{Rate: 10, Period: time.Second, Burst: 2} // full again 100 ms after one request
	mustAllow(t, s, "p", "fast", fast)
	if v, _ := r.Do("EXISTS", "ttl:{p:"+StoredKey("fast")+"}"); v.(int64) != 1 {
		t.Fatal("no key after a decision")
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		v, err := r.Do("EXISTS", "ttl:{p:"+StoredKey("fast")+"}")
		if err == nil && v.(int64) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the key outlived a full replenish by seconds")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestRedisStoreKeyFormatAndLongKeys: a client address stays readable in Redis; every other key
// (an API key, a token, a user) is stored as its SHA-256, as long and hostile keys were: before,
// a key of up to 128 bytes was a Redis key name as it was, credentials included.
func TestRedisStoreKeyFormatAndLongKeys(t *testing.T) {
	r := testenv.StartRedis(t)
	s := newTestStore(t, r, RedisOptions{Prefix: "hardening:"})
	l := Limit{Rate: 1, Period: time.Minute, Burst: 2}
	long := strings.Repeat("x", 10000)
	lookAlike := "sha256:" + strings.Repeat("0", 64)
	braced := "tenant}a"
	apiKey := "hk_live_2b7e151628aed2a6abf7158809cf4f3c" // an API key, or a bearer token, as a bucket's key
	for _, key := range []string{"1.2.3.4", "@1.2.3.4", "2001:db8:1:2::/64", "@2001:db8::/64", long, lookAlike, apiKey, braced, "{x", "1.2.3.4:alice"} {
		mustAllow(t, s, "login", key, l)
	}
	hexOf := func(s string) string { sum := sha256.Sum256([]byte(s)); return hex.EncodeToString(sum[:]) }
	want := []string{
		"hardening:{login:1.2.3.4}",
		"hardening:{login:@1.2.3.4}",
		"hardening:{login:2001:db8:1:2::/64}",
		"hardening:{login:@2001:db8::/64}",
		"hardening:{login:sha256:" + hexOf(long) + "}",
		"hardening:{login:sha256:" + hexOf(lookAlike) + "}",
		"hardening:{login:sha256:" + hexOf(apiKey) + "}",
		"hardening:{login:sha256:" + hexOf(braced) + "}",
		"hardening:{login:sha256:" + hexOf("{x") + "}",
		"hardening:{login:sha256:" + hexOf("1.2.3.4:alice") + "}",
	}
	v, err := r.Do("KEYS", "*")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, k := range v.([]any) {
		got = append(got, k.(string))
	}
	sort.Strings(got)
	sort.Strings(want)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("keys in Redis:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// The long key's bucket is the same on the next request.
	mustAllow(t, s, "login", long, l)
	if mustAllow(t, s, "login", long, l).Allowed {
		t.Fatal("a long key's requests do not share one bucket")
	}
}

// TestRedisStoreClusterSlotIsTheWholeKey: header values that share a prefix before a '}'
// ("}0", "}1", ...: what a client picks to steer its keys) still spread over the Cluster's
// masters. Redis hashes only the text up to the first '}' of a key's hash tag, so before such
// keys were hashed they all landed on the slot of "<policy>:".
func TestRedisStoreClusterSlotIsTheWholeKey(t *testing.T) {
	c := testenv.StartCluster(t)
	s := newClusterStore(t, c, RedisOptions{Prefix: "hardening:"})
	l := Limit{Rate: 1, Period: time.Minute, Burst: 2}
	for i := range 60 {
		mustAllow(t, s, "api", "}"+strconv.Itoa(i), l)
	}
	for _, n := range c.Nodes {
		v, err := n.Do("DBSIZE")
		if err != nil {
			t.Fatal(err)
		}
		if keys := v.(int64); keys == 0 || keys == 60 {
			t.Fatalf("master %s holds %d of 60 keys; want them spread over the 3 masters", n.Addr, keys)
		}
	}
}

func TestRedisStoreReloadsTheScriptAfterFlush(t *testing.T) {
	r := testenv.StartRedis(t)
	s := newTestStore(t, r, RedisOptions{})
	l := Limit{Rate: 1, Period: time.Hour, Burst: 4}
	mustAllow(t, s, "p", "k", l)
	mustAllow(t, s, "p", "k", l)
	if _, err := r.Do("SCRIPT", "FLUSH"); err != nil {
		t.Fatal(err)
	}
	// Concurrent decisions after the flush: all NOSCRIPT in one pipeline, all sent again.
	var allowed, failed atomic.Int64
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() {
			res, err := s.Allow(context.Background(), "p", "k", l)
			if err != nil {
				t.Log(err)
				failed.Add(1)
			} else if res.Allowed {
				allowed.Add(1)
			}
		})
	}
	wg.Wait()
	if failed.Load() != 0 || allowed.Load() != 2 {
		t.Fatalf("after SCRIPT FLUSH: %d allowed, %d failed; want the 2 left of the burst and no failure", allowed.Load(), failed.Load())
	}
	sha := gcraScript.Hash()
	if v, err := r.Do("SCRIPT", "EXISTS", sha); err != nil || v.([]any)[0].(int64) != 1 {
		t.Fatalf("the script is not cached again: %v %v", v, err)
	}
}

func TestRedisStoreHonoursTheCallersDeadline(t *testing.T) {
	r := testenv.StartRedis(t, "--enable-debug-command", "yes")
	s := newTestStore(t, r, RedisOptions{})
	l := Limit{Rate: 1, Period: time.Second, Burst: 1}
	mustAllow(t, s, "p", "warm", l) // connection and script in place
	r.Sleep(t, 30*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := s.Allow(ctx, "p", "k", l)
	if !errors.Is(err, ErrStoreUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Allow while Redis sleeps: %v, want ErrStoreUnavailable and DeadlineExceeded", err)
	}
	if took := time.Since(start); took > 10*time.Second { // far from the 30 s sleep, whatever the load
		t.Fatalf("Allow returned after %v: it waited for Redis, not for its 100ms deadline", took)
	}
}

func TestRedisStoreFailuresWrapErrStoreUnavailable(t *testing.T) {
	r := testenv.StartRedis(t)
	s := newTestStore(t, r, RedisOptions{})
	l := Limit{Rate: 1, Period: time.Second, Burst: 1}
	mustAllow(t, s, "p", "k", l)
	r.Kill()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := s.Allow(ctx, "p", "k", l); !errors.Is(err, ErrStoreUnavailable) || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Allow with Redis down: %v, want a wrapped connection error", err)
	}
	if _, err := s.Allow(ctx, "p", "k", Limit{}); err == nil || errors.Is(err, ErrStoreUnavailable) {
		t.Fatalf("invalid limit: %v, want Validate's error", err)
	}
	s.Close()
	if _, err := s.Allow(ctx, "p", "k", l); !errors.Is(err, ErrStoreUnavailable) {
		t.Fatalf("Allow after Close: %v", err)
	}
}

// TestRedisStoreNamesRefusedCredentials: with a password Redis refuses, the decision's error is
// Redis's own (WRONGPASS or NOAUTH), not a reply-type error, so the store_failover event and
// the logs say what to fix.
func TestRedisStoreNamesRefusedCredentials(t *testing.T) {
	r := testenv.StartRedis(t, "--requirepass", "right")
	for _, pass := range []string{"", "wrong"} {
		c := redis.NewClient(&redis.Options{Addr: r.Addr, Password: pass})
		s := NewRedisStore(c, RedisOptions{})
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := s.Allow(ctx, "p", "k", Limit{Rate: 1, Period: time.Second, Burst: 1})
		cancel()
		s.Close()
		c.Close()
		if !errors.Is(err, ErrStoreUnavailable) || !(strings.Contains(err.Error(), "NOAUTH") || strings.Contains(err.Error(), "WRONGPASS")) {
			t.Errorf("password %q: %v, want Redis's NOAUTH or WRONGPASS", pass, err)
		}
	}
}

// workerGoroutines counts the goroutines running a RedisStore's batching workers.
func workerGoroutines() int {
	buf := make([]byte, 1<<22)
	buf = buf[:runtime.Stack(buf, true)]
	return strings.Count(string(buf), "ratelimit.(*RedisStore).work(")
}

// isMaster reports whether r says it is a master.
func isMaster(r *testenv.Redis) bool {
	info, err := r.Do("INFO", "replication")
	return err == nil && strings.Contains(fmt.Sprint(info), "role:master")
}

// TestRedisStoreClusterFailoverStopsTheReplacedMastersWorkers: under load, a master hands its
// slots to its replica (CLUSTER FAILOVER), then the replica, now master, is killed and the old
// master takes its slots back (CLUSTER FAILOVER FORCE). Each time the workers of the address
// that stopped being a master stop, so their number returns to its level; no decision fails or
// hangs (the in-flight ones on the replaced master are answered or go to memory), decisions
// reach the new master, and Mode returns to redis.
func TestRedisStoreClusterFailoverStopsTheReplacedMastersWorkers(t *testing.T) {
	c := testenv.StartCluster(t, "--cluster-require-full-coverage", "no")
	first := c.Nodes[0]
	replica := c.AddReplica(t, first)
	store := newClusterStore(t, c, RedisOptions{})
	s := NewFailoverStore(store, NewMemoryStore(MemoryOptions{}), FailoverOptions{Timeout: 500 * time.Millisecond, OpenFor: 200 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go s.Run(ctx, time.Second)

	hasQueue := func(addr string) bool {
		store.queuesMu.RLock()
		defer store.queuesMu.RUnlock()
		return store.queues[addr] != nil
	}
	ld := startLoad(s, 4, Limit{Rate: 1000, Period: time.Second, Burst: 1000})
	defer ld.finish()
	testenv.WaitFor(t, 10*time.Second, "a queue for each master", func() bool {
		return hasQueue(c.Nodes[0].Addr) && hasQueue(c.Nodes[1].Addr) && hasQueue(c.Nodes[2].Addr)
	})
	level := workerGoroutines()
	t.Logf("%d workers with a queue for each master", level)

	handOver := func(to, from *testenv.Redis, how ...any) {
		t.Helper()
		calls := to.CommandCalls(t, "evalsha", "eval")
		if _, err := to.Do(how...); err != nil {
			t.Fatal(err)
		}
		// A manual failover that gets no majority within its own 5 s is abandoned, not retried
		// (on a loaded machine the masters' votes can come late): ask again now and then.
		asked := time.Now()
		testenv.WaitFor(t, 60*time.Second, to.Addr+" promoted", func() bool {
			if isMaster(to) {
				return true
			}
			if time.Since(asked) > 6*time.Second {
				_, _ = to.Do(how...)
				asked = time.Now()
			}
			return false
		})
		testenv.WaitFor(t, 10*time.Second, "decisions on "+to.Addr, func() bool { return to.CommandCalls(t, "evalsha", "eval") > calls })
		// The sweep looks at the slot map 1, 3, 10 and 30 s after a new master: under load gossip
		// can need the last look.
		testenv.WaitFor(t, 40*time.Second, "the workers back to their level", func() bool {
			return workerGoroutines() == level && !hasQueue(from.Addr)
		})
	}
	handOver(replica, first, "CLUSTER", "FAILOVER")
	replica.Kill()
	handOver(first, replica, "CLUSTER", "FAILOVER", "FORCE")
	testenv.WaitFor(t, 10*time.Second, "decisions back in redis mode", func() bool { return s.Mode() == ModePrimary })

	ld.finish()
	if slowest := ld.resetSlowest(); ld.errs.Load() != 0 || slowest > 2*time.Second {
		t.Fatalf("%d of %d decisions failed, the slowest took %v; want none, each bounded by the 500ms timeout", ld.errs.Load(), ld.calls.Load(), slowest)
	}
	store.Close()
	// Close returns once every worker has called Done; its goroutine may still be on its way out.
	testenv.WaitFor(t, 2*time.Second, "no worker after Close", func() bool { return workerGoroutines() == 0 })
}

// TestRedisStoreSweepLooksAgainAfterANewMaster: a failover reaches the Cluster's nodes by
// gossip, so the first look at the slot map after a new master may still list the replaced
// one. A queue that the first look left (an address that is no master) is retired by a later
// look, without another failover.
func TestRedisStoreSweepLooksAgainAfterANewMaster(t *testing.T) {
	c := testenv.StartCluster(t)
	store := newClusterStore(t, c, RedisOptions{})
	testenv.WaitFor(t, 5*time.Second, "the slot map", func() bool { return store.shardOf(context.Background(), "p", "k") != "" })
	for i := range 30 { // a queue for each master
		mustAllow(t, store, "warm", fmt.Sprint(i), Limit{Rate: 1, Period: time.Second, Burst: 1})
	}
	plant := func(addr string) {
		store.queuesMu.Lock()
		defer store.queuesMu.Unlock()
		store.queues[addr] = &shardQueue{requests: make(chan *redisRequest, 1), stop: make(chan struct{})}
	}
	planted := func(addr string) bool {
		store.queuesMu.RLock()
		defer store.queuesMu.RUnlock()
		return store.queues[addr] != nil
	}
	plant("127.0.0.1:1")
	store.newMaster <- struct{}{}
	testenv.WaitFor(t, 5*time.Second, "the first look to retire the first queue", func() bool { return !planted("127.0.0.1:1") })
	plant("127.0.0.1:2") // as if the first look had been given a stale map
	testenv.WaitFor(t, 5*time.Second, "a later look to retire the second queue", func() bool { return !planted("127.0.0.1:2") })
	for _, n := range c.Nodes {
		if !planted(n.Addr) {
			t.Errorf("the queue of master %s was retired", n.Addr)
		}
	}
}

// TestRedisStoreRetiringQueuesLosesNoDecision: while 32 callers decide on a Cluster, every
// master's queue is retired again and again (as a sweep does after a failover): each decision
// is made exactly once — every key admits exactly its burst — and none fails or waits past
// its deadline.
func TestRedisStoreRetiringQueuesLosesNoDecision(t *testing.T) {
	c := testenv.StartCluster(t)
	store := newClusterStore(t, c, RedisOptions{})
	mustAllow(t, store, "warm", "up", Limit{Rate: 1, Period: time.Second, Burst: 1})
	testenv.WaitFor(t, 5*time.Second, "the slot map", func() bool { return store.shardOf(context.Background(), "p", "k") != "" })

	stop := make(chan struct{})
	var retirements atomic.Int64
	go func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			store.retireQueuesBut(nil)
			retirements.Add(1)
			time.Sleep(200 * time.Microsecond)
		}
	}()
	l := Limit{Rate: 1, Period: time.Hour, Burst: 10}
	var admitted [20]atomic.Int64
	var failed atomic.Int64
	var wg sync.WaitGroup
	for g := range 32 {
		wg.Go(func() {
			for i := range 50 {
				key := (g + i) % len(admitted)
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				res, err := store.Allow(ctx, "p", fmt.Sprintf("key-%d", key), l)
				cancel()
				if err != nil {
					t.Log(err)
					failed.Add(1)
				} else if res.Allowed {
					admitted[key].Add(1)
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	if failed.Load() != 0 {
		t.Fatalf("%d of 1600 decisions failed while queues were retired", failed.Load())
	}
	for key := range admitted {
		if n := admitted[key].Load(); n != l.Burst {
			t.Errorf("key-%d admitted %d times, want exactly its burst %d", key, n, l.Burst)
		}
	}
	t.Logf("%d retirements during 1600 decisions", retirements.Load())
}

// TestRedisStoreAgreesWithDecideAtTheBounds: at the limits Validate allows (one request per
// microsecond with a burst that takes 366 days, one request per 366 days, a burst of 600000 at
// a 1.667 µs interval), a whole burst granted in Redis leaves the bucket where Decide leaves
// it: full again after burst × interval, to within the few ns a Lua double can miss at 3e16 ns,
// with no overflow in either.
// TestRedisStoreTATBeyondTheLimitIsADrainedBucket: as Decide, Redis reads a bucket drained
// further than the limit in force can reach (a stricter limit before a reload raised it) as a
// drained bucket of that limit: the raised limit applies at once.
func TestRedisStoreTATBeyondTheLimitIsADrainedBucket(t *testing.T) {
	s := newTestStore(t, testenv.StartRedis(t), RedisOptions{Prefix: "t:"})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	strict := Limit{Rate: 1, Period: time.Hour, Burst: 1}
	if res, err := s.Allow(ctx, "p", "k", strict); err != nil || !res.Allowed {
		t.Fatalf("first request under 1/1h: %+v, %v", res, err)
	}
	raised := Limit{Rate: 100, Period: time.Minute, Burst: 100}
	res, err := s.Allow(ctx, "p", "k", raised)
	if err != nil || res.Allowed || res.RetryAfter > raised.Interval() || res.ResetAfter > time.Minute {
		t.Fatalf("under 100/1m after 1/1h: %+v, %v; want a drained bucket of 100/1m (retry within %v, full within a minute)", res, err, raised.Interval())
	}
	// Redis keeps that drained bucket: once its interval has passed, the key is admitted (had
	// it kept the old TAT, every request would find the bucket drained again, for an hour).
	time.Sleep(res.RetryAfter)
	if res, err := s.Allow(ctx, "p", "k", raised); err != nil || !res.Allowed {
		t.Fatalf("after the %v it said: %+v, %v; want admitted", res.RetryAfter, res, err)
	}
}

func TestRedisStoreAgreesWithDecideAtTheBounds(t *testing.T) {
	s := newTestStore(t, testenv.StartRedis(t), RedisOptions{Prefix: "t:"})
	year := int64(maxReplenish)
	for _, l := range []Limit{
		{Rate: 1, Period: time.Microsecond, Burst: year / int64(time.Microsecond)},
		{Rate: 1, Period: maxReplenish, Burst: 1},
		{Rate: 600000, Period: time.Second, Burst: year / int64(time.Second/600000)},
	} {
		if err := l.Validate(); err != nil {
			t.Fatalf("%+v: %v", l, err)
		}
		// Decide, from a full bucket, on the burst's last request and on the one after it.
		now := time.Now().UnixNano()
		last, tat := Decide(now+(l.Burst-1)*int64(l.Interval()), now, l)
		next, _ := Decide(tat, now, l)
		want := time.Duration(l.Burst) * l.Interval()
		if !last.Allowed || last.Remaining != 0 || last.ResetAfter != want || next.Allowed || next.RetryAfter != l.Interval() {
			t.Fatalf("%+v: Decide gave %+v then %+v; want the last of the burst, full after %v, then a refusal for one interval", l, last, next, want)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		res, granted, err := s.AllowN(ctx, "p", fmt.Sprint(l), l, l.Burst)
		cancel()
		if err != nil || granted != l.Burst || res.Remaining != 0 {
			t.Fatalf("%+v: Redis granted %d of the burst (%+v, %v)", l, granted, res, err)
		}
		if d := res.ResetAfter - want; d < -8 || d > 8 {
			t.Fatalf("%+v: Redis says full after %v, Decide %v", l, res.ResetAfter, want)
		}
	}
}
