// Package bench holds the side-by-side benchmark's scripts (run.sh); this file tests how
// they are called, never a measurement.
package bench

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestRunHelp: `bench/run.sh --help` prints the usage and the configurations and exits 0
// without building or measuring anything; any other argument is refused with exit 2 (the
// settings are environment variables), instead of starting a run of ten minutes or more.
// CONFIGS names no configuration, so a run.sh that ignored its arguments would stop at once
// with "unknown configuration" instead of building three Caddy binaries here.
func TestRunHelp(t *testing.T) {
	run := func(arg string) (string, int) {
		cmd := exec.Command("bash", "run.sh", arg)
		cmd.Env = append(os.Environ(), "CONFIGS=no_such_configuration", "OUT=")
		out, err := cmd.CombinedOutput()
		var exit *exec.ExitError
		if err != nil && !errors.As(err, &exit) {
			t.Fatalf("bash run.sh %s: %v", arg, err)
		}
		return string(out), cmd.ProcessState.ExitCode()
	}
	for _, arg := range []string{"--help", "-h"} {
		out, code := run(arg)
		if code != 0 {
			t.Fatalf("run.sh %s exited %d:\n%s", arg, code, out)
		}
		for _, want := range []string{"ROUNDS=", "CONFIGS=", "mem_admit ", "breaker_open_bytes"} {
			if !strings.Contains(out, want) {
				t.Errorf("run.sh %s does not mention %q:\n%s", arg, want, out)
			}
		}
	}
	out, code := run("--rounds=1")
	if code != 2 || !strings.Contains(out, "takes no arguments") {
		t.Errorf("run.sh --rounds=1: exit %d, want 2 and a usage error:\n%s", code, out)
	}
}
