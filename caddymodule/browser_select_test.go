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

// A <select> is where HTML parsers differ: the standard's older "in select" insertion mode
// ignores a <style>, <title>, <svg>, ... start tag there (their content is then markup), the
// relaxed parser of customizable <select> reads them as it does in the body. Debian's Chromium
// (156) is the relaxed one: in tags mode, which does not give up, the injector nonces exactly
// what Chromium runs and applies inside a <select> (a <style> there applies, a <script> in
// that <style> is text, an SVG <style> in it holds a script that runs), and a <template> in a
// <select> ignores a </select>. If Chromium's parser changes, this test says so: the
// injector's selectTag must then be revisited.
//
// In placeholder mode, user content inside a <select> never gets or keeps a working nonce in
// Chromium: a guessed nonce, a plain script, a dangling stylesheet after a <style> in the
// <select>, a <template> that keeps the <select> open (where the injector gives up, so the
// application's later marked script is blocked: fail closed).
func TestBrowserSelectReadsAsTheInjectorDoes(t *testing.T) {
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, ".js") {
			w.Header().Set("Content-Type", "text/javascript")
			_, _ = io.WriteString(w, `mark('INJ-evil-script;');`)
			return
		}
		w.Header().Set("Content-Type", "text/css")
		_, _ = io.WriteString(w, `body { color: rgb(9, 9, 9) !important; }`)
	}))
	t.Cleanup(evil.Close)
	const mark = `function mark(w) { document.getElementById('out').textContent += w; }`

	t.Run("tags", func(t *testing.T) {
		root := t.TempDir()
		page := `<!doctype html><html><head><meta charset="utf-8"><script>` + mark + `</script></head><body><div id="out"></div>
<select><style>#out { color: rgb(1, 2, 3); }</style><option>a</option></select>
<select><script>mark('select-script;')</script></select>
<select><style><script>mark('INJ-in-style;')</script></style></select>
<select><title><script>mark('INJ-in-title;')</script></title></select>
<select><svg><style><script>mark('svg-style-script;')</script></style></svg></select>
<select id="s"><template></select></template><b id="b">b</b></select>
<script>mark('color=' + getComputedStyle(document.getElementById('out')).color + ';');
mark(document.getElementById('s').contains(document.getElementById('b')) ? 'template-kept-select;' : 'select-closed;');</script>
</body></html>`
		if err := os.WriteFile(filepath.Join(root, "index.html"), []byte(page), 0o644); err != nil {
			t.Fatal(err)
		}
		out := between(chromiumDOM(t, tagsFileServer(t, root)+"/"), `<div id="out">`, `</div>`)
		want := "select-script;svg-style-script;color=rgb(1, 2, 3);template-kept-select;"
		if out != want {
			t.Errorf("#out = %q, want %q: Chromium's <select> parser no longer reads as the injector does (see selectTag)", out, want)
		}
	})

	t.Run("placeholder", func(t *testing.T) {
		ph := testPlaceholder
		// One page per case: a page gives up at its first <style> in a <select>.
		cases := map[string]string{
			"/guessed": `<select><option>user: <script nonce="0123456789abcdefghijkl==">mark('INJ-guessed;')</script><script>mark('INJ-plain;')</script>
<link rel=stylesheet href=` + evil.URL + `/2.css nonce="0123456789abcdefghijkl=="></option></select>
<script nonce="` + ph + `">mark('after;')</script>`,
			"/style": `<select>user: <style><a title="</style><link rel=stylesheet href=` + evil.URL + `/1.css a=
<link rel=stylesheet href=/app.css nonce="` + ph + `"></select>`,
			// late.js is the application's, marked after a <template> in a <select>: the
			// injector gives up there, so it is blocked (an older parser reads that tag as the
			// attacker's script with the application's nonce).
			"/template": `<select>user: <template></select></template><style><script src=` + evil.URL + `/x.js a='</style><script src='/late.js' nonce="` + ph + `"></script></select>`,
		}
		want := map[string]string{"/guessed": "after;color=rgb(0, 0, 0);", "/style": "color=rgb(0, 0, 0);", "/template": "color=rgb(0, 0, 0);"}
		up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch r.URL.Path {
			case "/app.css":
				w.Header().Set("Content-Type", "text/css")
				_, _ = io.WriteString(w, "p {}")
			case "/late.js":
				w.Header().Set("Content-Type", "text/javascript")
				_, _ = io.WriteString(w, "mark('late;');")
			default:
				w.Header().Set("Content-Type", "text/html; charset=utf-8")
				_, _ = io.WriteString(w, `<!doctype html><html><head><meta charset="utf-8"></head><body><div id="out"></div>
<script nonce="`+ph+`">`+mark+`
addEventListener('load', () => mark('color=' + getComputedStyle(document.body).color + ';'));</script>
`+cases[r.URL.Path]+`
</body></html>`)
			}
		}))
		t.Cleanup(up.Close)
		base := placeholderProxySite(t, ph, up.Listener.Addr().String())
		for path := range cases {
			out := between(chromiumDOM(t, base+path), `<div id="out">`, `</div>`)
			if out != want[path] {
				t.Errorf("%s: #out = %q, want %q (the application's scripts ran, nothing injected ran or applied, none after a point the injector gave up at)", path, out, want[path])
			}
		}
	})
}
