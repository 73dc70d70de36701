package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/swarmsec/caddy-hardening/internal/testenv"
)

// TestCheckCommandExitStatus runs `caddy hardening check` from the built binary, as a user or
// an ExecStartPre does: the example passes; a warning fails only with --strict; an error
// finding always fails.
func TestCheckCommandExitStatus(t *testing.T) {
	bin := testenv.CaddyBinary(t)
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	run := func(args ...string) (string, error) {
		p := testenv.StartProcess(t, bin, append([]string{"hardening", "check"}, args...), "")
		err := p.Wait(60 * time.Second)
		return p.Output(), err
	}
	example := write("Caddyfile", readExample(t))
	if out, err := run("--config", example, "--adapter", "caddyfile", "--strict"); err != nil || !strings.Contains(out, "environment production: 0 error(s), 0 warning(s)") {
		t.Fatalf("Caddyfile.example: %v\n%s", err, out)
	}
	warn := write("warn.caddyfile", "{\n\tadmin off\n}\nhttp://127.0.0.1:9 {\n\tsecurity_headers {\n\t\treport_only\n\t}\n}\n")
	if out, err := run("--config", warn); err != nil || !strings.Contains(out, "csp.report_only") {
		t.Fatalf("warning without --strict: %v\n%s", err, out)
	}
	if out, err := run("--config", warn, "--strict"); err == nil {
		t.Fatalf("warning with --strict exits 0:\n%s", out)
	}
	bad := write("bad.caddyfile", "{\n\tadmin off\n\thardening {\n\t\tredis rediss://10.0.0.1:6380 {\n\t\t\ttls {\n\t\t\t\tinsecure_skip_verify\n\t\t\t}\n\t\t}\n\t}\n}\nhttp://127.0.0.1:9 {\n\tsecurity_headers\n}\n")
	if out, err := run("--config", bad); err == nil || !strings.Contains(out, "redis.tls_insecure") {
		t.Fatalf("error finding: %v\n%s", err, out)
	}
}
