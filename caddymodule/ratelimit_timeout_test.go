package caddymodule

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/swarmsec/caddy-hardening/internal/testcaddy"
	"github.com/swarmsec/caddy-hardening/internal/testenv"
	"github.com/swarmsec/caddy-hardening/ratelimit"
)

// TestRateLimitStoreTimeoutAboveReadTimeout: with store_timeout 3s and the redis block's default
// read_timeout (100 ms), a Redis 150 ms away each way decides every request. go-redis bounds a
// reply by the sooner of the caller's deadline and read_timeout, so every decision failed at
// 100 ms and went to memory (charged in Redis all the same); the limiter now decides through a
// client of its own whose timeouts are store_timeout. A Redis that answers nothing still fails
// a decision at store_timeout, and a reload to the default store_timeout releases that client.
func TestRateLimitStoreTimeoutAboveReadTimeout(t *testing.T) {
	r := testenv.StartRedis(t)
	proxy := testenv.StartProxy(t, r.Addr)
	block, url := site(t, "\tpolicy_rate_limit login")
	config := func(rateLimit string) string {
		return redisPolicyConfig("redis redis://"+proxy.Addr+rateLimit, "limit 100/1h burst 100") + block
	}
	c := testcaddy.StartCaddy(t, config("\n\t\trate_limit {\n\t\t\tstore_timeout 3s\n\t\t}"))
	lim := activeApp(t).limiter
	// Connect before the latency: a new connection's handshake is several round trips.
	getReply(t, url, "X-Client: warm")
	testenv.WaitFor(t, 5*time.Second, "decisions in Redis", func() bool { return lim.mode() == storeModeRedis })

	// Each way: a decision takes 300 ms, three times read_timeout and a tenth of store_timeout
	// (a margin for a loaded CI machine).
	proxy.SetLatency(150 * time.Millisecond)
	fallback := func() float64 { return testutil.ToFloat64(fallbackDecisions.WithLabelValues("login")) }
	before := fallback()
	for i := range 3 {
		if rep := getReply(t, url, "X-Client: far"); rep.status != 200 {
			t.Fatalf("request %d: %d", i+1, rep.status)
		}
	}
	if got := fallback() - before; got != 0 || lim.mode() != storeModeRedis {
		t.Fatalf("Redis 300 ms a round trip, store_timeout 3s: %v decisions in memory, mode %s; want none, redis", got, lim.mode())
	}
	if n, err := r.Do("EXISTS", "hardening:rl:{login:"+ratelimit.StoredKey("far")+"}"); err != nil || n != int64(1) {
		t.Fatalf("the bucket is in Redis: %v %v", n, err)
	}

	// Frozen: nothing crosses the proxy. The decision fails at store_timeout and goes to
	// memory. The bound is against a hang (the proxy holds replies for an hour), not a timing.
	proxy.SetLatency(time.Hour)
	before = fallback()
	rep := getReply(t, url, "X-Client: frozen")
	if rep.status != 200 || fallback()-before != 1 {
		t.Fatalf("Redis frozen: status %d, %v decisions in memory; want 200 decided in memory", rep.status, fallback()-before)
	}
	if rep.elapsed > 15*time.Second {
		t.Fatalf("Redis frozen: the decision took %v; store_timeout 3s must bound it", rep.elapsed)
	}

	key := lim.clientKey
	if key == "" {
		t.Fatal("store_timeout 3s above read_timeout 100ms: the limiter has no client of its own")
	}
	if err := c.Load(config("")); err != nil {
		t.Fatal(err)
	}
	if own := activeApp(t).limiter.clientKey; own != "" {
		t.Fatalf("the default store_timeout (50ms) is within read_timeout: the limiter should use the shared client, has %s", own)
	}
	testenv.WaitFor(t, 10*time.Second, "the old limiter's client to be released", func() bool {
		_, held := redisPool.References(key)
		return !held
	})
}
