package caddymodule

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/swarmsec/caddy-hardening/internal/testcaddy"
	"github.com/swarmsec/caddy-hardening/internal/testenv"
	"github.com/swarmsec/caddy-hardening/ratelimit"
)

// slowRedis is the redis line, then a rate_limit block with a store_timeout of 5 s (and the
// store, when given), for tests about what Redis decides: under load the default 50 ms can time
// out, and the fallback decides instead, while Redis ran the decision and keeps it charged (a
// leased key lost its lease: TestRateLimitLeasedKeyTellsTheTruth was refused at request ~985 of
// its 1000 under load). The redis block's read_timeout stays at its default: store_timeout
// alone bounds a decision (see limiterClient).
func slowRedis(redisLine string, store ...string) string {
	rateLimit := "\n\t\trate_limit {\n"
	for _, st := range store {
		rateLimit += "\t\t\tstore " + st + "\n"
	}
	return redisLine + rateLimit + "\t\t\tstore_timeout 5s\n\t\t}"
}

// redisPolicyConfig is a global option with Redis at url and one policy.
func redisPolicyConfig(redisLine, policy string) string {
	return fmt.Sprintf(`{
	hardening {
		%s
		policy login {
			%s
			key {header.X-Client}
		}
	}
}
`, redisLine, policy)
}

// TestRateLimitRedisAdmitsExactlyTheBurst: through Redis, 50 concurrent clients on one key
// admit exactly the burst, and the bucket lives in Redis under the hash-tagged key.
func TestRateLimitRedisAdmitsExactlyTheBurst(t *testing.T) {
	r := testenv.StartRedis(t)
	block, url := site(t, "\tpolicy_rate_limit login")
	// A generous store_timeout: on a loaded machine (-race, parallel packages) a Redis call
	// past the default 50 ms is a store failure, and the fallback to memory (which is right,
	// and tested elsewhere) would admit the burst again from a fresh in-memory bucket.
	testcaddy.StartCaddy(t, redisPolicyConfig(slowRedis("redis "+r.URL(0)), "limit 7/1h burst 7")+block)
	counts := hammer(t, url, 50, 200, "X-Client: alice")
	if counts[200] != 7 || counts[429] != 193 {
		t.Fatalf("statuses %v; want exactly 7 admitted and 193 refused", counts)
	}
	keys, err := r.Do("KEYS", "hardening:rl:*")
	if err != nil {
		t.Fatal(err)
	}
	if want := "[hardening:rl:{login:" + ratelimit.StoredKey("alice") + "}]"; fmt.Sprint(keys) != want {
		t.Fatalf("Redis keys %v, want the hash-tagged bucket %s", keys, want)
	}
	if mode := activeApp(t).limiter.mode(); mode != storeModeRedis {
		t.Fatalf("mode %s", mode)
	}
}

// TestRateLimitResetIsWhenQuotaGrows: RateLimit's t is the seconds until additional quota is
// made available (draft-ietf-httpapi-ratelimit-headers-10, 4.1.2), in memory and through
// Redis: with 5/1m burst 5 one unit comes back every 12 s, so every admitted request of a
// burst reads t=12 (it read 12, 24, ... 60: the time to a full bucket), and the refusal's t
// is its Retry-After (it read t=60 beside Retry-After: 12, where the draft says Retry-After
// should not come before t).
func TestRateLimitResetIsWhenQuotaGrows(t *testing.T) {
	r := testenv.StartRedis(t)
	for _, store := range []string{"memory", "redis"} {
		t.Run(store, func(t *testing.T) {
			block, url := site(t, "\tpolicy_rate_limit login")
			testcaddy.StartCaddy(t, redisPolicyConfig(slowRedis("redis "+r.URL(0), store), "limit 5/1m burst 5")+block)
			for i := range 5 {
				got := getReply(t, url, "X-Client: reset-"+store)
				rl := got.header.Get("RateLimit")
				// 12 unless this machine took over a second since the first request.
				if got.status != 200 || (rl != fmt.Sprintf(`"login";r=%d;t=12`, 4-i) && rl != fmt.Sprintf(`"login";r=%d;t=11`, 4-i)) {
					t.Fatalf("request %d: %d, RateLimit %q; want r=%d;t=12 (one unit back in 12 s)", i+1, got.status, rl, 4-i)
				}
			}
			refused := getReply(t, url, "X-Client: reset-"+store)
			retry := refused.header.Get("Retry-After")
			if refused.status != 429 || refused.header.Get("RateLimit") != `"login";r=0;t=`+retry {
				t.Fatalf("refusal: %d, Retry-After %q, RateLimit %q; want t equal to Retry-After", refused.status, retry, refused.header.Get("RateLimit"))
			}
		})
	}
}

