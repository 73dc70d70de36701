// Package testenv runs the real parts tests talk to: redis-server (standalone and a 3-master
// Cluster, Sentinel) on free loopback ports, and the built Caddy binary as a process. In-process
// Caddy is in package testcaddy.
//
// When redis-server is not installed a Redis test is skipped with a clear message, except when
// the CI environment variable is set: then it fails, so CI never passes by skipping.
package testenv

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis is a redis-server process owned by one test. It is stopped when the test ends.
type Redis struct {
	t    testing.TB
	Port int
	Addr string // 127.0.0.1:<port>
	dir  string
	args []string

	mu  sync.Mutex
	cmd *exec.Cmd
}

// RequireBinary skips the test when name is not on PATH, or fails it under CI.
func RequireBinary(t testing.TB, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is not installed, and CI is set: the CI script must install it (Debian: apt-get install %s)", name, debianPackage(name))
		}
		t.Skipf("%s is not on PATH: install it (Debian: apt-get install %s) to run this test", name, debianPackage(name))
	}
	return path
}

// debianPackage names the Debian package that installs a binary the tests use.
func debianPackage(binary string) string {
	switch binary {
	case "redis-server", "redis-cli":
		return "redis-server"
	case "psql", "pg_ctl":
		return "postgresql"
	}
	return binary
}

// StartRedis starts a redis-server on a free loopback port with persistence off. Extra
// arguments are appended to the command line (e.g. "--requirepass", "secret").
func StartRedis(t testing.TB, extra ...string) *Redis {
	t.Helper()
	return startServer(t, func(port int, dir string) []string {
		return append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
			"--save", "", "--appendonly", "no", "--dir", dir}, extra...)
	})
}

// StartReplica starts a redis-server that replicates master (read-only, as replicas are) and
// returns once it has synced. The master is told to send its data at once rather than wait
// for more replicas (repl-diskless-sync-delay 0), which would cost every test 5 s.
func StartReplica(t testing.TB, master *Redis, extra ...string) *Redis {
	t.Helper()
	noSyncDelay(t, master)
	replica := StartRedis(t, append([]string{"--replicaof", "127.0.0.1", strconv.Itoa(master.Port)}, extra...)...)
	waitSynced(t, replica)
	return replica
}

// noSyncDelay tells master to send its data to a new replica at once (repl-diskless-sync-delay
// 0) rather than wait 5 s for more replicas.
func noSyncDelay(t testing.TB, master *Redis) {
	t.Helper()
	if _, err := master.Do("CONFIG", "SET", "repl-diskless-sync-delay", "0"); err != nil {
		t.Fatalf("CONFIG SET on the master %s: %v", master.Addr, err)
	}
}

// waitSynced waits until replica has its master's data.
func waitSynced(t testing.TB, replica *Redis) {
	t.Helper()
	WaitFor(t, 10*time.Second, "the replica "+replica.Addr+" to sync", func() bool {
		info, err := replica.Do("INFO", "replication")
		return err == nil && strings.Contains(fmt.Sprint(info), "master_link_status:up")
	})
}

// StartSentinel starts a Redis Sentinel on a free loopback port that monitors master under
// the given name (quorum 1). Extra lines go into its configuration file after the monitor line
// (e.g. "sentinel down-after-milliseconds <name> 1000").
func StartSentinel(t testing.TB, master *Redis, name string, extra ...string) *Redis {
	t.Helper()
	return StartSentinels(t, 1, 1, master, name, extra...)[0]
}

// StartFailoverSentinel starts a Sentinel that fails master over to its one replica quickly
// (down after 500 ms, failover timeout 2 s) and returns once it knows the replica, so that
// killing the master promotes it.
func StartFailoverSentinel(t testing.TB, master *Redis, name string) *Redis {
	t.Helper()
	s := StartSentinel(t, master, name,
		"sentinel down-after-milliseconds "+name+" 500", "sentinel failover-timeout "+name+" 2000")
	WaitFor(t, 12*time.Second, "the Sentinel to know the replica", func() bool {
		v, err := s.Do("SENTINEL", "REPLICAS", name)
		list, _ := v.([]any)
		return err == nil && len(list) == 1
	})
	return s
}

// StartSentinels starts n Sentinels that monitor master under name with the given quorum; they
// find each other through the master (within a few seconds).
func StartSentinels(t testing.TB, n, quorum int, master *Redis, name string, extra ...string) []*Redis {
	t.Helper()
	out := make([]*Redis, n)
	for i := range out {
		out[i] = startSentinel(t, quorum, master, name, extra)
	}
	return out
}

