package caddymodule

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/swarmsec/caddy-hardening/internal/testcaddy"
	"github.com/swarmsec/caddy-hardening/internal/testenv"
)

// viteApp is what testdata/vite_app.js saw of the Vite + React build of testdata/vite-react.
type viteApp struct {
	Out string
	CSP []struct {
		Directive, Disposition, Blocked, Sample string
	}
	Injected string
}

// viteAppParts are the words the app writes into #out, one per part of the build that ran:
// the entry module (with the React chunk it imports through a modulepreload), its stylesheet,
// a style prop set by React, a click through React's events, and a lazily imported chunk with
// a stylesheet of its own (a <link> that Vite's preload helper adds).
var viteAppParts = []string{"entry;", "css;", "styleprop;", "click;", "lazy;"}

// loadViteApp loads each URL in Chromium (until #out holds ready, or 10 s), then sentinel (a page whose inline script the
// policy blocks), and waits until
// csp_report logged the sentinel's report: the reports of the app's pages were sent before it.
// It returns what the browser saw by URL and the violations csp_report logged for the app.
func loadViteApp(t *testing.T, c *testcaddy.Caddy, ready, sentinel string, urls ...string) (map[string]viteApp, []testenv.LogEntry) {
	t.Helper()
	script, err := filepath.Abs("testdata/vite_app.js")
	if err != nil {
		t.Fatal(err)
	}
	isSentinel := func(e testenv.LogEntry) bool { return strings.HasSuffix(e.Str("document_uri"), "/sentinel") }
	violations := func() []testenv.LogEntry {
		return testenv.Filter(c.Logs(), func(e testenv.LogEntry) bool { return e.Msg() == EventCSPViolation })
	}
	// Chromium sends a report after the violation: the browser stays open until csp_report
	// logged the sentinel's.
	until := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			if slices.ContainsFunc(violations(), isSentinel) {
				return
			}
		}
	}))
	defer until.Close()
	var seen map[string]viteApp
	out := testenv.RunPlaywright(t, script, append(urls, "--ready", ready, "--sentinel", sentinel, "--until", until.URL)...)
	if err := json.Unmarshal(out, &seen); err != nil {
		t.Fatalf("vite_app.js printed %q: %v", out, err)
	}
	if !slices.ContainsFunc(violations(), isSentinel) {
		t.Fatal("csp_report never logged the sentinel page's violation: the reports do not arrive, so their absence proves nothing")
	}
	return seen, slices.DeleteFunc(violations(), isSentinel)
}

// The sentinel page, served by the same security_headers: an <object>, blocked by the strict
// preset's object-src 'none' whatever the mode and the style-src lines.
const viteSentinelRoute = `	handle /sentinel {
		header Content-Type "text/html; charset=utf-8"
		respond "<!doctype html><object data=\"/sentinel-object\"></object>"
	}
`

// tagsSPASite starts a Caddy that serves root as a single-page app in `inject_nonce tags` mode
// under `security_headers <preset>` (with extra lines in its block), reports to csp_report,
// serves the sentinel page, and answers other paths with try_files' candidates (`{path}
// /index.html`); it returns the Caddy and its base URL.
func tagsSPASite(t *testing.T, root, preset, extra, tryFiles string) (*testcaddy.Caddy, string) {
	t.Helper()
	port := testenv.FreePort(t)
	c := testcaddy.StartCaddy(t, fmt.Sprintf(`http://127.0.0.1:%d {
	bind 127.0.0.1
	root * %s
	%s {
		report_uri /csp-report
		inject_nonce tags
%s	}
	csp_report /csp-report
%s	handle {
		try_files %s
		file_server
	}
}
`, port, root, strings.TrimSpace("security_headers "+preset), extra, viteSentinelRoute, tryFiles))
	return c, fmt.Sprintf("http://127.0.0.1:%d", port)
}

// A real Vite 8 + React 19 build (testdata/vite-react/dist, see its README), served by
// file_server under the strict preset with `inject_nonce tags`, at the root and at a deep
// link through try_files: the module entry, the React chunk behind a modulepreload, the
// stylesheet, a style prop, a click and a lazy chunk whose stylesheet Vite's preload helper
// adds all work, and neither the page nor csp_report sees any CSP violation.
func TestBrowserTagsModeRunsARealViteReactBuild(t *testing.T) {
	root, err := filepath.Abs("testdata/vite-react/dist")
	if err != nil {
		t.Fatal(err)
	}
	c, base := tagsSPASite(t, root, "strict", "", "{path} /index.html")
	seen, reported := loadViteApp(t, c, "lazy;", base+"/sentinel", base+"/", base+"/settings/profile")
	for _, url := range []string{base + "/", base + "/settings/profile"} {
		s := seen[url]
		for _, part := range viteAppParts {
			if !strings.Contains(s.Out, part) {
				t.Errorf("%s: #out = %q: %q did not run", url, s.Out, part)
			}
		}
		if len(s.CSP) > 0 {
			t.Errorf("%s: CSP violations in the page: %+v", url, s.CSP)
		}
	}
	if len(reported) > 0 {
		t.Errorf("CSP violations reported to csp_report: %v", reported)
	}
}

