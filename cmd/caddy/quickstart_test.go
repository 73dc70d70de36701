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

// TestQuickStartTranscript runs the README's "Try it" transcript (the Quick start's text block
// of `$ curl` lines) against Caddyfile.example, as a new user pastes it into a shell, and
// compares each command's output with the lines the README shows under it. The Quick start
// used to end with the example running: which routes it serves, and how to see a refusal of
// each module from a loopback client (trusted, with 100 sign-ins a minute), was left to the
// reader.
func TestQuickStartTranscript(t *testing.T) {
	bash := testenv.RequireBinary(t, "bash")
	testenv.RequireBinary(t, "curl")
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	steps := quickStartTranscript(t, string(readme))
	httpPort, httpsPort, adminPort := testenv.FreePort(t), testenv.FreePort(t), testenv.FreePort(t)
	// The README's API_UPSTREAM default, 127.0.0.1:9000, is a port nothing listens on; here a
	// free port stands for it, since some other test may listen on 9000.
	testenv.RunCaddy(t, readExample(t),
		fmt.Sprintf("HTTP_PORT=%d", httpPort), fmt.Sprintf("HTTPS_PORT=%d", httpsPort),
		fmt.Sprintf("ADMIN_ADDR=localhost:%d", adminPort),
		fmt.Sprintf("API_UPSTREAM=127.0.0.1:%d", testenv.FreePort(t)))
	ports := strings.NewReplacer("localhost:8080", fmt.Sprintf("localhost:%d", httpPort),
		"localhost:2019", fmt.Sprintf("localhost:%d", adminPort))
	for _, s := range steps {
		cmd := exec.Command(bash, "-c", ports.Replace(s.command))
		cmd.Env = append(os.Environ(), "NO_PROXY=*", "no_proxy=*") // loopback, never a proxy
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("$ %s\n%v\n%s", s.command, err, out)
		}
		var got []string
		for _, l := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
			got = append(got, strings.TrimRight(l, " "))
		}
		if strings.Join(got, "\n") != strings.Join(s.output, "\n") {
			t.Errorf("$ %s\nREADME.md shows:\n%s\nthe example answers:\n%s", s.command, strings.Join(s.output, "\n"), strings.Join(got, "\n"))
		}
	}
}

type transcriptStep struct {
	command string
	output  []string
}

// quickStartTranscript returns the commands and outputs of the Quick start's ```text block
// whose first line is `$ curl`.
func quickStartTranscript(t *testing.T, readme string) []transcriptStep {
	t.Helper()
	start := strings.Index(readme, "## Quick start")
	end := strings.Index(readme, "## Features")
	if start < 0 || end < start {
		t.Fatal("README.md has no Quick start section before Features")
	}
	section := readme[start:end]
	i := strings.Index(section, "```text\n$ curl ")
	if i < 0 {
		t.Fatal("README.md's Quick start has no transcript (a ```text block starting with `$ curl`)")
	}
	block := section[i+len("```text\n"):]
	block = block[:strings.Index(block, "```")]
	var steps []transcriptStep
	for _, l := range strings.Split(strings.TrimRight(block, "\n"), "\n") {
		if c, ok := strings.CutPrefix(l, "$ "); ok {
			steps = append(steps, transcriptStep{command: c})
		} else if len(steps) > 0 {
			steps[len(steps)-1].output = append(steps[len(steps)-1].output, l)
		}
	}
	if len(steps) < 5 {
		t.Fatalf("README.md's Quick start transcript has %d commands; the extraction is broken", len(steps))
	}
	return steps
}