// TestRateLimitAdmitsTheBurstThenTheRate: 50 concurrent clients on one key for two seconds,
// in memory and through Redis: the admitted count is the burst plus the rate over the elapsed
// time (a lower bound at 80 % of it, since the clients must also be fast enough to use it).
// The burst is a second's worth, so a machine that stalls Caddy for less than that loses no
// token: the lower bound checks the limiter, not the scheduler.
func TestRateLimitAdmitsTheBurstThenTheRate(t *testing.T) {
	r := testenv.StartRedis(t)
	for _, store := range []string{"memory", "redis"} {
		t.Run(store, func(t *testing.T) {
			block, url := site(t, "\tpolicy_rate_limit login")
			// store_timeout 5s: this is about exactness; on a loaded machine a 50 ms Redis call
			// times out, and the fallback's own buckets would admit more.
			testcaddy.StartCaddy(t, redisPolicyConfig(slowRedis("redis "+r.URL(0), store), "limit 20/1s burst 20")+block)
			var admitted, other atomic.Int64
			start := time.Now()
			end := start.Add(2 * time.Second)
			var wg sync.WaitGroup
			for range 50 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for time.Now().Before(end) {
						switch getReply(t, url, "X-Client: "+store).status {
						case 200:
							admitted.Add(1)
						case 429:
						default:
							other.Add(1)
						}
					}
				}()
			}
			wg.Wait()
			// At most the burst and the rate over the whole run, the last answers included; at
			// least 80 % of it over the window in which 50 clients kept asking: answers that came
			// after it (a loaded machine's tail) add time in which nobody asked.
			elapsed := time.Since(start).Seconds()
			most, least := 20+20*elapsed+1, 20+20*end.Sub(start).Seconds()*0.8
			if got := float64(admitted.Load()); got > most || got < least || other.Load() != 0 {
				t.Fatalf("%v admitted (%d other statuses) in %.2f s; want %.0f..%.0f", got, other.Load(), elapsed, least, most)
			}
		})
	}
}

// instancesShareLimit runs three Caddy processes on one Redis deployment and checks that the
// total admitted over a window stays within the limit.
func instancesShareLimit(t *testing.T, redisLine string) {
	const rate, burst = 20, 10 // 20 per second
	var urls []string
	for range 3 {
		port := testenv.FreePort(t)
		// store_timeout 5s: this is about sharing; on a loaded machine a 50 ms Redis call times
		// out, and each instance's fallback would admit on its own.
		testenv.RunCaddy(t, redisPolicyConfig(slowRedis(redisLine), fmt.Sprintf("limit %d/1s burst %d", rate, burst))+
			fmt.Sprintf("http://127.0.0.1:%d {\n\tbind 127.0.0.1\n\tpolicy_rate_limit login\n\trespond \"ok\"\n}\n", port))
		urls = append(urls, fmt.Sprintf("http://127.0.0.1:%d/", port))
	}
	// Many keys, so the Cluster case spreads buckets over every master.
	keys := []string{"k1", "k2", "k3", "k4", "k5", "k6"}
	var admitted [6]atomic.Int64
	var refused [6]atomic.Bool
	var fiveXX atomic.Int64
	start := time.Now()
	// 1.5 s, and on until every key was refused once: the "at least the burst" check needs
	// each burst spent, which a loaded machine may not do within the window.
	more := func() bool {
		since := time.Since(start)
		if since < 1500*time.Millisecond {
			return true
		}
		for i := range refused {
			if !refused[i].Load() {
				return since < 30*time.Second
			}
		}
		return false
	}
	var wg sync.WaitGroup
	for i := range 18 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for more() {
				rep := getReply(t, urls[i%3], "X-Client: "+keys[i%6])
				switch {
				case rep.status == 200:
					admitted[i%6].Add(1)
				case rep.status == 429:
					refused[i%6].Store(true)
				case rep.status >= 500:
					fiveXX.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	maxAdmitted := float64(burst) + elapsed.Seconds()*rate
	for i := range keys {
		if got := float64(admitted[i].Load()); got > maxAdmitted*1.01 || got < burst {
			t.Errorf("key %s: %v admitted by three instances in %v; want %d..%.0f", keys[i], got, elapsed, burst, maxAdmitted)
		}
	}
	if n := fiveXX.Load(); n > 0 {
		t.Fatalf("%d responses were 5xx", n)
	}
}

// TestRateLimitThreeInstancesShareOneRedis: three Caddy processes on one Redis admit, together,
// at most burst + rate x elapsed per key (1 % tolerance).
func TestRateLimitThreeInstancesShareOneRedis(t *testing.T) {
	r := testenv.StartRedis(t)
	instancesShareLimit(t, "redis "+r.URL(0))
}

// TestRateLimitThreeInstancesShareACluster: the same over a 3-master Redis Cluster.
func TestRateLimitThreeInstancesShareACluster(t *testing.T) {
	c := testenv.StartCluster(t)
	instancesShareLimit(t, "redis {\n\t\t\tcluster "+strings.Join(c.Addrs(), " ")+"\n\t\t}")
}

// TestRateLimitRedisKilledUnderLoad: with Redis killed mid-load no request fails, limits keep
// holding from memory, the switch is logged and reported to monitoring; once Redis is back on
// the same port, decisions return to it.
func TestRateLimitRedisKilledUnderLoad(t *testing.T) {
	r := testenv.StartRedis(t)
	block, url := site(t, "\tpolicy_rate_limit login")
	c := testcaddy.StartCaddy(t, redisPolicyConfig(
		"redis "+r.URL(0)+" {\n\t\t\tdial_timeout 100ms\n\t\t}", "limit 5/1s burst 5")+block)
	var ok, refused, fiveXX atomic.Int64
	load := func(d time.Duration, client string) {
		var wg sync.WaitGroup
		end := time.Now().Add(d)
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Now().Before(end) {
					switch s := getReply(t, url, "X-Client: "+client).status; {
					case s == 200:
						ok.Add(1)
					case s == 429:
						refused.Add(1)
					default:
						fiveXX.Add(1)
					}
				}
			}()
		}
		wg.Wait()
	}
	load(300*time.Millisecond, "before")
	r.Kill()
	ok.Store(0)
	refused.Store(0)
	start := time.Now()
	load(time.Second, "during")
	elapsed := time.Since(start)
	if n := fiveXX.Load(); n != 0 {
		t.Fatalf("%d requests failed with Redis down", n)
	}
	if max := 5 + int64(elapsed.Seconds()*5) + 1; ok.Load() > max || refused.Load() == 0 {
		t.Fatalf("with Redis down: %d admitted, %d refused in %v; want at most %d admitted (limits hold in memory)", ok.Load(), refused.Load(), elapsed, max)
	}
	lim := activeApp(t).limiter
	if mode := lim.mode(); mode != storeModeFallback {
		t.Fatalf("mode %s with Redis down", mode)
	}
	if st := lim.status(); st.Status != HealthWarn {
		t.Fatalf("status %+v, want warn", st)
	}
	// The store is the app's (one per configuration, whichever policy_rate_limit asks), as
	// docs/security-events.md says.
	if logs := securityLogs(c, EventStoreFailover); len(logs) != 1 || logs[0].Str("to") != storeModeFallback || logs[0].Level() != "warn" ||
		logs[0].Str("module") != "hardening" || logs[0].Str("store") != "ratelimit" || logs[0].Str("error") == "" {
		t.Fatalf("want one warn store_failover event of the hardening app's ratelimit store to memory-fallback, got %v", logs)
	}

	r.Restart()
	deadline := time.Now().Add(10 * time.Second)
	for lim.mode() != storeModeRedis {
		if time.Now().After(deadline) {
			t.Fatal("decisions did not return to Redis after it restarted")
		}
		getReply(t, url, "X-Client: after")
		time.Sleep(50 * time.Millisecond)
	}
	getReply(t, url, "X-Client: back")
	if n, err := r.Do("EXISTS", "hardening:rl:{login:"+ratelimit.StoredKey("back")+"}"); err != nil || n != int64(1) {
		t.Fatalf("after the return, the bucket is in Redis: %v %v", n, err)
	}
	// The event follows the switch (the limiter's probe may have made it, beside the requests).
	testenv.WaitFor(t, 5*time.Second, "the second store_failover event", func() bool { return len(securityLogs(c, EventStoreFailover)) > 1 })
	if logs := securityLogs(c, EventStoreFailover); len(logs) != 2 || logs[1].Str("to") != storeModeRedis {
		t.Fatalf("want a second store_failover event back to redis, got %v", logs)
	}
	if n := fiveXX.Load(); n != 0 {
		t.Fatalf("%d requests failed", n)
	}
}

