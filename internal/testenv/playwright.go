package testenv

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// PlaywrightVersion is playwright-core from npm, installed into .ci/node/ (ignored by git) on
// first use. It drives Debian's chromium: no browser is ever downloaded (`npx playwright
// install` cannot reach the internet here, and needs none).
const PlaywrightVersion = "1.65.1"

// Chromium returns the Chromium binary for a browser test: Debian's /usr/lib/chromium/chromium
// (the binary itself, without the wrapper script's flags) or `chromium` on PATH. Without it
// the test is skipped, except under CI=1.
func Chromium(t testing.TB) string {
	t.Helper()
	bin := RequireBinary(t, "chromium")
	if _, err := os.Stat("/usr/lib/chromium/chromium"); err == nil {
		return "/usr/lib/chromium/chromium"
	}
	return bin
}

// RunPlaywright runs a node script that drives Chromium with playwright-core and returns its
// standard output. The script gets NODE_PATH (so `require('playwright-core')` works) and
// CHROMIUM (the executablePath to launch), then args. The test fails when the script exits
// non-zero; it is skipped without node or chromium, except under CI=1.
func RunPlaywright(t testing.TB, script string, args ...string) []byte {
	t.Helper()
	node := RequireBinary(t, "node")
	chromium := Chromium(t)
	modules := installPlaywright(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, append([]string{script}, args...)...)
	cmd.Env = append(os.Environ(), "NODE_PATH="+modules, "CHROMIUM="+chromium)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("node %s: %v\nstdout:\n%s\nstderr:\n%s", filepath.Base(script), err, stdout.String(), stderr.String())
	}
	if stderr.Len() > 0 {
		t.Logf("node %s stderr:\n%s", filepath.Base(script), stderr.String())
	}
	return stdout.Bytes()
}

// installPlaywright installs playwright-core@PlaywrightVersion into <module root>/.ci/node
// unless that version is there, under a file lock (test packages run in parallel), and
// returns the node_modules folder.
func installPlaywright(t testing.TB) string {
	t.Helper()
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	prefix := filepath.Join(root, ".ci", "node")
	modules := filepath.Join(prefix, "node_modules")
	installed := func() bool {
		raw, err := os.ReadFile(filepath.Join(modules, "playwright-core", "package.json"))
		var pkg struct{ Version string }
		return err == nil && json.Unmarshal(raw, &pkg) == nil && pkg.Version == PlaywrightVersion
	}
	if installed() {
		return modules
	}
	if err := os.MkdirAll(prefix, 0o755); err != nil {
		t.Fatal(err)
	}
	lock, err := os.OpenFile(filepath.Join(prefix, ".install.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = syscall.Flock(int(lock.Fd()), syscall.LOCK_UN) }()
	if installed() { // another package installed it while this one waited
		return modules
	}
	npm := RequireBinary(t, "npm")
	out, err := exec.Command(npm, "install", "--no-audit", "--no-fund", "--prefix", prefix,
		"playwright-core@"+PlaywrightVersion).CombinedOutput()
	if err != nil {
		t.Fatalf("npm install playwright-core@%s: %v\n%s", PlaywrightVersion, err, out)
	}
	return modules
}
