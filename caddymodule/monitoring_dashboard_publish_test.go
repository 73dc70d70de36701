package caddymodule

import (
	"strings"
	"testing"
	"time"

	"github.com/swarmsec/caddy-hardening/internal/testcaddy"
	"github.com/swarmsec/caddy-hardening/internal/testenv"
)

// TestDashboardPublishRefusalIsWarned: a Redis that answers and reads but refuses this
// instance's writes (full at maxmemory with noeviction; a read-only replica and an ACL without
// a write command do the same) leaves this instance out of every other instance's
// all-instances view. The failure was logged at DEBUG only, so nobody heard of it; it is now a
// WARN, once per run of failures, naming the error and what it costs.
func TestDashboardPublishRefusalIsWarned(t *testing.T) {
	fastDashboard(t)
	r := testenv.StartRedis(t, "--maxmemory", "1", "--maxmemory-policy", "noeviction")
	cf, _ := dashSite(t, "dash_publish_oom", "redis "+r.URL(0), "")
	c := testcaddy.StartCaddy(t, cf)
	const msg = "dashboard: publishing this instance's documents to Redis failed"
	published := func() []testenv.LogEntry {
		return testenv.Filter(c.Logs(), func(e testenv.LogEntry) bool { return strings.HasPrefix(e.Msg(), msg) })
	}
	testenv.WaitFor(t, 10*time.Second, "the publish failure's warning", func() bool { return len(published()) > 0 })
	w := published()[0]
	if w.Level() != "warn" || !strings.Contains(w.Str("error"), "OOM") || !strings.Contains(w.Msg(), "all-instances view") {
		t.Fatalf("the publish failure is logged as %v; want a WARN naming the OOM and the all-instances view", w)
	}
	// Once per run of failures: the sampler goes on failing every 100 ms.
	testenv.WaitFor(t, 10*time.Second, "more failed samples", func() bool {
		return r.CommandAttempts(t, "set") >= 10
	})
	if n := len(published()); n != 1 {
		t.Fatalf("%d warnings for one run of failures, want 1", n)
	}
}
