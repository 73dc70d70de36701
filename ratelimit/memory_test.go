package ratelimit

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeClock is a clock tests move by hand; it is safe for concurrent use.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(t0)
	return c
}

func (c *fakeClock) Now() int64              { return c.ns.Load() }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// allow is Allow for tests: MemoryStore never fails, so an error fails the test.
func allow(t testing.TB, s *MemoryStore, policy, key string, l Limit) Result {
	t.Helper()
	res, err := s.Allow(context.Background(), policy, key, l)
	if err != nil {
		t.Fatalf("Allow(%q, %q): %v", policy, key, err)
	}
	return res
}

// hammer runs attempts decisions on (policy, key) from each of goroutines goroutines at
// once and returns how many were admitted. Every denial must carry a positive RetryAfter.
func hammer(t *testing.T, s *MemoryStore, policy, key string, l Limit, goroutines, attempts int) int64 {
	t.Helper()
	var admitted atomic.Int64
	var badDenial atomic.Value
	start := make(chan struct{})
	var wg sync.WaitGroup
	for range goroutines {
		wg.Go(func() {
			<-start
			for range attempts {
				res, err := s.Allow(context.Background(), policy, key, l)
				switch {
				case err != nil:
					badDenial.Store(err.Error())
				case res.Allowed:
					admitted.Add(1)
				case res.RetryAfter <= 0 || res.RetryAfter > l.Interval():
					badDenial.Store(fmt.Sprintf("%+v", res))
				}
			}
		})
	}
	close(start)
	wg.Wait()
	if bad := badDenial.Load(); bad != nil {
		t.Fatalf("a denial without a RetryAfter in (0, Interval]: %v", bad)
	}
	return admitted.Load()
}

func TestMemoryStoreOneKeyUnderConcurrencyAdmitsExactlyBurst(t *testing.T) {
	clock := newFakeClock()
	s := NewMemoryStore(MemoryOptions{Now: clock.Now})
	l := Limit{Rate: 10, Period: time.Second, Burst: 37}
	if got := hammer(t, s, "api", "203.0.113.7", l, 50, 100); got != l.Burst {
		t.Fatalf("50 goroutines at one instant: %d admitted, want exactly the burst %d", got, l.Burst)
	}
	if res := allow(t, s, "api", "203.0.113.7", l); res.Allowed || res.RetryAfter != l.Interval() {
		t.Fatalf("after the burst: %+v, want a denial for one interval", res)
	}
}

func TestMemoryStoreAdmitsBurstPlusElapsedIntervalsExactly(t *testing.T) {
	clock := newFakeClock()
	s := NewMemoryStore(MemoryOptions{Now: clock.Now})
	l := Limit{Rate: 3, Period: time.Second, Burst: 4} // an interval of 333333333 ns
	interval := int64(l.Interval())
	// Irregular steps, shorter than an interval, multiples of it, and 1 ns around them;
	// none longer than (Burst-1) intervals, which would overflow the bucket.
	steps := []time.Duration{time.Millisecond, 250 * time.Millisecond, 333333333, 1, 17 * time.Millisecond,
		700 * time.Millisecond, 999 * time.Millisecond, 333333332, 2, 666666666, 5 * time.Millisecond}
	admitted := hammer(t, s, "api", "client", l, 50, 20)
	for i, step := range steps {
		clock.Advance(step)
		admitted += hammer(t, s, "api", "client", l, 50, 20)
		elapsed := clock.Now() - t0
		if want := l.Burst + elapsed/interval; admitted != want {
			t.Fatalf("after step %d (%v elapsed): %d admitted, want Burst + elapsed/Interval = %d",
				i, time.Duration(elapsed), admitted, want)
		}
	}
	// A wait longer than Burst intervals refills the bucket and no more.
	clock.Advance(time.Duration(10 * l.Burst * interval))
	if got := hammer(t, s, "api", "client", l, 50, 20); got != l.Burst {
		t.Fatalf("after a long wait: %d admitted, want the burst %d", got, l.Burst)
	}
}

