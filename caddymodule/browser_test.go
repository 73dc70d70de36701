package caddymodule

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/swarmsec/caddy-hardening/csp"
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

// placeholderProxySite starts a Caddy whose one site proxies to upstream (host:port) behind
// security_headers in placeholder mode with placeholder ph, and returns the site's base URL
// (http://127.0.0.1:PORT, no trailing slash).
func placeholderProxySite(t *testing.T, ph, upstream string) string {
	t.Helper()
	t.Setenv("TEST_CSP_PLACEHOLDER", ph)
	port := testenv.FreePort(t)
	testcaddy.StartCaddy(t, fmt.Sprintf(`http://127.0.0.1:%d {
	bind 127.0.0.1
	security_headers {
		inject_nonce placeholder {env.TEST_CSP_PLACEHOLDER}
	}
	reverse_proxy %s
}
`, port, upstream))
	return fmt.Sprintf("http://127.0.0.1:%d", port)
}

func between(s, start, end string) string {
	_, rest, ok := strings.Cut(s, start)
	if !ok {
		return ""
	}
	in, _, _ := strings.Cut(rest, end)
	return in
}

// The browser is the judge of which pages the injector reads as the browser will
// (csp.UnreadableEncoding): Chromium loads each page straight from the upstream, and its
// script runs only if Chromium decoded the page in the encoding it was written in. A page
// written in UTF-16 or UTF-32 that Chromium runs must be one the edge refuses (it would hold
// the placeholder in bytes the injector does not find); an ASCII-compatible page the edge
// rewrites must be one Chromium reads as such.
func TestBrowserDecodesPagesAsTheEncodingRuleSays(t *testing.T) {
	html := `<!doctype html><html><body><div id="out"></div><script>` + markerJS + `'ran';</script></body></html>`
	xhtml := `<html xmlns="http://www.w3.org/1999/xhtml"><body><div id="out"></div><script>` + markerJS + `'ran';</script></body></html>`
	const bom16LE, bom16BE, bom8 = "\xff\xfe", "\xfe\xff", "\xef\xbb\xbf"
	cases := []struct {
		name, ct, body string
		wide           bool // written in UTF-16 or UTF-32
		ran            bool // what Chromium does (pinned)
	}{
		{"utf-16le-bom", "text/html", bom16LE + utf16Bytes(html, false), true, true},
		{"utf-16be-bom", "text/html", bom16BE + utf16Bytes(html, true), true, true},
		{"utf-16le-bom-against-utf-8", "text/html; charset=utf-8", bom16LE + utf16Bytes(html, false), true, true},
		{"utf-16-charset", "text/html; charset=utf-16", utf16Bytes(html, false), true, true},
		{"unicodefffe-charset", "text/html; charset=unicodeFFFE", utf16Bytes(html, true), true, true},
		{"xhtml-utf-16-declaration", "application/xhtml+xml", utf16Bytes(`<?xml version="1.0" encoding="UTF-16"?>`+xhtml, false), true, true},
		{"xhtml-utf-16be-bom", "application/xhtml+xml", bom16BE + utf16Bytes(xhtml, true), true, true},
		{"utf-16le-no-bom-no-label", "text/html", utf16Bytes(html, false), true, false},
		{"utf-32le-bom", "text/html", "\xff\xfe\x00\x00" + utf32LE(html), true, false},
		{"utf-8-bom-against-utf-16", "text/html; charset=utf-16", bom8 + html, false, true},
		{"ascii-labelled-utf-16", "text/html; charset=utf-16", html, false, false},
		{"windows-1252", "text/html; charset=windows-1252", html, false, true},
		{"unknown-label", "text/html; charset=utf8mb4", html, false, true},
		{"meta-utf-16-is-utf-8", "text/html", `<meta charset="utf-16">` + html, false, true},
		{"xhtml-ascii", "application/xhtml+xml", `<?xml version="1.0" encoding="UTF-8"?>` + xhtml, false, true},
	}
	byPath := map[string]int{}
	for i, c := range cases {
		byPath["/"+c.name] = i
	}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i, ok := byPath[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", cases[i].ct)
		_, _ = io.WriteString(w, cases[i].body)
	}))
	t.Cleanup(up.Close)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel() // one Chromium each: about 3 s to start
			_, params, _ := mime.ParseMediaType(c.ct)
			enc, _ := csp.UnreadableEncoding([]byte(c.body[:3]), params["charset"], true)
			out := between(chromiumDOM(t, up.URL+"/"+c.name), `<div id="out">`, `</div>`)
			ran := out == "ran"
			t.Logf("Chromium ran the script: %v; the edge: %s", ran, map[bool]string{true: "rewrites", false: "refuses (" + enc + ")"}[enc == ""])
			if ran != c.ran {
				t.Errorf("Chromium ran the script: %v, want %v (#out %q)", ran, c.ran, out)
			}
			if c.wide && ran && enc == "" {
				t.Error("Chromium reads the page in UTF-16/32 but the edge would rewrite it as ASCII bytes")
			}
			if !c.wide && enc == "" && !ran {
				t.Error("the edge would rewrite the page, but Chromium does not read it as ASCII-compatible")
			}
		})
	}
}

