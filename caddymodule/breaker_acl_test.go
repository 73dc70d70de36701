package caddymodule

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/swarmsec/caddy-hardening/internal/testcaddy"
	"github.com/swarmsec/caddy-hardening/internal/testenv"
)

// TestBreakerSharedStatusNamesACLRefusal: a shared breaker whose Redis user may not touch the
// hardening keys (an ACL without ~hardening:*) decides locally; its health component must say
// that Redis refused it and which grant it lacks, not that Redis is unreachable.
func TestBreakerSharedStatusNamesACLRefusal(t *testing.T) {
	r := testenv.StartRedis(t)
	if _, err := r.Do("ACL", "SETUSER", "edge", "on", ">edge-pw", "resetkeys", "~other:*", "+@all", "-@dangerous"); err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	testcaddy.StartCaddy(t, fmt.Sprintf(`{
	admin off
	hardening {
		environment development
		redis redis://edge:edge-pw@%s/0
	}
}
http://%s {
	bind 127.0.0.1
	upstream_breaker t_acl {
		shared
		sync_interval 100ms
	}
	respond "ok"
}
`, r.Addr, addr))
	report := waitComponentStatus(t, "breaker:t_acl", HealthWarn)
	for _, want := range []string{"Redis refused", "NOPERM", "~hardening:*", "deciding locally"} {
		if !strings.Contains(report.Output, want) {
			t.Errorf("breaker output %q lacks %q", report.Output, want)
		}
	}
	if strings.Contains(report.Output, "unreachable") || strings.Contains(report.Output, "edge-pw") || strings.Contains(report.Output, "&hardening") {
		t.Errorf("breaker output %q", report.Output)
	}
}

// TestBreakerSharedStatusNamesAFullRedis: a shared breaker on a Redis full at maxmemory with
// noeviction cannot write its state and decides locally; its component said "shared state
// unreachable (Redis)" of a Redis that answers, and names the OOM and what to change now.
func TestBreakerSharedStatusNamesAFullRedis(t *testing.T) {
	r := testenv.StartRedis(t, "--maxmemory", "1", "--maxmemory-policy", "noeviction")
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	testcaddy.StartCaddy(t, fmt.Sprintf(`{
	admin off
	hardening {
		environment development
		redis %s
	}
}
http://%s {
	bind 127.0.0.1
	upstream_breaker t_oom {
		shared
		sync_interval 100ms
	}
	respond "ok"
}
`, r.URL(0), addr))
	var report StatusReport
	testenv.WaitFor(t, 10*time.Second, "breaker:t_oom reports warn", func() bool {
		report = componentStatus(t, "breaker:t_oom")
		return report.Status == HealthWarn
	})
	for _, want := range []string{"OOM", "maxmemory", "noeviction", "deciding locally"} {
		if !strings.Contains(report.Output, want) {
			t.Errorf("breaker output %q lacks %q", report.Output, want)
		}
	}
	if strings.Contains(report.Output, "unreachable") {
		t.Errorf("breaker output %q: Redis answers", report.Output)
	}
}