func TestMemoryStorePoliciesAreIndependent(t *testing.T) {
	clock := newFakeClock()
	s := NewMemoryStore(MemoryOptions{Now: clock.Now})
	l := Limit{Rate: 1, Period: time.Minute, Burst: 2}
	for _, policy := range []string{"login", "api", "login\x00"} {
		for i := range l.Burst {
			if !allow(t, s, policy, "alice", l).Allowed {
				t.Fatalf("policy %q: request %d denied although another policy spent its own burst", policy, i+1)
			}
		}
		if allow(t, s, policy, "alice", l).Allowed {
			t.Fatalf("policy %q: admitted beyond the burst", policy)
		}
	}
	// A policy and key that concatenate to the same bytes are still two buckets.
	if !allow(t, s, "logi", "nalice", l).Allowed {
		t.Fatal(`("logi", "nalice") shares the bucket of ("login", "alice")`)
	}
	s.Forget("login", "alice")
	if !allow(t, s, "login", "alice", l).Allowed {
		t.Fatal("Forget left the key's state")
	}
	if allow(t, s, "api", "alice", l).Allowed {
		t.Fatal(`Forget("login", "alice") reset ("api", "alice")`)
	}
}

func TestMemoryStoreShardsShareMaxKeysExactly(t *testing.T) {
	for _, maxKeys := range []int{1, 2, 77, 128, 129, 1000, 0} {
		s := NewMemoryStore(MemoryOptions{MaxKeys: maxKeys})
		want := maxKeys
		if want == 0 {
			want = defaultMaxKeys
		}
		total := 0
		for i := range s.shards {
			if s.shards[i].maxKeys < 1 {
				t.Fatalf("MaxKeys %d: shard %d of %d holds no key", maxKeys, i, len(s.shards))
			}
			total += s.shards[i].maxKeys
		}
		if total != want {
			t.Fatalf("MaxKeys %d: the shards hold %d keys in all, want %d", maxKeys, total, want)
		}
		if len(s.shards)&(len(s.shards)-1) != 0 || len(s.shards) > maxShards {
			t.Fatalf("MaxKeys %d: %d shards is not a power of two up to %d", maxKeys, len(s.shards), maxShards)
		}
	}
}

func TestMemoryStoreNeverTracksMoreThanMaxKeys(t *testing.T) {
	for _, maxKeys := range []int{1, 77, 1000} {
		t.Run(strconv.Itoa(maxKeys), func(t *testing.T) {
			clock := newFakeClock() // frozen: no key ever expires, every insertion evicts
			s := NewMemoryStore(MemoryOptions{MaxKeys: maxKeys, Now: clock.Now})
			l := Limit{Rate: 1, Period: time.Hour, Burst: 1}
			const goroutines, perGoroutine = 8, 2500
			// While the flood runs, a poller records the largest Len it sees.
			stop, polled := make(chan struct{}), make(chan int)
			go func() {
				largest := 0
				for {
					select {
					case <-stop:
						polled <- largest
						return
					default:
						largest = max(largest, s.Len())
						runtime.Gosched()
					}
				}
			}()
			var wg sync.WaitGroup
			for g := range goroutines {
				wg.Go(func() {
					for i := range perGoroutine {
						if !allow(t, s, "flood", fmt.Sprintf("%d-%d", g, i), l).Allowed {
							t.Errorf("a new key was denied")
							return
						}
					}
				})
			}
			wg.Wait()
			close(stop)
			if seen := <-polled; seen > maxKeys {
				t.Fatalf("Len reached %d during the flood, MaxKeys is %d", seen, maxKeys)
			}
			// 20000 distinct keys fill every shard: eviction replaces keys, it never
			// refuses to track a new one.
			if n := s.Len(); n != maxKeys {
				t.Fatalf("after the flood Len is %d, want MaxKeys %d", n, maxKeys)
			}
		})
	}
}

// keysInShard returns n distinct keys under policy that s places in shard.
func keysInShard(s *MemoryStore, policy string, shard, n int, prefix string) []string {
	var keys []string
	for i := 0; len(keys) < n; i++ {
		key := prefix + strconv.Itoa(i)
		if int(s.hash(policy, key)>>s.shardShift) == shard {
			keys = append(keys, key)
		}
	}
	return keys
}

