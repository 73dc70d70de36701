package caddymodule

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/swarmsec/caddy-hardening/dashboard"
	"github.com/swarmsec/caddy-hardening/internal/testcaddy"
	"github.com/swarmsec/caddy-hardening/internal/testenv"
)

// dashInstance runs the built Caddy as instance name, publishing to the Redis at redisURL.
func dashInstance(t *testing.T, redisURL, digest, name string) string {
	addr, _ := dashProcess(t, redisURL, digest, name)
	return addr
}

// dashProcess is dashInstance, with the process (for its log).
func dashProcess(t *testing.T, redisURL, digest, name string) (string, *testenv.Process) {
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	p := testenv.RunCaddy(t, fmt.Sprintf(`{
	admin off
	servers {
		trusted_proxies static 127.0.0.1/32
	}
	hardening {
		redis %s
		policy dash_all {
			limit 2/1h
		}
	}
}
http://%s {
	bind 127.0.0.1
	handle_path /api/monitoring/* {
		monitoring {
			api_keys %s
		}
	}
	handle {
		policy_rate_limit dash_all
		respond "app"
	}
}
`, redisURL, addr, digest), dashboard.InstanceEnv+"="+name)
	return addr, p
}

// TestDashboardAllInstances: two Caddy processes publish to one Redis; scope=all on either
// sums both, scope=local shows one.
func TestDashboardAllInstances(t *testing.T) {
	r := testenv.StartRedis(t)
	key, digest := newKey(t)
	a := dashInstance(t, r.URL(0), digest, "dash-a")
	b := dashInstance(t, r.URL(0), digest, "dash-b")
	waitSampled(t, a, key) // the baselines come before the traffic
	waitSampled(t, b, key)
	for i := 0; i < 3; i++ {
		sendAs(t, a, "203.0.113.10", "/") // 2 allowed, 1 denied
	}
	for i := 0; i < 4; i++ {
		sendAs(t, b, "203.0.113.11", "/") // 2 allowed, 2 denied
	}
	denied := map[string]string{"policy": "dash_all", "result": "denied"}
	var all dashboard.Document
	waitFor(t, "both instances in the all view", func() bool {
		all = dashData(t, a, key, "?scope=all")
		return len(all.Instances) == 2 && totalOf(all.Totals.RateLimit, denied) == 3 && sumSeries(all.RateLimit, denied) == 3
	})
	if all.Scope != "all" || all.Instance != "dash-a" || all.Instances[0] != "dash-a" || all.Instances[1] != "dash-b" {
		t.Fatalf("all view: instance %q, instances %v, scope %s", all.Instance, all.Instances, all.Scope)
	}
	var keys []string
	for _, l := range all.TopLimited {
		keys = append(keys, fmt.Sprintf("%s=%d", l.Key, l.Count))
	}
	sort.Strings(keys)
	if strings.Join(keys, " ") != "203.0.113.10=1 203.0.113.11=2" {
		t.Fatalf("top limited of all instances: %v", keys)
	}
	if local := dashData(t, b, key, ""); local.Instance != "dash-b" || len(local.Instances) != 1 || totalOf(local.Totals.RateLimit, denied) != 2 {
		t.Fatalf("b local: %s %v, %v denied", local.Instance, local.Instances, totalOf(local.Totals.RateLimit, denied))
	}
	if fromB := dashData(t, b, key, "?scope=all&range=1h"); len(fromB.Instances) != 2 || sumSeries(fromB.RateLimit, denied) != 3 || len(fromB.Timestamps) != 60 {
		t.Fatalf("all from b, 1h: %v, %v denied", fromB.Instances, sumSeries(fromB.RateLimit, denied))
	}
	keysInRedis, err := r.Do("KEYS", "*dash:*")
	if err != nil {
		t.Fatal(err)
	}
	// The set of instances, and two documents (15m, 1h) and an owner mark per instance.
	if n := len(keysInRedis.([]any)); n != 7 {
		t.Fatalf("%d dashboard keys in Redis, want 7: %v", n, keysInRedis)
	}
	for _, k := range keysInRedis.([]any) {
		name := k.(string)
		if !strings.Contains(name, "dash:{dash}:") {
			t.Fatalf("key %q lacks the {dash} hash tag", name)
		}
		if ttl, _ := r.Do("TTL", name); ttl.(int64) <= 0 {
			t.Fatalf("key %q has no TTL (%v)", name, ttl)
		}
	}
}