// TestRateLimitSlowRedisStaysInMemory: a Redis that answers every command, but slower than
// store_timeout (300 ms a round trip against 50 ms), fails every decision. Once its breaker is
// open, the limiter's own probe must not bring decisions back to it: the probe waited a second
// for its answer, so each second it closed the breaker, three requests each waited 50 ms and
// opened it again, and two store_failover events were logged, for as long as Redis was slow.
func TestRateLimitSlowRedisStaysInMemory(t *testing.T) {
	r := testenv.StartRedis(t)
	proxy := testenv.StartProxy(t, r.Addr)
	block, url := site(t, "\tpolicy_rate_limit login")
	c := testcaddy.StartCaddy(t, redisPolicyConfig(
		"redis redis://"+proxy.Addr+" {\n\t\t\tread_timeout 3s\n\t\t}", "limit 100/1s")+block)
	lim := activeApp(t).limiter
	getReply(t, url, "X-Client: warm")
	proxy.SetLatency(150 * time.Millisecond) // each way
	for range 3 {
		getReply(t, url, "X-Client: slow") // three decisions time out: the breaker opens
	}
	testenv.WaitFor(t, 5*time.Second, "the switch to memory", func() bool { return lim.mode() == storeModeFallback })
	// The scripts Redis ran (the probes, with no requests now), read beside the proxy.
	scripts := func() int64 {
		info, err := r.Do("INFO", "commandstats")
		if err != nil {
			t.Fatal(err)
		}
		var n int64
		for _, line := range strings.Split(fmt.Sprint(info), "\n") {
			if cmd, stats, ok := strings.Cut(strings.TrimSpace(line), ":calls="); ok && (cmd == "cmdstat_evalsha" || cmd == "cmdstat_eval") {
				calls, _, _ := strings.Cut(stats, ",")
				v, _ := strconv.ParseInt(calls, 10, 64)
				n += v
			}
		}
		return n
	}
	before := scripts()
	testenv.WaitFor(t, 20*time.Second, "four probe scripts, or a return to Redis", func() bool {
		return scripts() >= before+4 || lim.mode() == storeModeRedis
	})
	if mode, logs := lim.mode(), securityLogs(c, EventStoreFailover); mode != storeModeFallback || len(logs) != 1 {
		t.Fatalf("Redis answering in 300 ms: mode %s, store_failover events %v; want memory-fallback and the one switch to it", mode, logs)
	}
}