// TestMemoryStoreEvictsExpiredKeysBeforeLiveOnes fills every shard with half live keys
// (limited for an hour) and half keys that then expire, and inserts as many new keys as
// have expired. Each shard holds evictionSample keys, so the sample sees the whole shard
// and the rule is tested without chance: the live keys must all keep their state.
func TestMemoryStoreEvictsExpiredKeysBeforeLiveOnes(t *testing.T) {
	clock := newFakeClock()
	s := NewMemoryStore(MemoryOptions{MaxKeys: maxShards * evictionSample, Now: clock.Now})
	if len(s.shards) != maxShards || s.shards[0].maxKeys != evictionSample {
		t.Fatalf("want %d shards of %d keys, got %d of %d", maxShards, evictionSample, len(s.shards), s.shards[0].maxKeys)
	}
	long := Limit{Rate: 1, Period: time.Hour, Burst: 1}
	short := Limit{Rate: 1, Period: time.Second, Burst: 1}
	var live, fresh []string
	for shard := range s.shards {
		keys := keysInShard(s, "p", shard, evictionSample+evictionSample/2, "k")
		live = append(live, keys[:evictionSample/2]...)
		for _, key := range keys[:evictionSample/2] {
			allow(t, s, "p", key, long)
		}
		for _, key := range keys[evictionSample/2 : evictionSample] {
			allow(t, s, "p", key, short)
		}
		fresh = append(fresh, keys[evictionSample:]...)
	}
	if n := s.Len(); n != maxShards*evictionSample {
		t.Fatalf("the store holds %d keys, want it full with %d", n, maxShards*evictionSample)
	}
	clock.Advance(2 * time.Second) // the short keys' buckets are full again
	for _, key := range fresh {
		allow(t, s, "p", key, long)
	}
	for _, key := range live {
		if res := allow(t, s, "p", key, long); res.Allowed {
			t.Fatalf("live key %q lost its state to a new key while expired keys were there to drop", key)
		}
	}
	for _, key := range fresh {
		if res := allow(t, s, "p", key, long); res.Allowed {
			t.Fatalf("new key %q was not tracked", key)
		}
	}
}

// TestMemoryStoreEvictsTheOldestTATAmongLiveKeys: when nothing has expired, the key evicted
// is the one closest to a full bucket, and a client that is being limited keeps its state.
func TestMemoryStoreEvictsTheOldestTATAmongLiveKeys(t *testing.T) {
	clock := newFakeClock()
	s := NewMemoryStore(MemoryOptions{MaxKeys: maxShards * evictionSample, Now: clock.Now})
	keys := keysInShard(s, "p", 5, evictionSample+1, "k")
	// Key i is limited for i+1 hours: key 0 has the oldest TAT.
	for i, key := range keys[:evictionSample] {
		allow(t, s, "p", key, Limit{Rate: 1, Period: time.Duration(i+1) * time.Hour, Burst: 1})
	}
	allow(t, s, "p", keys[evictionSample], Limit{Rate: 1, Period: time.Hour, Burst: 1})
	l := Limit{Rate: 1, Period: time.Hour, Burst: 1}
	if !allow(t, s, "p", keys[0], l).Allowed {
		t.Fatal("the key with the oldest TAT was not the one evicted")
	}
	for _, key := range keys[1:evictionSample] {
		if allow(t, s, "p", key, l).Allowed {
			t.Fatalf("key %q, limited for longer, was evicted instead of the oldest TAT", key)
		}
	}
}

// TestMemoryStoreDecidesLikeDecide runs random traffic over a few keys with a clock that
// jumps, and compares every decision with Decide on a map that forgets nothing: dropping
// expired keys must be invisible.
func TestMemoryStoreDecidesLikeDecide(t *testing.T) {
	clock := newFakeClock()
	s := NewMemoryStore(MemoryOptions{MaxKeys: 1 << 16, Now: clock.Now})
	rng := rand.New(rand.NewPCG(1, 2))
	limits := []Limit{
		{Rate: 10, Period: time.Second, Burst: 3},
		{Rate: 2, Period: time.Second, Burst: 1},
		{Rate: 100, Period: time.Minute, Burst: 20},
	}
	model := map[string]int64{}
	for i := range 200_000 {
		if rng.IntN(4) == 0 {
			clock.Advance(time.Duration(rng.Int64N(int64(300 * time.Millisecond))))
		}
		policy := strconv.Itoa(rng.IntN(3))
		key := strconv.Itoa(rng.IntN(3000))
		l := limits[rng.IntN(len(limits))]
		want, tat := Decide(model[policy+"/"+key], clock.Now(), l)
		model[policy+"/"+key] = tat
		if got := allow(t, s, policy, key, l); got != want {
			t.Fatalf("decision %d (%s/%s at %d): store %+v, Decide %+v", i, policy, key, clock.Now(), got, want)
		}
	}
}

