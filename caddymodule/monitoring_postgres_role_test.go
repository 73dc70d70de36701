package caddymodule

import (
	"fmt"
	"testing"

	"github.com/swarmsec/caddy-hardening/internal/testcaddy"
	"github.com/swarmsec/caddy-hardening/internal/testenv"
)

// TestMonitoringPostgresRoleAfterFailover: an app whose critical postgres check names a
// server that is now a hot standby (a demoted primary after a failover) kept /ready up, as
// SELECT 1 passes on a standby. With `role primary` the check fails, saying why, and /ready
// answers 503; once the standby is promoted it passes, and a `role standby` check of the same
// server (a read replica checked on purpose) fails instead.
func TestMonitoringPostgresRoleAfterFailover(t *testing.T) {
	testenv.RequirePostgres(t) // under CI=1, never skipped
	primary := testenv.StartPostgres(t)
	standby := primary.StartStandby(t)
	key, digest := newKey(t)
	cf, base := monitoringSite(t, "", fmt.Sprintf(`check postgres db %[1]s {
	critical
	role primary
	interval 200ms
	timeout 150ms
	failures_before_down 1
}
check postgres reports %[1]s {
	role standby
	interval 200ms
	timeout 150ms
	failures_before_down 1
}
api_keys %[2]s`, standby.URL(), digest))
	testcaddy.StartCaddy(t, cf)

	waitFor(t, "db down, reports up", func() bool {
		doc := services(t, base, key)
		return doc.Dependencies[0].Runs > 0 && !doc.Dependencies[0].Up && doc.Dependencies[1].Up
	})
	if out := services(t, base, key).Dependencies[0].Output; out != "server is a standby (in recovery); role primary expected" {
		t.Fatalf("db output %q", out)
	}
	if a := call(t, "GET", base+"ready", ""); a.code != 503 {
		t.Fatalf("a critical role primary check of a standby: %+v, want 503", a)
	}

	standby.Promote(t)
	waitFor(t, "db up, reports down", func() bool {
		doc := services(t, base, key)
		return doc.Dependencies[0].Up && !doc.Dependencies[1].Up
	})
	if out := services(t, base, key).Dependencies[1].Output; out != "server is a primary (not in recovery); role standby expected" {
		t.Fatalf("reports output %q", out)
	}
	if a := call(t, "GET", base+"ready", ""); a.code != 200 {
		t.Fatalf("after the promotion: %+v, want 200", a)
	}
}