// TestRateLimitRedisDownAtStartupIsMemoryAtOnce: a limiter that starts while Redis is down
// asks Redis once and, without an answer, decides in memory before the first request (mode,
// monitoring and the store_failover event say so); once Redis is up, decisions return to it
// without waiting for a request.
func TestRateLimitRedisDownAtStartupIsMemoryAtOnce(t *testing.T) {
	r := testenv.StartRedis(t)
	r.Kill()
	block, url := site(t, "\tpolicy_rate_limit login")
	// 5 an hour: the 6th and 7th requests below are refused however slowly the machine sends
	// them (at 5/1s a token came back every 200 ms, and a stall let the 6th in).
	c := testcaddy.StartCaddy(t, redisPolicyConfig(slowRedis("redis "+r.URL(0)), "limit 5/1h burst 5")+block)
	lim := activeApp(t).limiter
	testenv.WaitFor(t, 5*time.Second, "memory-fallback before any request", func() bool { return lim.mode() == storeModeFallback })
	if st := lim.status(); st.Status != HealthWarn {
		t.Fatalf("status %+v, want warn", st)
	}
	// The event follows the switch (the mode is visible first).
	testenv.WaitFor(t, 2*time.Second, "the store_failover event", func() bool { return len(securityLogs(c, EventStoreFailover)) > 0 })
	if logs := securityLogs(c, EventStoreFailover); len(logs) != 1 || logs[0].Str("to") != storeModeFallback || !strings.Contains(logs[0].Str("error"), "refused") {
		t.Fatalf("want one store_failover event to memory-fallback naming the refused connection, got %v", logs)
	}
	for i := range 7 {
		if got, want := getReply(t, url, "X-Client: early").status, map[bool]int{true: 200, false: 429}[i < 5]; got != want {
			t.Fatalf("request %d in memory: %d, want %d", i, got, want)
		}
	}
	r.Restart()
	// No request is needed: the limiter's probe finds Redis back.
	expectBackInRedis(t, c, lim, url, r)
}

// expectBackInRedis waits for lim to decide in Redis again with no request, then checks that
// the return was reported (a second store_failover event) and that a request's bucket is in r.
func expectBackInRedis(t *testing.T, c *testcaddy.Caddy, lim *limiterEntry, url string, r *testenv.Redis) {
	t.Helper()
	testenv.WaitFor(t, 10*time.Second, "decisions back in Redis", func() bool { return lim.mode() == storeModeRedis })
	testenv.WaitFor(t, 2*time.Second, "the second store_failover event", func() bool { return len(securityLogs(c, EventStoreFailover)) > 1 })
	if logs := securityLogs(c, EventStoreFailover); len(logs) != 2 || logs[1].Str("to") != storeModeRedis {
		t.Fatalf("want a second store_failover event back to redis, got %v", logs)
	}
	// Redis ran the request's decision: its slow log, which records every command with a
	// threshold of 0, names the key. Not EXISTS: a bucket lives in Redis until it is full
	// again, 10 ms after one request at 100/1s, and a loaded machine took longer than that to
	// ask (1 of 2 runs of TestRateLimitReadOnlyRedisStaysInMemory under CI-like load).
	if _, err := r.Do("CONFIG", "SET", "slowlog-log-slower-than", "0"); err != nil {
		t.Fatal(err)
	}
	getReply(t, url, "X-Client: after")
	if log, err := r.Do("SLOWLOG", "GET", "-1"); err != nil || !strings.Contains(fmt.Sprint(log), "hardening:rl:{login:"+ratelimit.StoredKey("after")+"}") {
		t.Fatalf("after the return, the request was not decided in Redis (%v): %v", err, log)
	}
}

// TestRateLimitReadOnlyRedisStaysInMemory: a redis URL that names a replica (it answers PING
// and refuses every write) puts decisions in memory before the first request, with one
// store_failover event naming READONLY, and they stay there while requests keep coming, with
// no store_failover each way at every probe, and ratelimit:store names READONLY; once the
// replica is promoted they return to it.
func TestRateLimitReadOnlyRedisStaysInMemory(t *testing.T) {
	replica := testenv.StartReplica(t, testenv.StartRedis(t))
	block, url := site(t, "\tpolicy_rate_limit login")
	c := testcaddy.StartCaddy(t, redisPolicyConfig(slowRedis("redis "+replica.URL(0)), "limit 100/1s burst 100")+block)
	lim := activeApp(t).limiter
	testenv.WaitFor(t, 5*time.Second, "memory-fallback before any request", func() bool { return lim.mode() == storeModeFallback })
	// Requests over three probe intervals (the breaker stays open 1 s).
	for end := time.Now().Add(3500 * time.Millisecond); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if got := getReply(t, url, "X-Client: early").status; got != 200 {
			t.Fatalf("a request in memory: %d, want 200", got)
		}
	}
	if logs := securityLogs(c, EventStoreFailover); len(logs) != 1 || logs[0].Str("to") != storeModeFallback || !strings.Contains(logs[0].Str("error"), "READONLY") {
		t.Fatalf("want one store_failover event to memory-fallback naming READONLY, got %v", logs)
	}
	// The health output names the cause too: "failing" alone sent an SRE to look for an outage.
	if out := lim.status().Output; !strings.Contains(out, "READONLY") {
		t.Fatalf("ratelimit:store output %q does not name READONLY", out)
	}
	if _, err := replica.Do("REPLICAOF", "NO", "ONE"); err != nil {
		t.Fatal(err)
	}
	expectBackInRedis(t, c, lim, url, replica)
}

