package ratelimit

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// sweepTimeout bounds the sweeper's look at the Cluster's slot map.
const sweepTimeout = 5 * time.Second

// shardQueue is the queue of one Redis master (one address) and the workers that send it.
// When the address stops being a master of the Cluster (a failover replaced it, a resharding
// emptied it) the queue is retired: no caller puts a decision on it any more, and its workers
// send what is still queued, then exit. So a long-lived store keeps workers only for the
// masters the Cluster has now, not for every address it ever had.
type shardQueue struct {
	requests chan *redisRequest
	// mu is held shared while a caller puts a decision on the queue, and exclusively to retire
	// it: once retire has it, nothing more lands on requests.
	mu      sync.RWMutex
	retired bool
	stop    chan struct{} // closed once retired
}

// put queues req; false (and no error) when the queue is retired: ask queueFor again.
func (q *shardQueue) put(ctx context.Context, req *redisRequest, closing <-chan struct{}) (bool, error) {
	q.mu.RLock()
	defer q.mu.RUnlock()
	if q.retired {
		return false, nil
	}
	select {
	case q.requests <- req:
		return true, nil
	case <-ctx.Done():
		return false, fmt.Errorf("%w: %w", ErrStoreUnavailable, ctx.Err())
	case <-closing:
		return false, errStoreClosed
	}
}

// retire stops the queue. It waits for callers putting a decision on it right now (a full
// queue: until the workers, still running, take theirs, or their context ends).
func (q *shardQueue) retire() {
	q.mu.Lock()
	q.retired = true
	q.mu.Unlock()
	close(q.stop)
}

// enqueue puts req on the queue of the master holding its key. A queue retired meanwhile is
// left for the one queueFor gives now (the key's master as the slot map says today).
func (s *RedisStore) enqueue(ctx context.Context, req *redisRequest) error {
	for {
		q, err := s.queueFor(ctx, req.key)
		if err != nil {
			return err
		}
		if queued, err := q.put(ctx, req, s.closing); queued || err != nil {
			return err
		}
	}
}

// queueFor returns the queue of the master holding redisKey, starting its workers the first
// time. Queues are few: one per master the Cluster has (see shardQueue).
func (s *RedisStore) queueFor(ctx context.Context, redisKey string) (*shardQueue, error) {
	shard := s.shardOfRedisKey(ctx, redisKey)
	s.queuesMu.RLock()
	q, ok := s.queues[shard]
	s.queuesMu.RUnlock()
	if ok {
		return q, nil
	}
	s.queuesMu.Lock()
	defer s.queuesMu.Unlock()
	select {
	case <-s.closing:
		return nil, errStoreClosed
	default:
	}
	if q, ok = s.queues[shard]; ok {
		return q, nil
	}
	q = &shardQueue{requests: make(chan *redisRequest, s.maxBatch*s.pipelines), stop: make(chan struct{})}
	s.queues[shard] = q
	s.workers.Add(s.pipelines)
	for range s.pipelines {
		go s.work(q)
	}
	if shard != "" {
		select { // a new master: the one it replaced, if any, is swept
		case s.newMaster <- struct{}{}:
		default: // a sweep is already due
		}
	}
	return q, nil
}

// work sends whatever is queued, up to maxBatch decisions, as one pipeline, and repeats. Once
// the queue is retired it sends what is left and exits: every decision put on the queue gets
// an answer from Redis (with a Cluster client the pipeline goes by each key's slot, so to the
// master that replaced a gone one) or an error.
func (s *RedisStore) work(q *shardQueue) {
	defer s.workers.Done()
	batch := make([]*redisRequest, 0, s.maxBatch)
	cmds := make([]*redis.Cmd, 0, s.maxBatch)
	for {
		var req *redisRequest
		select {
		case req = <-q.requests:
		case <-q.stop:
			select {
			case req = <-q.requests:
			default:
				return
			}
		case <-s.closing:
			return
		}
		batch = append(batch[:0], req)
	fill:
		for len(batch) < s.maxBatch {
			select {
			case req := <-q.requests:
				batch = append(batch, req)
			default:
				break fill
			}
		}
		cmds = s.execute(batch, cmds[:0])
		clear(batch) // drop the callers' requests until the next batch
		clear(cmds)
	}
}

// sweepAgain are the delays, after a new master appeared, at which the sweeper looks at the
// slot map again. A failover reaches the nodes by gossip: the node a sweep asks may still list
// the replaced master for a moment, and its queue would stay until the next failover.
var sweepAgain = []time.Duration{time.Second, 3 * time.Second, 10 * time.Second, 30 * time.Second}

// sweep runs while a Cluster store is open: each time a queue is made for a new master, it
// loads the slot map and retires the queues of addresses that are no longer masters, and does
// so again at each of sweepAgain.
func (s *RedisStore) sweep() {
	defer s.workers.Done()
	again := time.NewTimer(time.Hour)
	again.Stop()
	next := len(sweepAgain) // index in sweepAgain of the next look; none due
	for {
		select {
		case <-s.closing:
			again.Stop()
			return
		case <-s.newMaster:
			next = 0
		case <-again.C:
		}
		ctx, cancel := context.WithTimeout(s.life, sweepTimeout)
		_ = s.forEachMaster(ctx, nil) // a Cluster that does not answer is looked at again
		cancel()
		if next < len(sweepAgain) {
			delay := sweepAgain[next]
			if next > 0 {
				delay -= sweepAgain[next-1]
			}
			again.Reset(delay)
			next++
		}
	}
}

// forEachMaster loads the Cluster's slot map afresh and calls fn (if not nil) for each master,
// concurrently; then it retires the queues of addresses that the map has as masters no more.
// Every fresh look at the Cluster frees what a failover left.
func (s *RedisStore) forEachMaster(ctx context.Context, fn func(ctx context.Context, master *redis.Client)) error {
	var mu sync.Mutex
	masters := make(map[string]bool)
	err := s.cluster.ForEachMaster(ctx, func(ctx context.Context, master *redis.Client) error {
		mu.Lock()
		masters[master.Options().Addr] = true
		mu.Unlock()
		if fn != nil {
			fn(ctx, master)
		}
		return nil
	})
	if err != nil {
		return err
	}
	s.retireQueuesBut(masters)
	return nil
}

// retireQueuesBut retires the queue of every master address not in masters; the queue of ""
// (keys asked before the slot map was known) stays.
func (s *RedisStore) retireQueuesBut(masters map[string]bool) {
	s.queuesMu.Lock()
	var gone []*shardQueue
	for addr, q := range s.queues {
		if addr != "" && !masters[addr] {
			delete(s.queues, addr)
			gone = append(gone, q)
		}
	}
	s.queuesMu.Unlock()
	for _, q := range gone { // outside queuesMu: retire waits for callers putting on q
		q.retire()
	}
}
