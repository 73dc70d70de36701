package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Postgres is a PostgreSQL server owned by one test: its own data directory (initdb, or a
// pg_basebackup copy for a standby), a free loopback port, trust authentication, no Unix
// socket. It is stopped (immediate shutdown) and its directory removed when the test ends.
// The server on 127.0.0.1:5432 (RequirePostgres) cannot stand for a standby: it has no
// replication line in pg_hba.conf, and a test must not change a shared server's role.
type Postgres struct {
	Port int
	dir  string // the data directory
	bin  string // the directory of initdb, postgres and pg_basebackup
	cred *syscall.Credential
}

// StartPostgres initialises and starts a primary (about a second). Without the server
// binaries the test is skipped, or fails under CI (whose script installs postgresql).
func StartPostgres(t testing.TB) *Postgres {
	t.Helper()
	p := &Postgres{bin: postgresBin(t), cred: postgresUser(t)}
	p.dir = filepath.Join(p.tempDir(t), "data")
	p.run(t, "initdb", "-D", p.dir, "-A", "trust", "-U", "postgres", "--no-sync", "--no-locale", "-E", "UTF8")
	p.start(t)
	return p
}

// StartStandby copies p with pg_basebackup and starts the copy as a hot standby streaming
// from p: read-only, pg_is_in_recovery() true, until promoted.
func (p *Postgres) StartStandby(t testing.TB) *Postgres {
	t.Helper()
	s := &Postgres{bin: p.bin, cred: p.cred}
	s.dir = filepath.Join(s.tempDir(t), "data")
	p.run(t, "pg_basebackup", "-h", "127.0.0.1", "-p", strconv.Itoa(p.Port), "-U", "postgres",
		"-D", s.dir, "-R", "-X", "stream", "-c", "fast", "--no-sync")
	s.start(t)
	return s
}

// URL is the connection string of the server's postgres database (no password: trust).
func (p *Postgres) URL() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable&connect_timeout=2", p.Port)
}

// Promote makes a standby a primary and waits until it is one (pg_promote waits).
func (p *Postgres) Promote(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, p.URL())
	if err != nil {
		t.Fatalf("connecting to the standby on port %d: %v", p.Port, err)
	}
	defer conn.Close(ctx)
	var done bool
	if err := conn.QueryRow(ctx, "SELECT pg_promote(true, 20)").Scan(&done); err != nil || !done {
		t.Fatalf("promoting the standby on port %d: %v %v; log:\n%s", p.Port, done, err, p.log())
	}
}

// start configures the data directory for a free port and starts the server, retrying when
// another process takes the port first.
func (p *Postgres) start(t testing.TB) {
	t.Helper()
	var lastErr error
	for range 5 {
		p.Port = FreePort(t)
		// Later lines win: a standby's copy of its primary's file gets its own port.
		conf := fmt.Sprintf("\nport = %d\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = ''\n"+
			"fsync = off\nshared_buffers = 16MB\nmax_connections = 20\n", p.Port)
		f, err := os.OpenFile(filepath.Join(p.dir, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		_, err = f.WriteString(conf)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		if lastErr = p.launch(t); lastErr == nil {
			return
		}
	}
	t.Fatalf("starting postgres: %v", lastErr)
}

// launch runs postgres and waits until it takes connections (a standby: read-only ones).
func (p *Postgres) launch(t testing.TB) error {
	logFile, err := os.Create(p.dir + ".log")
	if err != nil {
		return err
	}
	cmd := exec.Command(filepath.Join(p.bin, "postgres"), "-D", p.dir)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: p.cred}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait(); logFile.Close() }()
	stop := func() {
		_ = cmd.Process.Signal(syscall.SIGQUIT) // immediate shutdown
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		select {
		case err := <-exited:
			exited <- err
			return fmt.Errorf("postgres on port %d exited: %v; log:\n%s", p.Port, err, p.log())
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		conn, err := pgx.Connect(ctx, p.URL())
		if err == nil {
			_ = conn.Close(ctx)
			cancel()
			t.Cleanup(stop)
			return nil
		}
		cancel()
	}
	stop()
	return fmt.Errorf("postgres on port %d took no connection within 15s; log:\n%s", p.Port, p.log())
}

func (p *Postgres) log() string {
	b, _ := os.ReadFile(p.dir + ".log")
	return string(b)
}

// run runs one of the server's tools as the server's user.
func (p *Postgres) run(t testing.TB, tool string, args ...string) {
	t.Helper()
	cmd := exec.Command(filepath.Join(p.bin, tool), args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: p.cred}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", tool, err, out)
	}
}

// tempDir is a directory the server's user owns, removed when the test ends (after the
// server stops: cleanups run last first).
func (p *Postgres) tempDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "pgtest-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if p.cred != nil {
		if err := os.Chown(dir, int(p.cred.Uid), int(p.cred.Gid)); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// postgresBin is the directory of the newest installed server (Debian keeps it out of PATH:
// /usr/lib/postgresql/<version>/bin), else the one of initdb on PATH.
func postgresBin(t testing.TB) string {
	t.Helper()
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return pgVersion(dirs[i]) < pgVersion(dirs[j]) })
	for i := len(dirs) - 1; i >= 0; i-- {
		if _, err := os.Stat(filepath.Join(dirs[i], "initdb")); err == nil {
			return dirs[i]
		}
	}
	if path, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(path)
	}
	if os.Getenv("CI") != "" {
		t.Fatal("the PostgreSQL server tools (initdb) are not installed, and CI is set: the CI script must install them (Debian: apt-get install postgresql)")
	}
	t.Skip("the PostgreSQL server tools (initdb) are not installed (Debian: apt-get install postgresql)")
	return ""
}

// pgVersion is the major version in /usr/lib/postgresql/<version>/bin.
func pgVersion(bin string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(bin)))
	return n
}

// postgresUser is who runs the server: postgres refuses to run as root, so a test run as
// root runs it as the postgres user (which the Debian package creates); nil otherwise.
func postgresUser(t testing.TB) *syscall.Credential {
	t.Helper()
	if os.Geteuid() != 0 {
		return nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("running as root, PostgreSQL needs a postgres user to run as, and there is none (%v): CI must install postgresql", err)
		}
		t.Skipf("running as root, PostgreSQL needs a postgres user to run as: %v", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
}