// TestRateLimitRefusedLoadLeavesTheRunningMetrics: a configuration refused at load (its second
// handler names no policy, after the first took a new limiter) does not speak for the running one:
// store_mode still reads memory-fallback during the outage, and memory_keys still shows the
// running configuration's store.
func TestRateLimitRefusedLoadLeavesTheRunningMetrics(t *testing.T) {
	r := testenv.StartRedis(t)
	r.Kill()
	block, url := site(t, "\tpolicy_rate_limit login")
	cfg := redisPolicyConfig("redis "+r.URL(0), "limit 5/1s burst 5")
	c := testcaddy.StartCaddy(t, cfg+block)
	lim := activeApp(t).limiter
	testenv.WaitFor(t, 5*time.Second, "memory-fallback", func() bool { return lim.mode() == storeModeFallback })
	getReply(t, url, "X-Client: a")
	fallback := storeMode.WithLabelValues(storeModeFallback)
	if v := testutil.ToFloat64(fallback); v != 1 {
		t.Fatalf("store_mode memory-fallback %v, want 1", v)
	}
	good, err := testcaddy.Adapt(cfg + block)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(good)
	bad := strings.Replace(string(raw), `"policies":`, `"rate_limit":{"max_keys":5000},"policies":`, 1)
	bad = strings.Replace(bad, `{"handler":"policy_rate_limit","policy":"login"}`, `{"handler":"policy_rate_limit","policy":"login"},{"handler":"policy_rate_limit","policy":"nope"}`, 1)
	if err := c.LoadJSON(bad); err == nil || !strings.Contains(err.Error(), "unknown policy") {
		t.Fatalf("the bad configuration loaded: %v", err)
	}
	if v := testutil.ToFloat64(fallback); v != 1 {
		t.Fatalf("after a refused load, store_mode memory-fallback %v, want 1 (Redis is still down)", v)
	}
	if n := testutil.CollectAndCount(memoryKeys); n != 1 {
		t.Fatalf("after a refused load, %d memory_keys series, want the running configuration's one", n)
	}
}

// TestRateLimitSlowRedisIsBoundedByTheTimeout: while Redis sleeps for 30 s, each request is
// decided within the store timeout (50 ms) plus slack, not after the sleep.
func TestRateLimitSlowRedisIsBoundedByTheTimeout(t *testing.T) {
	r := testenv.StartRedis(t, "--enable-debug-command", "yes") // Redis 7 refuses DEBUG by default
	block, url := site(t, "\tpolicy_rate_limit login")
	testcaddy.StartCaddy(t, redisPolicyConfig("redis "+r.URL(0), "limit 100/1s")+block)
	getReply(t, url, "X-Client: warm")
	slept := r.Sleep(t, 30*time.Second)
	var worst time.Duration
	fallbackBefore := testutil.ToFloat64(fallbackDecisions.WithLabelValues("login"))
	for range 10 {
		rep := getReply(t, url, "X-Client: slow")
		if rep.status != 200 {
			t.Fatalf("status %d while Redis is slow", rep.status)
		}
		worst = max(worst, rep.elapsed)
	}
	// A request that waited for Redis would take the rest of the sleep; the bound leaves a
	// loaded machine seconds of slack over the 50 ms timeout.
	if worst > 10*time.Second {
		t.Fatalf("slowest request took %v while Redis slept 30 s; the 50 ms store timeout must bound it", worst)
	}
	// Each of those decisions was the memory fallback's, and the counter says so.
	if got := testutil.ToFloat64(fallbackDecisions.WithLabelValues("login")) - fallbackBefore; got != 10 {
		t.Fatalf("ratelimit_fallback_decisions_total rose by %v, want 10 (every decision while Redis slept)", got)
	}
	select {
	case err := <-slept:
		t.Fatalf("Redis woke (%v) before the requests ended: the test proved nothing", err)
	default:
	}
}