// TestDashboardAllInstancesUnbanThroughThisInstance: in the "all instances" view, a row that
// another instance published (with its own admin address) carries the command of the instance
// serving the view: an unban through it reaches every instance, and it is the one whose
// endpoint the reader knows.
func TestDashboardAllInstancesUnbanThroughThisInstance(t *testing.T) {
	r := testenv.StartRedis(t)
	key, digest := newKey(t)
	cf, addr := dashSite(t, "dash_all_admin", "redis "+r.URL(0), "api_keys "+digest)
	port := testenv.FreePort(t)
	testcaddy.StartCaddy(t, strings.Replace(cf, "{\n", fmt.Sprintf("{\n\tadmin 127.0.0.1:%d\n", port), 1))
	now := time.Now()
	other := dashboard.Document{Instance: "edge-b", Instances: []string{"edge-b"}, Scope: "local", Generated: now,
		Suspicious: []dashboard.Suspicious{dashboard.NewSuspicious("192.0.2.41", 50, "probe", now.Add(time.Hour), false, now,
			"curl -X DELETE http://10.9.9.9:2019/hardening/ipclass/detected/192.0.2.41")}, SuspiciousCount: 1}
	c := redis.NewClient(&redis.Options{Addr: r.Addr})
	defer c.Close()
	if err := dashboard.Publish(context.Background(), c, activeApp(t).KeyPrefix(), "edge-b", map[string]dashboard.Document{"15m": other}, now); err != nil {
		t.Fatal(err)
	}
	all := dashData(t, addr, key, "?scope=all")
	want := fmt.Sprintf("curl -X DELETE http://127.0.0.1:%d/hardening/ipclass/detected/192.0.2.41", port)
	if len(all.Instances) != 2 || len(all.Suspicious) != 1 || all.Suspicious[0].Unban != want {
		t.Fatalf("all view: instances %v, rows %+v; want the row with %q", all.Instances, all.Suspicious, want)
	}
}

// TestDashboardAllInstancesUnbanOnlyForAddresses: the unban command is pasted into a shell; a
// row published through Redis whose address is not one ("192.0.2.42;touch /tmp/x") got the
// command with it appended, and now gets no command (the row is still shown).
func TestDashboardAllInstancesUnbanOnlyForAddresses(t *testing.T) {
	r := testenv.StartRedis(t)
	key, digest := newKey(t)
	cf, addr := dashSite(t, "dash_all_forged", "redis "+r.URL(0), "api_keys "+digest)
	port := testenv.FreePort(t)
	testcaddy.StartCaddy(t, strings.Replace(cf, "{\n", fmt.Sprintf("{\n\tadmin 127.0.0.1:%d\n", port), 1))
	now := time.Now()
	forged := "192.0.2.42;touch /tmp/x"
	other := dashboard.Document{Instance: "edge-b", Instances: []string{"edge-b"}, Scope: "local", Generated: now,
		Suspicious: []dashboard.Suspicious{
			dashboard.NewSuspicious(forged, 60, "probe", now.Add(time.Hour), false, now, ""),
			dashboard.NewSuspicious("fe80::1%$(id)", 55, "probe", now.Add(time.Hour), false, now, ""),
			dashboard.NewSuspicious("2001:db8:1:2::/64", 50, "probe", now.Add(time.Hour), false, now, ""),
		}, SuspiciousCount: 3}
	c := redis.NewClient(&redis.Options{Addr: r.Addr})
	defer c.Close()
	if err := dashboard.Publish(context.Background(), c, activeApp(t).KeyPrefix(), "edge-b", map[string]dashboard.Document{"15m": other}, now); err != nil {
		t.Fatal(err)
	}
	all := dashData(t, addr, key, "?scope=all")
	unban := map[string]string{}
	for _, s := range all.Suspicious {
		unban[s.IP] = s.Unban
	}
	want := fmt.Sprintf("curl -X DELETE http://127.0.0.1:%d/hardening/ipclass/detected/2001:db8:1:2::/64", port)
	if len(unban) != 3 || unban[forged] != "" || unban["fe80::1%$(id)"] != "" || unban["2001:db8:1:2::/64"] != want {
		t.Fatalf("unban commands %q; want none for what is not an address, %q for the network", unban, want)
	}
}