// With a security_headers site-wide and another inside `handle` (the review's case, and both
// injecting, and tags mode outside with placeholder mode inside), Chromium runs the page's
// marked script and blocks the injected one: the policy it gets and the page agree on one
// nonce.
func TestBrowserNestedSecurityHeaders(t *testing.T) {
	testenv.RequireBinary(t, "chromium")
	for name, base := range nestedCaddy(t) {
		for _, path := range []string{"/admin/page", "/page"} {
			if name == "tags/placeholder" && path == "/page" {
				continue // tags mode nonces every script of the page, as it says
			}
			out := between(chromiumDOM(t, base+path), `<div id="out">`, `</div>`)
			if out != "marked;" {
				t.Errorf("%s %s: #out = %q, want marked; (the marked script runs, the injected one does not)", name, path, out)
			}
		}
	}
}

// Caddy's file_server browse sets its own policy, with its own nonce on its <style> and
// <script>. Behind security_headers in either inject mode (the edge's policy is sent, the
// listing's tags get its nonce), and where the listing's own policy is the one sent (no
// inject_nonce, keep_upstream, report-only here), Chromium applies the listing's style and
// runs its script (the ?filter= hides the rows that do not match) and blocks nothing but the
// style attributes of its SVG icons, as for bare Caddy (under report-only here, the edge's
// policy reports the listing's tags: they carry the nonce of the enforced one).
func TestBrowserBrowseListingRunsBehindSecurityHeaders(t *testing.T) {
	testenv.Chromium(t)
	port := testenv.FreePort(t)
	browseCaddy(t, browseRoot(t), port)
	var urls []string
	for _, prefix := range []string{"tags", "ph", "plain", "kept", "ro"} {
		urls = append(urls, fmt.Sprintf("http://127.0.0.1:%d/%s/dir/?filter=aaa", port, prefix))
	}
	script, err := filepath.Abs("testdata/browse_listing.js")
	if err != nil {
		t.Fatal(err)
	}
	var seen map[string]struct {
		CSP []struct {
			Directive, Disposition, Blocked, Sample string
		}
		Background   string
		Rows, Hidden int
	}
	out := testenv.RunPlaywright(t, script, urls...)
	if err := json.Unmarshal(out, &seen); err != nil {
		t.Fatalf("browse_listing.js printed %q: %v", out, err)
	}
	for _, url := range urls {
		s, ok := seen[url]
		if !ok {
			t.Fatalf("%s: not loaded", url)
		}
		if s.Background != "rgb(243, 246, 247)" {
			t.Errorf("%s: body background %q: the listing's <style> did not apply", url, s.Background)
		}
		if s.Rows != 3 || s.Hidden != 2 {
			t.Errorf("%s: %d of %d rows hidden by ?filter=aaa, want 2 of 3: the listing's <script> did not run", url, s.Hidden, s.Rows)
		}
		for _, v := range s.CSP {
			if v.Directive != "style-src-attr" && v.Disposition == "enforce" {
				t.Errorf("%s: %s blocked %q (%q)", url, v.Directive, v.Blocked, v.Sample)
			}
		}
	}
}

