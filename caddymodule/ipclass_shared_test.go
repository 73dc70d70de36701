package caddymodule

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/swarmsec/caddy-hardening/internal/testcaddy"
	"github.com/swarmsec/caddy-hardening/internal/testenv"
)

// detectionInstance runs the built Caddy with detection sharing through the Redis at redisURL;
// 127.0.0.1 is a trusted proxy, so X-Forwarded-For names the client, and a trusted client, so
// a request without it reads the monitoring details.
func detectionInstance(t *testing.T, redisURL string) string {
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	testenv.RunCaddy(t, fmt.Sprintf(`{
	admin off
	servers {
		trusted_proxies static 127.0.0.1/32
	}
	hardening {
		redis %s
		ip_classes {
			trusted 127.0.0.1
		}
	}
}
http://%s {
	bind 127.0.0.1
	path_guard
	handle_path /api/monitoring/* {
		monitoring
	}
	respond "class {http.vars.ip_class}"
}
`, redisURL, addr))
	return addr
}

// detectionComponent is the status of the ipclass:detection component in /services.
func detectionComponent(t *testing.T, addr string) string {
	t.Helper()
	for _, c := range services(t, "http://"+addr+"/api/monitoring/", "").Components {
		if c.Component == "ipclass:detection" {
			return c.Status
		}
	}
	t.Fatalf("%s: no ipclass:detection component", addr)
	return ""
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
// on A is suspicious on B (within a second, logged; the test allows 5 s on a loaded machine); with Redis stopped, detection goes on locally and no
// request fails, and A, which publishes nothing meanwhile, reports its ipclass:detection
// component warn; once Redis is back, detections are shared again and A reports pass.
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
	took := waitClass(t, b, x, "class suspicious", 5*time.Second) // a bound for a hang: the time is logged
	t.Logf("detection on A seen on B after %v", took)

	if got := detectionComponent(t, a); got != "pass" {
		t.Fatalf("before the outage, A's ipclass:detection is %q", got)
	}
	r.Stop()
	// A publishes nothing from now on: its subscription alone must notice the outage.
	testenv.WaitFor(t, 5*time.Second, "A (subscribing only) reports ipclass:detection warn", func() bool {
		return detectionComponent(t, a) == "warn"
	})
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
		if classAt(t, a, z) == "class suspicious" && detectionComponent(t, a) == "pass" {
			t.Logf("shared again %d rounds after Redis returned", i+1)
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("detections not shared again after Redis returned")
		}
	}
}

