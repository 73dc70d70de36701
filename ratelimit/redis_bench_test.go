package ratelimit

import (
	"context"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/swarmsec/caddy-hardening/internal/testenv"
)

// redisBenchLimit admits everything the benchmark sends, so each decision writes its key.
var redisBenchLimit = Limit{Rate: 1_000_000, Period: time.Second, Burst: 1_000_000}

// benchKeys are 1000 client keys, built once so the benchmark measures the store.
var benchKeys = func() []string {
	keys := make([]string, 1000)
	for i := range keys {
		keys[i] = "10.0." + strconv.Itoa(i/256) + "." + strconv.Itoa(i%256)
	}
	return keys
}()

// benchGoroutines is how many callers the parallel benchmarks run, like a busy server.
const benchGoroutines = 64

func reportOpsPerSecond(b *testing.B) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}

// runParallel calls decide from benchGoroutines goroutines, each on the next key.
func runParallel(b *testing.B, decide func(ctx context.Context, key string) error) {
	b.ReportAllocs()
	b.SetParallelism(max(1, benchGoroutines/runtime.GOMAXPROCS(0)))
	var next atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			if err := decide(ctx, benchKeys[next.Add(1)%int64(len(benchKeys))]); err != nil {
				b.Error(err)
				return
			}
		}
	})
	reportOpsPerSecond(b)
}

// runSerialAndParallel benchmarks decide from one goroutine, then from 64.
func runSerialAndParallel(b *testing.B, decide func(context.Context, string) error) {
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		ctx := context.Background()
		for i := 0; b.Loop(); i++ {
			if err := decide(ctx, benchKeys[i%len(benchKeys)]); err != nil {
				b.Fatal(err)
			}
		}
		reportOpsPerSecond(b)
	})
	b.Run("parallel-64", func(b *testing.B) { runParallel(b, decide) })
}

func BenchmarkRedisStoreAllow(b *testing.B) {
	r := testenv.StartRedis(b)
	s := newTestStore(b, r, RedisOptions{Prefix: "bench:"})
	decide := func(ctx context.Context, key string) error {
		_, err := s.Allow(ctx, "bench", key, redisBenchLimit)
		return err
	}

	runSerialAndParallel(b, decide)
}

// BenchmarkRedisScriptUnbatched is the baseline without micro-batching: each caller runs
// the same script itself, one round trip per decision on one pooled connection.
func BenchmarkRedisScriptUnbatched(b *testing.B) {
	r := testenv.StartRedis(b)
	client := newTestClient(b, r)
	decide := func(ctx context.Context, key string) error {
		return gcraScript.Run(ctx, client, []string{"bench:{bench:" + key + "}"}, redisBenchLimit.Interval().Nanoseconds(), redisBenchLimit.Burst, 1).Err()
	}
	runSerialAndParallel(b, decide)
}

// BenchmarkFailoverStoreAllow is the RedisStore behind its breaker and 50ms timeout. It
// reports the share of decisions the fallback made: on a loaded machine some decisions can
// exceed the timeout, and then the figure is not Redis's alone.
func BenchmarkFailoverStoreAllow(b *testing.B) {
	r := testenv.StartRedis(b)
	b.Run("parallel-64", func(b *testing.B) {
		fallback := newRecordingStore(NewMemoryStore(MemoryOptions{}))
		s := NewFailoverStore(newTestStore(b, r, RedisOptions{Prefix: "bench:"}), fallback, FailoverOptions{})
		runParallel(b, func(ctx context.Context, key string) error {
			_, err := s.Allow(ctx, "bench", key, redisBenchLimit)
			return err
		})
		b.ReportMetric(float64(fallback.calls.Load())/float64(b.N), "fallback/op")
	})
}
