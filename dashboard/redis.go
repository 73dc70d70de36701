package dashboard

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// The "all instances" view in Redis. Every key carries the one hash tag {dash}, so a Cluster
// keeps them in one slot and MGET works:
//
//	<prefix>dash:{dash}:instances          sorted set: instance -> unix ms of its last publish
//	<prefix>dash:{dash}:doc:<range>:<inst> the instance's local document for that range (JSON)
//	<prefix>dash:{dash}:owner:<inst>       the random id of the process that last published as <inst>
//
// Every key expires after PublishTTL; the set keeps at most MaxInstances members (the most
// recent), and members older than PublishTTL are dropped.
const (
	PublishTTL   = time.Hour
	MaxInstances = 64
)

// InstanceEnv names the environment variable that overrides the instance name (Kubernetes:
// the pod name).
const InstanceEnv = "HARDENING_INSTANCE"

// maxInstanceName bounds an instance name.
const maxInstanceName = 64

// InstanceName is $HARDENING_INSTANCE, else the host name, reduced to letters, digits, '.',
// '-' and '_' (at most 64): it becomes part of a Redis key.
func InstanceName() string {
	name := os.Getenv(InstanceEnv)
	if name == "" {
		name, _ = os.Hostname()
	}
	b := make([]byte, 0, len(name))
	for i := 0; i < len(name) && len(b) < maxInstanceName; i++ {
		c := name[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_' {
			b = append(b, c)
		}
	}
	if len(b) == 0 {
		return "instance"
	}
	return string(b)
}

func instancesKey(prefix string) string { return prefix + "dash:{dash}:instances" }

func docKey(prefix, rng, instance string) string {
	return prefix + "dash:{dash}:doc:" + rng + ":" + instance
}

func ownerKey(prefix, instance string) string { return prefix + "dash:{dash}:owner:" + instance }

// Claim marks process (a random id per process) as the last publisher under instance's name,
// for ttl, and returns the id it replaced ("" when none). Another id on consecutive samples
// means two processes publish under one name and overwrite each other's documents.
func Claim(ctx context.Context, c redis.UniversalClient, prefix, instance, process string, ttl time.Duration) (string, error) {
	key := ownerKey(prefix, instance)
	pipe := c.TxPipeline()
	prev := pipe.GetSet(ctx, key, process) // GETSET, not SET GET: that needs Redis 6.2
	pipe.Expire(ctx, key, ttl)
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return "", err
	}
	return prev.Val(), nil
}

// Publish stores this instance's documents (by range name) and refreshes its membership.
func Publish(ctx context.Context, c redis.UniversalClient, prefix, instance string, docs map[string]Document, now time.Time) error {
	pipe := c.Pipeline()
	for rng, d := range docs {
		raw, err := json.Marshal(d)
		if err != nil {
			return err
		}
		pipe.Set(ctx, docKey(prefix, rng, instance), raw, PublishTTL)
	}
	key := instancesKey(prefix)
	pipe.ZAdd(ctx, key, redis.Z{Score: float64(now.UnixMilli()), Member: instance})
	pipe.ZRemRangeByScore(ctx, key, "-inf", "("+strconv.FormatInt(now.Add(-PublishTTL).UnixMilli(), 10))
	pipe.ZRemRangeByRank(ctx, key, 0, -(MaxInstances + 1))
	pipe.Expire(ctx, key, PublishTTL)
	_, err := pipe.Exec(ctx)
	return err
}

// Fetch reads the documents of range rng that the other instances published (at most
// MaxInstances, the most recent first), leaving out exclude (this instance).
func Fetch(ctx context.Context, c redis.UniversalClient, prefix, rng, exclude string, now time.Time) ([]Document, error) {
	names, err := c.ZRevRangeByScore(ctx, instancesKey(prefix), &redis.ZRangeBy{
		Min: strconv.FormatInt(now.Add(-PublishTTL).UnixMilli(), 10), Max: "+inf", Count: MaxInstances,
	}).Result()
	if err != nil {
		return nil, err
	}
	keys := make([]string, 0, len(names))
	for _, n := range names {
		if n != exclude {
			keys = append(keys, docKey(prefix, rng, n))
		}
	}
	if len(keys) == 0 {
		return nil, nil
	}
	vals, err := c.MGet(ctx, keys...).Result()
	if err != nil {
		return nil, err
	}
	var out []Document
	var bad error
	for _, v := range vals {
		s, ok := v.(string)
		if !ok {
			continue // expired since the set was read
		}
		var d Document
		if err := json.Unmarshal([]byte(s), &d); err != nil {
			bad = errors.Join(bad, err)
			continue
		}
		out = append(out, d)
	}
	return out, bad
}
