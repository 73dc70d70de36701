package deploy_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/swarmsec/caddy-hardening/internal/testenv"
)

// unitBinary is where the unit expects the Caddy built with caddy-hardening.
const unitBinary = "/usr/bin/caddy"

// TestSystemdUnitVerifies: `systemd-analyze verify` reads the unit as systemd would and finds
// nothing. systemd only logs a misspelt or misplaced key, or a bad value, and starts the service
// without that setting (a sandboxing line that does nothing), so a unit that loads is not proof.
// The binary is the one built from this checkout, in place of /usr/bin/caddy (verify also
// checks that each Exec line names an executable).
func TestSystemdUnitVerifies(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("systemd-analyze is missing and CI is set: .ci/run must install systemd")
		}
		t.Skip("no systemd-analyze on PATH")
	}
	unit := strings.ReplaceAll(read(t, "caddy-hardening.service"), unitBinary, testenv.CaddyBinary(t))
	path := filepath.Join(t.TempDir(), "caddy-hardening.service")
	if err := os.WriteFile(path, []byte(unit), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", path).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// unitCommands is the caddy arguments of each of the unit's key lines (ExecStart, ...), with
// /etc/caddy/Caddyfile replaced by caddyfile.
func unitCommands(t *testing.T, key, caddyfile string) [][]string {
	t.Helper()
	var cmds [][]string
	for _, line := range unitKeys(t)["[Service]"+key] {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != unitBinary {
			t.Fatalf("%s=%s does not run %s", key, line, unitBinary)
		}
		args := f[1:]
		for i, a := range args {
			if a == "/etc/caddy/Caddyfile" {
				args[i] = caddyfile
			}
		}
		cmds = append(cmds, args)
	}
	if len(cmds) == 0 {
		t.Fatalf("the unit has no %s", key)
	}
	return cmds
}

// TestSystemdUnitCommandsRun runs the unit's commands, in systemd's order, against
// Caddyfile.example with the environment of .env.example (ports moved to free ones): every
// ExecStartPre exits 0, ExecStart serves, every ExecReload exits 0 and the running Caddy loads
// the configuration again. A subcommand or flag the binary does not have fails here, not on
// the first start or reload of a server.
func TestSystemdUnitCommandsRun(t *testing.T) {
	bin := testenv.CaddyBinary(t)
	dir := t.TempDir()
	caddyfile := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(caddyfile, []byte(read(t, "../Caddyfile.example")), 0o600); err != nil {
		t.Fatal(err)
	}
	var env []string
	for k, v := range envFile(t, "../.env.example") {
		env = append(env, k+"="+v)
	}
	env = append(env,
		fmt.Sprintf("HTTP_PORT=%d", testenv.FreePort(t)),
		fmt.Sprintf("HTTPS_PORT=%d", testenv.FreePort(t)),
		fmt.Sprintf("ADMIN_ADDR=127.0.0.1:%d", testenv.FreePort(t)))

	run := func(key string, args []string) {
		t.Helper()
		p := testenv.StartProcess(t, bin, args, "", env...)
		if err := p.Wait(90 * time.Second); err != nil {
			t.Fatalf("%s=caddy %s: %v\n%s", key, strings.Join(args, " "), err, p.Output())
		}
	}
	for _, args := range unitCommands(t, "ExecStartPre", caddyfile) {
		run("ExecStartPre", args)
	}
	start := unitCommands(t, "ExecStart", caddyfile)
	if len(start) != 1 {
		t.Fatalf("the unit has %d ExecStart lines; a Type=notify service has one", len(start))
	}
	srv := testenv.StartProcess(t, bin, start[0], "", env...)
	if err := srv.WaitOutput("serving initial configuration", 60*time.Second); err != nil {
		t.Fatal(err)
	}
	for _, args := range unitCommands(t, "ExecReload", caddyfile) {
		run("ExecReload", args)
	}
	if err := srv.WaitOutput("load complete", 30*time.Second); err != nil {
		t.Fatalf("ExecReload did not reload the running Caddy: %v", err)
	}
}
