package main

import (
	"crypto/tls"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/swarmsec/caddy-hardening/internal/testenv"
)

// quickStartGrade is the grade README.md's Quick start says the example gets.
var quickStartGrade = regexp.MustCompile(`grades the example \*\*([A-F][+-]?) \((\d+)\)\*\*`)

// TestQuickStartGrade runs the Quick start as a new user does (Caddyfile.example, then `caddy
// hardening check --url https://... --http-url http://... --ca-file <the local CA>`): the check
// prints the grade the README states, and the only test that fails is the redirection the
// example leaves to the platform in front of it. The README used to say only that the grade
// "loses the redirection points", not that it is B+ and loses every bonus with them.
func TestQuickStartGrade(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	m := quickStartGrade.FindSubmatch(readme)
	if m == nil {
		t.Fatalf("README.md's Quick start does not state the example's grade (%s)", quickStartGrade)
	}
	httpPort, httpsPort, adminPort := testenv.FreePort(t), testenv.FreePort(t), testenv.FreePort(t)
	p := testenv.RunCaddy(t, readExample(t),
		fmt.Sprintf("HTTP_PORT=%d", httpPort), fmt.Sprintf("HTTPS_PORT=%d", httpsPort),
		fmt.Sprintf("ADMIN_ADDR=localhost:%d", adminPort))
	testenv.WaitFor(t, 30*time.Second, "the local certificate", func() bool {
		conn, err := tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", httpsPort),
			&tls.Config{InsecureSkipVerify: true, ServerName: "localhost"}) //nolint:gosec // only waits for the handshake
		if err == nil {
			conn.Close()
		}
		return err == nil
	})

	root := filepath.Join(p.Dir, "data", "caddy", "pki", "authorities", "local", "root.crt")
	site := fmt.Sprintf("https://localhost:%d/", httpsPort)
	out, err := exec.Command(testenv.CaddyBinary(t), "hardening", "check", "--url", site,
		"--http-url", fmt.Sprintf("http://localhost:%d/", httpPort), "--ca-file", root).Output()
	if err != nil {
		t.Fatalf("hardening check --url: %v\n%s", err, out)
	}
	want := fmt.Sprintf("%s: score %s, grade %s (MDN HTTP Observatory scoring)\n", site, m[2], m[1])
	if !strings.HasPrefix(string(out), want) {
		t.Fatalf("README.md says the example grades %s (%s); the check prints:\n%s", m[1], m[2], out)
	}
	var failed []string
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) >= 4 && f[0] == "FAIL" {
			failed = append(failed, f[3])
		}
	}
	if len(failed) != 1 || failed[0] != "redirection-missing" {
		t.Fatalf("failed tests %v, want only redirection-missing (the README's reason):\n%s", failed, out)
	}
}
