package breaker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisStore is a SharedStore over Redis (standalone, Sentinel or Cluster). Every key of one
// breaker carries the hash tag {breaker:<name>}, so they live in one Cluster slot.
type RedisStore struct {
	client  redis.UniversalClient
	prefix  string
	token   string
	timeout time.Duration
	ctx     context.Context
	cancel  context.CancelFunc
}

const (
	// lockTTL frees the lock of an instance that died holding it.
	lockTTL = 2 * time.Second
	// stateTTL lets the state of a breaker nobody uses any more expire.
	stateTTL = 24 * time.Hour
	// storeTimeout bounds each command.
	storeTimeout = time.Second
)

var errLocked = errors.New("shared breaker state is locked by another instance")

// unlock deletes the lock only if this store holds it.
var unlockScript = redis.NewScript(`if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end return 0`)

// NewRedisStore keeps breaker name's shared state under keyPrefix. Close cancels commands in
// flight.
func NewRedisStore(client redis.UniversalClient, keyPrefix, name string) *RedisStore {
	var tok [16]byte
	_, _ = rand.Read(tok[:]) // crypto/rand never fails on supported platforms
	ctx, cancel := context.WithCancel(context.Background())
	return &RedisStore{
		client:  client,
		prefix:  keyPrefix + "breaker:{" + name + "}:",
		token:   hex.EncodeToString(tok[:]),
		timeout: storeTimeout,
		ctx:     ctx,
		cancel:  cancel,
	}
}

// Key is the Redis key of one of gobreaker's keys.
func (s *RedisStore) Key(key string) string { return s.prefix + key }

// Close cancels commands in flight and makes later ones fail.
func (s *RedisStore) Close() { s.cancel() }

func (s *RedisStore) op() (context.Context, context.CancelFunc) {
	return context.WithTimeout(s.ctx, s.timeout)
}

// Lock takes the lock named key, or fails at once when another instance holds it (gobreaker
// retries).
func (s *RedisStore) Lock(key string) error {
	ctx, cancel := s.op()
	defer cancel()
	ok, err := s.client.SetNX(ctx, s.Key(key), s.token, lockTTL).Result()
	if err != nil {
		return err
	}
	if !ok {
		return errLocked
	}
	return nil
}

// Unlock releases the lock if this store holds it.
func (s *RedisStore) Unlock(key string) error {
	ctx, cancel := s.op()
	defer cancel()
	return unlockScript.Run(ctx, s.client, []string{s.Key(key)}, s.token).Err()
}

// GetData reads the state; a missing key is (nil, nil).
func (s *RedisStore) GetData(key string) ([]byte, error) {
	ctx, cancel := s.op()
	defer cancel()
	b, err := s.client.Get(ctx, s.Key(key)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	return b, err
}

// SetData writes the state.
func (s *RedisStore) SetData(key string, data []byte) error {
	ctx, cancel := s.op()
	defer cancel()
	return s.client.Set(ctx, s.Key(key), data, stateTTL).Err()
}

var _ SharedStore = (*RedisStore)(nil)
