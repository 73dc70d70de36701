package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/swarmsec/caddy-hardening/internal/testenv"
)

// keygenSnippet is the caddyfile block of the README's `caddy hardening keygen` section.
func keygenSnippet(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(b), "### `caddy hardening keygen`")
	if ok {
		section, _, _ = strings.Cut(section, "\n### ")
	}
	_, block, ok2 := strings.Cut(section, "```caddyfile\n")
	block, _, ok3 := strings.Cut(block, "```")
	if !ok || !ok2 || !ok3 || !strings.Contains(block, "http://localhost:8080") {
		t.Fatalf("no caddyfile block with http://localhost:8080 in the README's keygen section")
	}
	return block
}

// TestKeygenREADMEExample runs the README's keygen example end to end: the built binary's
// `hardening keygen` prints a key and its digest, Caddy runs the documented snippet with the
// digest in MONITORING_KEYS, and the key (not another, not none) unlocks the health details; the
// key reaches no log line.
func TestKeygenREADMEExample(t *testing.T) {
	bin := testenv.CaddyBinary(t)
	kg := testenv.StartProcess(t, bin, []string{"hardening", "keygen", "--prefix", "mon_"}, "")
	if err := kg.Wait(30 * time.Second); err != nil {
		t.Fatalf("keygen: %v\n%s", err, kg.Output())
	}
	fields := strings.Fields(kg.Output())
	if len(fields) != 2 {
		t.Fatalf("keygen printed %q, want KEY DIGEST", kg.Output())
	}
	key, digest := fields[0], fields[1]
	other := strings.Fields(func() string {
		p := testenv.StartProcess(t, bin, []string{"hardening", "keygen", "--prefix", "mon_"}, "")
		if err := p.Wait(30 * time.Second); err != nil {
			t.Fatal(err)
		}
		return p.Output()
	}())[0]

	port := testenv.FreePort(t)
	// The snippet as written, on a free loopback port, without the admin endpoint.
	cf := "{\n\tadmin off\n\tdefault_bind 127.0.0.1\n}\n" + strings.ReplaceAll(keygenSnippet(t), "8080", fmt.Sprint(port))
	p := testenv.RunCaddy(t, cf, "MONITORING_KEYS="+digest)

	health := func(key string) (int, string) {
		req, _ := http.NewRequest("GET", fmt.Sprintf("http://localhost:%d/api/monitoring/health", port), nil)
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	const statusWord = "{\"status\":\"pass\"}\n"
	if code, body := health(""); code != 200 || body != statusWord {
		t.Fatalf("without a key: %d %q, want the status word", code, body)
	}
	if code, body := health(other); code != 200 || body != statusWord {
		t.Fatalf("with another key: %d %q, want the status word", code, body)
	}
	code, body := health(key)
	if code != 200 || body == statusWord || !strings.Contains(body, "\"checks\"") {
		t.Fatalf("with the key: %d %q, want the full health document", code, body)
	}
	if err := p.WaitOutput("monitoring_access_denied", 10*time.Second); err != nil {
		t.Fatalf("the wrong key logged no monitoring_access_denied: %v", err)
	}
	for _, k := range []string{key, other} {
		if strings.Contains(p.Output(), k) {
			t.Fatalf("a key reached Caddy's log:\n%s", p.Output())
		}
	}
}
