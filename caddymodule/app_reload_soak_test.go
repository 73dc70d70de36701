package caddymodule

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/swarmsec/caddy-hardening/internal/testcaddy"
	"github.com/swarmsec/caddy-hardening/internal/testenv"
)

// soakConfig is a configuration with every Redis user on (the rate limiter, shared breakers,
// shared detections, monitoring's redis check and dashboard); redis is the hardening block's
// redis line, or "" for none.
func soakConfig(port int, redis, upstream string) string {
	check := ""
	if redis != "" {
		redis = "\n\t\t" + redis
		check = "\n\t\t\tcheck redis"
	}
	return fmt.Sprintf(`{
	hardening {
		environment development%s
	}
}

http://127.0.0.1:%d {
	bind 127.0.0.1
	handle_path /api/monitoring/* {
		monitoring {%s
			dashboard on
		}
	}
	handle {
		policy_rate_limit api
		upstream_breaker soak {
			consecutive_failures 5
			shared
			sync_interval 100ms
		}
		reverse_proxy %s
	}
}
`, redis, port, check, upstream)
}

// soakRedis is the redis line of variant i: the same address, another database, a key prefix
// of its own (a new pooled client and shared detections each time: a reference a reload kept
// would hold them, and grow with the reloads), or no Redis.
func soakRedis(r *testenv.Redis, i int) string {
	switch i % 4 {
	case 0:
		return "redis " + r.URL(0)
	case 1:
		return "redis " + r.URL(1)
	case 2:
		return fmt.Sprintf("redis %s {\n\t\t\tkey_prefix p%d:\n\t\t}", r.URL(0), i)
	}
	return ""
}

// allStacks is every goroutine's stack.
func allStacks() string {
	buf := make([]byte, 1<<22)
	return string(buf[:runtime.Stack(buf, true)])
}

// heapInUse is the live heap after a collection, in bytes (logged: a figure to compare, not a
// bound).
func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

func openFDs(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	return len(entries)
}

// settled waits until f() is at most limit, and returns its last value.
func settled(f func() int, limit int) int {
	deadline := time.Now().Add(10 * time.Second)
	n := f()
	for n > limit && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		runtime.GC()
		n = f()
	}
	return n
}

// TestReloadsLeakNothing reloads a configuration with every Redis user on 40 times, through
// four variants (same Redis, another database, another key prefix, no Redis), with requests
// in between, and checks that goroutines, open files and Redis connections after the last
// reload are those after the first cycle, plus a small constant: anything a reload leaves
// behind grows with the reloads.
func TestReloadsLeakNothing(t *testing.T) {
	r := testenv.StartRedis(t)
	reloadSoak(t, func(i int) string { return soakRedis(r, i) }, func() int { return len(redisConnections(t, r)) })
}

// TestReloadsLeakNothingCluster is TestReloadsLeakNothing over a 3-master Cluster: a client
// per master in the rate limiter's batching, the shared detections' subscription, the
// breakers' sync; the variants are the Cluster, the Cluster under a key prefix of its own, no
// Redis, and one of its nodes as a standalone server (refused commands: MOVED).
func TestReloadsLeakNothingCluster(t *testing.T) {
	cl := testenv.StartCluster(t)
	seeds := strings.Join(cl.Addrs(), " ")
	variant := func(i int) string {
		switch i % 4 {
		case 0:
			return "redis {\n\t\t\tcluster " + seeds + "\n\t\t}"
		case 1:
			return fmt.Sprintf("redis {\n\t\t\tcluster %s\n\t\t\tkey_prefix p%d:\n\t\t}", seeds, i)
		case 2:
			return ""
		}
		return "redis redis://" + cl.Addrs()[0]
	}
	conns := func() int {
		n := 0
		for _, node := range cl.Nodes {
			n += len(redisConnections(t, node))
		}
		return n
	}
	reloadSoak(t, variant, conns)
}

// reloadSoak runs the reloads through variant's redis lines, conns counting the Redis
// connections caddy-hardening holds.
func reloadSoak(t *testing.T, variant func(int) string, conns func() int) {
	port := testenv.FreePort(t)
	// The upstream closes its connections: a bare Caddy's reverse_proxy keeps one idle
	// connection per reload (two goroutines, two files) which would hide ours.
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Connection", "close")
		_, _ = io.WriteString(w, "ok")
	}))
	defer upstream.Close()
	up := strings.TrimPrefix(upstream.URL, "http://")
	c := testcaddy.StartCaddy(t, soakConfig(port, variant(0), up))
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	// A new connection per request, and one retry: a connection made as a reload ends is now
	// and then reset by the server being shut down (a bare Caddy does it too; not a leak).
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	hit := func() {
		for _, path := range []string{"", "api/monitoring/health", "api/monitoring/dashboard/data"} {
			resp, err := client.Get(url + path)
			if err != nil {
				resp, err = client.Get(url + path)
			}
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
	reload := func(i int) {
		t.Helper()
		if err := c.Load(soakConfig(port, variant(i), up)); err != nil {
			t.Fatalf("reload %d: %v", i, err)
		}
		hit()
	}
	hit()
	for i := 1; i <= 8; i++ { // two cycles: everything lazily made is made
		reload(i)
	}
	count := runtime.NumGoroutine
	baseG := settled(count, 0)
	baseFD, baseConns, baseHeap := openFDs(t), conns(), heapInUse()
	for i := 9; i <= 40; i++ {
		reload(i)
	}
	const slack = 10
	g := settled(count, baseG+slack)
	fds := settled(func() int { return openFDs(t) }, baseFD+slack)
	cs := settled(conns, baseConns+slack)
	t.Logf("after 8 reloads: %d goroutines, %d fds, %d Redis connections, %d kB heap; after 40: %d, %d, %d, %d kB",
		baseG, baseFD, baseConns, baseHeap>>10, g, fds, cs, heapInUse()>>10)
	if g > baseG+slack {
		t.Errorf("goroutines grew from %d to %d over 32 reloads:\n%s", baseG, g, allStacks())
	}
	if fds > baseFD+slack {
		t.Errorf("open files grew from %d to %d over 32 reloads", baseFD, fds)
	}
	if cs > baseConns+slack {
		t.Errorf("Redis connections grew from %d to %d over 32 reloads", baseConns, cs)
	}
}