// TestBrowserDanglingMarkupGetsNoNonce: user content that leaves a tag open (`a="`) swallows
// the application's next marked tag, so the browser reads one tag with the attacker's href
// and the application's nonce. Chromium ignores such a nonce on a <script> by itself, not on
// a stylesheet: the edge must not write the nonce there.
func TestBrowserDanglingMarkupGetsNoNonce(t *testing.T) {
	const red = "rgb(255, 0, 0)"
	injections := map[string]struct{ charset, injection string }{
		"quoted": {"utf-8", `<link rel=stylesheet href="data:text/css,body{background-color:` + red + `}" a="`},
		// <style> in <svg> holds markup, and <p> leaves the svg: the browser reads the tags.
		"after foreign content": {"utf-8", `<svg><style></svg><p><link rel=stylesheet href=data:text/css,body{background-color:` + strings.ReplaceAll(red, " ", "") + `} x=`},
		// In escaped script data `<1` stays escaped, so `<script>` starts a double escape and
		// the first `</script>` does not end the script: the <textarea> is script text, and
		// the browser reads the <link> after the second one.
		"escaped script data": {"utf-8", `<script><!--<1<script></script><textarea></script><link rel=stylesheet href=data:text/css,body{background-color:` + strings.ReplaceAll(red, " ", "") + `} x=`},
		// After ESC $ B, `">` is one kanji to the browser: the attacker's tag stays open.
		"iso-2022-jp escape": {"iso-2022-jp", `<link rel=stylesheet href=data:text/css,body{background-color:` + strings.ReplaceAll(red, " ", "") + `} a="` + "\x1b$B" + `">` + "\x1b(B"},
		// In the other multi-byte encodings a lead byte before `">` does not take the quote
		// into a character: their decoders give an ASCII byte after a lead byte back as
		// ASCII (the Encoding standard), so the attacker's tag ends where the injector ends it.
		"shift_jis lead byte": {"shift_jis", `<link rel=stylesheet href=data:text/css,body{background-color:` + strings.ReplaceAll(red, " ", "") + `} a="` + "\x82" + `">`},
		"euc-jp lead byte":    {"euc-jp", `<link rel=stylesheet href=data:text/css,body{background-color:` + strings.ReplaceAll(red, " ", "") + `} a="` + "\xa4" + `">`},
		"gb18030 lead byte":   {"gb18030", `<link rel=stylesheet href=data:text/css,body{background-color:` + strings.ReplaceAll(red, " ", "") + `} a="` + "\x81" + `">`},
		"big5 lead byte":      {"big5", `<link rel=stylesheet href=data:text/css,body{background-color:` + strings.ReplaceAll(red, " ", "") + `} a="` + "\xa4" + `">`},
		"euc-kr lead byte":    {"euc-kr", `<link rel=stylesheet href=data:text/css,body{background-color:` + strings.ReplaceAll(red, " ", "") + `} a="` + "\xb0" + `">`},
	}
	for name, c := range injections {
		t.Run(name, func(t *testing.T) {
			page := `<!doctype html><html><head><meta charset="` + c.charset + `"><title>t</title></head><body>
<div id="out"></div>
<script nonce="` + testPlaceholder + `">
	window.addEventListener('load', () => { ` + markerJS + `'bg=' + getComputedStyle(document.body).backgroundColor + ';'; });
</script>
<p>comment: ` + c.injection + `
<link rel="stylesheet" href="/app.css" nonce="` + testPlaceholder + `">
</body></html>`
			up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/" {
					w.Header().Set("Content-Type", "text/css")
					_, _ = io.WriteString(w, "p{}")
					return
				}
				w.Header().Set("Content-Type", "text/html") // the page's <meta> names its charset
				_, _ = io.WriteString(w, page)
			}))
			t.Cleanup(up.Close)
			out := between(chromiumDOM(t, placeholderProxySite(t, testPlaceholder, up.Listener.Addr().String())+"/"), `<div id="out">`, `</div>`)
			if !strings.Contains(out, "bg=") {
				t.Fatalf("the application's script did not run; #out = %q", out)
			}
			if strings.Contains(out, red) {
				t.Fatalf("the injected stylesheet got the nonce and applied; #out = %q", out)
			}
		})
	}
}

// TestBrowserSrcdocGetsNoNonce: user content that opens an attribute value (`<iframe
// srcdoc='<script src=/evil.js x=`) swallows the application's markup up to the next `'`, its
// marked tag included; Chromium parses that value as a document that inherits the page's
// policy and is same-origin with it. The placeholder there must not become the nonce, or the
// attacker's script runs with it (here Vite's csp-nonce <meta> is the marked tag: no `<script`
// in the attacker's attribute for Chromium to refuse) and reaches the page.
func TestBrowserSrcdocGetsNoNonce(t *testing.T) {
	page := `<!doctype html><html><head><meta charset="utf-8"><title>t</title></head><body>
<div id="out"></div>
<script nonce="` + testPlaceholder + `">window.addEventListener('load', () => { ` + markerJS + `'loaded;'; });</script>
<p>comment: <iframe srcdoc='<script src=/evil.js x=
<meta property="csp-nonce" nonce="` + testPlaceholder + `">
<script nonce="` + testPlaceholder + `">document.body.dataset.app = "1";</script>
<p>it's the end of the swallowed markup</p>
</body></html>`
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/evil.js" {
			w.Header().Set("Content-Type", "text/javascript")
			_, _ = io.WriteString(w, `parent.document.getElementById('out').textContent += 'EVIL;';`)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = io.WriteString(w, page)
	}))
	t.Cleanup(up.Close)
	out := between(chromiumDOM(t, placeholderProxySite(t, testPlaceholder, up.Listener.Addr().String())+"/"), `<div id="out">`, `</div>`)
	if !strings.Contains(out, "loaded;") {
		t.Fatalf("the application's script did not run; #out = %q", out)
	}
	if strings.Contains(out, "EVIL;") {
		t.Fatalf("the attacker's script in the srcdoc got the nonce and ran; #out = %q", out)
	}
}