// TestRateLimitStoreFailureModes: while Redis is down, on_store_failure allow admits
// everything and deny refuses everything with a 503 (the edge, not the client, is the cause)
// and a Retry-After of the breaker's second, never the limit's hour; neither sends RateLimit
// fields, since no bucket stands behind them. When Redis is back the same client is decided
// by Redis again at once: a refusal made during the outage locks nobody out.
func TestRateLimitStoreFailureModes(t *testing.T) {
	for _, tc := range []struct {
		mode string
		want int
	}{{"allow", 200}, {"deny", 503}} {
		t.Run(tc.mode, func(t *testing.T) {
			r := testenv.StartRedis(t)
			block, url := site(t, "\tpolicy_rate_limit login")
			testcaddy.StartCaddy(t, fmt.Sprintf(`{
	hardening {
		redis %s {
			dial_timeout 100ms
			read_timeout 5s
			write_timeout 5s
		}
		rate_limit {
			on_store_failure %s
			store_timeout 5s
		}
		policy login {
			limit 1/1h
		}
	}
}
`, r.URL(0), tc.mode)+block)
			// store_timeout 5s: a decision that Redis ran, but answered after the default 50 ms
			// on a loaded machine, was answered by the failure policy and still charged; with
			// limit 1/1h, the first decision after the return (a half-open probe) spent the
			// client's hour in Redis and it was refused for good (1 of 2 runs under CI-like
			// load). A dead Redis refuses connections at once: the outage needs no timeout.
			r.Kill()
			for range 12 {
				rep := getReply(t, url)
				if rep.status != tc.want {
					t.Fatalf("on_store_failure %s: status %d, want %d", tc.mode, rep.status, tc.want)
				}
				if v := rep.header.Values(headerRateLimit); len(v) != 0 {
					t.Fatalf("on_store_failure %s: RateLimit %q sent for a decision no store made", tc.mode, v)
				}
				if tc.want == 503 {
					if ra, ct := rep.header.Get("Retry-After"), rep.header.Get("Content-Type"); ra != "1" || ct != "application/problem+json" || !strings.Contains(rep.body, `"policy":"login"`) {
						t.Fatalf("refusal during the outage: Retry-After %q, Content-Type %q, body %s; want 1, application/problem+json, the policy", ra, ct, rep.body)
					}
					// The body has the members of every other refusal of the limiter, so a
					// client that reads retry_after from a 429 reads it here too.
					if !strings.Contains(rep.body, `"retry_after":1,`) {
						t.Fatalf("refusal during the outage: body %s; want retry_after 1, as Retry-After", rep.body)
					}
				}
			}
			r.Restart()
			testenv.WaitFor(t, 5*time.Second, "the client admitted by Redis once it is back (the outage's decisions must not outlive it)", func() bool {
				rep := getReply(t, url)
				return rep.status == 200 && len(rep.header.Values(headerRateLimit)) == 1
			})
		})
	}
}

// TestRateLimitRefusalsSpareRedis: once Redis refused a key, its next refusals are answered
// by the instance until the retry time, without a round trip.
func TestRateLimitRefusalsSpareRedis(t *testing.T) {
	r := testenv.StartRedis(t)
	block, url := site(t, "\tpolicy_rate_limit login")
	testcaddy.StartCaddy(t, redisPolicyConfig(slowRedis("redis "+r.URL(0)), "limit 1/1h")+block)
	getReply(t, url, "X-Client: flood")
	before := r.CommandCalls(t, "evalsha", "eval")
	for range 100 {
		if s := getReply(t, url, "X-Client: flood").status; s != 429 {
			t.Fatalf("status %d", s)
		}
	}
	// 1 for the first refusal; 2 when the store's startup probe (FailoverStore.Run, which runs
	// the script once in the background) came after the first request, as on a loaded machine.
	if n := r.CommandCalls(t, "evalsha", "eval") - before; n < 1 || n > 2 {
		t.Fatalf("100 refusals ran the script %d times in Redis; want 1 (the first refusal)", n)
	}
}

// TestRateLimitReloadIsNoRedisOutage: a reload that changes the limiter's settings replaces its
// entry, and Caddy cleans up the old configuration while its requests are still in flight. The
// old handlers' decisions after that are no Redis outage: no store_failover event, store_mode
// stays redis, and on_store_failure deny refuses none of them (they are decided in memory).
func TestRateLimitReloadIsNoRedisOutage(t *testing.T) {
	r := testenv.StartRedis(t)
	block, url := site(t, "\tpolicy_rate_limit login")
	cfg := func(timeout string) string {
		return redisPolicyConfig("redis "+r.URL(0)+"\n\t\trate_limit {\n\t\t\tstore_timeout "+timeout+
			"\n\t\t\ton_store_failure deny\n\t\t}", "limit 100/1m burst 100") + block
	}
	c := testcaddy.StartCaddy(t, cfg("1s"))
	old := activeApp(t).limiter
	testenv.WaitFor(t, 5*time.Second, "decisions in Redis", func() bool {
		return getReply(t, url, "X-Client: warm").status == 200 && old.mode() == storeModeRedis
	})
	if err := c.Load(cfg("2s")); err != nil {
		t.Fatal(err)
	}
	if activeApp(t).limiter == old {
		t.Fatal("the reload kept the limiter entry: the test proves nothing")
	}
	// What an old configuration's request that reaches its policy_rate_limit now gets.
	limit := ratelimit.Limit{Rate: 100, Period: time.Minute, Burst: 100}
	for i := range 5 {
		if res := old.decide(context.Background(), old.storeFor("login"), "login", "late", limit); !res.Allowed {
			t.Fatalf("old configuration's request %d after the reload refused: %+v", i, res)
		}
	}
	if v := testutil.ToFloat64(storeMode.WithLabelValues(storeModeFallback)); v != 0 {
		t.Fatalf("store_mode memory-fallback %v after a reload, want 0: Redis never failed", v)
	}
	if v := testutil.ToFloat64(storeMode.WithLabelValues(storeModeRedis)); v != 1 {
		t.Fatalf("store_mode redis %v after a reload, want 1", v)
	}
	if logs := securityLogs(c, EventStoreFailover); len(logs) != 0 {
		t.Fatalf("store_failover events after a reload, with Redis up all along: %v", logs)
	}
	if rep := getReply(t, url, "X-Client: new"); rep.status != 200 {
		t.Fatalf("new configuration: status %d", rep.status)
	}
}

