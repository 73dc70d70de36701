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
	for _, maxKeys := range []int{1, 2, 77, 128, 129, 1000, 2048, 3000, 131_072, 1_000_000, 0} {
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
		if len(s.shards) > 1 && s.shards[0].maxKeys < minShardKeys {
			t.Fatalf("MaxKeys %d: %d shards of %d keys, want shares of at least %d", maxKeys, len(s.shards), s.shards[0].maxKeys, minShardKeys)
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

// TestMemoryStoreEvictsExpiredKeysBeforeLiveOnes fills a store of ways keys (one shard whose
// table of two sets is the pair every insertion examines) with half live keys (limited for an
// hour) and half keys that then expire, and inserts as many new keys as have expired: the
// live keys must all keep their state.
func TestMemoryStoreEvictsExpiredKeysBeforeLiveOnes(t *testing.T) {
	clock := newFakeClock()
	s := NewMemoryStore(MemoryOptions{MaxKeys: ways, Now: clock.Now})
	if len(s.shards) != 1 {
		t.Fatalf("want one shard, got %d", len(s.shards))
	}
	long := Limit{Rate: 1, Period: time.Hour, Burst: 1}
	short := Limit{Rate: 1, Period: time.Second, Burst: 1}
	for round := range 50 { // new keys land in other sets each round
		var live, fresh []string
		for i := range ways / 2 {
			key := fmt.Sprintf("live-%d-%d", round, i)
			live = append(live, key)
			allow(t, s, "p", key, long)
			allow(t, s, "p", fmt.Sprintf("short-%d-%d", round, i), short)
			fresh = append(fresh, fmt.Sprintf("fresh-%d-%d", round, i))
		}
		if n, sets := s.Len(), s.shards[0].sets; n != ways || sets > 2 {
			t.Fatalf("round %d: the store holds %d keys in %d sets, want it full with %d in at most 2", round, n, sets, ways)
		}
		clock.Advance(2 * time.Second) // the short keys' buckets are full again
		for _, key := range fresh {
			allow(t, s, "p", key, long)
		}
		for _, key := range live {
			if res := allow(t, s, "p", key, long); res.Allowed {
				t.Fatalf("round %d: live key %q lost its state to a new key while expired keys were there to drop", round, key)
			}
		}
		for _, key := range fresh {
			if res := allow(t, s, "p", key, long); res.Allowed {
				t.Fatalf("round %d: new key %q was not tracked", round, key)
			}
		}
		clock.Advance(2 * time.Hour) // every key expires before the next round
	}
}

// TestMemoryStoreEvictsTheOldestTATAmongLiveKeys: when nothing has expired, the key evicted
// is the one closest to a full bucket, and a client that is being limited keeps its state.
func TestMemoryStoreEvictsTheOldestTATAmongLiveKeys(t *testing.T) {
	clock := newFakeClock()
	s := NewMemoryStore(MemoryOptions{MaxKeys: ways, Now: clock.Now})
	l := Limit{Rate: 1, Period: time.Hour, Burst: 1}
	for round := range 50 {
		keys := make([]string, ways+1)
		for i := range keys {
			keys[i] = fmt.Sprintf("k-%d-%d", round, i)
		}
		// Key i is limited for i+1 hours: key 0 has the oldest TAT.
		for i, key := range keys[:ways] {
			allow(t, s, "p", key, Limit{Rate: 1, Period: time.Duration(i+1) * time.Hour, Burst: 1})
		}
		allow(t, s, "p", keys[ways], l)
		if !allow(t, s, "p", keys[0], l).Allowed {
			t.Fatalf("round %d: the key with the oldest TAT was not the one evicted", round)
		}
		for _, key := range keys[1:ways] {
			if allow(t, s, "p", key, l).Allowed {
				t.Fatalf("round %d: key %q, limited for longer, was evicted instead of the oldest TAT", round, key)
			}
		}
		clock.Advance(time.Duration(ways+2) * time.Hour) // every key expires before the next round
	}
}

// TestMemoryStoreHoldsEveryKeyBelowMaxKeys: a store evicts nothing live until it holds about
// MaxKeys keys, whatever its size, however keys fall into its shards and sets: 90 % of
// MaxKeys distinct keys, all limited, all keep their state.
func TestMemoryStoreHoldsEveryKeyBelowMaxKeys(t *testing.T) {
	for _, maxKeys := range []int{1, 10, 100, 1000, 10_000, 300_000} {
		t.Run(strconv.Itoa(maxKeys), func(t *testing.T) {
			s := NewMemoryStore(MemoryOptions{MaxKeys: maxKeys, Now: newFakeClock().Now})
			l := Limit{Rate: 1, Period: time.Hour, Burst: 1}
			n := max(1, maxKeys*9/10)
			for i := range n {
				allow(t, s, "p", strconv.Itoa(i), l)
			}
			for i := range n {
				if allow(t, s, "p", strconv.Itoa(i), l).Allowed {
					t.Fatalf("key %d of %d lost its state in a store of MaxKeys %d (Len %d)", i, n, maxKeys, s.Len())
				}
			}
		})
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

// TestMemoryStoreKeepsTheDrainedBucketOfARaisedLimit: a key drained under 1/1h, then decided
// under 100/1m, is refused for one interval of 100/1m and admitted after it: the store keeps
// the drained bucket Decide made of the old TAT (had it kept the old TAT, every request would
// find the bucket drained again, for an hour).
func TestMemoryStoreKeepsTheDrainedBucketOfARaisedLimit(t *testing.T) {
	clock := newFakeClock()
	s := NewMemoryStore(MemoryOptions{Now: clock.Now})
	allow(t, s, "p", "k", Limit{Rate: 1, Period: time.Hour, Burst: 1})
	raised := Limit{Rate: 100, Period: time.Minute, Burst: 100}
	if res := allow(t, s, "p", "k", raised); res.Allowed || res.RetryAfter != raised.Interval() {
		t.Fatalf("under 100/1m after 1/1h: %+v; want refused for one interval", res)
	}
	clock.Advance(raised.Interval())
	if res := allow(t, s, "p", "k", raised); !res.Allowed {
		t.Fatalf("one interval later: %+v; want admitted", res)
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

// storeBytesPerKey makes a store with opts, inserts n distinct keys and returns the heap
// growth per key, the store's own allocation included.
func storeBytesPerKey(t testing.TB, opts MemoryOptions, n int) float64 {
	l := Limit{Rate: 1, Period: time.Hour, Burst: 1}
	key := make([]byte, 0, 32)
	before := heapAlloc()
	s := NewMemoryStore(opts)
	for i := range n {
		key = strconv.AppendInt(append(key[:0], "client-"...), int64(i), 10)
		allow(t, s, "p", string(key), l)
	}
	after := heapAlloc()
	if s.Len() != n {
		t.Fatalf("%d keys inserted, Len is %d", n, s.Len())
	}
	runtime.KeepAlive(s)
	return float64(int64(after)-int64(before)) / float64(n)
}

func TestMemoryStoreCostsAtMost100BytesPerKey(t *testing.T) {
	const n = defaultMaxKeys
	clock := newFakeClock()
	// Shards fill unevenly: room for a quarter more keys keeps all n tracked.
	perKey := storeBytesPerKey(t, MemoryOptions{MaxKeys: n + n/4, Now: clock.Now}, n)
	t.Logf("%.1f bytes per key at %d keys", perKey, n)
	if perKey > 100 {
		t.Fatalf("%.1f bytes per key at %d keys, want at most 100", perKey, n)
	}
}

// TestMemoryStoreShrinksWhenTrafficMovesOn: after the keys of a burst of traffic expire,
// new traffic drops them as it goes and the shards' tables are rebuilt smaller, without a
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
	// Count every allocation over many insertions: in a full store an insertion evicts in
	// place. The only allocation left is a resize, when a key finds both its sets full while
	// its table can still grow, which is rare; and the counter is the process's, so the race
	// detector's and the runtime's own allocations show too.
	const insertions = 20_000
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range insertions {
		key, buf = numberedKey(buf, next)
		next++
		s.Allow(ctx, "api", key, l)
	}
	runtime.ReadMemStats(&after)
	if allocs := after.Mallocs - before.Mallocs; allocs > 10 {
		t.Errorf("%d new keys in a full store allocated %d times", insertions, allocs)
	} else {
		t.Logf("%d new keys in a full store allocated %d times", insertions, allocs)
	}
}

// TestMemoryStoreFloodDoesNotGrowMemory: a sustained flood of new keys into a full store
// replaces its keys over and over; the store takes what it took when first full, under 100
// bytes per key, and no more.
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
	runtime.KeepAlive(s)
	s = nil
	base := heapAlloc() // before the store: its tables count
	s = NewMemoryStore(MemoryOptions{MaxKeys: maxKeys, Now: clock.Now})
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
	if flooded2 > full+full/10 || flooded > full+full/10 {
		t.Fatalf("the store keeps growing under a flood: %d bytes, then %d", flooded, flooded2)
	}
	if s.Len() != maxKeys {
		t.Fatalf("Len %d after the flood, want %d", s.Len(), maxKeys)
	}
}

// checkTables asserts the invariants of every shard's table: count is the number of slots in
// use and at most maxKeys, no hash is held twice, and every key sits in one of its two sets.
func checkTables(t *testing.T, s *MemoryStore) {
	t.Helper()
	for si := range s.shards {
		sh := &s.shards[si]
		if uint64(len(sh.slots)) != sh.sets*ways || sh.sets > sh.maxSets {
			t.Fatalf("shard %d: %d slots for %d sets (max %d)", si, len(sh.slots), sh.sets, sh.maxSets)
		}
		used, seen := 0, map[uint64]bool{}
		for i, e := range sh.slots {
			if e.h == 0 {
				continue
			}
			used++
			if seen[e.h] {
				t.Fatalf("shard %d: hash %x held twice", si, e.h)
			}
			seen[e.h] = true
			first, set := sh.setIndex(e.h), uint64(i/ways)
			if set != first && set != sh.next(first) {
				t.Fatalf("shard %d: hash %x in set %d, its sets are %d and %d", si, e.h, set, first, sh.next(first))
			}
			if int(e.h>>s.shardShift) != si {
				t.Fatalf("hash %x in shard %d", e.h, si)
			}
		}
		if used != sh.count || sh.count > sh.maxKeys {
			t.Fatalf("shard %d: count %d, %d slots in use, maxKeys %d", si, sh.count, used, sh.maxKeys)
		}
	}
}

// TestMemoryStoreTablesStayConsistent drives small stores with random decisions, forgets and
// clock jumps (tables growing, shrinking, evicting) and checks the tables after every step,
// and that a key admitted a moment ago is still limited unless the store is full.
func TestMemoryStoreTablesStayConsistent(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, maxKeys := range []int{1, 3, 8, 50, 2000, 5000} {
		clock := newFakeClock()
		s := NewMemoryStore(MemoryOptions{MaxKeys: maxKeys, Now: clock.Now})
		l := Limit{Rate: 1, Period: time.Minute, Burst: 1}
		pool := 3 * maxKeys
		for step := range 20_000 {
			key := strconv.Itoa(rng.IntN(pool))
			switch r := rng.IntN(100); {
			case r < 2:
				s.Forget("p", key)
			case r < 5:
				clock.Advance(time.Duration(rng.Int64N(int64(2 * time.Minute))))
			default:
				if allow(t, s, "p", key, l).Allowed && s.Len() < maxKeys*9/10 && allow(t, s, "p", key, l).Allowed {
					t.Fatalf("MaxKeys %d, step %d: key %s admitted twice within its interval with the store at %d keys", maxKeys, step, key, s.Len())
				}
			}
			if step%97 == 0 {
				checkTables(t, s)
			}
		}
		checkTables(t, s)
	}
}

// TestPolicyMemoryStoresIsolatePolicies: a flood of keys under one policy fills only that
// policy's store; another policy's limited key keeps its bucket.
func TestPolicyMemoryStoresIsolatePolicies(t *testing.T) {
	s := NewPolicyMemoryStores(MemoryOptions{MaxKeys: 100})
	ctx := context.Background()
	login := Limit{Rate: 1, Period: time.Hour, Burst: 1}
	if r, _ := s.Allow(ctx, "login", "192.0.2.1", login); !r.Allowed {
		t.Fatal("first login refused")
	}
	for i := range 10000 {
		s.Allow(ctx, "bykey", fmt.Sprintf("k%d", i), Limit{Rate: 1, Period: time.Hour, Burst: 1})
	}
	if r, _ := s.Allow(ctx, "login", "192.0.2.1", login); r.Allowed {
		t.Fatal("the flood under another policy evicted the login bucket")
	}
	if n := s.For("bykey").Len(); n > 100 {
		t.Fatalf("the flooded policy tracks %d keys, over max_keys 100", n)
	}
	if n, want := s.Len(), s.For("bykey").Len()+1; n != want {
		t.Fatalf("Len %d, want %d (the sum of the policies' stores)", n, want)
	}
}