// heapAlloc returns the bytes of live heap objects after a full collection.
func heapAlloc() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

func TestMemoryStoreLongKeysCostNoMoreThanShortOnes(t *testing.T) {
	clock := newFakeClock()
	s := NewMemoryStore(MemoryOptions{Now: clock.Now})
	l := Limit{Rate: 1, Period: time.Hour, Burst: 1}
	const n = 100
	buf := []byte(strings.Repeat("x", 1<<20))
	before := heapAlloc()
	for i := range n {
		copy(buf[len(buf)-8:], fmt.Sprintf("%08d", i)) // distinct only in the last bytes
		if !allow(t, s, "p", string(buf), l).Allowed {
			t.Fatalf("1 MiB key %d was denied on its first request", i)
		}
	}
	grown := int64(heapAlloc()) - int64(before)
	if s.Len() != n {
		t.Fatalf("%d keys of 1 MiB that differ in their last bytes are %d keys", n, s.Len())
	}
	// Keeping a single key's bytes would cost 1 MiB; the TATs cost a few kilobytes.
	if grown > 64<<10 {
		t.Fatalf("%d keys of 1 MiB grew the heap by %d bytes: the store keeps key bytes", n, grown)
	}
	for i := range n {
		copy(buf[len(buf)-8:], fmt.Sprintf("%08d", i))
		if allow(t, s, "p", string(buf), l).Allowed {
			t.Fatalf("1 MiB key %d lost its state", i)
		}
	}
	runtime.KeepAlive(buf)
}

// storeBytesPerKey inserts n distinct keys into s and returns the heap growth per key.
func storeBytesPerKey(t testing.TB, s *MemoryStore, n int) float64 {
	l := Limit{Rate: 1, Period: time.Hour, Burst: 1}
	before := heapAlloc()
	key := make([]byte, 0, 32)
	for i := range n {
		key = strconv.AppendInt(append(key[:0], "client-"...), int64(i), 10)
		allow(t, s, "p", string(key), l)
	}
	after := heapAlloc()
	if s.Len() != n {
		t.Fatalf("%d keys inserted, Len is %d", n, s.Len())
	}
	return float64(int64(after)-int64(before)) / float64(n)
}

func TestMemoryStoreCostsAtMost100BytesPerKey(t *testing.T) {
	const n = defaultMaxKeys
	clock := newFakeClock()
	// Shards fill unevenly: room for a quarter more keys keeps all n tracked.
	s := NewMemoryStore(MemoryOptions{MaxKeys: n + n/4, Now: clock.Now})
	perKey := storeBytesPerKey(t, s, n)
	t.Logf("%.1f bytes per key at %d keys", perKey, n)
	if perKey > 100 {
		t.Fatalf("%.1f bytes per key at %d keys, want at most 100", perKey, n)
	}
	runtime.KeepAlive(s)
}

// TestMemoryStoreShrinksWhenTrafficMovesOn: after the keys of a burst of traffic expire,
// new traffic drops them as it goes and the shards' maps are rebuilt smaller, without a
// sweep.
func TestMemoryStoreShrinksWhenTrafficMovesOn(t *testing.T) {
	clock := newFakeClock()
	s := NewMemoryStore(MemoryOptions{Now: clock.Now})
	l := Limit{Rate: 1, Period: time.Second, Burst: 1}
	const n = 64_000
	base := heapAlloc()
	for i := range n {
		allow(t, s, "old", strconv.Itoa(i), l)
	}
	full := int64(heapAlloc()) - int64(base)
	// New traffic: one new key a second, each expired by the time the next arrives.
	for i := range n {
		clock.Advance(time.Second)
		allow(t, s, "new", strconv.Itoa(i), l)
	}
	if got := s.Len(); got > n/4 {
		t.Fatalf("%d keys tracked after the old ones all expired, want at most %d", got, n/4)
	}
	shrunk := int64(heapAlloc()) - int64(base)
	t.Logf("store heap: %d bytes with %d keys, %d bytes after traffic moved on (%d keys)", full, n, shrunk, s.Len())
	if shrunk > full/2 {
		t.Fatalf("the store still takes %d bytes of the %d it took with %d keys", shrunk, full, n)
	}
	runtime.KeepAlive(s)
}