// TestRateLimitLeasedKeyTellsTheTruth: a key leased from Redis (a burst of 200 or more) sends
// RateLimit fields a client can follow. A fast key (1000/1s) whose bucket Redis has refilled
// since the lease read t=0 beside a stale r ("more quota now"); it reads what memory says after
// admitting from a full bucket, t=1. A slow key (1000/1h burst 1000, a unit back every 3.6 s)
// whose last lease still held 5 requests read r=5, then lost them when the lease was a second
// old: the client that waited got a 429 and the key admitted 995 of its 1000. Leased requests
// whose share Redis still counts stay usable, so the key admits its 1000 and not one more.
func TestRateLimitLeasedKeyTellsTheTruth(t *testing.T) {
	r := testenv.StartRedis(t)
	t.Run("fast", func(t *testing.T) {
		block, url := site(t, "\tpolicy_rate_limit login")
		testcaddy.StartCaddy(t, redisPolicyConfig(slowRedis("redis "+r.URL(0)), "limit 1000/1s burst 1000")+block)
		if got := getReply(t, url, "X-Client: fast"); got.status != 200 {
			t.Fatalf("first request: %d", got.status)
		}
		time.Sleep(50 * time.Millisecond) // the lease of 10 is back in Redis after 10 ms
		got := getReply(t, url, "X-Client: fast")
		if rl := got.header.Get("RateLimit"); got.status != 200 || strings.HasSuffix(rl, ";t=0") {
			t.Fatalf("leased request: %d, RateLimit %q; want t of at least 1", got.status, rl)
		}
	})
	t.Run("slow", func(t *testing.T) {
		block, url := site(t, "\tpolicy_rate_limit login")
		testcaddy.StartCaddy(t, redisPolicyConfig(slowRedis("redis "+r.URL(0)), "limit 1000/1h burst 1000")+block)
		var last reply
		for i := range 995 {
			if last = getReply(t, url, "X-Client: slow"); last.status != 200 {
				t.Fatalf("request %d: %d", i+1, last.status)
			}
		}
		if rl := last.header.Get("RateLimit"); !strings.HasPrefix(rl, `"login";r=5;`) {
			t.Fatalf("request 995: RateLimit %q; want r=5", rl)
		}
		time.Sleep(1200 * time.Millisecond) // older than a lease's second; no unit back yet
		for i := range 5 {
			if got := getReply(t, url, "X-Client: slow"); got.status != 200 {
				t.Fatalf("request %d after r=5: %d, RateLimit %q", i+1, got.status, got.header.Get("RateLimit"))
			}
		}
		if got := getReply(t, url, "X-Client: slow"); got.status != 429 {
			t.Fatalf("request 1001: %d; the burst is 1000", got.status)
		}
	})
}

// TestRateLimitClientThatLeftIsNotRefused: a client that goes away while its decision waits
// for Redis was counted as refused: the store answered its ended context with a denial, and the
// handler counted it in decisions_total{result="denied"}, wrote a rate_limit_exceeded event and
// scored the client rate_limited, for a limit it never reached (a browser that navigates away, an
// HTTP/2 stream reset, while Redis is slow). Nothing is decided for it now.
func TestRateLimitClientThatLeftIsNotRefused(t *testing.T) {
	r := testenv.StartRedis(t)
	proxy := testenv.StartProxy(t, r.Addr)
	block, url := site(t, "\tpolicy_rate_limit login")
	c := testcaddy.StartCaddy(t, redisPolicyConfig(slowRedis("redis redis://"+proxy.Addr), "limit 100/1s")+block)
	getReply(t, url, "X-Client: left")
	denied := rateLimitCount(t, "login", "default", "denied")
	proxy.SetLatency(200 * time.Millisecond) // each way: the decision waits 400 ms
	for range 5 {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("X-Client", "left")
		if resp, err := replyClient.Do(req); err == nil {
			resp.Body.Close()
			t.Fatalf("answered in 50 ms: %d", resp.StatusCode)
		}
		cancel()
	}
	time.Sleep(time.Second) // the handlers see the ended contexts and return
	if got := rateLimitCount(t, "login", "default", "denied") - denied; got != 0 {
		t.Errorf("%v refusals counted for requests whose clients left; the limit (100/1s) was never reached", got)
	}
	if logs := securityLogs(c, EventRateLimited); len(logs) != 0 {
		t.Errorf("rate_limit_exceeded events for clients that left: %v", logs)
	}
}

