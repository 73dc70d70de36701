package caddymodule

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/sony/gobreaker/v2"

	"github.com/swarmsec/caddy-hardening/breaker"
	"github.com/swarmsec/caddy-hardening/internal/testcaddy"
	"github.com/swarmsec/caddy-hardening/internal/testenv"
)

// joinerCaddyfile is an instance whose shared breaker t_join (settings as the block's extra
// lines) guards addr, with Redis at redisAddr and timeouts long enough for a slow link.
func joinerCaddyfile(admin, port int, redisAddr, addr, extra string) string {
	return fmt.Sprintf(`{
	admin 127.0.0.1:%d
	hardening {
		environment development
		redis redis://%s/0 {
			dial_timeout 2s
			read_timeout 2s
			write_timeout 2s
		}
	}
}

http://127.0.0.1:%d {
	bind 127.0.0.1
	upstream_breaker t_join {
		consecutive_failures 2
		open_for 1m
		shared
		sync_interval 1s
		%s
	}
	reverse_proxy %s
}
`, admin, redisAddr, port, extra, addr)
}

// sharedOpen reports whether Redis holds t_join's shared state as open.
func sharedOpen(t *testing.T, r *testenv.Redis) bool {
	t.Helper()
	v, err := r.Do("GET", "hardening:breaker:{t_join}:gobreaker:state:t_join")
	if err != nil || v == nil {
		return false
	}
	var raw []byte
	switch v := v.(type) {
	case string:
		raw = []byte(v)
	case []byte:
		raw = v
	}
	var st struct {
		State int `json:"state"`
	}
	return json.Unmarshal(raw, &st) == nil && st.State == 2 // gobreaker.StateOpen
}

// tripShared trips t_join on an instance of its own (Redis reached directly) whose upstream
// fails, and waits until Redis holds the open state.
func tripShared(t *testing.T, r *testenv.Redis) {
	t.Helper()
	failing := startUpstream(t, "fail")
	port := testenv.FreePort(t)
	testenv.RunCaddy(t, joinerCaddyfile(testenv.FreePort(t), port, r.Addr, failing.addr(), ""))
	a := sharedInstance{url: fmt.Sprintf("http://127.0.0.1:%d/", port)}
	for i, want := range []int{500, 500, 503} {
		if got := a.status(t); got != want {
			t.Fatalf("tripping instance, request %d: %d, want %d", i, got, want)
		}
	}
	testenv.WaitFor(t, 5*time.Second, "the trip recorded in Redis", func() bool { return sharedOpen(t, r) })
}

// A late joiner, an instance that starts or reloads its breaker while the shared state says
// open, must not send its first requests to the upstream: it reads the shared state before it
// serves (bounded), not only at its first sync tick. The joiner reaches Redis through a link
// with 40 ms of latency each way, so that its first synchronisation, which runs beside the
// start, cannot win the race by luck: a new connection's handshake (HELLO, CLIENT SETINFO,
// ...) and the read take several round trips. At 100 ms each way they came to about the join's
// 1 s bound, and a slow CI run timed out (the joiner then decides locally, as designed).
func TestBreakerSharedLateJoinerStartsOpen(t *testing.T) {
	r := testenv.StartRedis(t)
	tripShared(t, r)
	link := testenv.StartProxy(t, r.Addr)
	link.SetLatency(40 * time.Millisecond)

	t.Run("start", func(t *testing.T) {
		healthy := startUpstream(t, "ok")
		port := testenv.FreePort(t)
		p := testenv.RunCaddy(t, joinerCaddyfile(testenv.FreePort(t), port, link.Addr, healthy.addr(), ""))
		b := sharedInstance{url: fmt.Sprintf("http://127.0.0.1:%d/", port)}
		for i := range 3 {
			if code := b.status(t); code != http.StatusServiceUnavailable {
				t.Fatalf("request %d right after the start: %d, want 503 (the shared breaker is open); the joiner's breaker log:\n%s", i, code, breakerLog(p.Output()))
			}
		}
		if n := healthy.hits.Load(); n != 0 {
			t.Fatalf("the upstream got %d requests while the shared breaker was open", n)
		}
		// The join is a state change like any follower's: event and log, cause shared.
		if err := p.WaitOutput(`"cause":"shared"`, 5*time.Second); err != nil {
			t.Fatalf("the joiner reported no state change caused by the shared state: %v", err)
		}
	})

	t.Run("reload", func(t *testing.T) {
		healthy := startUpstream(t, "ok")
		port, admin := testenv.FreePort(t), testenv.FreePort(t)
		// A breaker of another name: the joiner's t_join is created by the reload.
		cfg := strings.Replace(joinerCaddyfile(admin, port, link.Addr, healthy.addr(), ""), "t_join", "t_other", 1)
		testenv.RunCaddy(t, cfg)
		b := sharedInstance{url: fmt.Sprintf("http://127.0.0.1:%d/", port)}
		if code := b.status(t); code != http.StatusOK {
			t.Fatalf("before the reload: %d, want 200", code)
		}
		loadCaddyfile(t, admin, joinerCaddyfile(admin, port, link.Addr, healthy.addr(), ""))
		hits := healthy.hits.Load()
		for i := range 3 {
			if code := b.status(t); code != http.StatusServiceUnavailable {
				t.Fatalf("request %d right after the reload: %d, want 503 (the shared breaker is open)", i, code)
			}
		}
		if n := healthy.hits.Load() - hits; n != 0 {
			t.Fatalf("the upstream got %d requests after the reload while the shared breaker was open", n)
		}
	})
}

// breakerLog is the lines of a Caddy log about breakers and their shared state (the join's
// wait, state changes, Redis errors), for a failure message: the whole log is mostly
// Caddy's own startup.
func breakerLog(out string) string {
	var b strings.Builder
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "breaker") || strings.Contains(line, "shared") || strings.Contains(line, "redis") {
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}

