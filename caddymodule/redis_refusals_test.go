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

// refusingRedisSite is a site whose Redis-backed modules all touch Redis at once: a rate
// limit on every request, a shared breaker (which syncs its state every 100 ms) and shared
// detections (which subscribe and write their set).
func refusingRedisSite(t *testing.T, redisURL string) string {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	testcaddy.StartCaddy(t, fmt.Sprintf(`{
	admin off
	hardening {
		environment development
		redis %s
		detection {
			threshold 5
		}
	}
}
http://%s {
	bind 127.0.0.1
	policy_rate_limit api
	upstream_breaker t_refusal {
		shared
		sync_interval 100ms
	}
	respond "ok"
}
`, redisURL, addr))
	return "http://" + addr + "/"
}

// TestRedisReplicaIsNamedNotUnreachable: the address names a read-only replica (a stale URL
// after a failover, a replica's service by mistake). It answers every read and refuses every
// write with READONLY, which waiting does not end. Requests are served (from memory), and the
// breaker's and detections' components said "Redis unreachable"/"shared state unreachable",
// the rate limiter "until it answers again": the operator looked for an outage. Each now names
// the READONLY refusal and says to give the primary.
func TestRedisReplicaIsNamedNotUnreachable(t *testing.T) {
	master := testenv.StartRedis(t)
	replica := testenv.StartReplica(t, master)
	url := refusingRedisSite(t, replica.URL(0))
	for range 3 {
		if resp := get(t, url); resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d: a replica must not fail requests", resp.StatusCode)
		}
	}
	for _, c := range []string{"breaker:t_refusal", "ipclass:detection", "ratelimit:store"} {
		var report StatusReport
		testenv.WaitFor(t, 10*time.Second, c+" warns naming READONLY", func() bool {
			report = componentStatus(t, c)
			return report.Status == HealthWarn && strings.Contains(report.Output, "READONLY")
		})
		for _, want := range []string{"read-only replica", "primary"} {
			if !strings.Contains(report.Output, want) {
				t.Errorf("%s output %q lacks %q", c, report.Output, want)
			}
		}
		for _, not := range []string{"unreachable", "until it answers"} {
			if strings.Contains(report.Output, not) {
				t.Errorf("%s output %q says %q of a Redis that answers", c, report.Output, not)
			}
		}
	}
}

// TestRedisACLWithoutTimeNamesTheCommand: a least-privilege ACL user built from categories
// (+@read +@write +@scripting +@pubsub +@connection, what many operators grant) lacks TIME,
// which is only in @fast, and the rate limiter's script calls it. Redis answers "ERR The user
// executing the script can't run this command or subcommand", which no check took for an ACL
// refusal: the limits went per instance with "Redis is failing ... until it answers again".
// The store's component now says that the ACL refuses a command the script calls and which
// grant it needs.
func TestRedisACLWithoutTimeNamesTheCommand(t *testing.T) {
	r := testenv.StartRedis(t)
	if _, err := r.Do("ACL", "SETUSER", "edge", "on", ">edge-pw", "~hardening:*", "&hardening:*",
		"+@read", "+@write", "+@scripting", "+@pubsub", "+@connection"); err != nil {
		t.Fatal(err)
	}
	url := refusingRedisSite(t, "redis://edge:edge-pw@"+r.Addr+"/0")
	if resp := get(t, url); resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: an ACL refusal must not fail requests", resp.StatusCode)
	}
	var report StatusReport
	testenv.WaitFor(t, 10*time.Second, "ratelimit:store warns", func() bool {
		report = componentStatus(t, "ratelimit:store")
		return report.Status == HealthWarn
	})
	for _, want := range []string{"ACL", "+time"} {
		if !strings.Contains(report.Output, want) {
			t.Errorf("ratelimit:store output %q lacks %q", report.Output, want)
		}
	}
	if strings.Contains(report.Output, "until it answers") || strings.Contains(report.Output, "edge-pw") {
		t.Errorf("ratelimit:store output %q", report.Output)
	}
}