// TestRateLimitReloadsLeakNoGoroutines: reloads back and forth between two configurations that
// differ in everything the limiter pools (Redis options, so a second client; store_timeout, so
// a second limiter with its batching goroutines and probe; an adaptive policy, so the load
// sampler) leave the goroutine count where the first configuration had it: each reload's
// clients, limiters and samplers end with the configuration that was their last user.
func TestRateLimitReloadsLeakNoGoroutines(t *testing.T) {
	r := testenv.StartRedis(t)
	block, url := site(t, "\tpolicy_rate_limit login\n\tpolicy_rate_limit api_intensive")
	plainBlock := strings.Replace(block, "\tpolicy_rate_limit api_intensive\n", "", 1)
	configA := redisPolicyConfig(slowRedis("redis "+r.URL(0)), "limit 1000/1s burst 1000") + block
	configB := redisPolicyConfig("redis "+r.URL(0)+" {\n\t\t\tpool_size 3\n\t\t}\n\t\trate_limit {\n\t\t\tstore_timeout 4s\n\t\t}", "limit 1000/1s burst 1000") + plainBlock
	c := testcaddy.StartCaddy(t, configA)
	use := func() {
		for i := range 5 {
			// api_intensive (10/1m burst 5 by address) refuses once its burst is spent.
			if st := getReply(t, url, "X-Client: c"+strconv.Itoa(i)).status; st != 200 && st != 429 {
				t.Fatalf("status %d", st)
			}
		}
	}
	use()
	cycle := func(i int) {
		if err := c.Load(configB); err != nil {
			t.Fatal(err)
		}
		use()
		if activeApp(t).limiter.adaptive.Running() {
			t.Fatalf("cycle %d: configuration B has no adaptive policy, and its sampler runs", i)
		}
		if err := c.Load(configA); err != nil {
			t.Fatal(err)
		}
		use()
		if !activeApp(t).limiter.adaptive.Running() {
			t.Fatalf("cycle %d: configuration A has an adaptive policy, and its sampler does not run", i)
		}
	}
	// One cycle first, so that every pool and connection has been made once; its count is the
	// reference (a goroutine of its startup still running only raises it).
	cycle(0)
	base := runtime.NumGoroutine()
	for i := 1; i <= 8; i++ {
		cycle(i)
	}
	settled := func(want int) func() bool {
		return func() bool { return runtime.NumGoroutine() <= want }
	}
	// Slack for goroutines of the HTTP client and server that come and go with connections.
	testenv.WaitFor(t, 15*time.Second, fmt.Sprintf("the goroutine count to return to %d (+5)", base), settled(base+5))
}

// TestRateLimitFrozenRedisBlocksNeitherStartNorReload: a Redis that accepts connections and
// answers nothing (every reply held by the proxy) while Caddy starts and reloads. Neither the
// load nor the reload waits for it: the rate limiter's startup probe, the startup ping, the
// shared detections and the monitoring check all ask Redis in the background, so the first
// request is answered (decided in memory) while Redis still has not said a word.
func TestRateLimitFrozenRedisBlocksNeitherStartNorReload(t *testing.T) {
	// Here, not in TryStartCaddy: that runs in a goroutine below, where its t.Skip ends only
	// the goroutine, and the test then failed after 30 s under -short.
	if testing.Short() {
		t.Skip("runs a real Caddy; skipped with -short")
	}
	r := testenv.StartRedis(t)
	proxy := testenv.StartProxy(t, r.Addr)
	proxy.SetLatency(time.Hour) // nothing crosses the proxy during this test
	port := testenv.FreePort(t)
	config := func(limit string) string {
		return fmt.Sprintf(`{
	hardening {
		redis redis://%s
		ip_classes {
			trusted 10.0.0.1
		}
		policy login {
			limit %s
			adaptive
		}
	}
}
http://127.0.0.1:%d {
	bind 127.0.0.1
	handle /health {
		monitoring {
			check redis
		}
	}
	policy_rate_limit login
	respond "ok"
}
`, proxy.Addr, limit, port)
	}
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	var c *testcaddy.Caddy
	loaded := make(chan error, 1)
	go func() {
		var err error
		c, err = testcaddy.TryStartCaddy(t, config("5/1m"))
		loaded <- err
	}()
	// A bound on a hang, not a timing assertion: a start that waited for Redis never returns.
	select {
	case err := <-loaded:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Caddy's start waits for a Redis that does not answer")
	}
	if st := getReply(t, url).status; st != 200 {
		t.Fatalf("first request: %d, want 200 (decided in memory)", st)
	}
	testenv.WaitFor(t, 10*time.Second, "memory-fallback", func() bool { return activeApp(t).limiter.mode() == storeModeFallback })
	go func() { loaded <- c.Load(config("6/1m")) }()
	select {
	case err := <-loaded:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("a reload waits for a Redis that does not answer")
	}
	if got := getReply(t, url).header.Get("RateLimit-Policy"); !strings.HasPrefix(got, `"login";q=`) {
		t.Fatalf("after the reload: RateLimit-Policy %q", got)
	}
}
