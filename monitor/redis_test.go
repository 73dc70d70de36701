package monitor

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/swarmsec/caddy-hardening/internal/testenv"
)

func client(t *testing.T, r *testenv.Redis) redis.UniversalClient {
	c := redis.NewClient(&redis.Options{Addr: r.Addr, MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	t.Cleanup(func() { c.Close() })
	return c
}

func TestRedisCheckerAgainstARealServer(t *testing.T) {
	r := testenv.StartRedis(t)
	c, _ := NewCheck(Config{Name: "redis", Interval: time.Minute, Timeout: time.Second, FailuresBeforeDown: 2}, RedisChecker{Client: client(t, r)})
	if st := c.RunOnce(context.Background()); !st.Up || st.Status != Pass || st.Latency <= 0 {
		t.Fatalf("redis up: %+v", st)
	}
	r.Kill()
	if st := c.RunOnce(context.Background()); !st.Up || st.Status != Warn {
		t.Fatalf("one failure of two: %+v", st)
	}
	if st := c.RunOnce(context.Background()); st.Up || st.Status != Fail || !strings.Contains(st.Output, "refused") {
		t.Fatalf("down after two failures: %+v", st)
	}
	r.Restart()
	if st := c.RunOnce(context.Background()); !st.Up || st.Status != Pass {
		t.Fatalf("back up: %+v", st)
	}
}

func TestRedisCheckerPingsEveryClusterMaster(t *testing.T) {
	cl := testenv.StartCluster(t)
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: cl.Addrs(), MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	defer cc.Close()
	if out := (RedisChecker{Client: cc}).Check(context.Background()); out.Status != Pass {
		t.Fatalf("cluster up: %+v", out)
	}
	cl.Nodes[1].Kill()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	out := (RedisChecker{Client: cc}).Check(ctx)
	if out.Status != Fail || !strings.Contains(out.Output, cl.Nodes[1].Addr) {
		t.Fatalf("one master killed: %+v", out)
	}
}

func TestWorkerBacklog(t *testing.T) {
	r := testenv.StartRedis(t)
	c := client(t, r)
	for i := 0; i < 5; i++ {
		if _, err := r.Do("RPUSH", "celery", fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		max    int64
		on     Status
		status Status
	}{{10, Warn, Pass}, {4, Warn, Warn}, {4, Fail, Fail}, {0, Fail, Pass}} {
		out := WorkerChecker{Client: c, Queue: "celery", MaxBacklog: tc.max, BacklogStatus: tc.on}.Check(context.Background())
		if out.Status != tc.status || out.Observed[0].Value != int64(5) {
			t.Errorf("max %d on %s: %+v, want %s", tc.max, tc.on, out, tc.status)
		}
		if tc.status != Pass && !strings.Contains(out.Output, "backlog 5 is over 4") {
			t.Errorf("output %q", out.Output)
		}
	}
	if out := (WorkerChecker{Client: c, Queue: "empty", MaxBacklog: 1}).Check(context.Background()); out.Status != Pass {
		t.Errorf("a missing queue is an empty one: %+v", out)
	}
}

func TestWorkerHeartbeat(t *testing.T) {
	r := testenv.StartRedis(t)
	c := client(t, r)
	now := time.Unix(1_800_000_000, 0)
	w := WorkerChecker{Client: c, HeartbeatKey: "celery:heartbeat", MaxAge: time.Minute, Now: func() time.Time { return now }}
	if out := w.Check(context.Background()); out.Status != Fail || !strings.Contains(out.Output, "no heartbeat") {
		t.Fatalf("missing: %+v", out)
	}
	for _, tc := range []struct {
		value string
		want  Status
	}{
		{"1799999990.25", Pass},
		{"1799999990", Pass},
		{now.Add(-30 * time.Second).UTC().Format(time.RFC3339), Pass},
		{"1799999000", Fail}, // 1000 s old
		{"garbage", Fail},
	} {
		if _, err := r.Do("SET", "celery:heartbeat", tc.value); err != nil {
			t.Fatal(err)
		}
		if out := w.Check(context.Background()); out.Status != tc.want {
			t.Errorf("heartbeat %q: %+v, want %s", tc.value, out, tc.want)
		}
	}
	r.Kill()
	if out := w.Check(context.Background()); out.Status != Fail {
		t.Fatalf("redis down: %+v", out)
	}
}

// TestWorkerHeartbeatInTheFuture: a worker that writes its heartbeat in milliseconds
// (JavaScript's Date.now(), Python's time.time()*1000) or nanoseconds stores a time thousands of
// years ahead. Its age was counted as 0, so the check passed forever, workers dead or alive. A
// heartbeat further ahead than max_age (more than any clock skew) fails and says why.
func TestWorkerHeartbeatInTheFuture(t *testing.T) {
	r := testenv.StartRedis(t)
	c := client(t, r)
	now := time.Unix(1_800_000_000, 0)
	w := WorkerChecker{Client: c, HeartbeatKey: "hb", MaxAge: time.Minute, Now: func() time.Time { return now }}
	for _, tc := range []struct {
		value string
		want  Status
		says  string
	}{
		{"1800000000000", Fail, "milliseconds"},       // Date.now()
		{"1800000000000000000", Fail, "milliseconds"}, // time.time_ns()
		{"1800003600", Fail, "in the future"},         // an hour ahead
		{now.Add(time.Hour).UTC().Format(time.RFC3339), Fail, "in the future"},
		{"1800000030", Pass, ""}, // 30 s ahead: clock skew within max_age
	} {
		if _, err := r.Do("SET", "hb", tc.value); err != nil {
			t.Fatal(err)
		}
		out := w.Check(context.Background())
		if out.Status != tc.want || !strings.Contains(out.Output, tc.says) {
			t.Errorf("heartbeat %q: %+v, want %s saying %q", tc.value, out, tc.want, tc.says)
		}
	}
}

// TestRedisCheckOfAClosedClientIsNoResult: a reload refused with new Redis settings closed
// its shared client while its check ran; that run logged "dependency down ... client is
// closed" and counted a failure in the running configuration's series. A closed client is
// no news of the dependency: the run leaves the state alone and reports nothing.
func TestRedisCheckOfAClosedClientIsNoResult(t *testing.T) {
	r := testenv.StartRedis(t)
	closed := redis.NewClient(&redis.Options{Addr: r.Addr})
	_ = closed.Close()
	for name, checker := range map[string]Checker{
		"redis":  RedisChecker{Client: closed},
		"worker": WorkerChecker{Client: closed, Queue: "celery"},
	} {
		c, _ := NewCheck(Config{Name: name, Interval: time.Minute, Timeout: time.Second}, checker)
		reported := 0
		c.OnResult = func(State, bool) { reported++ }
		if st := c.RunOnce(context.Background()); st.Checked || st.Runs != 0 || reported != 0 {
			t.Errorf("%s check of a closed client: state %+v, %d results reported; want none", name, st, reported)
		}
	}
}

// TestRedisCheckerFailsAReadOnlyReplica: a replica answers PING but refuses writes; a check
// (a critical one holds /ready) must not pass it. Once promoted, it passes.
func TestRedisCheckerFailsAReadOnlyReplica(t *testing.T) {
	replica := testenv.StartReplica(t, testenv.StartRedis(t))
	for _, proto := range []int{3, 2} {
		c := redis.NewClient(&redis.Options{Addr: replica.Addr, MaxRetries: -1, Protocol: proto})
		out := RedisChecker{Client: c}.Check(context.Background())
		c.Close()
		if out.Status != Fail || !strings.Contains(out.Output, "read-only replica") {
			t.Fatalf("RESP%d: a replica: %+v, want a failure naming the read-only replica", proto, out)
		}
	}
	if _, err := replica.Do("REPLICAOF", "NO", "ONE"); err != nil {
		t.Fatal(err)
	}
	if out := (RedisChecker{Client: client(t, replica)}).Check(context.Background()); out.Status != Pass {
		t.Fatalf("promoted to primary: %+v", out)
	}
}

// TestStopCancelsARedisRunInProgress: a redis or worker check against a server that accepts
// and never answers (a hung Redis, a black-holed proxy) held a reload for the rest of its
// timeout: go-redis bounds a read by its ReadTimeout (the check's timeout) and does not see the
// context's cancellation, so Stop waited for the run (a reload took 28 s with a 30 s timeout,
// and Caddy's admin endpoint gave up stopping after 10 s). Stop now cuts such a run short too,
// and the run is no result.
func TestStopCancelsARedisRunInProgress(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	arrived := make(chan struct{}, 8)
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			defer conn.Close() // held open, never answered, until the test ends
			arrived <- struct{}{}
		}
	}()
	for name, mk := range map[string]func(redis.UniversalClient) Checker{
		"redis":  func(c redis.UniversalClient) Checker { return RedisChecker{Client: c} },
		"worker": func(c redis.UniversalClient) Checker { return WorkerChecker{Client: c, Queue: "celery"} },
	} {
		// As the monitoring handler builds a check's own client: every bound is the timeout.
		cl := redis.NewClient(&redis.Options{Addr: ln.Addr().String(), MaxRetries: -1,
			DialTimeout: time.Hour, ReadTimeout: time.Hour, WriteTimeout: time.Hour})
		stopDuringRun(t, name, mk(cl), arrived)
		_ = cl.Close()
	}
}