// TestRedisACLWithoutSubscribeNamesTheCommand: an ACL user that has the keys and channels but
// not the SUBSCRIBE command. The detections' component told it to grant ~hardening:* and
// &hardening:*, which it has: the fix now names the command Redis refused.
func TestRedisACLWithoutSubscribeNamesTheCommand(t *testing.T) {
	r := testenv.StartRedis(t)
	if _, err := r.Do("ACL", "SETUSER", "edge", "on", ">edge-pw", "~hardening:*", "&hardening:*",
		"+@all", "-@dangerous", "-subscribe"); err != nil {
		t.Fatal(err)
	}
	url := refusingRedisSite(t, "redis://edge:edge-pw@"+r.Addr+"/0")
	get(t, url)
	var report StatusReport
	testenv.WaitFor(t, 10*time.Second, "ipclass:detection warns naming NOPERM", func() bool {
		report = componentStatus(t, "ipclass:detection")
		return report.Status == HealthWarn && strings.Contains(report.Output, "NOPERM")
	})
	if !strings.Contains(report.Output, "+subscribe") {
		t.Errorf("ipclass:detection output %q does not name the grant +subscribe", report.Output)
	}
}

// TestRedisReplicaAtStartupIsOneWarning: the startup check PINGed a read-only replica and
// logged "redis connected", then each module met READONLY on its own (the detections' warning
// spoke of an unavailable Redis). It now asks the server's role, as `check redis` does, and
// warns once, naming the replica and the fix; the modules' own warnings stay at DEBUG.
func TestRedisReplicaAtStartupIsOneWarning(t *testing.T) {
	master := testenv.StartRedis(t)
	replica := testenv.StartReplica(t, master)
	block, url := site(t, "\tpolicy_rate_limit api")
	c := testcaddy.StartCaddy(t, fmt.Sprintf("{\n\thardening {\n\t\tenvironment development\n\t\tredis %s\n\t\tdetection {\n\t\t\tthreshold 5\n\t\t}\n\t}\n}\n%s", replica.URL(0), block))
	if resp := get(t, url); resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	warnings := func() []testenv.LogEntry {
		return testenv.Filter(c.Logs(), func(e testenv.LogEntry) bool {
			return e.Logger() == "hardening" && e.Level() == "warn" && e.Str("code") == ""
		})
	}
	testenv.WaitFor(t, 10*time.Second, "the startup warning", func() bool { return len(warnings()) > 0 })
	// The detections have met READONLY too once their component warns.
	waitComponentStatus(t, "ipclass:detection", HealthWarn)
	got := warnings()
	if len(got) != 1 {
		t.Fatalf("want one warning, got %d: %v", len(got), got)
	}
	for _, want := range []string{"read-only replica at startup", replica.Addr} {
		if !strings.Contains(got[0].Msg(), want) {
			t.Errorf("the warning %q does not say %q", got[0].Msg(), want)
		}
	}
	if !strings.Contains(got[0].Str("fix"), "primary") {
		t.Errorf("the fix %q does not say to give the primary", got[0].Str("fix"))
	}
	for _, e := range c.Logs() {
		if e.Logger() == "hardening" && e.Msg() == "redis connected" {
			t.Errorf("a read-only replica was logged as connected: %v", e)
		}
	}
}

// TestRedisStartupNamesTheRefusedCommand: an ACL user built without @connection (or with
// -ping) cannot PING, the startup check's command. Its warning said to grant "the commands and
// keys the modules use", not which one Redis refused; it now names the grant, +ping.
func TestRedisStartupNamesTheRefusedCommand(t *testing.T) {
	r := testenv.StartRedis(t)
	if _, err := r.Do("ACL", "SETUSER", "edge", "on", ">edge-pw", "~hardening:*", "&hardening:*",
		"+@all", "-@dangerous", "-ping"); err != nil {
		t.Fatal(err)
	}
	block, url := site(t, "\tpolicy_rate_limit api")
	c := testcaddy.StartCaddy(t, fmt.Sprintf("{\n\thardening {\n\t\tenvironment development\n\t\tredis redis://edge:edge-pw@%s/0\n\t}\n}\n%s", r.Addr, block))
	if resp := get(t, url); resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	var w testenv.LogEntry
	testenv.WaitFor(t, 10*time.Second, "the startup warning", func() bool {
		for _, e := range c.Logs() {
			if e.Logger() == "hardening" && e.Level() == "warn" && strings.Contains(e.Msg(), "at startup") {
				w = e
				return true
			}
		}
		return false
	})
	if !strings.Contains(w.Str("fix"), "+ping") || !strings.Contains(w.Str("error"), "NOPERM") {
		t.Fatalf("the startup warning's fix %q (error %q) does not name the grant +ping", w.Str("fix"), w.Str("error"))
	}
}
