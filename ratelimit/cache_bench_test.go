package ratelimit

import (
	"context"
	"testing"
	"time"
)

// BenchmarkDenialCacheHit is a refusal answered from the cache (the flood case in Redis mode).
func BenchmarkDenialCacheHit(b *testing.B) {
	cache := NewDenialCache(NewMemoryStore(MemoryOptions{}), CacheOptions{})
	l := Limit{Rate: 1, Period: time.Hour, Burst: 1}
	ctx := context.Background()
	cache.Allow(ctx, "api", "203.0.113.7", l)
	cache.Allow(ctx, "api", "203.0.113.7", l)
	b.ReportAllocs()
	for b.Loop() {
		if r, _ := cache.Allow(ctx, "api", "203.0.113.7", l); r.Allowed {
			b.Fatal("admitted")
		}
	}
}

// BenchmarkLeasingStoreHit is a request admitted from a lease (a large-burst key in Redis mode).
func BenchmarkLeasingStoreHit(b *testing.B) {
	s := NewLeasingStore(&memoryReserver{MemoryStore: NewMemoryStore(MemoryOptions{})}, CacheOptions{})
	l := Limit{Rate: 1_000_000_000, Period: time.Second, Burst: 100_000_000}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if r, _ := s.Allow(ctx, "api", "203.0.113.7", l); !r.Allowed {
			b.Fatal("refused")
		}
	}
}
