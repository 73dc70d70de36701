package ratelimit

import (
	"context"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"
	"unsafe"
)

// benchLimit admits one request a millisecond with a burst of 100: a hot key is admitted
// and denied in turn, so both paths are measured.
var benchLimit = Limit{Rate: 1000, Period: time.Second, Burst: 100}

// numberedKey writes "client-<i>" into buf and returns it as a string that shares buf's
// bytes, so generating keys allocates nothing. That is safe only because a MemoryStore
// keeps no key bytes after Allow returns.
func numberedKey(buf []byte, i int) (string, []byte) {
	buf = strconv.AppendInt(append(buf[:0], "client-"...), int64(i), 10)
	return unsafe.String(unsafe.SliceData(buf), len(buf)), buf
}

func BenchmarkMemoryHotKey(b *testing.B) {
	s := NewMemoryStore(MemoryOptions{})
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		s.Allow(ctx, "api", "203.0.113.7", benchLimit)
	}
}

func BenchmarkMemoryParallel10kKeys(b *testing.B) {
	s := NewMemoryStore(MemoryOptions{})
	ctx := context.Background()
	keys := make([]string, 10_000)
	for i := range keys {
		keys[i] = "client-" + strconv.Itoa(i)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := rand.IntN(len(keys))
		for pb.Next() {
			s.Allow(ctx, "api", keys[i], benchLimit)
			if i++; i == len(keys) {
				i = 0
			}
		}
	})
}

// BenchmarkMemoryNewKeyFullStoreEvictLive inserts a new key per operation into a full store
// whose keys are all live: every insertion evicts the oldest TAT of a sample.
func BenchmarkMemoryNewKeyFullStoreEvictLive(b *testing.B) {
	const maxKeys = 100_000
	s := NewMemoryStore(MemoryOptions{MaxKeys: maxKeys})
	ctx := context.Background()
	long := Limit{Rate: 1, Period: time.Hour, Burst: 1}
	buf := make([]byte, 0, 32)
	var key string
	for i := range 2 * maxKeys {
		key, buf = numberedKey(buf, i)
		s.Allow(ctx, "api", key, long)
	}
	next := 2 * maxKeys
	b.ReportAllocs()
	for b.Loop() {
		key, buf = numberedKey(buf, next)
		next++
		s.Allow(ctx, "api", key, long)
	}
	if s.Len() > maxKeys {
		b.Fatalf("Len %d > MaxKeys %d", s.Len(), maxKeys)
	}
}

// BenchmarkMemoryNewKeyFullStoreDropExpired inserts a new key per operation into a full
// store whose keys expire as the clock moves on: insertions drop expired keys.
func BenchmarkMemoryNewKeyFullStoreDropExpired(b *testing.B) {
	const maxKeys = 100_000
	clock := newFakeClock()
	s := NewMemoryStore(MemoryOptions{MaxKeys: maxKeys, Now: clock.Now})
	ctx := context.Background()
	short := Limit{Rate: 1, Period: time.Second, Burst: 1}
	buf := make([]byte, 0, 32)
	var key string
	next := 0
	for ; next < 2*maxKeys; next++ {
		key, buf = numberedKey(buf, next)
		s.Allow(ctx, "api", key, short)
	}
	b.ReportAllocs()
	for b.Loop() {
		// 10 µs a request: each key expires after 100000 more, about when the store is
		// full again.
		clock.Advance(10 * time.Microsecond)
		key, buf = numberedKey(buf, next)
		next++
		s.Allow(ctx, "api", key, short)
	}
}

// BenchmarkMemoryBytesPerKey1M measures the heap a store holding 1,000,000 keys takes.
func BenchmarkMemoryBytesPerKey1M(b *testing.B) {
	const n = 1_000_000
	b.ReportAllocs()
	for b.Loop() {
		clock := newFakeClock()
		// Shards fill unevenly: room for a quarter more keys keeps all n tracked.
		b.ReportMetric(storeBytesPerKey(b, MemoryOptions{MaxKeys: n + n/4, Now: clock.Now}, n), "B/key")
	}
}
