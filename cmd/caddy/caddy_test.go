package main

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/swarmsec/caddy-hardening/internal/testcaddy"
	"github.com/swarmsec/caddy-hardening/internal/testenv"
)

func readExample(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../../Caddyfile.example")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestExampleAdapts keeps Caddyfile.example from rotting: it must adapt without warnings and
// configure the hardening app.
func TestExampleAdapts(t *testing.T) {
	cfg, err := testcaddy.Adapt(readExample(t))
	if err != nil {
		t.Fatalf("Caddyfile.example: %v", err)
	}
	apps, _ := cfg["apps"].(map[string]any)
	if _, ok := apps["hardening"]; !ok {
		t.Fatal("Caddyfile.example configures no hardening app")
	}
}

// TestExampleServes runs the README's command (the built binary, Caddyfile.example) and fetches
// the site over HTTP and HTTPS.
func TestExampleServes(t *testing.T) {
	httpPort, httpsPort, adminPort := testenv.FreePort(t), testenv.FreePort(t), testenv.FreePort(t)
	testenv.RunCaddy(t, readExample(t),
		fmt.Sprintf("HTTP_PORT=%d", httpPort), fmt.Sprintf("HTTPS_PORT=%d", httpsPort),
		fmt.Sprintf("ADMIN_ADDR=localhost:%d", adminPort))
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		// The example's certificate comes from Caddy's local CA, which the test does not trust.
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true, ServerName: "localhost"}, //nolint:gosec
	}}
	for _, url := range []string{
		fmt.Sprintf("http://localhost:%d/", httpPort),
		fmt.Sprintf("https://localhost:%d/", httpsPort),
	} {
		var resp *http.Response
		var err error
		for i := 0; i < 50; i++ { // the local certificate is issued just after start
			if resp, err = client.Get(url); err == nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(body), "it works") {
			t.Fatalf("GET %s: %d %q", url, resp.StatusCode, body)
		}
	}
}

// TestExampleExitsAfterGracePeriod: stopped while a streaming response is in flight (SSE from
// the upstream), Caddy with Caddyfile.example exits once GRACE_PERIOD is over, instead of
// waiting for the stream to end until the platform kills it (deploy/ stops in 35 s).
func TestExampleExitsAfterGracePeriod(t *testing.T) {
	streaming := make(chan struct{}, 1)
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		select {
		case streaming <- struct{}{}:
		default:
		}
		for { // an endless stream: only Caddy's grace period ends it
			select {
			case <-r.Context().Done():
				return
			case <-time.After(100 * time.Millisecond):
				_, _ = io.WriteString(w, "data: tick\n\n")
				w.(http.Flusher).Flush()
			}
		}
	}))
	defer upstream.Close()
	httpPort, httpsPort, adminPort := testenv.FreePort(t), testenv.FreePort(t), testenv.FreePort(t)
	p := testenv.RunCaddy(t, readExample(t),
		fmt.Sprintf("HTTP_PORT=%d", httpPort), fmt.Sprintf("HTTPS_PORT=%d", httpsPort),
		fmt.Sprintf("ADMIN_ADDR=localhost:%d", adminPort), "API_UPSTREAM="+strings.TrimPrefix(upstream.URL, "http://"),
		"SHUTDOWN_DELAY=0s", "GRACE_PERIOD=1s")
	go func() {
		resp, err := http.Get(fmt.Sprintf("http://localhost:%d/api/events", httpPort))
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}()
	select {
	case <-streaming:
	case <-time.After(10 * time.Second):
		t.Fatal("the stream did not reach the upstream")
	}
	start := time.Now()
	go p.Stop() // SIGINT, then SIGKILL after 10 s
	_ = p.Wait(20 * time.Second)
	if took := time.Since(start); took > 6*time.Second {
		t.Fatalf("Caddy exited %s after the stop signal with GRACE_PERIOD=1s: the stream held it", took.Round(time.Second))
	}
	if !strings.Contains(p.Output(), "grace period initiated") {
		t.Fatalf("no grace period in the log:\n%s", p.Output())
	}
}

var keyBody = regexp.MustCompile(`^[A-Za-z0-9_-]{43}$`)

// checkKey verifies a key and its digest as keygen printed them.
func checkKey(t *testing.T, key, digest, prefix string) {
	t.Helper()
	body, ok := strings.CutPrefix(key, prefix)
	if !ok || !keyBody.MatchString(body) {
		t.Fatalf("key %q: want %q then 43 base64url characters", key, prefix)
	}
	if raw, err := base64.RawURLEncoding.DecodeString(body); err != nil || len(raw) != 32 {
		t.Fatalf("key %q is not 256 bits of unpadded base64url", key)
	}
	sum := sha256.Sum256([]byte(key))
	if want := "sha256:" + hex.EncodeToString(sum[:]); digest != want {
		t.Fatalf("digest %s, want %s", digest, want)
	}
}

func TestKeygen(t *testing.T) {
	bin := testenv.CaddyBinary(t)
	run := func(args ...string) (string, error) {
		p := testenv.StartProcess(t, bin, append([]string{"hardening", "keygen"}, args...), "")
		err := p.Wait(30 * time.Second)
		return p.Output(), err
	}

	out, err := run("--json", "--count", "20", "--prefix", "hk_")
	if err != nil {
		t.Fatalf("keygen --json: %v\n%s", err, out)
	}
	var keys []struct{ Key, Digest string }
	if err := json.Unmarshal([]byte(out), &keys); err != nil {
		t.Fatalf("keygen --json printed no JSON array: %v\n%s", err, out)
	}
	if len(keys) != 20 {
		t.Fatalf("%d keys, want 20", len(keys))
	}
	seen := map[string]bool{}
	for _, k := range keys {
		checkKey(t, k.Key, k.Digest, "hk_")
		if seen[k.Key] {
			t.Fatalf("duplicate key %s", k.Key)
		}
		seen[k.Key] = true
	}

	out, err = run()
	if err != nil {
		t.Fatalf("keygen: %v\n%s", err, out)
	}
	fields := strings.Fields(out)
	if len(fields) != 2 {
		t.Fatalf("text output %q: want one line 'KEY DIGEST'", out)
	}
	checkKey(t, fields[0], fields[1], "")

	for _, bad := range [][]string{{"--count", "0"}, {"--count", "1001"}, {"--prefix", "a b"}, {"extra"}} {
		if out, err := run(bad...); err == nil {
			t.Errorf("keygen %v succeeded:\n%s", bad, out)
		}
	}
}
