package monitor

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
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

	// The server drops our idle connection (a restart, pg_terminate_backend, a pooler): the
	// next run connects again and passes. It used to fail that run, so one closed idle
	// connection showed as a failed check.
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
	if st := c.RunOnce(context.Background()); !st.Up || st.Status != Pass || st.ConsecutiveFailures != 0 {
		t.Fatalf("the run after the backend was terminated: %+v, want a pass on a new connection", st)
	}
}

// TestPostgresCheckerIdleTimeout: a server (or pooler) that closes idle connections
// (idle_session_timeout) made every run after an idle interval fail once, so the check
// flapped between pass and warn; the run now replaces the dead connection and passes.
func TestPostgresCheckerIdleTimeout(t *testing.T) {
	dsn := requirePostgres(t) + "&idle_session_timeout=200" // milliseconds, for this session only
	p, err := NewPostgresChecker(dsn)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := NewCheck(Config{Name: "main", Interval: time.Minute, Timeout: 2 * time.Second, FailuresBeforeDown: 1, Secrets: p.Secrets()}, p)
	defer c.Stop()
	for i := 0; i < 3; i++ {
		if st := c.RunOnce(context.Background()); !st.Up || st.Status != Pass {
			t.Fatalf("run %d after the server closed the idle connection: %+v", i, st)
		}
		time.Sleep(500 * time.Millisecond) // the server closes the connection meanwhile
	}
}

// TestPostgresCheckerServerGoneFails: the new connection after a dead one is one attempt,
// not a way to pass: with the server gone, the run fails, naming the failure to connect.
func TestPostgresCheckerServerGoneFails(t *testing.T) {
	requirePostgres(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var mu sync.Mutex
	var conns []net.Conn
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	}()
	go func() { // a relay to the real server, standing for it
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", "127.0.0.1:5432")
			if err != nil {
				c.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, c, up)
			mu.Unlock()
			go func() { _, _ = io.Copy(up, c); up.Close() }()
			go func() { _, _ = io.Copy(c, up); c.Close() }()
		}
	}()
	p, err := NewPostgresChecker(fmt.Sprintf("postgres://postgres:%s@%s/postgres?sslmode=disable&connect_timeout=1", pgSecret, ln.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if out := p.Check(context.Background()); out.Status != Pass {
		t.Fatalf("through the relay: %+v", out)
	}
	ln.Close() // the server goes away: its connections close, new ones are refused
	mu.Lock()
	for _, c := range conns {
		c.Close()
	}
	mu.Unlock()
	if out := p.Check(context.Background()); out.Status != Fail || !strings.Contains(out.Output, "refused") {
		t.Fatalf("with the server gone: %+v, want a failure to connect", out)
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