// StartSentinelTLS starts a Sentinel that also listens with TLS on the returned port (its
// plain port stays open for the readiness check) and monitors, over TLS, the master whose TLS
// port is masterTLSPort, so it hands that port to clients: a client that speaks to it over
// TLS reaches the master over TLS too.
func StartSentinelTLS(t testing.TB, masterTLSPort int, name string, files TLSFiles) (s *Redis, tlsPort int) {
	t.Helper()
	tlsPort = FreePort(t)
	s = startSentinelOn(t, 1, masterTLSPort, name, []string{
		fmt.Sprintf("tls-port %d", tlsPort), "tls-cert-file " + files.Cert, "tls-key-file " + files.Key,
		"tls-ca-cert-file " + files.CA, "tls-auth-clients no", "tls-replication yes",
	})
	return s, tlsPort
}

func startSentinel(t testing.TB, quorum int, master *Redis, name string, extra []string) *Redis {
	t.Helper()
	return startSentinelOn(t, quorum, master.Port, name, extra)
}

// startSentinelOn starts a Sentinel monitoring the master on 127.0.0.1:masterPort.
func startSentinelOn(t testing.TB, quorum, masterPort int, name string, extra []string) *Redis {
	t.Helper()
	return startServer(t, func(port int, dir string) []string {
		conf := filepath.Join(dir, "sentinel.conf")
		text := fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\nsentinel monitor %s 127.0.0.1 %d %d\n", port, dir, name, masterPort, quorum)
		for _, line := range extra {
			text += line + "\n"
		}
		if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return []string{conf, "--sentinel"}
	})
}

// startServer starts redis-server with the arguments args gives for a free port, retrying
// when another process takes the port first.
func startServer(t testing.TB, args func(port int, dir string) []string) *Redis {
	t.Helper()
	RequireBinary(t, "redis-server")
	r := &Redis{t: t, dir: t.TempDir()}
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		r.Port = FreePort(t)
		r.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(r.Port))
		r.args = args(r.Port, r.dir)
		if lastErr = r.start(); lastErr == nil {
			t.Cleanup(r.Kill)
			return r
		}
	}
	t.Fatalf("starting redis-server: %v", lastErr)
	return nil
}

func (r *Redis) start() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	cmd := exec.Command("redis-server", r.args...)
	logFile, err := os.OpenFile(filepath.Join(r.dir, "redis.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return err
	}
	r.cmd = cmd
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait(); logFile.Close() }()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			r.cmd = nil
			return fmt.Errorf("redis-server on port %d exited: %v; log:\n%s", r.Port, err, r.log())
		default:
		}
		if pingRaw(r.Addr) == nil {
			go func() { <-exited }()
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	_ = cmd.Process.Kill()
	r.cmd = nil
	return fmt.Errorf("redis-server on port %d did not answer PING within 5s; log:\n%s", r.Port, r.log())
}

func (r *Redis) log() string {
	b, _ := os.ReadFile(filepath.Join(r.dir, "redis.log"))
	return string(b)
}

// pingRaw speaks just enough RESP to know the server answers, without a client pool.
func pingRaw(addr string) error { return pingWithin(addr, 500*time.Millisecond) }

// pingWithin is pingRaw with a bound on the answer.
func pingWithin(addr string, timeout time.Duration) error {
	conn, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(timeout))
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+PONG") && !strings.HasPrefix(line, "-NOAUTH") {
		return fmt.Errorf("unexpected reply %q", line)
	}
	return nil
}

// Stop shuts the server down gracefully (SIGTERM) and waits until the port is closed.
func (r *Redis) Stop() { r.signal(syscall.SIGTERM) }

// Kill stops the server at once (SIGKILL), as a crash would.
func (r *Redis) Kill() { r.signal(syscall.SIGKILL) }

// Freeze stops the server's process (SIGSTOP) without closing anything: connections stay
// open and new ones are still accepted by the kernel, but no command is answered, as when a
// node stalls (a VM pause, a swap storm). Thaw resumes it; commands sent meanwhile are then
// run.
func (r *Redis) Freeze() { r.pause(syscall.SIGSTOP) }

// Thaw resumes a server stopped by Freeze (SIGCONT).
func (r *Redis) Thaw() { r.pause(syscall.SIGCONT) }

func (r *Redis) pause(sig syscall.Signal) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd != nil {
		_ = r.cmd.Process.Signal(sig)
	}
}

func (r *Redis) signal(sig syscall.Signal) {
	r.mu.Lock()
	cmd := r.cmd
	r.cmd = nil
	r.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(sig)
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("tcp", r.Addr, 50*time.Millisecond); err != nil {
			return
		} else {
			c.Close()
		}
		time.Sleep(10 * time.Millisecond)
	}
	_ = cmd.Process.Kill()
}

