package ratelimit

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// PolicyMemoryStores keeps one MemoryStore per policy, each bounded by the options' MaxKeys, so
// that a flood of keys under one policy (a header-keyed policy, where every value is a new
// bucket) evicts only that policy's buckets, never the client-IP buckets of another one (an
// authentication limit). A policy's store is made on its first decision. Safe for concurrent
// use; a decision reads a copy-on-write map without locking.
type PolicyMemoryStores struct {
	opts   MemoryOptions
	mu     sync.Mutex // serialises the making of stores
	stores atomic.Pointer[map[string]*MemoryStore]
}

// NewPolicyMemoryStores returns a set with no policy yet; opts configure each policy's store.
func NewPolicyMemoryStores(opts MemoryOptions) *PolicyMemoryStores {
	s := &PolicyMemoryStores{opts: opts}
	s.stores.Store(&map[string]*MemoryStore{})
	return s
}

// For returns the policy's store, making it the first time.
func (s *PolicyMemoryStores) For(policy string) *MemoryStore {
	if m, ok := (*s.stores.Load())[policy]; ok {
		return m
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old := *s.stores.Load()
	if m, ok := old[policy]; ok {
		return m
	}
	m := NewMemoryStore(s.opts)
	next := make(map[string]*MemoryStore, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	next[policy] = m
	s.stores.Store(&next)
	return m
}

// Retain drops the stores of the policies not in keep: a policy that a reload removed frees its
// memory, leaves the listing of Each, and starts afresh if it comes back. A caller that still
// holds a dropped store keeps deciding in it.
func (s *PolicyMemoryStores) Retain(keep map[string]bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := *s.stores.Load()
	next := make(map[string]*MemoryStore, len(keep))
	for k, v := range old {
		if keep[k] {
			next[k] = v
		}
	}
	s.stores.Store(&next)
}

// Allow decides one request in the policy's store.
func (s *PolicyMemoryStores) Allow(ctx context.Context, policy, key string, l Limit) (Result, error) {
	return s.For(policy).Allow(ctx, policy, key, l)
}

// Mirror sets key's bucket in the policy's store (MemoryStore.Mirror).
func (s *PolicyMemoryStores) Mirror(policy, key string, resetAfter time.Duration) {
	s.For(policy).Mirror(policy, key, resetAfter)
}

// Len is how many keys the stores of every policy track.
func (s *PolicyMemoryStores) Len() int {
	n := 0
	for _, m := range *s.stores.Load() {
		n += m.Len()
	}
	return n
}

// Each calls fn with every policy's name and the keys its store tracks.
func (s *PolicyMemoryStores) Each(fn func(policy string, keys int)) {
	for policy, m := range *s.stores.Load() {
		fn(policy, m.Len())
	}
}
