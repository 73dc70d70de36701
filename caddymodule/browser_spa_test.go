package caddymodule

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A page written the way applications write them, proxied in placeholder mode: inline SVG
// with its own <script> and <style>, MathML (with a table in <mtext>, and one in an SVG
// label's <foreignObject>), a <template> whose marked script the app clones
// in, <noscript>, comments and HTML's bogus CDATA holding marked tags, attributes holding
// ">", raw-text elements, a marked tag after a 300 KB attribute, and user content that tries
// a guessed nonce, a nonce-less script, dangling markup before a marked tag, and an SVG
// <style> mXSS. Chromium runs each of the application's scripts and none of the injected
// ones; no placeholder reaches the page.
func TestBrowserPlaceholderModeOnAnApplicationsPage(t *testing.T) {
	const ph = testPlaceholder
	mark := func(word string) string { return "mark('" + word + ";')" }
	page := `<!doctype html><html><head><meta charset="utf-8"><title>app</title>
<script nonce="` + ph + `">function mark(w) { document.getElementById('out').textContent += w; }</script>
</head><body><div id="out"></div>
<!-- a comment: <script nonce="` + ph + `">` + mark("INJ-comment") + `</script> -->
<svg width="10" height="10"><title>icon</title><script nonce="` + ph + `">` + mark("svg") + `</script><style nonce="` + ph + `">circle { fill: red; }</style><circle r="5"/></svg>
<math><mi>x</mi><mo>=</mo><mn>1</mn></math>
<script nonce="` + ph + `">` + mark("math") + `</script>
<math><mtext><table><tr><td>a</td><td><style nonce="` + ph + `">td { padding: 0 }</style>b</td></tr></table></mtext></math>
<svg><foreignObject width="10" height="10"><table><caption>label</caption></table></foreignObject></svg>
<script nonce="` + ph + `">` + mark("mathtable") + `</script>
<p>user: <math><mtext><table></mtext></math><style><script nonce="` + ph + `">` + mark("INJ-mtext") + `</script></style></table></mtext></math></p>
<template id="tpl"><script nonce="` + ph + `">` + mark("template") + `</script></template>
<script nonce="` + ph + `">document.body.appendChild(document.getElementById('tpl').content.cloneNode(true));</script>
<noscript><script nonce="` + ph + `">` + mark("INJ-noscript") + `</script></noscript>
<![CDATA[ <script nonce="` + ph + `">` + mark("INJ-cdata") + `</script> ]]>
<div title="a>b" data-x='c>d'>x</div>
<textarea><script nonce="` + ph + `">` + mark("INJ-textarea") + `</script></textarea>
<script nonce="` + ph + `">` + mark("attributes") + `</script>
<div data-big="` + strings.Repeat("A", 300<<10) + `">x</div>
<script data-long="` + strings.Repeat("B", 100<<10) + `" nonce="` + ph + `">` + mark("long") + `</script>
<p>user: <script nonce="0123456789abcdefghijkl==">` + mark("INJ-guessed") + `</script></p>
<p>user: <script>` + mark("INJ-plain") + `</script></p>
<p>user: <svg><style><img title="</style><script>` + mark("INJ-mxss") + `</script>"></svg></p>
<p>user: <script src="data:text/javascript,` + mark("INJ-dangling") + `" x="</p>
<script nonce="` + ph + `">` + mark("INJ-eaten") + `</script><p>"></p>
<script nonce="` + ph + `">const s = document.createElement('script'); s.textContent = "` + mark("dynamic") + `"; document.body.appendChild(s);</script>
</body></html>`
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = io.WriteString(w, page)
	}))
	t.Cleanup(up.Close)
	url := placeholderProxySite(t, ph, up.Listener.Addr().String()) + "/"
	if _, body := getBody(t, url); strings.Contains(body, ph) {
		t.Fatal("the placeholder reached the client")
	}
	out := between(chromiumDOM(t, url), `<div id="out">`, `</div>`)
	t.Logf("#out = %q", out)
	for _, ran := range []string{"svg;", "math;", "mathtable;", "template;", "attributes;", "long;", "dynamic;"} {
		if !strings.Contains(out, ran) {
			t.Errorf("the application's script %q did not run", ran)
		}
	}
	if strings.Contains(out, "INJ") {
		t.Errorf("an injected or inert script ran: #out = %q", out)
	}
}