// TestBrowserMetaPolicyWithThePlaceholder: a page's own <meta http-equiv> policy is enforced
// beside the edge's header; with the placeholder as its nonce (README, a policy in the page)
// both list the response's nonce, so the marked script runs, and an injected one does not.
func TestBrowserMetaPolicyWithThePlaceholder(t *testing.T) {
	page := `<!doctype html><html><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="script-src 'nonce-` + testPlaceholder + `'">
<title>t</title></head><body><div id="out"></div>
<script nonce="` + testPlaceholder + `">` + markerJS + `'marked;';</script>
<p>comment: <script>` + markerJS + `'injected;';</script></p>
</body></html>`
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = io.WriteString(w, page)
	}))
	t.Cleanup(up.Close)
	out := between(chromiumDOM(t, placeholderProxySite(t, testPlaceholder, up.Listener.Addr().String())+"/"), `<div id="out">`, `</div>`)
	if out != "marked;" {
		t.Fatalf("#out = %q, want the marked script alone", out)
	}
}

// TestBrowserPermissionsPolicyAsChromiumReadsIt: every permissions_policy the handler accepts
// is one Chromium reads without a complaint, and applies (geolocation off where the value says
// so); every value it refuses here is one Chromium complains about when another handler sends
// it: a capital letter or a ';' between features makes it ignore the whole header (geolocation
// stays allowed), an unquoted origin or `none` in an allowlist is dropped from it.
func TestBrowserPermissionsPolicyAsChromiumReadsIt(t *testing.T) {
	accepted := []struct {
		value          string
		geolocationOff bool
	}{
		{"", true}, // the default
		{`geolocation=(), camera=(self "https://a.example")`, true},
		{`camera=*,	geolocation=()`, true},
		{`geolocation=();report-to=endpoint, camera=self`, true},
		{`geolocation=(self "https://*.example.com" "http://localhost:3000")`, false},
	}
	refused := []string{
		`Camera=(), geolocation=()`,
		`camera=();geolocation=()`,
		`camera=(), geolocation=(),`,
		`geolocation=(self https://a.example)`,
		`geolocation=(none)`,
		`geolocation=(self src)`,
		`geolocation=("a.example")`,
	}
	port := testenv.FreePort(t)
	site := fmt.Sprintf("http://127.0.0.1:%d {\n\tbind 127.0.0.1\n\theader Content-Type text/html\n", port)
	var urls []string
	for i, row := range accepted {
		handler := "security_headers"
		if row.value != "" {
			handler += " {\n\t\t\tpermissions_policy `" + row.value + "`\n\t\t}"
		}
		site += fmt.Sprintf("\thandle /ok/%d {\n\t\t%s\n\t\trespond <p>ok</p>\n\t}\n", i, handler)
		urls = append(urls, fmt.Sprintf("http://127.0.0.1:%d/ok/%d", port, i))
	}
	for i, value := range refused {
		if err := csp.ValidatePermissionsPolicy(value); err == nil {
			t.Errorf("permissions_policy %q accepted", value)
		}
		site += fmt.Sprintf("\thandle /refused/%d {\n\t\theader Permissions-Policy `%s`\n\t\trespond <p>refused</p>\n\t}\n", i, value)
		urls = append(urls, fmt.Sprintf("http://127.0.0.1:%d/refused/%d", port, i))
	}
	testcaddy.StartCaddy(t, site+"}\n")
	script, err := filepath.Abs("testdata/permissions_policy.js")
	if err != nil {
		t.Fatal(err)
	}
	var seen map[string]struct {
		Geolocation, Camera bool
		Messages            []string
	}
	out := testenv.RunPlaywright(t, script, urls...)
	if err := json.Unmarshal(out, &seen); err != nil {
		t.Fatalf("permissions_policy.js printed %q: %v", out, err)
	}
	for i, row := range accepted {
		s := seen[urls[i]]
		if len(s.Messages) > 0 {
			t.Errorf("permissions_policy %q: Chromium says %q", row.value, s.Messages)
		}
		if s.Geolocation == row.geolocationOff {
			t.Errorf("permissions_policy %q: geolocation allowed %v", row.value, s.Geolocation)
		}
	}
	for i, value := range refused {
		if s := seen[urls[len(accepted)+i]]; len(s.Messages) == 0 {
			t.Errorf("Permissions-Policy %q: Chromium read it without a complaint, yet security_headers refuses it", value)
		}
	}
}