// TestSharedDetectionsKeptWithDefaultMaxTracked: without `max_tracked`, the shared set is
// bounded by its default (200000), not by one member: two detections on A are both in Redis,
// and an instance started afterwards, which learns them only by reading the set, has both.
func TestSharedDetectionsKeptWithDefaultMaxTracked(t *testing.T) {
	r := testenv.StartRedis(t)
	a := detectionInstance(t, r.URL(0)) // no max_tracked
	clients := []string{"198.51.100.70", "198.51.100.71"}
	for _, x := range clients {
		for _, p := range []string{"/.env", "/.git/config"} {
			rawGet(t, a, p, "X-Forwarded-For: "+x)
		}
		if got := classAt(t, a, x); got != "class suspicious" {
			t.Fatalf("%s on A: %q", x, got)
		}
	}
	key := defaultKeyPrefix + "{ipclass}:detected"
	testenv.WaitFor(t, 5*time.Second, "both detections in the shared set", func() bool {
		n, err := r.Do("ZCARD", key)
		return err == nil && n == int64(len(clients))
	})
	members, err := r.Do("ZRANGE", key, 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("shared set: %v", members)

	b := detectionInstance(t, r.URL(0)) // fresh: the set is all it knows
	for _, x := range clients {
		waitClass(t, b, x, "class suspicious", 5*time.Second)
	}
}

// TestDetectionStatusNamesACLRefusal: a Redis whose ACL gives caddy-hardening's user its keys
// but no channel (Redis 7's default for a new user) answers every command; the
// ipclass:detection component must say that Redis refused the channel, not that it is
// unreachable, and how to grant it, while the log names the refusal too.
func TestDetectionStatusNamesACLRefusal(t *testing.T) {
	r := testenv.StartRedis(t)
	if _, err := r.Do("ACL", "SETUSER", "edge", "on", ">edge-pw", "resetchannels", "~hardening:*", "+@all", "-@dangerous"); err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	c := testcaddy.StartCaddy(t, fmt.Sprintf(`{
	admin off
	hardening {
		environment development
		redis redis://edge:edge-pw@%s/0
	}
}
http://%s {
	bind 127.0.0.1
	path_guard
	respond "ok"
}
`, r.Addr, addr))
	report := waitComponentStatus(t, "ipclass:detection", HealthWarn)
	for _, want := range []string{"Redis refused", "NOPERM", "&hardening:*", "not shared"} {
		if !strings.Contains(report.Output, want) {
			t.Errorf("ipclass:detection output %q lacks %q", report.Output, want)
		}
	}
	if strings.Contains(report.Output, "unreachable") || strings.Contains(report.Output, "edge-pw") {
		t.Errorf("ipclass:detection output %q", report.Output)
	}
	logged := testenv.Filter(c.Logs(), func(e testenv.LogEntry) bool {
		return strings.HasPrefix(e.Msg(), "shared detections:")
	})
	if len(logged) == 0 || !strings.Contains(logged[0].Msg(), "refused") || strings.Contains(logged[0].Msg(), "unavailable") {
		t.Errorf("shared detections log lines: %v", logged)
	}
}

// TestDetectionStatusNamesWrongPassword: a Redis that refuses the password is a credential to
// fix, not an ACL grant to add: the ipclass:detection component says so.
func TestDetectionStatusNamesWrongPassword(t *testing.T) {
	r := testenv.StartRedis(t, "--requirepass", "the-right-one")
	testcaddy.StartCaddy(t, fmt.Sprintf("{\n\tadmin off\n\thardening {\n\t\tenvironment development\n\t\tredis redis://:%s@%s/0\n\t}\n}\n", goldenSecret, r.Addr))
	report := waitComponentStatus(t, "ipclass:detection", HealthWarn)
	for _, want := range []string{"Redis refused this client", "WRONGPASS", "username and password"} {
		if !strings.Contains(report.Output, want) {
			t.Errorf("ipclass:detection output %q lacks %q", report.Output, want)
		}
	}
	if strings.Contains(report.Output, "ACL SETUSER") || strings.Contains(report.Output, goldenSecret) {
		t.Errorf("ipclass:detection output %q", report.Output)
	}
}

// TestDetectionStatusNamesAFullRedis: a Redis full at maxmemory with noeviction answers, and
// reads work, but it refuses the shared set's write. ipclass:detection said "Redis
// unreachable", which sends an SRE to the network; it names the OOM and what to change now,
// and that the running instances still receive the detections (their messages go out).
func TestDetectionStatusNamesAFullRedis(t *testing.T) {
	r := testenv.StartRedis(t)
	a := detectionInstance(t, r.URL(0))
	testenv.WaitFor(t, 10*time.Second, "ipclass:detection pass", func() bool { return detectionComponent(t, a) == "pass" })
	r.Fill(t)
	for _, p := range []string{"/.env", "/.git/config"} {
		rawGet(t, a, p, "X-Forwarded-For: 198.51.100.80")
	}
	var output string
	testenv.WaitFor(t, 5*time.Second, "ipclass:detection warn", func() bool {
		for _, c := range services(t, "http://"+a+"/api/monitoring/", "").Components {
			if c.Component == "ipclass:detection" && c.Status == "warn" {
				output = c.Output
				return true
			}
		}
		return false
	})
	for _, want := range []string{"OOM", "maxmemory", "noeviction", "still reach the instances running now"} {
		if !strings.Contains(output, want) {
			t.Errorf("ipclass:detection output %q lacks %q", output, want)
		}
	}
	if strings.Contains(output, "unreachable") {
		t.Errorf("ipclass:detection output %q: Redis answers", output)
	}
}
