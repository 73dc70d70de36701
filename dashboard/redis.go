package dashboard

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/swarmsec/caddy-hardening/internal/textcut"
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

// fetchScript returns the documents KEYS name, each only when it is at most ARGV[1] bytes
// and the ones before it leave room in ARGV[2] bytes in all: in place of one that is not, its
// length (-1: not a string). A missing document is nil. The keys share one hash tag (one
// Cluster slot).
var fetchScript = redis.NewScript(`
local out, total = {}, 0
local one, all = tonumber(ARGV[1]), tonumber(ARGV[2])
for i, k in ipairs(KEYS) do
	local n = redis.pcall('STRLEN', k)
	if type(n) ~= 'number' then
		out[i] = -1
	elseif n == 0 then
		out[i] = false
	elseif n > one or total + n > all then
		out[i] = n
	else
		out[i] = redis.call('GET', k)
		total = total + n
	end
end
return out
`)

// Fetch reads the documents of range rng that the other instances published (at most
// MaxInstances, the most recent first), leaving out exclude (this instance). What Redis holds
// is another process's word: a name that is not an instance name is skipped, a document is
// read only up to maxDocBytes (maxFetchBytes in all), and what is decoded gets a local
// document's bounds, under the name its key holds. What was left out is in the error.
func Fetch(ctx context.Context, c redis.UniversalClient, prefix, rng, exclude string, now time.Time) ([]Document, error) {
	res, ok := ParseRange(rng)
	if !ok {
		return nil, fmt.Errorf("dashboard: unknown range %q", rng)
	}
	names, err := c.ZRevRangeByScore(ctx, instancesKey(prefix), &redis.ZRangeBy{
		Min: strconv.FormatInt(now.Add(-PublishTTL).UnixMilli(), 10), Max: "+inf", Count: MaxInstances,
	}).Result()
	if err != nil {
		return nil, err
	}
	var bad error
	keys := make([]string, 0, len(names))
	kept := make([]string, 0, len(names))
	for _, n := range names {
		switch {
		case n == exclude:
		case !validInstance(n):
			bad = errors.Join(bad, fmt.Errorf("dashboard: %q in %s is not an instance name", textcut.Cut(Visible(n), maxInstanceName), instancesKey(prefix)))
		default:
			keys = append(keys, docKey(prefix, rng, n))
			kept = append(kept, n)
		}
	}
	if len(keys) == 0 {
		return nil, bad
	}
	vals, err := fetchScript.Run(ctx, c, keys, maxDocBytes, maxFetchBytes).Slice()
	if err != nil {
		return nil, errors.Join(bad, err)
	}
	var out []Document
	for i, v := range vals {
		if i >= len(kept) {
			break
		}
		switch v := v.(type) {
		case string:
			var d Document
			if err := json.Unmarshal([]byte(v), &d); err != nil {
				bad = errors.Join(bad, fmt.Errorf("dashboard: the document of instance %s: %w", kept[i], err))
				continue
			}
			d.bound(kept[i], res)
			out = append(out, d)
		case int64:
			if v < 0 {
				bad = errors.Join(bad, fmt.Errorf("dashboard: %s is not a string", keys[i]))
			} else {
				bad = errors.Join(bad, fmt.Errorf("dashboard: the document of instance %s is %d bytes, over the %d a document may have (%d in all): left out", kept[i], v, maxDocBytes, maxFetchBytes))
			}
		}
		// nil: expired since the set was read
	}
	return out, bad
}