func TestMemoryStoreDefaultClockIsUnixNanoseconds(t *testing.T) {
	s := NewMemoryStore(MemoryOptions{})
	got, wall := s.now(), time.Now().UnixNano()
	if d := time.Duration(wall - got); d < -time.Second || d > time.Second {
		t.Fatalf("the default clock reads %d, time.Now %d", got, wall)
	}
	if later := s.now(); later < got {
		t.Fatalf("the default clock went back from %d to %d", got, later)
	}
	l := Limit{Rate: 1, Period: time.Hour, Burst: 1}
	if !allow(t, s, "p", "k", l).Allowed || allow(t, s, "p", "k", l).Allowed {
		t.Fatal("with the default clock, a burst of one is not one request")
	}
}

// TestMemoryStoreDecisionsDoNotAllocate: neither a decision on a known key nor the
// insertion of a new key into a full store (eviction included) allocates, so a flood of
// requests costs the garbage collector nothing.
func TestMemoryStoreDecisionsDoNotAllocate(t *testing.T) {
	if testing.Short() {
		t.Skip("fills a store")
	}
	const maxKeys = 10_000
	s := NewMemoryStore(MemoryOptions{MaxKeys: maxKeys})
	ctx := context.Background()
	l := Limit{Rate: 1, Period: time.Hour, Burst: 1}
	buf := make([]byte, 0, 32)
	var key string
	next := 0
	for ; next < 2*maxKeys; next++ {
		key, buf = numberedKey(buf, next)
		s.Allow(ctx, "api", key, l)
	}
	if avg := testing.AllocsPerRun(1000, func() { s.Allow(ctx, "api", "client-1", l) }); avg != 0 {
		t.Errorf("a decision on a known key allocates %v times", avg)
	}
	// Count every allocation over many insertions: the map occasionally rehashes a table
	// to clear the tombstones deletions leave, which is a few allocations per thousands
	// of insertions.
	const insertions = 20_000
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range insertions {
		key, buf = numberedKey(buf, next)
		next++
		s.Allow(ctx, "api", key, l)
	}
	runtime.ReadMemStats(&after)
	if allocs := after.Mallocs - before.Mallocs; allocs > insertions/100 {
		t.Errorf("%d new keys in a full store allocated %d times", insertions, allocs)
	} else {
		t.Logf("%d new keys in a full store allocated %d times", insertions, allocs)
	}
}

// TestMemoryStoreFloodDoesNotGrowMemory: a sustained flood of new keys into a full store
// replaces its keys over and over. Go maps keep deleted slots as tombstones and grow a
// table once to clear them, so a churned store takes up to about twice what it took when
// first full; it must then stay there, under 100 bytes per key.
func TestMemoryStoreFloodDoesNotGrowMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("inserts 400000 keys")
	}
	const maxKeys, turnovers = 10_000, 20
	clock := newFakeClock()
	s := NewMemoryStore(MemoryOptions{MaxKeys: maxKeys, Now: clock.Now})
	ctx := context.Background()
	l := Limit{Rate: 1, Period: time.Hour, Burst: 1}
	buf := make([]byte, 0, 32)
	var key string
	next := 0
	flood := func(keys int) {
		for end := next + keys; next < end; next++ {
			key, buf = numberedKey(buf, next)
			s.Allow(ctx, "api", key, l)
		}
	}
	base := heapAlloc()
	flood(2 * maxKeys)
	full := int64(heapAlloc()) - int64(base)
	flood(turnovers * maxKeys)
	flooded := int64(heapAlloc()) - int64(base)
	flood(turnovers * maxKeys)
	flooded2 := int64(heapAlloc()) - int64(base)
	t.Logf("store heap: %d bytes when full, %d after %d turnovers, %d after %d",
		full, flooded, turnovers, flooded2, 2*turnovers)
	if perKey := float64(flooded2) / maxKeys; perKey > 100 {
		t.Fatalf("a flood grew the store to %.1f bytes per key", perKey)
	}
	if flooded2 > flooded+flooded/10 {
		t.Fatalf("the store keeps growing under a flood: %d bytes, then %d", flooded, flooded2)
	}
	if s.Len() != maxKeys {
		t.Fatalf("Len %d after the flood, want %d", s.Len(), maxKeys)
	}
}
