package monitor

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/swarmsec/caddy-hardening/internal/testenv"
)

// pgSecret is the password the tests put in connection strings; no output may show it. The
// local server trusts loopback connections, so it is accepted and ignored.
const pgSecret = "pg-s3cret-hunter2"

// requirePostgres returns the URL of the PostgreSQL server on 127.0.0.1:5432, or skips the
// test when none answers (fails under CI, whose script starts it).
func requirePostgres(t *testing.T) string {
	t.Helper()
	testenv.RequirePostgres(t)
	return "postgres://postgres:" + pgSecret + "@127.0.0.1:5432/postgres?sslmode=disable"
}

func TestPostgresCheckerAgainstTheRealServer(t *testing.T) {
	dsn := requirePostgres(t)
	p, err := NewPostgresChecker(dsn)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := NewCheck(Config{Name: "main", Interval: time.Minute, Timeout: 2 * time.Second, FailuresBeforeDown: 1, Secrets: p.Secrets()}, p)
	defer c.Stop()
	if st := c.RunOnce(context.Background()); !st.Up || st.Status != Pass {
		t.Fatalf("postgres up: %+v", st)
	}
	if p.Target() != "127.0.0.1:5432/postgres" {
		t.Fatalf("target %q", p.Target())
	}

	// The server drops our connection (a restart, pg_terminate_backend): the next run
	// reports it and the one after reconnects.
	admin, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	var killed bool
	if err := admin.QueryRow(context.Background(),
		"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'caddy-hardening-monitor' AND pid <> pg_backend_pid()").Scan(&killed); err != nil || !killed {
		t.Fatalf("terminating the checker's backend: %v %v", killed, err)
	}
	if st := c.RunOnce(context.Background()); st.Up || !strings.Contains(st.Output, "terminat") {
		t.Fatalf("the terminated connection was not reported: %+v", st)
	}
	if st := c.RunOnce(context.Background()); !st.Up {
		t.Fatalf("no reconnection after the backend was terminated: %+v", st)
	}
}

func TestPostgresCheckerDownNeverShowsThePassword(t *testing.T) {
	port := testenv.FreePort(t) // nothing listens there
	for _, dsn := range []string{
		fmt.Sprintf("postgres://app:%s@127.0.0.1:%d/test?sslmode=disable&connect_timeout=1", pgSecret, port),
		fmt.Sprintf("host=127.0.0.1 port=%d user=app password=%s dbname=test sslmode=disable", port, pgSecret),
	} {
		p, err := NewPostgresChecker(dsn)
		if err != nil {
			t.Fatal(err)
		}
		c, _ := NewCheck(Config{Name: "main", Interval: time.Minute, Timeout: time.Second, FailuresBeforeDown: 1, Secrets: p.Secrets()}, p)
		st := c.RunOnce(context.Background())
		if st.Up || st.Status != Fail || !strings.Contains(st.Output, "refused") {
			t.Fatalf("unreachable: %+v", st)
		}
		if strings.Contains(fmt.Sprintf("%+v", st), pgSecret) || strings.Contains(fmt.Sprintf("%+v", Details([]State{st})), pgSecret) {
			t.Fatalf("the password shows: %+v", st)
		}
	}
	for _, bad := range []string{"postgres://app:" + pgSecret + "@127.0.0.1:notaport/db", "host=x port=y password=" + pgSecret} {
		_, err := NewPostgresChecker(bad)
		if err == nil || strings.Contains(err.Error(), pgSecret) {
			t.Fatalf("bad DSN: %v", err)
		}
	}
}

func TestPostgresWrongDatabaseFails(t *testing.T) {
	requirePostgres(t)
	p, _ := NewPostgresChecker("postgres://postgres:" + pgSecret + "@127.0.0.1:5432/no_such_db_for_monitor?sslmode=disable")
	out := p.Check(context.Background())
	defer p.Close()
	if out.Status != Fail || !strings.Contains(out.Output, "no_such_db_for_monitor") {
		t.Fatalf("%+v", out)
	}
}
