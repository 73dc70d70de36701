package ratelimit

import (
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

//go:embed redis_script.lua
var gcraScriptSource string

// gcraScript is the GCRA step in Lua; its SHA1 is what EVALSHA sends.
var gcraScript = redis.NewScript(gcraScriptSource)

// hashedKeyPrefix starts the name of every partition key Redis keeps as its SHA-256 (see
// StoredKey); no client address starts so, so a kept key can never equal a hashed one.
const hashedKeyPrefix = "sha256:"

// Defaults of RedisOptions.
const (
	defaultMaxBatch  = 128
	defaultPipelines = 4
)

// RedisOptions configures a RedisStore. The zero value is usable.
type RedisOptions struct {
	// Prefix is put in front of every key, e.g. "hardening:", so the limiter's keys are
	// recognisable and apart from other data. It should hold no '{': a Cluster hashes the
	// first {...} of a key, and a prefix such as "{rl}" would put every key on one slot.
	// Default: no prefix.
	Prefix string
	// MaxBatch is the most decisions sent to one Redis node in one pipeline. Default: 128.
	MaxBatch int
	// Pipelines is how many pipelines may be in flight to one Redis node at once. While they
	// are all waiting for replies, new decisions queue (up to MaxBatch*Pipelines per node;
	// further callers wait, as long as their context allows) and leave together in the next
	// pipeline. Default: 4.
	Pipelines int
}

// RedisStore decides with GCRA in Redis, so every instance that shares the Redis shares
// each key's limit exactly. It works with a standalone Client, a FailoverClient (Sentinel)
// and a ClusterClient alike.
//
// Each key is one string, `<Prefix>{<policy>:<key>}`, holding the key's theoretical arrival
// time; the braces are a Cluster hash tag, so a key's decision is one script on one slot. A
// partition key that names a client address is kept as it is; any other is replaced by
// "sha256:" and its hex SHA-256 digest (StoredKey): no credential in a key name, and a client
// that sends a 1 MB header value costs Redis 71 bytes.
// The key expires when its bucket is full again, so idle keys vanish by themselves. The
// failover probe (see FailoverStore.Run) decides on keys of its own, `<Prefix>probe:{<n>}`,
// which live a millisecond.
//
// One Lua script makes a decision atomic. It reads the time with Redis TIME rather than
// taking it from the caller: instances whose clocks disagree would otherwise grant each
// other's clients extra requests or deny them. It counts in microseconds, which Lua's
// doubles hold exactly (nanoseconds since the epoch they do not). The script runs with
// EVALSHA; when a server answers NOSCRIPT (restarted, failed over, SCRIPT FLUSH) those
// decisions are sent again with EVAL, which also caches the script again.
//
// Decisions are micro-batched: concurrent callers enqueue their decision, and a few
// goroutines per Redis node take whatever is queued (up to MaxBatch) and send it as one
// pipeline. One round trip per request per pooled connection would cap throughput at
// PoolSize/RTT; with pipelines the cost of a round trip is shared by every decision in it.
// Nothing waits for a batch to fill: an idle store sends a lone decision at once, and
// batches grow only while earlier pipelines are in flight. The go-redis AutoPipeliner is not
// used: it is experimental, and its blocking face waits for the batch whatever the caller's
// context says. With a ClusterClient each master gets its own queue, so a dead or slow
// master delays only the keys it holds; the queue of an address that is no longer a master
// (a failover replaced it) is stopped (see shardQueue).
//
// A caller whose context ends stops waiting at once (the decision may still be made in
// Redis). Every failure is wrapped so that errors.Is(err, ErrStoreUnavailable) holds.
type RedisStore struct {
	client    redis.UniversalClient
	cluster   *redis.ClusterClient // nil unless client is a Cluster client
	prefix    string
	maxBatch  int
	pipelines int

	// slotMapReady is set once the Cluster client has its slot map; slotMapLoading while
	// one goroutine loads it.
	slotMapReady, slotMapLoading atomic.Bool

	queuesMu sync.RWMutex
	queues   map[string]*shardQueue // by master address ("" without Cluster)
	// newMaster wakes the sweeper (Cluster only): a queue was made for an address not seen
	// before, so another may have stopped being a master.
	newMaster chan struct{}

	life      context.Context // ends with Close
	stopLife  context.CancelFunc
	closing   <-chan struct{} // life.Done()
	closeOnce sync.Once
	workers   sync.WaitGroup // the queues' workers and the sweeper
}

// redisRequest is one caller's decision on its way through a batch.
type redisRequest struct {
	ctx        context.Context
	key        string
	intervalNS int64
	burst      int64
	want       int64           // requests to grant at most (1 for one decision)
	done       chan redisReply // buffered: a worker never blocks on a caller that left
}

type redisReply struct {
	result  Result
	granted int64
	err     error
}

// requestPool recycles requests whose caller received the reply: only then is it certain
// that no worker still holds the request.
var requestPool = sync.Pool{New: func() any { return &redisRequest{done: make(chan redisReply, 1)} }}

// NewRedisStore returns a store deciding in Redis through client, which the caller keeps
// owning (Close does not close it).
func NewRedisStore(client redis.UniversalClient, opts RedisOptions) *RedisStore {
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = defaultMaxBatch
	}
	if opts.Pipelines <= 0 {
		opts.Pipelines = defaultPipelines
	}
	s := &RedisStore{
		client:    client,
		prefix:    opts.Prefix,
		maxBatch:  opts.MaxBatch,
		pipelines: opts.Pipelines,
		queues:    make(map[string]*shardQueue),
		newMaster: make(chan struct{}, 1),
	}
	s.life, s.stopLife = context.WithCancel(context.Background())
	s.closing = s.life.Done()
	s.cluster, _ = client.(*redis.ClusterClient)
	if s.cluster != nil {
		s.workers.Add(1)
		go s.sweep()
	}
	return s
}

