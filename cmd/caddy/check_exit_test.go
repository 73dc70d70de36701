package main

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/swarmsec/caddy-hardening/internal/testenv"
)

// TestCheckExitCodes: every failure of `caddy hardening check` exited 1, so a CI step could not
// tell "the configuration (or the site) has findings" from "the check did not run" (a file
// that cannot be read, a site that cannot be fetched, a mistyped flag). Now, as with eslint,
// ruff or shellcheck: 0 passed, 1 a report that fails (an error finding, a warning with
// --strict, a grade below --min-grade), 2 the check could not run, with no report. The
// built binary runs it, as a user or an ExecStartPre does.
func TestCheckExitCodes(t *testing.T) {
	bin := testenv.CaddyBinary(t)
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	example := write("Caddyfile", readExample(t))
	warn := write("warn.caddyfile", "{\n\tadmin off\n}\nhttp://127.0.0.1:9 {\n\tsecurity_headers {\n\t\treport_only\n\t}\n}\n")
	bad := write("bad.caddyfile", "{\n\tadmin off\n\thardening {\n\t\tredis rediss://10.0.0.1:6380 {\n\t\t\ttls {\n\t\t\t\tinsecure_skip_verify\n\t\t\t}\n\t\t}\n\t}\n}\nhttp://127.0.0.1:9 {\n\tsecurity_headers\n}\n")
	// The .env of .env.example, as `caddy run --envfile` reads it: the check lints what run loads.
	envfile := write("staging.env", "# comment line\nHARDENING_ENV=staging\nexport SHUTDOWN_DELAY=5s\n")
	refused := write("refused.caddyfile", "http://127.0.0.1:9 {\n\tpath_guard {\n\t\tnosuch\n\t}\n}\n")
	bare := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "hello") }))
	defer bare.Close()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + l.Addr().String() + "/"
	l.Close()

	for _, tc := range []struct {
		name string
		args []string
		want int
		out  string // in the output
		env  []string
	}{
		{"Caddyfile.example, --strict", []string{"--config", example, "--adapter", "caddyfile", "--strict"}, 0, "environment production: 0 error(s), 0 warning(s)", nil},
		{"warning", []string{"--config", warn}, 0, "csp.report_only", nil},
		{"warning with --strict", []string{"--config", warn, "--strict"}, 1, "csp.report_only", nil},
		{"error finding", []string{"--config", bad}, 1, "redis.tls_insecure", nil},
		{"a Caddyfile its adapter refuses", []string{"--config", refused}, 1, "config.invalid", nil},
		{"--envfile, as caddy run takes it", []string{"--config", example, "--envfile", envfile}, 0, "environment staging:", nil},
		{"--envfile that cannot be read", []string{"--config", example, "--envfile", filepath.Join(dir, "missing.env")}, 2, "missing.env", nil},
		{"--envfile with --url", []string{"--url", closed, "--envfile", envfile}, 2, "--envfile cannot be used with --url", nil},
		{"grade below --min-grade", []string{"--url", bare.URL + "/", "--min-grade", "A"}, 1, "grade", nil},
		{"a missing file", []string{"--config", filepath.Join(dir, "missing")}, 2, "no such file", nil},
		{"flags of both modes", []string{"--config", warn, "--url", closed}, 2, "--config cannot be used with --url", nil},
		{"an unknown flag", []string{"--nosuch"}, 2, "unknown flag: --nosuch", nil},
		{"an argument", []string{warn}, 2, "unknown command", nil},
		{"a bad --min-grade", []string{"--url", closed, "--min-grade", "Z"}, 2, "--min-grade", nil},
		{"a site that cannot be reached", []string{"--url", closed}, 2, "the connection was refused", nil},
		{"no temporary storage", []string{"--config", warn}, 2, "check.temp_storage", []string{"TMPDIR=" + filepath.Join(dir, "missing")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := testenv.StartProcess(t, bin, append([]string{"hardening", "check"}, tc.args...), "", tc.env...)
			err := p.Wait(60 * time.Second)
			code := 0
			var exit *exec.ExitError
			if errors.As(err, &exit) {
				code = exit.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tc.want || !strings.Contains(p.Output(), tc.out) {
				t.Errorf("exit %d, want %d with %q in the output:\n%s", code, tc.want, tc.out, p.Output())
			}
		})
	}
}
