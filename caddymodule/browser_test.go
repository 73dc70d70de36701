package caddymodule

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/swarmsec/caddy-hardening/internal/testcaddy"
	"github.com/swarmsec/caddy-hardening/internal/testenv"
)

// chromiumDOM loads url in Debian's headless Chromium and returns the DOM after the page's
// scripts ran. Without chromium the test is skipped, except under CI=1.
func chromiumDOM(t *testing.T, url string) string {
	t.Helper()
	bin := testenv.RequireBinary(t, "chromium")
	if _, err := os.Stat("/usr/lib/chromium/chromium"); err == nil {
		bin = "/usr/lib/chromium/chromium" // the binary itself, without the wrapper's flags
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
		"--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--ignore-certificate-errors", "--user-data-dir="+t.TempDir(),
		"--virtual-time-budget=5000", "--dump-dom", url)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium: %v\n%s", err, stderr.String())
	}
	return string(out)
}

// marker writes a word into #out when the script that calls it runs.
const markerJS = `document.getElementById('out').textContent += `

func TestBrowserPlaceholderModeBlocksInjectedScripts(t *testing.T) {
	// The application's page: two scripts of its own, marked with the placeholder; the rest
	// is what an attacker managed to inject into user content.
	page := `<!doctype html><html><head><title>t</title></head><body>
<div id="out"></div>
<script nonce="` + testPlaceholder + `">` + markerJS + `'marked;';</script>
<p>comment: <script>` + markerJS + `'injected;';</script></p>
<p>comment: <script nonce="0123456789abcdefghijkl==">` + markerJS + `'guessed;';</script></p>
<p>comment: <img src="/missing.png" onerror="` + markerJS + `'handler;'"></p>
<p>comment: <a id="j" href="javascript:` + markerJS + `'jsurl;'">x</a></p>
<script nonce="` + testPlaceholder + `">
	document.getElementById('j').click();
	const s = document.createElement('script'); // trusted through 'strict-dynamic'
	s.textContent = "` + markerJS + `'dynamic;'";
	document.body.appendChild(s);
</script>
</body></html>`
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = io.WriteString(w, page)
	}))
	t.Cleanup(up.Close)
	t.Setenv("TEST_CSP_PLACEHOLDER", testPlaceholder)
	httpsPort, httpPort := testenv.FreePort(t), testenv.FreePort(t)
	c := testcaddy.StartCaddy(t, fmt.Sprintf(`{
%s}
localhost:%d {
	bind 127.0.0.1
	security_headers {
		report_uri /csp-report
		inject_nonce placeholder {env.TEST_CSP_PLACEHOLDER}
	}
	csp_report /csp-report
	reverse_proxy %s
}
`, localTLSGlobals(t, httpPort, httpsPort), httpsPort, up.Listener.Addr()))
	waitTLS(t, fmt.Sprintf("127.0.0.1:%d", httpsPort))

	dom := chromiumDOM(t, fmt.Sprintf("https://localhost:%d/", httpsPort))
	out := between(dom, `<div id="out">`, `</div>`)
	t.Logf("#out = %q", out)
	for _, ran := range []string{"marked;", "dynamic;"} {
		if !strings.Contains(out, ran) {
			t.Errorf("the application's script %q did not run; #out = %q", ran, out)
		}
	}
	for _, blocked := range []string{"injected;", "guessed;", "handler;", "jsurl;"} {
		if strings.Contains(out, blocked) {
			t.Errorf("an injected script ran (%q); #out = %q", blocked, out)
		}
	}

	// The browser reported the blocked scripts to csp_report.
	want := map[string]bool{"script-src-elem": false, "script-src-attr": false}
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		for _, e := range testenv.Filter(c.Logs(), func(e testenv.LogEntry) bool { return e.Msg() == EventCSPViolation }) {
			if _, ok := want[e.Str("directive")]; ok && e.Str("client_ip") == "127.0.0.1" {
				want[e.Str("directive")] = true
			}
		}
		if want["script-src-elem"] && want["script-src-attr"] {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("violation reports received by directive: %v", want)
}

func TestBrowserTagsModeRunsAFileServerApp(t *testing.T) {
	root := t.TempDir()
	files := map[string]string{
		"index.html": `<!doctype html><html><head><link rel="stylesheet" href="/app.css"></head><body>
<div id="out"></div>
<script src="/app.js"></script>
<script>` + markerJS + `'inline;';</script>
<style>#out { font-weight: 700; }</style>
<script type="module" src="/late.js"></script>
</body></html>`,
		"app.js":  markerJS + `'external;';`,
		"late.js": `const s = getComputedStyle(document.getElementById('out')); if (s.color === 'rgb(1, 2, 3)' && s.fontWeight === '700') { ` + markerJS + `'styled;'; }`,
		"app.css": `#out { color: rgb(1, 2, 3); }`,
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(root, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	httpsPort, httpPort := testenv.FreePort(t), testenv.FreePort(t)
	testcaddy.StartCaddy(t, fmt.Sprintf(`{
%s}
localhost:%d {
	bind 127.0.0.1
	root * %s
	security_headers {
		inject_nonce tags
	}
	file_server
}
`, localTLSGlobals(t, httpPort, httpsPort), httpsPort, root))
	waitTLS(t, fmt.Sprintf("127.0.0.1:%d", httpsPort))
	out := between(chromiumDOM(t, fmt.Sprintf("https://localhost:%d/", httpsPort)), `<div id="out">`, `</div>`)
	if out != "external;inline;styled;" {
		t.Fatalf("#out = %q, want external;inline;styled; (every script ran, both styles applied)", out)
	}
}

func between(s, start, end string) string {
	_, rest, ok := strings.Cut(s, start)
	if !ok {
		return ""
	}
	in, _, _ := strings.Cut(rest, end)
	return in
}