// Close stops the store's goroutines; decisions still waiting fail with ErrStoreUnavailable.
// It does not close the Redis client.
func (s *RedisStore) Close() error {
	s.closeOnce.Do(func() {
		s.queuesMu.Lock() // no queue starts workers after this
		s.stopLife()
		s.queuesMu.Unlock()
	})
	s.workers.Wait()
	return nil
}

var errStoreClosed = fmt.Errorf("%w: store closed", ErrStoreUnavailable)

// Allow decides one request for (policy, key) under l. l must be valid (see Limit.Validate):
// an invalid limit returns Validate's error, which does not wrap ErrStoreUnavailable.
func (s *RedisStore) Allow(ctx context.Context, policy, key string, l Limit) (Result, error) {
	result, _, err := s.AllowN(ctx, policy, key, l, 1)
	return result, err
}

// AllowN admits up to n requests of (policy, key) in one decision, as many as fit now, and
// returns how many it granted (0 when denied); Result describes the bucket after the grant.
// Granted requests count in Redis at once, whenever the caller uses them.
func (s *RedisStore) AllowN(ctx context.Context, policy, key string, l Limit, n int64) (Result, int64, error) {
	if err := l.Validate(); err != nil {
		return Result{}, 0, err
	}
	if n < 1 {
		n = 1
	}
	req := requestPool.Get().(*redisRequest)
	req.ctx, req.key = ctx, s.redisKey(policy, key)
	req.intervalNS, req.burst, req.want = int64(l.Interval()), l.Burst, n
	if err := s.enqueue(ctx, req); err != nil {
		req.ctx, req.key = nil, ""
		requestPool.Put(req) // never queued
		return Result{}, 0, err
	}
	select {
	case reply := <-req.done:
		req.ctx, req.key = nil, ""
		requestPool.Put(req)
		return reply.result, reply.granted, reply.err
	case <-ctx.Done():
		return Result{}, 0, fmt.Errorf("%w: %w", ErrStoreUnavailable, ctx.Err())
	case <-s.closing:
		return Result{}, 0, errStoreClosed
	}
}

// redisKey is `<prefix>{<policy>:<key>}`, with the key as StoredKey keeps it.
func (s *RedisStore) redisKey(policy, key string) string {
	return s.prefix + "{" + policy + ":" + StoredKey(key) + "}"
}

// StoredKey is a partition key as Redis keeps it, in `<prefix>{<policy>:<StoredKey>}`. A
// client address (an IP address or an IPv6 network, as such or after the "@" that marks a
// fallback to the client's address) stays readable, so that an operator finds a client's
// bucket. Every other key is written by clients
// (an API key, a bearer token, a user name) and is kept as "sha256:" and its hex SHA-256: a
// Redis key name is shown by every SCAN, MONITOR and SLOWLOG and kept in every RDB file, and
// must not hold a credential. Hashing also bounds a hostile value's size, and keeps a '}' out
// of the Cluster hash tag (Redis Cluster hashes the text up to the first '}': a client that
// appended "}<anything>" to the values it sends would put every key it makes on one slot).
func StoredKey(key string) string {
	if clientAddressKey(key) {
		return key
	}
	sum := sha256.Sum256([]byte(key))
	return hashedKeyPrefix + hex.EncodeToString(sum[:])
}