// A Vite/React-style build served by file_server in tags mode, at a deep link through
// try_files: an import map, the module entry, a modulepreload, a stylesheet and an inline
// <style>, a dynamic import and a module worker. Chromium runs all of it with no CSP
// violation: none in the page, none reported to csp_report (read once a sentinel page's report
// arrived; see loadViteApp).
func TestBrowserTagsModeRunsAViteBuild(t *testing.T) {
	root := t.TempDir()
	files := map[string]string{
		"index.html": `<!doctype html>
<html lang="en">
  <head>
    <meta charset="UTF-8" />
    <title>Vite + React</title>
    <script type="importmap">{"imports": {"shim": "/assets/shim-Dk3s9.js"}}</script>
    <script type="module" crossorigin src="/assets/index-BX7wq2.js"></script>
    <link rel="modulepreload" crossorigin href="/assets/vendor-C9a1x.js">
    <link rel="stylesheet" crossorigin href="/assets/index-D8fk2.css">
    <style>#out { font-weight: 700; }</style>
  </head>
  <body>
    <div id="out"></div>
    <noscript>You need to enable JavaScript to run this app.</noscript>
  </body>
</html>`,
		"assets/index-BX7wq2.js": `import { v } from './vendor-C9a1x.js';
import { shim } from 'shim';
const out = document.getElementById('out');
out.textContent += v + shim;
const { lazy } = await import('./lazy-Q1.js');
out.textContent += lazy;
const s = getComputedStyle(out);
if (s.color === 'rgb(4, 5, 6)' && s.fontWeight === '700') out.textContent += 'styled;';
new Worker('/assets/worker-Z.js', { type: 'module' }).onmessage = (e) => { out.textContent += e.data; };`,
		"assets/vendor-C9a1x.js": `export const v = 'vendor;';`,
		"assets/shim-Dk3s9.js":   `export const shim = 'importmap;';`,
		"assets/lazy-Q1.js":      `export const lazy = 'lazy;';`,
		"assets/worker-Z.js":     `postMessage('worker;');`,
		"assets/index-D8fk2.css": `#out { color: rgb(4, 5, 6); }`,
	}
	for name, body := range files {
		path := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	c, base := tagsSPASite(t, root, "", "", "{path} /index.html")
	url := base + "/users/42/settings"
	seen, reported := loadViteApp(t, c, "worker;", base+"/sentinel", url)
	if out := seen[url].Out; out != "vendor;importmap;lazy;styled;worker;" {
		t.Errorf("#out = %q, want vendor;importmap;lazy;styled;worker; (every part of the build ran)", out)
	}
	if v := seen[url].CSP; len(v) > 0 {
		t.Errorf("CSP violations in the page: %+v", v)
	}
	if len(reported) > 0 {
		t.Errorf("CSP violations reported to csp_report: %v", reported)
	}
}

// MathML in a table, where the tree builder leaves the <math> at a table part (`<col>`, or a
// <table> in <mtext> that closes the table around it): user content there used to pass the
// injector's view of the page (still MathML, so `<style>` holds tags) while Chromium is back
// in the table's HTML (`<style>` is raw text), and the attacker's stylesheet, opened after
// `</style>`, took the nonce of the application's next marked tag. Placeholder mode now gives
// up there: the cross-origin stylesheet never applies.
func TestBrowserMathInATableCannotTakeANonce(t *testing.T) {
	const ph = testPlaceholder
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/css")
		_, _ = io.WriteString(w, `body { color: rgb(1, 2, 3) !important; }`)
	}))
	t.Cleanup(evil.Close)
	page := func(part string) string {
		return `<!doctype html><body><div id="out"></div>
<script nonce="` + ph + `">setTimeout(function () { document.getElementById('out').textContent = 'color ' + getComputedStyle(document.body).color; }, 300);</script>
<table><math><mtext>` + part + `</mtext><style><a title="</style><link rel=stylesheet href=` + evil.URL + `/x.css a=
<link rel=stylesheet href=/app.css nonce="` + ph + `">`
	}
	pages := map[string]string{"/col": page("<col>"), "/table": page("<table></table>")}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = io.WriteString(w, pages[r.URL.Path])
	}))
	t.Cleanup(up.Close)
	base := placeholderProxySite(t, ph, up.Listener.Addr().String())
	for path := range pages {
		out := between(chromiumDOM(t, base+path), `<div id="out">`, `</div>`)
		if out != "color rgb(0, 0, 0)" {
			t.Errorf("%s: #out = %q, want the page's own color (the attacker's stylesheet must not apply)", path, out)
		}
	}
}