// Sleep blocks the whole server for d with DEBUG SLEEP (start it with --enable-debug-command
// yes) and returns once the server sleeps: the command is written on a connection of its own,
// then PINGs are sent on fresh connections until one goes unanswered. Since the command was in
// the server's socket before the PING's connection was made, the server runs it first, so from
// then on every command of the test waits for the sleep (a goroutine that sends the command
// and a pause that guesses when it arrived is neither: on a loaded machine the command came
// after the test's). The channel gets the command's result when the server wakes. The server
// is killed when the test ends, before the cleanups registered earlier run (a client's Close
// would otherwise wait for the sleep to end).
func (r *Redis) Sleep(t testing.TB, d time.Duration) <-chan error {
	t.Helper()
	t.Cleanup(r.Kill)
	conn, err := net.DialTimeout("tcp", r.Addr, 5*time.Second)
	if err != nil {
		t.Fatalf("DEBUG SLEEP: %v", err)
	}
	if _, err := fmt.Fprintf(conn, "DEBUG SLEEP %.3f\r\n", d.Seconds()); err != nil {
		conn.Close()
		t.Fatalf("DEBUG SLEEP: %v", err)
	}
	done := make(chan error, 1)
	go func() {
		defer conn.Close()
		_ = conn.SetReadDeadline(time.Now().Add(d + time.Minute))
		line, err := bufio.NewReader(conn).ReadString('\n')
		if err == nil && !strings.HasPrefix(line, "+OK") {
			err = fmt.Errorf("DEBUG SLEEP: %s", strings.TrimSpace(line))
		}
		done <- err
	}()
	for deadline := time.Now().Add(10 * time.Second); pingWithin(r.Addr, 50*time.Millisecond) == nil; {
		select {
		case err := <-done:
			t.Fatalf("DEBUG SLEEP returned at once (%v): start Redis with --enable-debug-command yes", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("Redis still answers PING 10 s after DEBUG SLEEP was sent")
		}
	}
	return done
}

// Fill makes Redis full for writes while it keeps answering reads and pub/sub: maxmemory of
// one byte with noeviction, so every command that may grow memory gets an OOM error.
func (r *Redis) Fill(t testing.TB) {
	t.Helper()
	for _, set := range [][]any{{"maxmemory-policy", "noeviction"}, {"maxmemory", "1"}} {
		if _, err := r.Do(append([]any{"CONFIG", "SET"}, set...)...); err != nil {
			t.Fatal(err)
		}
	}
}

// Restart starts the server again on the same port (after Stop or Kill). The data is gone:
// persistence is off.
func (r *Redis) Restart() {
	r.t.Helper()
	r.Kill()
	var err error
	for attempt := 0; attempt < 50; attempt++ { // the port can linger briefly after a kill
		if err = r.start(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	r.t.Fatalf("restarting redis-server on port %d: %v", r.Port, err)
}

// URL is the redis:// URL of database db.
func (r *Redis) URL(db int) string { return fmt.Sprintf("redis://%s/%d", r.Addr, db) }

// Do runs one command on a fresh connection (so it never shares a pool with the code under
// test) and returns its reply.
func (r *Redis) Do(args ...any) (any, error) {
	c := redis.NewClient(&redis.Options{Addr: r.Addr, MaxRetries: -1})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return c.Do(ctx, args...).Result()
}

// CommandCalls sums how many times the server ran the named commands (lower case, as INFO
// commandstats names them: "evalsha", "eval"); the test fails if Redis does not answer.
func (r *Redis) CommandCalls(t testing.TB, commands ...string) int64 {
	t.Helper()
	return r.commandStat(t, []string{"calls"}, commands)
}

// commandStat sums the given fields of the named commands' INFO commandstats lines.
func (r *Redis) commandStat(t testing.TB, fields, commands []string) int64 {
	t.Helper()
	info, err := r.Do("INFO", "commandstats")
	if err != nil {
		t.Fatalf("INFO commandstats: %v", err)
	}
	var n int64
	for _, line := range strings.Split(fmt.Sprint(info), "\n") {
		for _, cmd := range commands {
			stats, ok := strings.CutPrefix(strings.TrimSpace(line), "cmdstat_"+cmd+":")
			if !ok {
				continue
			}
			for _, kv := range strings.Split(stats, ",") {
				k, v, _ := strings.Cut(kv, "=")
				if slices.Contains(fields, k) {
					count, _ := strconv.ParseInt(v, 10, 64)
					n += count
				}
			}
		}
	}
	return n
}

// CommandAttempts sums how many times clients sent the named commands, run or refused (calls
// and rejected_calls of INFO commandstats: an OOM or NOPERM refusal is a rejected call).
func (r *Redis) CommandAttempts(t testing.TB, commands ...string) int64 {
	t.Helper()
	return r.commandStat(t, []string{"calls", "rejected_calls"}, commands)
}

// FreePort returns a loopback TCP port that was free a moment ago and that this test process
// has not handed out before: the kernel may offer a port again once its listener is closed, and
// two sites of one test config on the same port would make Caddy refuse the config.
func FreePort(t testing.TB) int {
	t.Helper()
	givenMu.Lock()
	defer givenMu.Unlock()
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("finding a free port: %v", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if !given[port] {
			given[port] = true
			return port
		}
	}
	t.Fatal("finding a free port: the kernel kept offering ports already handed out")
	return 0
}

var (
	givenMu sync.Mutex
	given   = map[int]bool{} // at most one entry per port: bounded by the port range
)
