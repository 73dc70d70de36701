package caddymodule

import (
	"errors"
	"time"

	"github.com/redis/go-redis/v9"
)

// limiterClient returns the client the rate limiter's Redis store decides through, and its
// redisPool key, which the limiter releases when it is destructed ("" for the app's shared
// client, which the app releases).
//
// go-redis bounds each reply by the sooner of the caller's deadline and the client's
// read_timeout (write_timeout for sending), so on the shared client (100 ms by default) a
// store_timeout above them did nothing: with Redis 200 ms away every decision failed at
// 100 ms and went to memory, while Redis had run it and kept it charged (a leased key lost
// its lease). When store_timeout is the longer, the store gets a client of its own, built from
// the same options with both timeouts raised to store_timeout; every decision carries a
// deadline of store_timeout, so that alone bounds it. The shared client keeps its timeouts:
// raising them would also lengthen what passes no deadline of its own (go-redis's Cluster slot
// reloads, Sentinel lookups), for modules that never asked for it.
func (a *App) limiterClient(storeTimeout time.Duration) (redis.UniversalClient, string, error) {
	opts := a.redis.opts
	if storeTimeout <= opts.ReadTimeout && storeTimeout <= opts.WriteTimeout {
		return a.redis.client, "", nil
	}
	opts.ReadTimeout = max(opts.ReadTimeout, storeTimeout)
	opts.WriteTimeout = max(opts.WriteTimeout, storeTimeout)
	// No startup ping: the limiter's own probe asks Redis when it starts, and the shared
	// client's ping already logs whether Redis answers.
	shared, key, _, err := loadRedis(opts)
	if err != nil {
		return nil, "", errors.New(redactSecrets(err.Error(), opts))
	}
	return shared.client, key, nil
}