// clientAddressKey reports whether key names a client address: an IP address or prefix,
// possibly after "@".
func clientAddressKey(key string) bool {
	key = strings.TrimPrefix(key, "@")
	if len(key) > len("ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255/128") {
		return false // longer than any address or prefix: no parse
	}
	if strings.IndexByte(key, '/') >= 0 {
		_, err := netip.ParsePrefix(key)
		return err == nil
	}
	_, err := netip.ParseAddr(key)
	return err == nil
}

// shardOf names the Redis server that holds (policy, key): the master's address with a
// Cluster client, "" otherwise (one server, or one Sentinel-managed master). FailoverStore
// keeps one circuit breaker per shard.
func (s *RedisStore) shardOf(ctx context.Context, policy, key string) string {
	return s.shardOfRedisKey(ctx, s.redisKey(policy, key))
}

// shardOfRedisKey never waits for the network: until the Cluster client has its slot map,
// every key goes to shard "" (whose pipelines the Cluster client still routes by slot), and
// the map is loaded in the background. Once loaded, go-redis refreshes it without blocking.
func (s *RedisStore) shardOfRedisKey(ctx context.Context, redisKey string) string {
	if s.cluster == nil {
		return ""
	}
	if !s.slotMapReady.Load() {
		if s.slotMapLoading.CompareAndSwap(false, true) {
			go func() {
				defer s.slotMapLoading.Store(false)
				if _, err := s.cluster.MasterForKey(context.Background(), redisKey); err == nil {
					s.slotMapReady.Store(true)
				}
			}()
		}
		return ""
	}
	master, err := s.cluster.MasterForKey(ctx, redisKey)
	if err != nil {
		return ""
	}
	return master.Options().Addr
}

// execute runs one batch and answers each caller; callers that already left are skipped.
// cmds is scratch space, returned for the next batch.
func (s *RedisStore) execute(batch []*redisRequest, cmds []*redis.Cmd) []*redis.Cmd {
	live := batch[:0]
	for _, req := range batch {
		if req.ctx.Err() == nil {
			live = append(live, req)
		}
	}
	if len(live) == 0 {
		return cmds
	}
	ctx, cancel := batchContext(live)
	defer cancel()

	pipe := s.client.Pipeline()
	for _, req := range live {
		cmds = append(cmds, pipe.EvalSha(ctx, gcraScript.Hash(), []string{req.key}, req.intervalNS, req.burst, req.want))
	}
	// Each command carries its own error, except where the connection failed before the
	// commands were sent (refused credentials at the handshake): then only Exec says why.
	_, execErr := pipe.Exec(ctx)

	// NOSCRIPT means the script did not run: send those decisions again with the source.
	var retry []int
	for i, cmd := range cmds {
		if redis.HasErrorPrefix(cmd.Err(), "NOSCRIPT") {
			retry = append(retry, i)
		}
	}
	if len(retry) > 0 {
		pipe = s.client.Pipeline()
		for _, i := range retry {
			cmds[i] = pipe.Eval(ctx, gcraScriptSource, []string{live[i].key}, live[i].intervalNS, live[i].burst, live[i].want)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			execErr = err
		}
	}

	for i, req := range live {
		result, granted, err := parseReply(cmds[i], execErr)
		req.done <- redisReply{result: result, granted: granted, err: err}
	}
	return cmds
}

// batchContext bounds a batch by the latest deadline of its callers: a pipeline is never
// waited for after every caller has given up. Without ContextTimeoutEnabled go-redis bounds
// it by its read and write timeouts instead.
func batchContext(batch []*redisRequest) (context.Context, context.CancelFunc) {
	var latest time.Time
	for _, req := range batch {
		deadline, ok := req.ctx.Deadline()
		if !ok {
			return context.WithCancel(context.Background())
		}
		if deadline.After(latest) {
			latest = deadline
		}
	}
	return context.WithDeadline(context.Background(), latest)
}

// parseReply reads the script's {granted, remaining, reset_ns, retry_ns}. A command that got no
// reply and no error of its own failed with its pipeline: execErr.
func parseReply(cmd *redis.Cmd, execErr error) (Result, int64, error) {
	if cmd.Err() == nil && cmd.Val() == nil && execErr != nil {
		return Result{}, 0, fmt.Errorf("%w: redis: %w", ErrStoreUnavailable, execErr)
	}
	values, err := cmd.Int64Slice()
	if err != nil {
		return Result{}, 0, fmt.Errorf("%w: redis: %w", ErrStoreUnavailable, err)
	}
	if len(values) != 4 {
		return Result{}, 0, fmt.Errorf("%w: redis: script returned %d values, want 4", ErrStoreUnavailable, len(values))
	}
	return Result{
		Allowed:    values[0] >= 1,
		Remaining:  values[1],
		ResetAfter: time.Duration(values[2]),
		RetryAfter: time.Duration(values[3]),
	}, values[0], nil
}
