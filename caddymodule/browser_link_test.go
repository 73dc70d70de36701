package caddymodule

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/swarmsec/caddy-hardening/internal/testcaddy"
	"github.com/swarmsec/caddy-hardening/internal/testenv"
)

// linkPreloadUpstream serves a page whose stylesheet (from another origin: the upstream's own
// address, which the strict preset's style-src 'self' does not cover) and script an Early Hints
// and the final response announce in Link headers, and records the CSP reports sent to /r.
func linkPreloadUpstream(t *testing.T) (addr string, reports func() []string) {
	var mu sync.Mutex
	var got []string
	var self string // the upstream's own origin
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/":
			h := w.Header()
			h.Add("Link", "<"+self+"/s.css>; rel=preload; as=style")
			h.Add("Link", `</app.js>; rel=preload; as=script, <https://cdn.example>; rel=preconnect`)
			w.WriteHeader(http.StatusEarlyHints)
			h.Set("Content-Type", "text/html; charset=utf-8")
			_, _ = io.WriteString(w, `<!doctype html><html><head><link rel=stylesheet href=`+self+`/s.css><script src=/app.js></script></head>`+
				`<body><div id="out"></div><img src=/none.png onerror="x()"></body></html>`)
		case "/s.css":
			w.Header().Set("Content-Type", "text/css")
			_, _ = io.WriteString(w, "#out{color:red}")
		case "/app.js":
			w.Header().Set("Content-Type", "text/javascript")
			_, _ = io.WriteString(w, `document.addEventListener('DOMContentLoaded', function () { document.getElementById('out').textContent = 'ran'; });`)
		case "/r":
			b, _ := io.ReadAll(io.LimitReader(r.Body, 1<<16))
			mu.Lock()
			got = append(got, string(b))
			mu.Unlock()
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(up.Close)
	self = up.URL
	return up.Listener.Addr().String(), func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), got...)
	}
}

// TestTagsModeNoncesLinkPreloads: tags mode gives the nonce to the <link> and <script> tags of
// the page, and now to the preloads its Link headers announce too (in the 103 Early Hints and
// the final response), replacing a nonce they had. Before, the strict preset refused each
// preloaded stylesheet in Chromium: a CSP violation report on every page view.
func TestTagsModeNoncesLinkPreloads(t *testing.T) {
	upstream, reports := linkPreloadUpstream(t)
	port := testenv.FreePort(t)
	testcaddy.StartCaddy(t, fmt.Sprintf(`http://127.0.0.1:%d {
	bind 127.0.0.1
	security_headers {
		report_uri /r
		inject_nonce tags
	}
	reverse_proxy %s
}
`, port, upstream))
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)

	var early []http.Header
	trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
		early = append(early, http.Header(h).Clone())
		return nil
	}}
	req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(t.Context(), trace), http.MethodGet, url, nil)
	resp, _ := fetch(t, req)
	nonce := cspNonce(t, resp.Header)
	want := []string{`<http://` + upstream + `/s.css>; rel=preload; as=style; nonce="` + nonce + `"`,
		`</app.js>; rel=preload; as=script; nonce="` + nonce + `", <https://cdn.example>; rel=preconnect`}
	if len(early) != 1 {
		t.Fatalf("%d informational responses, want the upstream's 103", len(early))
	}
	for where, h := range map[string]http.Header{"103": early[0], "response": resp.Header} {
		if got := h.Values("Link"); strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("%s: Link\n got  %q\n want %q", where, got, want)
		}
	}

	// Chromium: the page's script runs, and the only violation reported is the sentinel (the
	// image's inline handler, which no nonce allows), none for a preload.
	dom := chromiumDOM(t, url)
	if out := between(dom, `<div id="out">`, `</div>`); out != "ran" {
		t.Fatalf("the page's script did not run: #out = %q", out)
	}
	var got []string
	testenv.WaitFor(t, 15*time.Second, "the sentinel's violation report", func() bool {
		got = reports()
		for _, r := range got {
			if strings.Contains(r, "script-src-attr") {
				return true
			}
		}
		return false
	})
	for _, r := range got {
		if strings.Contains(r, "s.css") || strings.Contains(r, "app.js") {
			t.Errorf("a preload was refused: %s", r)
		}
	}
}