// The same build, server-rendered by an upstream behind reverse_proxy with `inject_nonce
// placeholder`: its index.html was built with Vite's html.cspNonce set to the placeholder
// (testdata/vite-react/placeholder), so every tag Vite emits and its <meta
// property="csp-nonce"> carry it, and the upstream's page also holds a script injected into
// user content, with and without a guessed nonce. The app runs whole (the <meta> keeps the
// response's nonce, which Vite's preload helper gives the lazy chunk's stylesheet; 'self' would
// allow it anyway), the injected scripts are blocked (and reported), nothing else is, and no
// placeholder reaches the client.
func TestBrowserPlaceholderModeRunsARealViteReactBuild(t *testing.T) {
	dist := "testdata/vite-react/dist"
	index, err := os.ReadFile("testdata/vite-react/placeholder/index.html")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(index), `<meta property="csp-nonce" nonce="`+testPlaceholder+`">`) {
		t.Fatal("testdata/vite-react/placeholder/index.html was not built with html.cspNonce set to testPlaceholder")
	}
	const injected = `<p>comment: <script>document.documentElement.dataset.injected += 'plain;'</script>` +
		`<script nonce="0123456789abcdefghijkl==">document.documentElement.dataset.injected += 'guessed;'</script></p>`
	page := strings.Replace(string(index), `<div id="root"></div>`, `<div id="root"></div>`+injected, 1)
	assets := http.FileServer(http.Dir(dist))
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/assets/") || r.URL.Path == "/favicon.svg" {
			assets.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = io.WriteString(w, page)
	}))
	t.Cleanup(up.Close)
	t.Setenv("TEST_CSP_PLACEHOLDER", testPlaceholder)
	port := testenv.FreePort(t)
	c := testcaddy.StartCaddy(t, fmt.Sprintf(`http://127.0.0.1:%d {
	bind 127.0.0.1
	security_headers strict {
		report_uri /csp-report
		inject_nonce placeholder {env.TEST_CSP_PLACEHOLDER}
	}
	csp_report /csp-report
%s	handle {
		reverse_proxy %s
	}
}
`, port, viteSentinelRoute, up.Listener.Addr()))
	url := fmt.Sprintf("http://127.0.0.1:%d/users/42", port)
	if _, body := getBody(t, url); strings.Contains(body, testPlaceholder) {
		t.Fatal("the placeholder reached the client")
	}
	seen, reported := loadViteApp(t, c, "lazy;", fmt.Sprintf("http://127.0.0.1:%d/sentinel", port), url)
	s := seen[url]
	for _, part := range viteAppParts {
		if !strings.Contains(s.Out, part) {
			t.Errorf("#out = %q: %q did not run", s.Out, part)
		}
	}
	if s.Injected != "" {
		t.Errorf("an injected script ran: %q", s.Injected)
	}
	if len(s.CSP) != 2 || len(reported) != 2 {
		t.Errorf("want the two injected scripts blocked and reported, nothing else; the page saw %+v, csp_report logged %v", s.CSP, reported)
	}
	for _, v := range s.CSP {
		if v.Directive != "script-src-elem" || v.Disposition != "enforce" || v.Blocked != "inline" {
			t.Errorf("a violation other than the injected scripts: %+v", v)
		}
	}
}

// A SvelteKit 2 + Svelte 5 static build (adapter-static, testdata/sveltekit-static, see its
// README), served by file_server under the strict preset with `inject_nonce tags`, with the
// fallback page at a deep link: the inline bootstrap script, the modulepreloads, the
// component's stylesheet and a dynamic import all run. Two style attributes are refused on
// each page, as README says: the `<div style="display: contents">` of SvelteKit's default
// app.html and the one of Svelte's route announcer; with `csp { style-src-attr
// 'unsafe-inline' }` nothing is.
func TestBrowserTagsModeRunsASvelteKitBuild(t *testing.T) {
	root, err := filepath.Abs("testdata/sveltekit-static/build")
	if err != nil {
		t.Fatal(err)
	}
	for _, attrs := range []bool{false, true} {
		t.Run(fmt.Sprintf("style-src-attr_unsafe-inline=%v", attrs), func(t *testing.T) {
			csp := ""
			if attrs {
				csp = "\t\tcsp {\n\t\t\tstyle-src-attr 'unsafe-inline'\n\t\t}\n"
			}
			c, base := tagsSPASite(t, root, "strict", csp, "{path} {path}.html /200.html")
			urls := []string{base + "/", base + "/deep/link"}
			seen, reported := loadViteApp(t, c, "styled;", base+"/sentinel", urls...)
			for _, url := range urls {
				s := seen[url]
				if s.Out != "mounted;lazy;styled;" {
					t.Errorf("%s: #out = %q, want mounted;lazy;styled; (every part of the build ran)", url, s.Out)
				}
				want := 2
				if attrs {
					want = 0
				}
				n := 0
				for _, v := range s.CSP {
					if v.Directive == "style-src-attr" {
						n++
					} else {
						t.Errorf("%s: a violation other than a style attribute: %+v", url, v)
					}
				}
				if n != want {
					t.Errorf("%s: %d style attributes refused, want %d: %+v", url, n, want, s.CSP)
				}
			}
			if want := 2 * len(urls); attrs && len(reported) > 0 || !attrs && len(reported) != want {
				t.Errorf("csp_report logged %d violations: %v", len(reported), reported)
			}
		})
	}
}
