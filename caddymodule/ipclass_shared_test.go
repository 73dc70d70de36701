package caddymodule

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/swarmsec/caddy-hardening/internal/testenv"
)

// detectionInstance runs the built Caddy with detection sharing through the Redis at redisURL;
// 127.0.0.1 is a trusted proxy, so X-Forwarded-For names the client.
func detectionInstance(t *testing.T, redisURL string) string {
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	testenv.RunCaddy(t, fmt.Sprintf(`{
	admin off
	servers {
		trusted_proxies static 127.0.0.1/32
	}
	hardening {
		redis %s
	}
}
http://%s {
	bind 127.0.0.1
	path_guard
	respond "class {http.vars.ip_class}"
}
`, redisURL, addr))
	return addr
}

func classAt(t *testing.T, addr, client string) string {
	status, _, body := rawGet(t, addr, "/", "X-Forwarded-For: "+client)
	if status != http.StatusOK {
		t.Fatalf("GET / from %s at %s: %d %s", client, addr, status, body)
	}
	return body
}

func waitClass(t *testing.T, addr, client, want string, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		if got := classAt(t, addr, client); got == want {
			return time.Since(start)
		}
		if time.Since(start) > within {
			t.Fatalf("%s at %s: not %q within %v", client, addr, want, within)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestDetectionSharedBetweenInstances: two Caddy processes share one Redis. A client detected
// on A is suspicious on B within a second; with Redis stopped, detection goes on locally and no
// request fails; once Redis is back, detections are shared again.
func TestDetectionSharedBetweenInstances(t *testing.T) {
	r := testenv.StartRedis(t)
	a := detectionInstance(t, r.URL(0))
	b := detectionInstance(t, r.URL(0))
	time.Sleep(200 * time.Millisecond) // both subscribed

	x := "198.51.100.50"
	if got := classAt(t, b, x); got != "class default" {
		t.Fatalf("before: %q", got)
	}
	for _, p := range []string{"/.env", "/.git/config"} {
		rawGet(t, a, p, "X-Forwarded-For: "+x)
	}
	if got := classAt(t, a, x); got != "class suspicious" {
		t.Fatalf("on the detecting instance: %q", got)
	}
	took := waitClass(t, b, x, "class suspicious", time.Second)
	t.Logf("detection on A seen on B after %v", took)

	r.Stop()
	y := "198.51.100.51"
	for _, p := range []string{"/.env", "/.git/config"} {
		if status, _, body := rawGet(t, b, p, "X-Forwarded-For: "+y); status != http.StatusOK {
			t.Fatalf("with Redis down, %s failed: %d %s", p, status, body)
		}
	}
	if got := classAt(t, b, y); got != "class suspicious" {
		t.Fatalf("with Redis down, local detection: %q", got)
	}
	if got := classAt(t, a, x); got != "class suspicious" {
		t.Fatalf("with Redis down, an earlier detection was lost: %q", got)
	}

	r.Restart()
	// Each round a new client probes B; once the subscriptions have reconnected (with
	// backoff), A sees the detection.
	deadline := time.Now().Add(15 * time.Second)
	for i := 0; ; i++ {
		z := fmt.Sprintf("198.51.100.%d", 60+i)
		for _, p := range []string{"/.env", "/.git/config"} {
			rawGet(t, b, p, "X-Forwarded-For: "+z)
		}
		time.Sleep(200 * time.Millisecond)
		if classAt(t, a, z) == "class suspicious" {
			t.Logf("shared again %d rounds after Redis returned", i+1)
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("detections not shared again after Redis returned")
		}
	}
}