// TestDashboardAllInstancesSaysRedisIsUnread: with Redis down, the all-instances view showed
// this instance alone as if no other published; it now says in the degraded banner that the
// other instances could not be read.
func TestDashboardAllInstancesSaysRedisIsUnread(t *testing.T) {
	r := testenv.StartRedis(t)
	key, digest := newKey(t)
	cf, addr := dashSite(t, "dash_all_unread", "redis "+r.URL(0), "api_keys "+digest)
	testcaddy.StartCaddy(t, cf)
	r.Kill()
	unread := func(d dashboard.Document) int {
		n := 0
		for _, g := range d.Current.Degraded {
			if g.Kind == dashboard.DegradedInstancesUnread && g.Message != "" {
				n++
			}
		}
		return n
	}
	d := dashData(t, addr, key, "?scope=all")
	if d.Scope != "all" || len(d.Instances) != 1 || unread(d) != 1 {
		t.Fatalf("all view with Redis down: scope %s, instances %v, degraded %+v; want the instances_unread entry", d.Scope, d.Instances, d.Current.Degraded)
	}
	if again := dashData(t, addr, key, "?scope=all"); unread(again) != 1 {
		t.Fatalf("the cached answer lost the entry: %+v", again.Current.Degraded)
	}
	if local := dashData(t, addr, key, ""); unread(local) != 0 {
		t.Fatalf("the local view: %+v", local.Current.Degraded)
	}
}

// TestDashboardSharedInstanceNameIsReported: two Caddy processes given one instance name
// overwrite each other's documents. Each notices the other's mark on its samples, logs one
// WARN, and its dashboard shows an instance_name_shared entry in the Degraded banner. A process
// alone under its name reports nothing.
func TestDashboardSharedInstanceNameIsReported(t *testing.T) {
	r := testenv.StartRedis(t)
	key, digest := newKey(t)
	a, pa := dashProcess(t, r.URL(0), digest, "dash-same")
	waitSampled(t, a, key)
	time.Sleep(11 * time.Second) // three samples alone
	const warn = "another Caddy process publishes to Redis under this instance name"
	if strings.Contains(pa.Output(), warn) {
		t.Fatal("a process alone under its name reports a shared name")
	}
	shared := func(doc dashboard.Document) bool {
		for _, d := range doc.Current.Degraded {
			if d.Kind == dashboard.DegradedInstanceNameShared && d.Instance == "dash-same" {
				return true
			}
		}
		return false
	}
	if shared(dashData(t, a, key, "")) {
		t.Fatal("banner reports a shared name for a process alone")
	}

	b, pb := dashProcess(t, r.URL(0), digest, "dash-same")
	for _, p := range []*testenv.Process{pa, pb} {
		if err := p.WaitOutput(warn, 30*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	for _, addr := range []string{a, b} {
		if doc := dashData(t, addr, key, ""); !shared(doc) {
			t.Fatalf("%s: no instance_name_shared in the banner: %+v", addr, doc.Current.Degraded)
		}
		if doc := dashData(t, addr, key, "?scope=all"); !shared(doc) {
			t.Fatalf("%s, all instances: no instance_name_shared in the banner: %+v", addr, doc.Current.Degraded)
		}
	}
	if n := strings.Count(pa.Output(), warn); n != 1 {
		t.Fatalf("the shared name logged %d times, want once", n)
	}
}

// TestDashboardClaimRestartIsNoSharedName: a restarted process finds its predecessor's mark
// once, then its own: no shared name. Another process's mark twice in a row is one, and it
// clears after three own marks in a row.
func TestDashboardClaimRestartIsNoSharedName(t *testing.T) {
	e := &dashEntry{instance: "edge", process: "me"}
	log := zap.NewNop()
	for i, prev := range []string{"", "dead-predecessor", "me", "me", "me"} {
		if e.noteClaim(prev, log); e.nameShared.Load() {
			t.Fatalf("sample %d (%q): reported as shared", i, prev)
		}
	}
	for _, prev := range []string{"other", "other"} {
		e.noteClaim(prev, log)
	}
	if !e.nameShared.Load() {
		t.Fatal("two marks of another process in a row: not reported")
	}
	for i, prev := range []string{"me", "other", "me", "me"} {
		if e.noteClaim(prev, log); !e.nameShared.Load() {
			t.Fatalf("cleared at sample %d (%q), before three own marks in a row", i, prev)
		}
	}
	if e.noteClaim("me", log); e.nameShared.Load() {
		t.Fatal("not cleared after three own marks in a row")
	}
}