// loadCaddyfile replaces a running instance's configuration through its admin API and
// returns once Caddy answered (the new configuration is running).
func loadCaddyfile(t *testing.T, admin int, caddyfile string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, fmt.Sprintf("http://127.0.0.1:%d/load", admin), bytes.NewBufferString(caddyfile))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "text/caddyfile")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var b bytes.Buffer
		_, _ = b.ReadFrom(resp.Body)
		t.Fatalf("reload: %d %s", resp.StatusCode, b.String())
	}
}

// With Redis frozen (connections accepted, nothing answered), a start waits for its shared
// breakers' first read at most 1 s for all of them together, not 1 s each, says so, and then
// serves, deciding locally.
func TestBreakerSharedJoinWaitIsBounded(t *testing.T) {
	r := testenv.StartRedis(t)
	r.Freeze()
	t.Cleanup(r.Thaw)
	healthy := startUpstream(t, "ok")
	port := testenv.FreePort(t)
	cfg := joinerCaddyfile(testenv.FreePort(t), port, r.Addr, healthy.addr(), "")
	var sites strings.Builder
	for _, name := range []string{"t_join_b", "t_join_c"} {
		site := cfg[strings.Index(cfg, "http://"):]
		sites.WriteString(strings.Replace(strings.Replace(site, "t_join", name, 1),
			fmt.Sprintf(":%d", port), fmt.Sprintf(":%d", testenv.FreePort(t)), 1))
	}
	p := testenv.RunCaddy(t, cfg+sites.String())
	// Each breaker either waited for the deadline (the warning) or had its first read fail
	// before it (Joined closes then too; its store_failover event says so, from the syncer's
	// goroutine, maybe after Caddy serves: polled).
	var at []float64
	said := map[string]bool{}
	done := func() bool {
		at, said = at[:0], map[string]bool{}
		for _, e := range testenv.ParseLogs(p.Output()) {
			switch {
			case strings.HasPrefix(e.Msg(), "the shared breaker state was not read in time"):
				ts, _ := e["ts"].(float64)
				at = append(at, ts)
				said[e.Str("breaker")] = true
			case e.Msg() == EventStoreFailover && e.Str("to") == "local":
				said[e.Str("breaker")] = true
			}
		}
		return len(said) == 3
	}
	for deadline := time.Now().Add(10 * time.Second); !done() && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	if len(said) != 3 || len(at) == 0 {
		t.Fatalf("breakers that waited for the shared state or failed to read it: %v (%d waited), want all 3", said, len(at))
	}
	if spread := at[len(at)-1] - at[0]; spread > 0.5 {
		t.Fatalf("the breakers waited one after the other (%.2f s between the first and the last): the wait must be for all together", spread)
	}
	b := sharedInstance{url: fmt.Sprintf("http://127.0.0.1:%d/", port)}
	if code := b.status(t); code != http.StatusOK {
		t.Fatalf("with Redis frozen: %d, want 200 (local decisions)", code)
	}
}

// A Caddy whose shared breaker joins (or follows) a trip of another instance stays open until
// the shared breaker's open time is up, not for its own open_for from when it read the state:
// its Retry-After counts down to the shared time, as the tripping instance's does, and it lets
// a probe through when that time is up. The other instance here is gobreaker's distributed
// breaker itself, over the same Redis, with an open time of 10 s against Caddy's 1m.
func TestBreakerSharedJoinerOpenEndsWithTheSharedTrip(t *testing.T) {
	r := testenv.StartRedis(t)
	client := redis.NewClient(&redis.Options{Addr: r.Addr})
	t.Cleanup(func() { client.Close() })
	store := breaker.NewRedisStore(client, "hardening:", "t_join_time")
	dcb, err := gobreaker.NewDistributedCircuitBreaker[struct{}](store, gobreaker.Settings{
		Name: "t_join_time", Timeout: 10 * time.Second,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= 1 },
	})
	if err != nil {
		t.Fatal(err)
	}
	_, _ = dcb.Execute(func() (struct{}, error) { return struct{}{}, errors.New("upstream down") })
	raw, err := store.GetData("gobreaker:state:t_join_time")
	var st gobreaker.SharedState
	if err != nil || json.Unmarshal(raw, &st) != nil || st.State != gobreaker.StateOpen {
		t.Fatalf("the other instance's trip left %s (%v)", raw, err)
	}

	healthy := startUpstream(t, "ok")
	port := testenv.FreePort(t)
	testcaddy.StartCaddy(t, fmt.Sprintf(`{
	hardening {
		environment development
		redis %s
	}
}
http://127.0.0.1:%d {
	bind 127.0.0.1
	upstream_breaker t_join_time {
		consecutive_failures 2
		open_for 1m
		shared
		sync_interval 100ms
	}
	reverse_proxy %s
}
`, r.URL(0), port, healthy.addr()))
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	first := getReply(t, url)
	left := int((time.Until(st.Expiry) + time.Second - 1) / time.Second)
	if first.status != http.StatusServiceUnavailable {
		t.Fatalf("first request %d with the shared breaker open for %d s more, want 503", first.status, left)
	}
	assertOpenReply(t, first, left+1)

	// Open until the shared time is up (plus the polls' own time), then a probe goes through.
	testenv.WaitFor(t, time.Until(st.Expiry)+5*time.Second, "a probe let through once the shared open time is up", func() bool {
		return getReply(t, url).status == http.StatusOK
	})
	if time.Now().Before(st.Expiry) {
		t.Fatalf("a request reached the upstream %s before the shared open time was up", time.Until(st.Expiry))
	}
}
