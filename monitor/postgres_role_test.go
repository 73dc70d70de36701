package monitor

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/swarmsec/caddy-hardening/internal/testenv"
)

// TestPostgresCheckerRole runs the check against a real primary and a real hot standby
// streaming from it. SELECT 1 passed the standby as it passes a demoted primary after a
// failover, so /ready stayed up; role primary fails it, role standby fails the primary, and
// no role (the default) passes both. Promoting the standby flips its verdicts on the next run.
func TestPostgresCheckerRole(t *testing.T) {
	testenv.RequirePostgres(t) // the same rule as the other postgres tests: under CI=1, never skipped
	primary := testenv.StartPostgres(t)
	standby := primary.StartStandby(t)

	run := func(srv *testenv.Postgres, role PostgresRole) Outcome {
		t.Helper()
		p, err := NewPostgresChecker(srv.URL())
		if err != nil {
			t.Fatal(err)
		}
		p.Role = role
		t.Cleanup(func() { _ = p.Close() })
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second) // a check's default timeout
		defer cancel()
		return p.Check(ctx)
	}
	const wantPrimary = "server is a standby (in recovery); role primary expected"
	const wantStandby = "server is a primary (not in recovery); role standby expected"
	for _, c := range []struct {
		name string
		srv  *testenv.Postgres
		role PostgresRole
		want string // the failure's output; empty for a pass
	}{
		{"primary, any role", primary, RoleAny, ""},
		{"primary, role primary", primary, RolePrimary, ""},
		{"primary, role standby", primary, RoleStandby, wantStandby},
		{"standby, any role", standby, RoleAny, ""},
		{"standby, role primary", standby, RolePrimary, wantPrimary},
		{"standby, role standby", standby, RoleStandby, ""},
	} {
		out := run(c.srv, c.role)
		if c.want == "" && out.Status != Pass || c.want != "" && (out.Status != Fail || out.Output != c.want) {
			t.Errorf("%s: %+v, want %q (empty: a pass)", c.name, out, c.want)
		}
	}

	// A failover: the standby is promoted under kept connections. The run after it judges
	// the new role (a kept connection is asked again, not trusted).
	asPrimary, err := NewPostgresChecker(standby.URL())
	if err != nil {
		t.Fatal(err)
	}
	asPrimary.Role = RolePrimary
	defer asPrimary.Close()
	asStandby, _ := NewPostgresChecker(standby.URL())
	asStandby.Role = RoleStandby
	defer asStandby.Close()
	if out := asPrimary.Check(context.Background()); out.Status != Fail || out.Output != wantPrimary {
		t.Fatalf("role primary before the promotion: %+v", out)
	}
	if out := asStandby.Check(context.Background()); out.Status != Pass {
		t.Fatalf("role standby before the promotion: %+v", out)
	}
	standby.Promote(t)
	if out := asPrimary.Check(context.Background()); out.Status != Pass {
		t.Fatalf("role primary after the promotion: %+v", out)
	}
	if out := asStandby.Check(context.Background()); out.Status != Fail || !strings.Contains(out.Output, "role standby expected") {
		t.Fatalf("role standby after the promotion: %+v", out)
	}
}