// Chromium reads the values security_headers now accepts as it sends them: a Referrer-Policy
// fallback list (the last member it knows applies: no Referer on a same-origin fetch, where
// the default would send the page's URL) and COOP/COEP with a report-to parameter (the page is
// cross-origin isolated, so both policies applied). The same COOP with a space before ";"
// (refused by security_headers, sent here by a header directive) is ignored by Chromium.
func TestBrowserReadsReferrerListsAndCrossOriginReporting(t *testing.T) {
	port := testenv.FreePort(t)
	page := `<!doctype html><div id="out"></div><script nonce="{http.vars.csp_nonce}">` +
		`const out = document.getElementById('out'); out.textContent += 'isolated=' + crossOriginIsolated + ';';` +
		`fetch('/ref').then(r => r.text()).then(t => { out.textContent += 'referer=' + t + ';'; });</script>`
	testcaddy.StartCaddy(t, fmt.Sprintf(`http://127.0.0.1:%d {
	bind 127.0.0.1
	security_headers {
		referrer_policy unsafe-url, no-referrer
		coop same-origin; report-to="coop"
		coep require-corp; report-to="coep"
	}
	respond /ref "{http.request.header.Referer}"
	header /bad Cross-Origin-Opener-Policy "same-origin ;report-to=\"coop\""
	header Content-Type text/html
	respond %q
}
`, port, page))
	if _, err := csp.ParseCrossOriginPolicy("coop", `same-origin ;report-to="coop"`, csp.COOPValues); err == nil {
		t.Error(`coop "same-origin ;report-to=..." accepted`)
	}
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	if out := between(chromiumDOM(t, base+"/"), `<div id="out">`, `</div>`); out != "isolated=true;referer=;" {
		t.Errorf("#out = %q, want isolated=true;referer=; (COOP and COEP applied, no-referrer applied)", out)
	}
	if out := between(chromiumDOM(t, base+"/bad"), `<div id="out">`, `</div>`); !strings.HasPrefix(out, "isolated=false;") {
		t.Errorf("#out = %q: Chromium applied a COOP with a space before \";\"", out)
	}
}

// report_only rolls out the policy, not the clickjacking protection: X-Frame-Options (DENY,
// from the preset's frame-ancestors 'none') still refuses the frame, while frame-ancestors
// reports it; with frame_options off for the rollout, the frame loads and is reported.
func TestBrowserReportOnlyStillRefusesFraming(t *testing.T) {
	port := testenv.FreePort(t)
	page := `<!doctype html><div id="out"></div><iframe src="child"></iframe><script nonce="{http.vars.csp_nonce}">` +
		`window.onload = () => { let r; try { r = frames[0].document.getElementById('c') ? 'framed' : 'blocked'; }` +
		` catch (e) { r = 'blocked'; } document.getElementById('out').textContent = r; };</script>`
	c := testcaddy.StartCaddy(t, fmt.Sprintf(`http://127.0.0.1:%d {
	bind 127.0.0.1
	csp_report /csp-report
	handle /off/* {
		security_headers {
			report_only
			report_uri /csp-report
			frame_options off
		}
		header Content-Type text/html
		respond /off/child "<p id=c>child</p>"
		respond %[2]q
	}
	handle {
		security_headers development {
			report_uri /csp-report
		}
		header Content-Type text/html
		respond /child "<p id=c>child</p>"
		respond %[2]q
	}
}
`, port, page))
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	for path, want := range map[string]string{"/": "blocked", "/off/": "framed"} {
		if out := between(chromiumDOM(t, base+path), `<div id="out">`, `</div>`); out != want {
			t.Errorf("%s: #out = %q, want %s", path, out, want)
		}
	}
	// Chromium reports a frame-ancestors violation with the child's origin only: count them.
	reports := 0
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline) && reports < 2; time.Sleep(100 * time.Millisecond) {
		reports = len(testenv.Filter(c.Logs(), func(e testenv.LogEntry) bool {
			return e.Msg() == EventCSPViolation && e.Str("directive") == "frame-ancestors" && e.Str("disposition") == "report"
		}))
	}
	if reports < 2 {
		t.Errorf("%d frame-ancestors reports; want one for each framed page", reports)
	}
}
