package ratelimit

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// maxProbeKeys bounds the search for a probe key on a master's slots. A master holding a
// tenth of the slots needs about ten tries; one holding a single slot about 16,384, and
// misses it within this bound with a probability of e^-16.
const maxProbeKeys = 1 << 18

// probeShard asks a shard's server to make a decision, as requests need it to: it runs the
// decision script on a probe key of its own, `<prefix>probe:{<n>}` (no partition key can take
// that name, and it lives a millisecond). A server that answers PING but cannot decide — a
// read-only replica (READONLY), a primary full at maxmemory with noeviction (OOM) — fails the
// probe as it fails decisions. The shard is the server, or with a Cluster the master of that
// address (errShardGone when the Cluster has no such master any more, as after a failover), or,
// for "", any master (the shard of keys asked before the slot map was known). With a Cluster
// the probe reads the slot map afresh, and so also stops the queues of masters that are gone
// (forEachMaster).
func (s *RedisStore) probeShard(ctx context.Context, shard string) error {
	if s.cluster == nil {
		return runProbe(ctx, s.client, s.probeKey(0))
	}
	var mu sync.Mutex
	found, decided := false, false
	var probeErr error
	err := s.forEachMaster(ctx, func(ctx context.Context, master *redis.Client) {
		if shard != "" && master.Options().Addr != shard {
			return
		}
		err := s.probeMaster(ctx, master)
		mu.Lock()
		defer mu.Unlock()
		found = true
		if err == nil {
			decided = true
		} else {
			probeErr = err
		}
	})
	switch {
	case err != nil:
		return fmt.Errorf("%w: redis: %w", ErrStoreUnavailable, err)
	case decided:
		return nil
	case found:
		return probeErr
	case shard != "":
		return errShardGone
	}
	return fmt.Errorf("%w: redis: the cluster has no master", ErrStoreUnavailable)
}

// probeMaster runs the probe on a Cluster master, against a probe key that its own slots hold
// (the slot map picks the master of a key; the client of one node cannot send it elsewhere).
func (s *RedisStore) probeMaster(ctx context.Context, master *redis.Client) error {
	addr := master.Options().Addr
	for n := range maxProbeKeys {
		key := s.probeKey(n)
		holder, err := s.cluster.MasterForKey(ctx, key)
		if err != nil {
			return fmt.Errorf("%w: redis: %w", ErrStoreUnavailable, err)
		}
		if holder.Options().Addr == addr {
			return runProbe(ctx, master, key)
		}
	}
	return fmt.Errorf("%w: redis: no probe key of %d lands on master %s", ErrStoreUnavailable, maxProbeKeys, addr)
}

// probeKey is the n-th probe key: `<prefix>probe:{<n>}`, the braces a Cluster hash tag. A
// decision's key is `<prefix>{...}`, so the two never meet.
func (s *RedisStore) probeKey(n int) string {
	return s.prefix + "probe:{" + strconv.Itoa(n) + "}"
}

// runProbe runs the decision script on c for key with an interval of 1 µs and a burst of 1:
// the script always writes (the key is full again a microsecond later), and the key expires
// after a millisecond. Any reply of the script's shape is a success.
func runProbe(ctx context.Context, c redis.Scripter, key string) error {
	_, _, err := parseReply(gcraScript.Run(ctx, c, []string{key}, int64(time.Microsecond), 1, 1), nil)
	return err
}
