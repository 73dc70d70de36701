package testenv

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// CaddyBinary builds ./cmd/caddy (once per test process; Go's build cache makes later builds
// quick) and returns the path of the binary.
func CaddyBinary(t testing.TB) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the Caddy binary; skipped with -short")
	}
	bin, err := buildBinary("./cmd/caddy", "caddy")
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// builds holds one *build per main package this process built.
var builds sync.Map

type build struct {
	once sync.Once
	bin  string
	err  error
}

// buildBinary builds the main package pkg of this module as name, once per test process, with
// `go build` and no flag of the test's own (a binary of a -race test is built without -race),
// and returns the path of the binary.
func buildBinary(pkg, name string) (string, error) {
	v, _ := builds.LoadOrStore(pkg, &build{})
	b := v.(*build)
	b.once.Do(func() {
		root, err := moduleRoot()
		if err != nil {
			b.err = err
			return
		}
		// One directory per checkout: worktrees built from different code never share a binary.
		sum := sha256.Sum256([]byte(root))
		dir := filepath.Join(os.TempDir(), "caddy-hardening-testbin", hex.EncodeToString(sum[:6]))
		if err = os.MkdirAll(dir, 0o755); err != nil {
			b.err = err
			return
		}
		// Build to a unique name, then rename: packages tested in parallel each build, and
		// a rename never leaves a half-written binary under the shared name.
		tmp := filepath.Join(dir, fmt.Sprintf("%s.%d", name, os.Getpid()))
		cmd := exec.Command("go", "build", "-o", tmp, pkg)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			b.err = fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
			return
		}
		b.bin = filepath.Join(dir, name)
		b.err = os.Rename(tmp, b.bin)
	})
	return b.bin, b.err
}

func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %v", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("not inside the caddy-hardening module")
	}
	return filepath.Dir(gomod), nil
}

// Process is a Caddy binary running a Caddyfile, with its own data and config folders (so it
// never touches the user's certificates or autosave). It is stopped when the test ends.
type Process struct {
	t      testing.TB
	cmd    *exec.Cmd
	out    *syncBuffer
	done   chan struct{}
	Dir    string // working folder; holds the Caddyfile
	exited error
}

// RunCaddy starts `caddy run` on the Caddyfile with extra environment variables ("K=V") and
// waits until Caddy serves its configuration. The test fails if Caddy exits first.
func RunCaddy(t testing.TB, caddyfile string, env ...string) *Process {
	t.Helper()
	p := StartProcess(t, CaddyBinary(t), []string{"run", "--config", "Caddyfile", "--adapter", "caddyfile"}, caddyfile, env...)
	if err := p.WaitOutput("serving initial configuration", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	return p
}

// StartProcess starts bin with args in a fresh folder that holds the Caddyfile (when not
// empty). Its combined output is kept for Output and WaitOutput.
func StartProcess(t testing.TB, bin string, args []string, caddyfile string, env ...string) *Process {
	t.Helper()
	dir := t.TempDir()
	if caddyfile != "" {
		if err := os.WriteFile(filepath.Join(dir, "Caddyfile"), []byte(caddyfile), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	p := &Process{t: t, out: &syncBuffer{}, done: make(chan struct{}), Dir: dir}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Dir = dir
	p.cmd.Env = append(os.Environ(),
		"HOME="+dir, "XDG_DATA_HOME="+filepath.Join(dir, "data"), "XDG_CONFIG_HOME="+filepath.Join(dir, "config"))
	p.cmd.Env = append(p.cmd.Env, env...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", bin, err)
	}
	go func() { p.exited = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("output of %s %v:\n%s", filepath.Base(bin), args, p.Output())
		}
	})
	return p
}

// WaitOutput waits until the output contains s; it fails fast when the process exits.
func (p *Process) WaitOutput(s string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if strings.Contains(p.Output(), s) {
			return nil
		}
		select {
		case <-p.done:
			if strings.Contains(p.Output(), s) {
				return nil
			}
			return fmt.Errorf("process exited (%v) before printing %q; output:\n%s", p.exited, s, p.Output())
		case <-time.After(20 * time.Millisecond):
		}
	}
	return fmt.Errorf("no %q in the output after %s; output:\n%s", s, timeout, p.Output())
}

// Wait waits for the process to exit and returns its error (nil on exit code 0).
func (p *Process) Wait(timeout time.Duration) error {
	select {
	case <-p.done:
		return p.exited
	case <-time.After(timeout):
		return fmt.Errorf("still running after %s", timeout)
	}
}

// PID is the process's id (for /proc/<pid>/status).
func (p *Process) PID() int { return p.cmd.Process.Pid }

// Output is everything the process printed so far.
func (p *Process) Output() string { return p.out.String() }

// Stop asks the process to exit (SIGINT, Caddy's graceful stop) and kills it after 10 s.
func (p *Process) Stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
