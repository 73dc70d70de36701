package caddymodule

import (
	"bufio"
	"compress/gzip"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	neturl "net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf16"

	"github.com/swarmsec/caddy-hardening/internal/testcaddy"
	"github.com/swarmsec/caddy-hardening/internal/testenv"
)

// testPlaceholder is the secret marker the test upstreams write where the nonce goes.
const testPlaceholder = "PH-3f9c2a7b1e6d4c08"

var nonceInCSP = regexp.MustCompile(`'nonce-([A-Za-z0-9+/=]+)'`)

// fetch sends a request and returns the response with its body read.
func fetch(t *testing.T, req *http.Request) (*http.Response, string) {
	t.Helper()
	client := &http.Client{Transport: &http.Transport{DisableCompression: true, TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err := retryingClient{client}.Do(req) // a request right after a reload may meet a closing connection
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

func getBody(t *testing.T, url string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	return fetch(t, req)
}

// waitTLS waits until Caddy serves a certificate on the HTTPS address (issued in the
// background after start).
func waitTLS(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, ServerName: "localhost"})
		if err == nil {
			conn.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no TLS on %s: %v", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func cspNonce(t *testing.T, h http.Header) string {
	t.Helper()
	m := nonceInCSP.FindStringSubmatch(h.Get("Content-Security-Policy"))
	if m == nil {
		t.Fatalf("no nonce in Content-Security-Policy %q", h.Get("Content-Security-Policy"))
	}
	return m[1]
}

func TestSecurityHeadersStrictByDefault(t *testing.T) {
	port := testenv.FreePort(t)
	testcaddy.StartCaddy(t, fmt.Sprintf(`http://127.0.0.1:%d {
	bind 127.0.0.1
	security_headers
	respond "{http.vars.csp_nonce}"
}
`, port))
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	resp, body := getBody(t, url)
	nonce := cspNonce(t, resp.Header)
	if body != nonce {
		t.Fatalf("{http.vars.csp_nonce} = %q, the policy's nonce = %q", body, nonce)
	}
	if len(nonce) != 24 {
		t.Fatalf("nonce %q: want 128 bits in base64 (24 characters)", nonce)
	}
	want := map[string]string{
		"Content-Security-Policy": "default-src 'self'; script-src 'nonce-" + nonce + "' 'strict-dynamic'; style-src 'self' 'nonce-" + nonce +
			"'; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'; upgrade-insecure-requests",
		"X-Frame-Options":              "DENY",
		"X-Content-Type-Options":       "nosniff",
		"Referrer-Policy":              "strict-origin-when-cross-origin",
		"Cross-Origin-Opener-Policy":   "same-origin",
		"Cross-Origin-Resource-Policy": "same-origin",
		"Permissions-Policy":           "accelerometer=(), camera=(), geolocation=(), gyroscope=(), magnetometer=(), microphone=(), payment=(), usb=()",
	}
	for k, v := range want {
		if got := resp.Header.Values(k); len(got) != 1 || got[0] != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	for _, k := range []string{"Strict-Transport-Security", "Server", "Cross-Origin-Embedder-Policy", "Content-Security-Policy-Report-Only"} {
		if v := resp.Header.Get(k); v != "" {
			t.Errorf("%s = %q on a plain-HTTP production response; want none", k, v)
		}
	}
	resp2, _ := getBody(t, url)
	if cspNonce(t, resp2.Header) == nonce {
		t.Fatal("two responses share a nonce")
	}
}

func TestSecurityHeadersHSTSOnlyOverHTTPS(t *testing.T) {
	httpsPort, httpPort := testenv.FreePort(t), testenv.FreePort(t)
	testcaddy.StartCaddy(t, fmt.Sprintf(`{
%s}
localhost:%d, http://localhost:%d {
	bind 127.0.0.1
	security_headers {
		hsts max-age=63072000 includeSubDomains preload
	}
	respond "ok"
}
`, localTLSGlobals(t, httpPort, httpsPort), httpsPort, httpPort))
	waitTLS(t, fmt.Sprintf("127.0.0.1:%d", httpsPort))
	resp, _ := getBody(t, fmt.Sprintf("https://localhost:%d/", httpsPort))
	if got := resp.Header.Get("Strict-Transport-Security"); got != "max-age=63072000; includeSubDomains; preload" {
		t.Fatalf("HTTPS: Strict-Transport-Security = %q", got)
	}
	resp, _ = getBody(t, fmt.Sprintf("http://localhost:%d/", httpPort))
	if got := resp.Header.Get("Strict-Transport-Security"); got != "" {
		t.Fatalf("plain HTTP carries Strict-Transport-Security %q", got)
	}
}

// Behind a load balancer that terminates TLS (Render, a Kubernetes ingress), Caddy gets plain
// HTTP with X-Forwarded-Proto: https: a trusted proxy's (trusted_proxies) is believed, as
// reverse_proxy believes it, and the response gets HSTS (replacing the upstream's); the same
// header from a client that is not a trusted proxy, or a last value other than https, is not.
func TestHSTSBehindATrustedProxyThatTerminatesTLS(t *testing.T) {
	up := hstsUpstream(t, "max-age=1")
	trusted, untrusted := testenv.FreePort(t), testenv.FreePort(t)
	testcaddy.StartCaddy(t, fmt.Sprintf(`{
	servers 127.0.0.1:%[1]d {
		trusted_proxies static 127.0.0.1/32
	}
}
http://localhost:%[1]d {
	bind 127.0.0.1
	security_headers
	reverse_proxy %[3]s
}
http://localhost:%[2]d {
	bind 127.0.0.1
	security_headers
	reverse_proxy %[3]s
}
`, trusted, untrusted, up.Listener.Addr()))
	for _, row := range []struct {
		port  int
		proto []string
		want  string
	}{
		{trusted, []string{"https"}, "max-age=63072000; includeSubDomains"},
		{trusted, []string{"HTTPS"}, "max-age=63072000; includeSubDomains"},
		{trusted, []string{"http", "https"}, "max-age=63072000; includeSubDomains"},
		{trusted, []string{"http, https"}, "max-age=63072000; includeSubDomains"},
		{trusted, nil, ""},
		{trusted, []string{"http"}, ""},
		{trusted, []string{"https, http"}, ""},
		{trusted, []string{"https", "http"}, ""},
		{untrusted, []string{"https"}, ""},
	} {
		req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("http://localhost:%d/", row.port), nil)
		for _, v := range row.proto {
			req.Header.Add("X-Forwarded-Proto", v)
		}
		resp, _ := fetch(t, req)
		if got := strings.Join(resp.Header.Values("Strict-Transport-Security"), ", "); got != row.want {
			t.Errorf("port %d (trusted: %v), X-Forwarded-Proto %q: Strict-Transport-Security %q, want %q",
				row.port, row.port == trusted, row.proto, got, row.want)
		}
	}
}

// A field left out of a JSON hsts object is its default, as without the object: max_age
// 63072000, include_subdomains true. An explicit max_age 0 (the Caddyfile's max-age=0) is
// kept: it is how a site tells browsers to forget its HSTS. The Caddyfile writes what its
// line says, so `hsts max-age=13` still sends no includeSubDomains from the adapted JSON.
func TestHSTSFieldsOmittedInJSONAreTheDefaults(t *testing.T) {
	httpsPort, httpPort := testenv.FreePort(t), testenv.FreePort(t)
	cfg, err := testcaddy.Adapt(fmt.Sprintf(`{
%s}
localhost:%d {
	bind 127.0.0.1
	handle /empty {
		security_headers {
			hsts max-age=11
		}
		respond "ok"
	}
	handle /no-subdomains {
		security_headers {
			hsts max-age=12 includeSubDomains
		}
		respond "ok"
	}
	handle /zero {
		security_headers {
			hsts max-age=0
		}
		respond "ok"
	}
	handle /line {
		security_headers {
			hsts max-age=13
		}
		respond "ok"
	}
}
`, localTLSGlobals(t, httpPort, httpsPort), httpsPort))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(cfg)
	js := strings.NewReplacer(`"hsts":{"include_subdomains":false,"max_age":11}`, `"hsts":{}`,
		`"hsts":{"include_subdomains":true,"max_age":12}`, `"hsts":{"include_subdomains":false}`).Replace(string(raw))
	if strings.Contains(js, "max_age\":11") || strings.Contains(js, "max_age\":12") ||
		!strings.Contains(js, `"hsts":{"include_subdomains":false,"max_age":0}`) || !strings.Contains(js, `"hsts":{"include_subdomains":false,"max_age":13}`) {
		t.Fatalf("unexpected adapted JSON: %s", js)
	}
	c := testcaddy.StartCaddy(t, "")
	if err := c.LoadJSON(js); err != nil {
		t.Fatal(err)
	}
	waitTLS(t, fmt.Sprintf("127.0.0.1:%d", httpsPort))
	for path, want := range map[string]string{
		"/empty":         "max-age=63072000; includeSubDomains",
		"/no-subdomains": "max-age=63072000",
		"/zero":          "max-age=0",
		"/line":          "max-age=13",
	} {
		resp, _ := getBody(t, fmt.Sprintf("https://localhost:%d%s", httpsPort, path))
		if got := resp.Header.Get("Strict-Transport-Security"); got != want {
			t.Errorf("%s: Strict-Transport-Security %q, want %q", path, got, want)
		}
	}
}

func TestSecurityHeadersDevelopmentIsReportOnlyWithoutHSTS(t *testing.T) {
	up := hstsUpstream(t, "max-age=31536000")
	httpsPort, httpPort := testenv.FreePort(t), testenv.FreePort(t)
	testcaddy.StartCaddy(t, fmt.Sprintf(`{
%s	hardening {
		environment development
	}
}
localhost:%d {
	bind 127.0.0.1
	security_headers
	handle /proxied {
		reverse_proxy %s
	}
	respond "ok"
}
`, localTLSGlobals(t, httpPort, httpsPort), httpsPort, up.Listener.Addr()))
	waitTLS(t, fmt.Sprintf("127.0.0.1:%d", httpsPort))
	resp, _ := getBody(t, fmt.Sprintf("https://localhost:%d/", httpsPort))
	ro := resp.Header.Get("Content-Security-Policy-Report-Only")
	if !strings.Contains(ro, "connect-src 'self' ws: wss:") || resp.Header.Get("Content-Security-Policy") != "" {
		t.Fatalf("development: CSP %q, report-only %q", resp.Header.Get("Content-Security-Policy"), ro)
	}
	if got := resp.Header.Get("Strict-Transport-Security"); got != "" {
		t.Fatalf("development sends HSTS %q", got)
	}
	// Nor does an upstream's pass: a development HTTPS site must not pin browsers to HTTPS.
	resp, _ = getBody(t, fmt.Sprintf("https://localhost:%d/proxied", httpsPort))
	if got := resp.Header.Get("Strict-Transport-Security"); got != "" {
		t.Fatalf("development passes the upstream's HSTS %q", got)
	}
}

// The development preset sends no HSTS in any environment (the preset: report-only,
// ws: for hot reload, no HSTS): a development host served by a production Caddy must not pin
// browsers to HTTPS, and its upstream's HSTS is removed as in development.
func TestDevelopmentPresetSendsNoHSTSInProduction(t *testing.T) {
	up := hstsUpstream(t, "max-age=31536000")
	httpsPort, httpPort := testenv.FreePort(t), testenv.FreePort(t)
	testcaddy.StartCaddy(t, fmt.Sprintf(`{
%s}
localhost:%d {
	bind 127.0.0.1
	handle /dev/* {
		security_headers development
		reverse_proxy %s
	}
	security_headers
	respond "ok"
}
`, localTLSGlobals(t, httpPort, httpsPort), httpsPort, up.Listener.Addr()))
	waitTLS(t, fmt.Sprintf("127.0.0.1:%d", httpsPort))
	resp, _ := getBody(t, fmt.Sprintf("https://localhost:%d/dev/page", httpsPort))
	if got := resp.Header.Get("Strict-Transport-Security"); got != "" || resp.Header.Get("Content-Security-Policy-Report-Only") == "" {
		t.Errorf("development preset in production: HSTS %q (want none), report-only policy %q", got, resp.Header.Get("Content-Security-Policy-Report-Only"))
	}
	resp, _ = getBody(t, fmt.Sprintf("https://localhost:%d/", httpsPort))
	if got := resp.Header.Get("Strict-Transport-Security"); got == "" {
		t.Error("the strict preset beside it sends no HSTS")
	}
}

// A header this handler does not send because it is turned off is left as the upstream sent
// it, as the README says. X-Frame-Options where frame-ancestors lists hosts is not sent here
// either, but an upstream's (SAMEORIGIN, Rails' default) would contradict the enforced
// policy: it is removed, unless keep_upstream lists it; under report_only it is what
// enforces, and stays.
func TestHeadersNotSentHereAreTheUpstreams(t *testing.T) {
	up := htmlUpstream(t, "<p>page</p>") // X-Frame-Options SAMEORIGIN, Referrer-Policy unsafe-url
	port := testenv.FreePort(t)
	testcaddy.StartCaddy(t, fmt.Sprintf(`http://127.0.0.1:%[1]d {
	bind 127.0.0.1
	handle /kept {
		security_headers {
			csp {
				frame-ancestors 'self' https://portal.example
			}
			keep_upstream X-Frame-Options
		}
		reverse_proxy %[2]s
	}
	handle /rollout {
		security_headers {
			csp {
				frame-ancestors 'self' https://portal.example
			}
			report_only
		}
		reverse_proxy %[2]s
	}
	handle {
		security_headers {
			csp {
				frame-ancestors 'self' https://portal.example
			}
			referrer_policy off
		}
		reverse_proxy %[2]s
	}
}
`, port, up.Listener.Addr()))
	for path, want := range map[string]string{"/": "", "/kept": "SAMEORIGIN", "/rollout": "SAMEORIGIN"} {
		resp, _ := getBody(t, fmt.Sprintf("http://127.0.0.1:%d%s", port, path))
		if xfo := strings.Join(resp.Header.Values("X-Frame-Options"), ", "); xfo != want {
			t.Errorf("%s: X-Frame-Options %q beside frame-ancestors 'self' https://portal.example, want %q", path, xfo, want)
		}
		if path != "/" {
			continue
		}
		if rp := resp.Header.Values("Referrer-Policy"); len(rp) != 1 || rp[0] != "unsafe-url" {
			t.Errorf("Referrer-Policy %q; want the upstream's unsafe-url", rp)
		}
	}
}

// A rollout keeps its X-Frame-Options while it tries another frame-ancestors: beside an
// explicit report_only, frame_options may differ from the policy's frame-ancestors (the one
// is enforced, the other only reported); without report_only it is still refused.
func TestReportOnlyRolloutKeepsItsFrameOptions(t *testing.T) {
	port := testenv.FreePort(t)
	site := `http://127.0.0.1:%d {
	bind 127.0.0.1
	security_headers {
		%s
		frame_options SAMEORIGIN
		csp {
			frame-ancestors 'self' https://portal.example
		}
	}
	respond "ok"
}
`
	c := testcaddy.StartCaddy(t, fmt.Sprintf(site, port, "report_only"))
	resp, _ := getBody(t, fmt.Sprintf("http://127.0.0.1:%d/", port))
	if xfo, ro := resp.Header.Get("X-Frame-Options"), resp.Header.Get("Content-Security-Policy-Report-Only"); xfo != "SAMEORIGIN" || !strings.Contains(ro, "frame-ancestors 'self' https://portal.example") {
		t.Errorf("X-Frame-Options %q, report-only policy %q", xfo, ro)
	}
	if err := c.Load(fmt.Sprintf(site, port, "report_only off")); err == nil || !strings.Contains(err.Error(), "frame_options SAMEORIGIN contradicts the policy's frame-ancestors") {
		t.Errorf("an enforced policy beside a contradicting frame_options: %v", err)
	}
}

// htmlUpstream serves page as text/html with the headers an application typically sets, and
// gzips it when asked (so the test sees whether the edge kept Accept-Encoding from it).
func htmlUpstream(t *testing.T, page string) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("ETag", `"v1"`)
		h.Set("Cache-Control", "public, max-age=600")
		h.Set("X-Powered-By", "Express")
		h.Set("Server", "gunicorn")
		h.Set("X-Frame-Options", "SAMEORIGIN")
		h.Set("Referrer-Policy", "unsafe-url")
		if strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
			h.Set("Content-Encoding", "gzip")
			gz := gzip.NewWriter(w)
			_, _ = io.WriteString(gz, page)
			_ = gz.Close()
			return
		}
		h.Set("Content-Length", fmt.Sprint(len(page)))
		_, _ = io.WriteString(w, page)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestInjectPlaceholderThroughReverseProxy(t *testing.T) {
	page := `<!doctype html><script nonce="` + testPlaceholder + `">ok()</script><script nonce="stolen">evil()</script><p>` + testPlaceholder + `</p>`
	up := htmlUpstream(t, page)
	t.Setenv("TEST_CSP_PLACEHOLDER", testPlaceholder)
	port := testenv.FreePort(t)
	testcaddy.StartCaddy(t, fmt.Sprintf(`http://127.0.0.1:%d {
	bind 127.0.0.1
	security_headers {
		referrer_policy no-referrer
		keep_upstream Referrer-Policy
		inject_nonce placeholder {env.TEST_CSP_PLACEHOLDER}
	}
	reverse_proxy %s
}
`, port, up.Listener.Addr()))
	req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/", port), nil)
	req.Header.Set("Accept-Encoding", "gzip") // the edge must not pass this on
	req.Header.Set("Range", "bytes=0-10")     // nor this: a part of the page would skip the rewrite
	resp, body := fetch(t, req)
	nonce := cspNonce(t, resp.Header)
	want := `<!doctype html><script nonce="` + nonce + `">ok()</script><script >evil()</script><p>` + nonce + `</p>`
	if resp.StatusCode != 200 || body != want {
		t.Fatalf("status %d, body:\n got  %s\n want %s", resp.StatusCode, body, want)
	}
	for k, v := range map[string]string{
		"Content-Length": "", "Content-Encoding": "", "Server": "", "X-Powered-By": "",
		"Etag": `W/"v1"`, "Cache-Control": "no-store", "X-Frame-Options": "DENY",
		"Referrer-Policy": "unsafe-url", // keep_upstream: the upstream's value wins
	} {
		if got := strings.Join(resp.Header.Values(k), ", "); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
}

// TestReportingEndpointsKeepTheUpstreams: report_to's Reporting-Endpoints joins an upstream's
// rather than replacing it (the app's own endpoints, for NEL or deprecation reports, stay), and
// comes last, so its csp-endpoint wins over one the upstream names the same.
func TestReportingEndpointsKeepTheUpstreams(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Reporting-Endpoints", `default="https://app.example/reports", csp-endpoint="https://app.example/csp"`)
		_, _ = io.WriteString(w, "ok")
	}))
	t.Cleanup(up.Close)
	port := testenv.FreePort(t)
	testcaddy.StartCaddy(t, fmt.Sprintf(`http://127.0.0.1:%[1]d {
	bind 127.0.0.1
	route /kept/* {
		security_headers {
			report_to https://edge.example/csp
			keep_upstream Reporting-Endpoints
		}
		reverse_proxy %[2]s
	}
	security_headers {
		report_to https://edge.example/csp
	}
	reverse_proxy %[2]s
}
`, port, up.Listener.Addr()))
	for path, want := range map[string][]string{
		"/":       {`default="https://app.example/reports", csp-endpoint="https://app.example/csp"`, `csp-endpoint="https://edge.example/csp"`},
		"/kept/x": {`default="https://app.example/reports", csp-endpoint="https://app.example/csp"`},
	} {
		resp, _ := getBody(t, fmt.Sprintf("http://127.0.0.1:%d%s", port, path))
		if got := resp.Header.Values("Reporting-Endpoints"); !slices.Equal(got, want) {
			t.Errorf("%s: Reporting-Endpoints %q, want %q", path, got, want)
		}
	}
}

// TestPlaceholderGivingUpIsLogged: where placeholder mode cannot follow a page (an
// <annotation-xml> in MathML is HTML or MathML by its encoding attribute), its later tags keep no nonce and the page's later scripts
// are blocked; the operator hears of it with a WARN naming the page.
func TestPlaceholderGivingUpIsLogged(t *testing.T) {
	page := `<!doctype html><script nonce="` + testPlaceholder + `">a()</script><math><annotation-xml></annotation-xml></math><script nonce="` + testPlaceholder + `">b()</script>`
	up := htmlUpstream(t, page)
	t.Setenv("TEST_CSP_PLACEHOLDER", testPlaceholder)
	c, port := placeholderCaddyOf(t, "\treverse_proxy "+up.Listener.Addr().String()+"\n")
	resp, body := getBody(t, fmt.Sprintf("http://127.0.0.1:%d/icons", port))
	nonce := cspNonce(t, resp.Header)
	want := `<!doctype html><script nonce="` + nonce + `">a()</script><math><annotation-xml></annotation-xml></math><script >b()</script>`
	if resp.StatusCode != 200 || body != want {
		t.Fatalf("status %d, body:\n got  %s\n want %s", resp.StatusCode, body, want)
	}
	e := waitLog(t, c, "placeholder mode lost track of this page's HTML (SVG or MathML it cannot follow, a <style> in a <select>, an ESC byte; see the README's limits of the injector): its later placeholders became '-' and its later tags kept no nonce, so their scripts and styles are blocked")
	if e.Str("uri") != "/icons" {
		t.Fatalf("logged uri %q, want /icons", e.Str("uri"))
	}
}

// TestPlaceholderInASwallowingTagIsLogged: a placeholder inside a tag holding a '<' in an
// attribute (user content `<iframe srcdoc='<script src=//evil x=` swallowed the marked tag)
// becomes dashes, not the nonce; the operator hears of it (an application's own unescaped
// srcdoc breaks so), with a WARN naming the page.
func TestPlaceholderInASwallowingTagIsLogged(t *testing.T) {
	page := `<p><iframe srcdoc='<script src=//evil x=<meta property="csp-nonce" nonce="` + testPlaceholder + `">'></iframe><script nonce="` + testPlaceholder + `">a()</script>`
	up := htmlUpstream(t, page)
	t.Setenv("TEST_CSP_PLACEHOLDER", testPlaceholder)
	c, port := placeholderCaddyOf(t, "\treverse_proxy "+up.Listener.Addr().String()+"\n")
	resp, body := getBody(t, fmt.Sprintf("http://127.0.0.1:%d/comments", port))
	nonce := cspNonce(t, resp.Header)
	want := `<p><iframe srcdoc='<script src=//evil x=<meta property="csp-nonce" nonce="` + strings.Repeat("-", len(nonce)) + `">'></iframe><script nonce="` + nonce + `">a()</script>`
	if resp.StatusCode != 200 || body != want {
		t.Fatalf("status %d, body:\n got  %s\n want %s", resp.StatusCode, body, want)
	}
	e := waitLog(t, c, placeholderInSwallowingTag)
	if e.Str("uri") != "/comments" || e.Level() != "warn" {
		t.Fatalf("logged uri %q level %s, want /comments at warn", e.Str("uri"), e.Level())
	}
}

func TestInjectSkipsWhatIsNotAPage(t *testing.T) {
	t.Setenv("TEST_CSP_PLACEHOLDER", testPlaceholder)
	marked := `<script nonce="` + testPlaceholder + `">`
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/json":
			w.Header().Set("Content-Type", "application/json")
			body := `{"html":"` + strings.ReplaceAll(marked, `"`, `\"`) + `"}`
			w.Header().Set("Content-Length", fmt.Sprint(len(body)))
			_, _ = io.WriteString(w, body)
		case "/204":
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(http.StatusNoContent)
		case "/304":
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(http.StatusNotModified)
		case "/br-anyway":
			// Go's transport asks for gzip itself and decodes it; another encoding reaches us.
			w.Header().Set("Content-Type", "text/html")
			w.Header().Set("Content-Encoding", "br")
			_, _ = io.WriteString(w, marked) // (not really brotli: only the header matters)
		default:
			w.Header().Set("Content-Type", "text/html")
			_, _ = io.WriteString(w, marked)
		}
	}))
	t.Cleanup(up.Close)
	c, port := placeholderCaddyOf(t, "\treverse_proxy "+up.Listener.Addr().String()+"\n")
	base := fmt.Sprintf("http://127.0.0.1:%d", port)

	// JSON is not HTML: no tag is edited, but the secret is overwritten, keeping the length.
	resp, body := getBody(t, base+"/json")
	if want := `{"html":"<script nonce=\"` + strings.Repeat("-", len(testPlaceholder)) + `\">"}`; body != want || resp.ContentLength != int64(len(want)) {
		t.Errorf("JSON: %d bytes %s; want %s", resp.ContentLength, body, want)
	}
	for _, p := range []string{"/204", "/304"} {
		if resp, body := getBody(t, base+p); body != "" || resp.Header.Get("Cache-Control") == "no-store" {
			t.Errorf("%s: body %q, Cache-Control %q: a bodiless response is not rewritten", p, body, resp.Header.Get("Cache-Control"))
		}
	}
	// HEAD of a page tells what its GET would: the rewritten page's headers (its length is
	// the rewritten one's), no body.
	getPage, _ := getBody(t, base+"/")
	req, _ := http.NewRequest(http.MethodHead, base+"/", nil)
	if resp, body := fetch(t, req); resp.Header.Get("Cache-Control") != "no-store" || resp.Header.Get("Content-Length") != getPage.Header.Get("Content-Length") || body != "" {
		t.Errorf("HEAD of a page: Cache-Control %q, Content-Length %q (GET: %q), body %q; want GET's headers",
			resp.Header.Get("Cache-Control"), resp.Header.Get("Content-Length"), getPage.Header.Get("Content-Length"), body)
	}
	// An upstream that compresses although asked not to: the placeholder must not leak.
	resp, body = getBody(t, base+"/br-anyway")
	if resp.StatusCode != http.StatusBadGateway || strings.Contains(body, testPlaceholder) || resp.Header.Get("Content-Encoding") != "" {
		t.Fatalf("compressed HTML in placeholder mode: status %d, encoding %q, body %q; want a 502 without the body",
			resp.StatusCode, resp.Header.Get("Content-Encoding"), body)
	}
	waitLog(t, c, "HTML response cannot get its nonce (compressed or partial although the request asked for neither); answered 502 so the placeholder stays secret")
}

func TestInjectTagsIntoFileServer(t *testing.T) {
	root := t.TempDir()
	page := `<!doctype html><link rel="stylesheet" href="/a.css"><script type="module" src="/app.js"></script><style>p{}</style>`
	big := strings.Repeat("<p>filler</p>", 20000) // larger than one copy buffer: ReadFrom runs more than once
	if err := os.WriteFile(filepath.Join(root, "index.html"), []byte(page+big+"<script>last()</script>"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "app.js"), []byte(`<script>not html</script>`), 0o644); err != nil {
		t.Fatal(err)
	}
	base := tagsFileServer(t, root)
	resp, body := getBody(t, base+"/")
	n := ` nonce="` + cspNonce(t, resp.Header) + `"`
	want := `<!doctype html><link rel="stylesheet" href="/a.css"` + n + `><script type="module" src="/app.js"` + n + `></script><style` + n + `>p{}</style>` +
		big + `<script` + n + `>last()</script>`
	if body != want {
		t.Fatalf("file_server page not rewritten (%d bytes, want %d); starts %.200q", len(body), len(want), body)
	}
	if resp.Header.Get("Content-Length") != "" || !strings.HasPrefix(resp.Header.Get("Etag"), "W/") {
		t.Errorf("Content-Length %q, ETag %q: want no length and a weak ETag", resp.Header.Get("Content-Length"), resp.Header.Get("Etag"))
	}
	if _, js := getBody(t, base+"/app.js"); js != `<script>not html</script>` {
		t.Errorf("a .js file was rewritten: %q", js)
	}
}

func TestSecurityHeadersUserHeaderDirectiveWins(t *testing.T) {
	port := testenv.FreePort(t)
	testcaddy.StartCaddy(t, fmt.Sprintf(`http://127.0.0.1:%d {
	bind 127.0.0.1
	security_headers {
		remove none
	}
	header Permissions-Policy "camera=(self)"
	header -Cross-Origin-Resource-Policy
	respond "ok"
}
`, port))
	resp, _ := getBody(t, fmt.Sprintf("http://127.0.0.1:%d/", port))
	if got := resp.Header.Values("Permissions-Policy"); len(got) != 1 || got[0] != "camera=(self)" {
		t.Errorf("Permissions-Policy %q: the header directive should win", got)
	}
	if got := resp.Header.Get("Cross-Origin-Resource-Policy"); got != "" {
		t.Errorf("Cross-Origin-Resource-Policy %q: the header directive deleted it", got)
	}
	if resp.Header.Get("Server") != "Caddy" {
		t.Errorf("remove none: Server %q, want Caddy's", resp.Header.Get("Server"))
	}
}

func TestSecurityHeadersStreamPassesFlushes(t *testing.T) {
	release := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		_, _ = io.WriteString(w, `<p>first</p><script>`)
		w.(http.Flusher).Flush()
		<-release
		_, _ = io.WriteString(w, `x()</script>`)
	}))
	t.Cleanup(up.Close)
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})
	port := testenv.FreePort(t)
	testcaddy.StartCaddy(t, fmt.Sprintf(`http://127.0.0.1:%d {
	bind 127.0.0.1
	security_headers {
		inject_nonce tags
	}
	reverse_proxy %s {
		flush_interval -1
	}
}
`, port, up.Listener.Addr()))
	resp, err := replyClient.Get(fmt.Sprintf("http://127.0.0.1:%d/", port))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	n := ` nonce="` + cspNonce(t, resp.Header) + `"`
	first := make([]byte, len(`<p>first</p><script`+n+`>`))
	done := make(chan error, 1)
	go func() { _, err := io.ReadFull(resp.Body, first); done <- err }()
	select {
	case err := <-done:
		if err != nil || string(first) != `<p>first</p><script`+n+`>` {
			t.Fatalf("first flush: %q, %v", first, err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the flushed part of the page did not arrive while the upstream was still writing")
	}
	close(release)
	rest, _ := io.ReadAll(resp.Body)
	if string(rest) != `x()</script>` {
		t.Fatalf("rest %q", rest)
	}
}

// A disabled security_headers passes requests through, except in placeholder mode: no header,
// no nonce, but the secret placeholder is redacted from pages, other bodies and headers
// (published once, it would get the nonce onto an injected tag when the feature is back on).
func TestSecurityHeadersFeatureOff(t *testing.T) {
	page := `<script nonce="` + testPlaceholder + `">a()</script><p>` + testPlaceholder + `</p>`
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</a.js>; rel=preload; as=script; nonce="+testPlaceholder)
		w.Header().Set("Server", "upstream/1.0")
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		if r.URL.Path == "/ph/json" {
			w.Header().Set("Content-Type", "application/json")
		}
		body := page
		if r.URL.Path == "/ph/utf16" {
			body = "\xff\xfe" + utf16Bytes(page, false)
		}
		w.Header().Set("Content-Length", fmt.Sprint(len(body)))
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(up.Close)
	t.Setenv("TEST_CSP_PLACEHOLDER", testPlaceholder)
	port := testenv.FreePort(t)
	testcaddy.StartCaddy(t, fmt.Sprintf(`{
	hardening {
		features {
			security_headers off
		}
	}
}
http://127.0.0.1:%d {
	bind 127.0.0.1
	handle /ph/* {
		security_headers {
			inject_nonce placeholder {env.TEST_CSP_PLACEHOLDER}
		}
		reverse_proxy %s
	}
	security_headers
	respond "ok"
}
`, port, up.Listener.Addr()))
	resp, _ := getBody(t, fmt.Sprintf("http://127.0.0.1:%d/", port))
	if resp.Header.Get("Content-Security-Policy") != "" || resp.Header.Get("Server") != "Caddy" {
		t.Fatal("a disabled security_headers changed the response")
	}
	dashes := strings.Repeat("-", len(testPlaceholder))
	redacted := strings.ReplaceAll(page, testPlaceholder, dashes)
	for _, path := range []string{"/ph/page", "/ph/json"} {
		resp, body := getBody(t, fmt.Sprintf("http://127.0.0.1:%d%s", port, path))
		if body != redacted || resp.ContentLength != int64(len(page)) {
			t.Errorf("%s: %d bytes %q, want %q", path, resp.ContentLength, body, redacted)
		}
		if got := resp.Header.Get("Link"); got != "</a.js>; rel=preload; as=script; nonce="+dashes {
			t.Errorf("%s: Link %q", path, got)
		}
		for _, k := range []string{"Content-Security-Policy", "Content-Security-Policy-Report-Only", "X-Frame-Options", "Cache-Control"} {
			if v := resp.Header.Get(k); v != "" {
				t.Errorf("%s: disabled, yet %s = %q", path, k, v)
			}
		}
		if resp.Header.Get("Server") != "upstream/1.0" {
			t.Errorf("%s: disabled, yet remove ran (Server %q)", path, resp.Header.Get("Server"))
		}
	}
	// A page the browser reads as UTF-16 fails closed, as when enabled.
	if resp, body := getBody(t, fmt.Sprintf("http://127.0.0.1:%d/ph/utf16", port)); resp.StatusCode != http.StatusBadGateway || strings.Contains(body, "P\x00H\x00") {
		t.Errorf("UTF-16 page: %d %q, want 502", resp.StatusCode, body)
	}
}

func TestSecurityHeadersRefusedAtLoad(t *testing.T) {
	c := testcaddy.StartCaddy(t, "")
	t.Setenv("TEST_SHORT_PLACEHOLDER", "short")
	err := c.Load(`http://127.0.0.1:9 {
	security_headers {
		inject_nonce placeholder {env.TEST_SHORT_PLACEHOLDER}
	}
}
`)
	if err == nil || !strings.Contains(err.Error(), "inject_nonce placeholder is 5 characters") || strings.Contains(err.Error(), "short") {
		t.Fatalf("a short placeholder from the environment: %v", err)
	}
	err = c.Load(`http://127.0.0.1:9 {
	security_headers {
		inject_nonce placeholder {env.TEST_UNSET_PLACEHOLDER_VARIABLE}
	}
}
`)
	if err == nil || !strings.Contains(err.Error(), "inject_nonce placeholder {env.TEST_UNSET_PLACEHOLDER_VARIABLE} is empty") {
		t.Fatalf("an unset variable must be named: %v", err)
	}
	err = c.LoadJSON(`{"apps": {"http": {"servers": {"s": {"listen": [":0"], "routes": [{"handle": [
		{"handler": "security_headers", "hsts": {"max_age": 600, "preload": true, "include_subdomains": true}}]}]}}}}}`)
	if err == nil || !strings.Contains(err.Error(), "preload requires max-age of at least 31536000") {
		t.Fatalf("HSTS preload with a short max-age in JSON: %v", err)
	}
	// A placeholder that is not printable ASCII has other bytes in a page of another charset.
	t.Setenv("TEST_SPACED_PLACEHOLDER", "PH 3f9c2a7b1e6d4c08 secret")
	err = c.Load(`http://127.0.0.1:9 {
	security_headers {
		inject_nonce placeholder {env.TEST_SPACED_PLACEHOLDER}
	}
}
`)
	if err == nil || !strings.Contains(err.Error(), "inject_nonce placeholder has a space, control or non-ASCII byte at position 3") || strings.Contains(err.Error(), "secret") {
		t.Fatalf("a placeholder with a space from the environment: %v", err)
	}
	// A report destination given twice (the option and the csp directive): one would be dropped.
	err = c.LoadJSON(`{"apps": {"http": {"servers": {"s": {"listen": [":0"], "routes": [{"handle": [
		{"handler": "security_headers", "report_uri": ["/y"], "csp": [{"name": "report-uri", "values": ["/x"]}]}]}]}}}}}`)
	if err == nil || !strings.Contains(err.Error(), "report_uri and the csp block's report-uri /x both set the policy's report-uri") {
		t.Fatalf("report_uri beside csp report-uri in JSON: %v", err)
	}
	// A directive set twice, or set and removed: one of them would be dropped without a word.
	err = c.LoadJSON(`{"apps": {"http": {"servers": {"s": {"listen": [":0"], "routes": [{"handle": [
		{"handler": "security_headers", "csp": [{"name": "script-src", "values": ["'self'"]}, {"name": "script-src", "values": ["'none'"]}]}]}]}}}}}`)
	if err == nil || !strings.Contains(err.Error(), "CSP directive script-src given twice") {
		t.Fatalf("script-src twice in JSON: %v", err)
	}
	err = c.LoadJSON(`{"apps": {"http": {"servers": {"s": {"listen": [":0"], "routes": [{"handle": [
		{"handler": "security_headers", "csp": [{"name": "script-src", "values": ["'self'"]}], "csp_remove": ["script-src"]}]}]}}}}}`)
	if err == nil || !strings.Contains(err.Error(), "CSP directive script-src is both set and removed (-script-src)") {
		t.Fatalf("script-src set and removed in JSON: %v", err)
	}
	err = c.LoadJSON(`{"apps": {"http": {"servers": {"s": {"listen": [":0"], "routes": [{"handle": [
		{"handler": "security_headers", "hsts": {"off": true, "max_age": 600}}]}]}}}}}`)
	if err == nil || !strings.Contains(err.Error(), "hsts: off sends no header, so max_age, include_subdomains and preload say nothing beside it") {
		t.Fatalf("hsts off with a max_age in JSON: %v", err)
	}
	err = c.LoadJSON(`{"apps": {"http": {"servers": {"s": {"listen": [":0"], "routes": [{"handle": [
		{"handler": "security_headers", "remove": ["X Powered By"]}]}]}}}}}`)
	if err == nil || !strings.Contains(err.Error(), `remove "X Powered By": expected a header name`) {
		t.Fatalf("remove of a name that is no header's in JSON: %v", err)
	}
}

// remove of a header this handler decides is refused in every environment, by the adapter
// and at load alike: a policy name is refused whichever one this environment sends, so a
// configuration that loads in production loads in development.
func TestRemoveRefusedInEveryEnvironment(t *testing.T) {
	c := testcaddy.StartCaddy(t, "")
	for _, env := range []string{"production", "development"} {
		for _, name := range []string{"Content-Security-Policy", "Content-Security-Policy-Report-Only", "Strict-Transport-Security"} {
			_, err := testcaddy.Adapt(fmt.Sprintf("{\n\thardening {\n\t\tenvironment %s\n\t}\n}\nhttp://127.0.0.1:9 {\n\tsecurity_headers {\n\t\tremove %s\n\t}\n}\n", env, name))
			want := "remove " + name + ": this handler decides that header itself"
			if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "Caddyfile:8") {
				t.Errorf("%s: adapt remove %s: %v", env, name, err)
			}
			err = c.LoadJSON(fmt.Sprintf(`{"apps": {"hardening": {"environment": %q}, "http": {"servers": {"s": {"listen": ["127.0.0.1:0"], "routes": [{"handle": [
				{"handler": "security_headers", "remove": [%q]}]}]}}}}}`, env, name))
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("%s: load remove %s: %v", env, name, err)
			}
		}
		if err := c.LoadJSON(fmt.Sprintf(`{"apps": {"hardening": {"environment": %q}, "http": {"servers": {"s": {"listen": ["127.0.0.1:0"], "routes": [{"handle": [
			{"handler": "security_headers", "remove": ["X-Powered-By", "X-Debug"]}]}]}}}}}`, env)); err != nil {
			t.Errorf("%s: remove of headers this handler does not set: %v", env, err)
		}
	}
}

func TestTagsModeBehindAProxyWarnsAtStart(t *testing.T) {
	port := testenv.FreePort(t)
	c := testcaddy.StartCaddy(t, fmt.Sprintf(`http://127.0.0.1:%d {
	bind 127.0.0.1
	security_headers {
		inject_nonce tags
	}
	reverse_proxy 127.0.0.1:9
}
`, port))
	found := testenv.Filter(c.Logs(), func(e testenv.LogEntry) bool { return e.Str("code") == "csp.tags_behind_proxy" })
	if len(found) != 1 || found[0].Level() != "warn" {
		t.Fatalf("want one WARN csp.tags_behind_proxy at start, got %v", found)
	}
	// file_server alone is what tags mode is for: no warning.
	if err := c.Load(fmt.Sprintf("http://127.0.0.1:%d {\n\tbind 127.0.0.1\n\tsecurity_headers {\n\t\tinject_nonce tags\n\t}\n\tfile_server\n}\n", port)); err != nil {
		t.Fatal(err)
	}
	if n := len(testenv.Filter(c.Logs(), func(e testenv.LogEntry) bool { return e.Str("code") == "csp.tags_behind_proxy" })); n != 1 {
		t.Fatalf("file_server with tags mode warned too (%d warnings)", n)
	}
}

// The application writes the placeholder through its templating engine, which escapes
// punctuation: Go's html/template writes + as &#43; (\u002b in a script) and / as \/ in a
// script, every HTML escaper & < > " ' as entities. Such a placeholder would not be found in
// the page (its tags lose their nonce, the escaped secret reaches the client), so it is
// refused when Caddy loads the config; one of letters, digits and - _ . ~ is written as it is
// in every context, and each occurrence becomes the response's nonce.
func TestPlaceholderAsATemplatingEngineWritesIt(t *testing.T) {
	page := template.Must(template.New("page").Parse(
		`<!doctype html><script nonce="{{.}}">window.cspNonce = "{{.}}";</script><p data-n="{{.}}">{{.}}</p>`))
	render := func(ph string) string {
		var b strings.Builder
		if err := page.Execute(&b, ph); err != nil {
			t.Fatal(err)
		}
		return b.String()
	}
	const good = "PH-3f9c_2a7b.1e6d~4c08"
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = io.WriteString(w, render(good))
	}))
	t.Cleanup(up.Close)
	port := testenv.FreePort(t)
	site := fmt.Sprintf("http://127.0.0.1:%d {\n\tbind 127.0.0.1\n\tsecurity_headers {\n\t\tinject_nonce placeholder {env.TEST_CSP_TEMPLATED}\n\t}\n\treverse_proxy %s\n}\n", port, up.Listener.Addr())
	t.Setenv("TEST_CSP_TEMPLATED", good)
	c := testcaddy.StartCaddy(t, site)
	resp, body := getBody(t, fmt.Sprintf("http://127.0.0.1:%d/", port))
	nonce := cspNonce(t, resp.Header)
	if strings.Contains(body, "PH-") || strings.Count(body, nonce) != 4 {
		t.Fatalf("want the placeholder's 4 occurrences turned into the nonce %s: %s", nonce, body)
	}
	for _, ph := range []string{"k+/=K7cQ9LmZp1Xw2Vb4Rn==", "PH&3f9c2a7b1e6d4c08", `PH"3f9c2a7b1e6d4c08`, "PH<3f9c2a7b1e6d4c08", "PH'3f9c2a7b1e6d4c08", "PH/3f9c2a7b1e6d4c08"} {
		if n := strings.Count(render(ph), ph); n == 4 {
			t.Fatalf("html/template writes %q as it is: no reason to refuse it", ph)
		}
		t.Setenv("TEST_CSP_TEMPLATED", ph)
		if err := c.Load(site); err == nil || !strings.Contains(err.Error(), "punctuation") {
			t.Errorf("placeholder %q (html/template writes it otherwise): load error %v, want a refusal", ph, err)
		}
	}
}

func TestLiteralPlaceholderIsAFinding(t *testing.T) {
	port := testenv.FreePort(t)
	c := testcaddy.StartCaddy(t, fmt.Sprintf(`http://127.0.0.1:%d {
	bind 127.0.0.1
	security_headers {
		inject_nonce placeholder %s
	}
	respond "ok"
}
`, port, testPlaceholder))
	found := testenv.Filter(c.Logs(), func(e testenv.LogEntry) bool { return e.Str("code") == "csp.literal_placeholder" })
	if len(found) != 1 {
		t.Fatalf("want one csp.literal_placeholder finding, got %v", found)
	}
	for _, e := range c.Logs() {
		for _, v := range e {
			if s, ok := v.(string); ok && strings.Contains(s, testPlaceholder) {
				t.Fatalf("the placeholder appears in the log: %v", e)
			}
		}
	}
}

// A misspelt feature passes the syntax check (browsers skip the member with a console
// message only): it is a startup warning naming it, not a refusal (browsers add features).
func TestUnknownPermissionsFeatureIsAWarning(t *testing.T) {
	port := testenv.FreePort(t)
	c := testcaddy.StartCaddy(t, fmt.Sprintf(`http://127.0.0.1:%d {
	bind 127.0.0.1
	security_headers {
		permissions_policy camra=(), geolocation=()
	}
	respond "ok"
}
`, port))
	found := testenv.Filter(c.Logs(), func(e testenv.LogEntry) bool { return e.Str("code") == "csp.permissions_unknown_feature" })
	if len(found) != 1 || !strings.Contains(found[0].Str("msg"), "camra") || strings.Contains(found[0].Str("msg"), "geolocation") {
		t.Fatalf("want one csp.permissions_unknown_feature finding naming camra alone, got %v", found)
	}
	if resp, _ := getBody(t, fmt.Sprintf("http://127.0.0.1:%d/", port)); resp.Header.Get("Permissions-Policy") != "camra=(), geolocation=()" {
		t.Fatalf("Permissions-Policy = %q: the policy is sent as written", resp.Header.Get("Permissions-Policy"))
	}
}

// Browsers ignore sandbox in a report-only policy, and report nothing about it.
func TestSandboxInReportOnlyIsAWarning(t *testing.T) {
	port := testenv.FreePort(t)
	c := testcaddy.StartCaddy(t, fmt.Sprintf(`http://127.0.0.1:%d {
	bind 127.0.0.1
	security_headers {
		report_only
		csp {
			sandbox allow-scripts
		}
	}
	respond "ok"
}
`, port))
	if found := testenv.Filter(c.Logs(), func(e testenv.LogEntry) bool { return e.Str("code") == "csp.sandbox_report_only" }); len(found) != 1 {
		t.Fatalf("want one csp.sandbox_report_only finding, got %v", found)
	}
}

func TestInjectWithEncodeBeforeCompressesTheRewrittenPage(t *testing.T) {
	root := t.TempDir()
	page := `<!doctype html><script src="/app.js"></script>` + strings.Repeat("<p>compressible</p>", 500)
	if err := os.WriteFile(filepath.Join(root, "index.html"), []byte(page), 0o644); err != nil {
		t.Fatal(err)
	}
	port := testenv.FreePort(t)
	testcaddy.StartCaddy(t, fmt.Sprintf(`{
	order encode before security_headers
}
http://127.0.0.1:%d {
	bind 127.0.0.1
	root * %s
	encode gzip
	security_headers {
		inject_nonce tags
	}
	file_server
}
`, port, root))
	req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/", port), nil)
	req.Header.Set("Accept-Encoding", "gzip")
	resp, body := fetch(t, req)
	if resp.Header.Get("Content-Encoding") != "gzip" {
		t.Fatalf("Content-Encoding %q: encode before security_headers should compress", resp.Header.Get("Content-Encoding"))
	}
	zr, err := gzip.NewReader(strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	plain, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Replace(page, `src="/app.js"`, `src="/app.js" nonce="`+cspNonce(t, resp.Header)+`"`, 1)
	if string(plain) != want {
		t.Fatalf("decompressed page starts %.120q", plain)
	}
}

// websocketEchoUpstream accepts a WebSocket upgrade (101 over HTTP/1.1) and echoes one line.
func websocketEchoUpstream(t *testing.T) *httptest.Server {
	t.Helper()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "websocket" {
			http.Error(w, "want an upgrade", http.StatusBadRequest)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		_, _ = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		_ = brw.Flush()
		line, _ := brw.ReadString('\n') // echo one line
		_, _ = brw.WriteString("echo " + line)
		_ = brw.Flush()
	}))
	t.Cleanup(up.Close)
	return up
}

func TestSecurityHeadersPassWebsocketUpgrades(t *testing.T) {
	up := websocketEchoUpstream(t)
	port := placeholderProxy(t, up.Listener.Addr().String())
	conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	_, _ = io.WriteString(conn, "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade through security_headers: %v %v", resp, err)
	}
	_, _ = io.WriteString(conn, "hello\n")
	if line, err := br.ReadString('\n'); err != nil || line != "echo hello\n" {
		t.Fatalf("after the upgrade: %q %v", line, err)
	}
}

func TestSecurityHeadersReportingAndOverrides(t *testing.T) {
	port := testenv.FreePort(t)
	testcaddy.StartCaddy(t, fmt.Sprintf(`{
	hardening {
		features {
			csp_report off
		}
	}
}
http://127.0.0.1:%d {
	bind 127.0.0.1
	security_headers none {
		csp {
			default-src 'self'
			script-src 'self' 'nonce'
			frame-ancestors 'self' https://partner.example
		}
		report_only
		report_uri /csp-report
		report_to https://reports.example/csp
		referrer_policy off
		coep require-corp
	}
	csp_report /csp-report
	respond "ok"
}
`, port))
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	resp, _ := getBody(t, base+"/")
	ro := resp.Header.Get("Content-Security-Policy-Report-Only")
	nonce := nonceInCSP.FindStringSubmatch(ro)
	if nonce == nil || ro != "default-src 'self'; script-src 'self' 'nonce-"+nonce[1]+"'; frame-ancestors 'self' https://partner.example; report-uri /csp-report; report-to csp-endpoint" {
		t.Fatalf("report-only policy %q", ro)
	}
	for k, v := range map[string]string{
		"Reporting-Endpoints":          `csp-endpoint="https://reports.example/csp"`,
		"Content-Security-Policy":      "",
		"X-Frame-Options":              "", // X-Frame-Options cannot say "self and partner.example"
		"Referrer-Policy":              "",
		"Cross-Origin-Embedder-Policy": "require-corp",
	} {
		if got := resp.Header.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	// With the csp_report feature off, reports fall through to the next handler.
	resp, body := postReport(t, base+"/csp-report", "application/csp-report", `{"csp-report": {}}`)
	if resp.StatusCode != http.StatusOK || body != "ok" {
		t.Fatalf("csp_report off: %d %q, want the next handler's answer", resp.StatusCode, body)
	}
}

func TestInjectTypesAnUntypedBodyBeforeDeciding(t *testing.T) {
	page := `<!DOCTYPE html><html><script nonce="` + testPlaceholder + `">ok()</script></html>`
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header()["Content-Type"] = nil // no Content-Type, and no sniffing by the upstream
		if r.URL.Path == "/empty" {
			w.WriteHeader(http.StatusAccepted)
			return
		}
		_, _ = io.WriteString(w, page)
	}))
	t.Cleanup(up.Close)
	port := placeholderProxy(t, up.Listener.Addr().String())
	resp, body := getBody(t, fmt.Sprintf("http://127.0.0.1:%d/", port))
	if strings.Contains(body, testPlaceholder) || !strings.Contains(body, `nonce="`+cspNonce(t, resp.Header)+`"`) {
		t.Fatalf("an HTML body without Content-Type was not rewritten (the placeholder would leak): %q", body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
		t.Errorf("Content-Type %q, want what net/http sniffs", ct)
	}
	if resp, body := getBody(t, fmt.Sprintf("http://127.0.0.1:%d/empty", port)); resp.StatusCode != http.StatusAccepted || body != "" {
		t.Fatalf("an untyped empty response: %d %q", resp.StatusCode, body)
	}
}

func TestTemplatesUseTheNonce(t *testing.T) {
	port := placeholderCaddy(t, `	handle /xhtml {
		header Content-Type "application/xhtml+xml"
		respond <<XHTML
			<script nonce="{http.vars.csp_nonce}">a()</script><script nonce="0000">b()</script>
			XHTML 200
	}
	handle {
		templates
		header Content-Type "text/html; charset=utf-8"
		respond <<HTML
			<script nonce="{{placeholder "http.vars.csp_nonce"}}">a()</script><script nonce="0000">b()</script>
			HTML 200
	}
`)
	for _, path := range []string{"/", "/xhtml"} {
		resp, body := getBody(t, fmt.Sprintf("http://127.0.0.1:%d%s", port, path))
		nonce := cspNonce(t, resp.Header)
		if want := `<script nonce="` + nonce + `">a()</script><script >b()</script>`; strings.TrimSpace(body) != want {
			t.Errorf("%s:\n got  %q\n want %q", path, body, want)
		}
	}
}

// In placeholder mode the secret never leaves in a header either: in a 103 Early Hints, the
// final response (a preload Link gets the response's nonce, as a tag would) and the trailers.
func TestPlaceholderNeverLeavesInHeaders(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Link", "</app.js>; rel=preload; as=script; nonce="+testPlaceholder)
		w.WriteHeader(http.StatusEarlyHints)
		h.Set("Content-Type", "text/html")
		h.Set("X-Debug", "marker="+testPlaceholder)
		h.Set("Trailer", "X-Render")
		w.WriteHeader(http.StatusOK)
		if r.Method != http.MethodHead {
			_, _ = io.WriteString(w, `<script nonce="`+testPlaceholder+`">a()</script>`)
		}
		h.Set("X-Render", "done "+testPlaceholder)
	}))
	t.Cleanup(up.Close)
	port := placeholderProxy(t, up.Listener.Addr().String())
	for _, method := range []string{http.MethodGet, http.MethodHead} {
		var early []http.Header
		trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
			early = append(early, http.Header(h).Clone())
			return nil
		}}
		req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(t.Context(), trace), method, fmt.Sprintf("http://127.0.0.1:%d/", port), nil)
		resp, body := fetch(t, req)
		nonce := cspNonce(t, resp.Header)
		if len(early) != 1 {
			t.Fatalf("%s: %d informational responses, want the upstream's 103", method, len(early))
		}
		wantLink := "</app.js>; rel=preload; as=script; nonce=" + nonce
		for where, h := range map[string]http.Header{"103": early[0], "response": resp.Header, "trailers": resp.Trailer} {
			for k, vs := range h {
				for _, v := range vs {
					if strings.Contains(v, testPlaceholder) {
						t.Errorf("%s %s: %s: %q carries the placeholder", method, where, k, v)
					}
				}
			}
		}
		if got := early[0].Get("Link"); got != wantLink {
			t.Errorf("%s: 103 Link %q, want %q", method, got, wantLink)
		}
		if got := resp.Header.Get("Link"); got != wantLink {
			t.Errorf("%s: Link %q, want %q", method, got, wantLink)
		}
		if got := resp.Header.Get("X-Debug"); got != "marker="+nonce {
			t.Errorf("%s: X-Debug %q", method, got)
		}
		if method == http.MethodGet {
			if body != `<script nonce="`+nonce+`">a()</script>` {
				t.Errorf("body %q", body)
			}
			if got := resp.Trailer.Get("X-Render"); got != "done "+nonce {
				t.Errorf("trailer X-Render %q, want %q", got, "done "+nonce)
			}
		}
	}
}

// In placeholder mode every uncompressed body that is not HTML has the placeholder overwritten
// (same length), whatever its type says, except clearly binary types, which would be corrupted.
func TestPlaceholderRedactedInEveryBodyButBinary(t *testing.T) {
	body := `<svg><script nonce="` + testPlaceholder + `">x()</script></svg>`
	redacted := strings.ReplaceAll(body, testPlaceholder, strings.Repeat("-", len(testPlaceholder)))
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header()["Content-Type"] = []string{r.URL.Query().Get("type")}
		w.Header().Set("Content-Length", fmt.Sprint(len(body)))
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(up.Close)
	port := placeholderProxy(t, up.Listener.Addr().String())
	for _, c := range []struct {
		typ    string
		redact bool
	}{
		{"image/svg+xml", true},
		{"application/x-javascript", true},
		{"application/vnd.api+json; charset=utf-8", true},
		{"application/x-ndjson", true},
		{"text/event-stream", true},
		{"multipart/mixed; boundary=x", true},
		{"", true}, // present but empty: the client guesses
		{"image/png", false},
		{"audio/ogg", false},
		{"video/mp4", false},
		{"font/woff2", false},
		{"application/octet-stream", false},
		{"application/zip", false},
		{"application/gzip", false},
		{"application/x-gzip", false},
		{"application/pdf", false},
		{"application/wasm", false},
	} {
		resp, got := getBody(t, fmt.Sprintf("http://127.0.0.1:%d/?type=%s", port, neturl.QueryEscape(c.typ)))
		want := body
		if c.redact {
			want = redacted
		}
		if got != want || resp.ContentLength != int64(len(body)) {
			t.Errorf("%q: %d bytes %q; want %q (redacted: %v)", c.typ, resp.ContentLength, got, want, c.redact)
		}
	}
}

// Strict-Transport-Security comes from us or from nobody: where we send none (plain HTTP,
// hsts off) an upstream's is removed, unless keep_upstream lists it, and even then it never
// goes out over plain HTTP, as the "never sent on plain-HTTP responses" says.
func TestUpstreamHSTSOnlyWhereKept(t *testing.T) {
	up := hstsUpstream(t, "max-age=1")
	httpsPort, httpPort := testenv.FreePort(t), testenv.FreePort(t)
	testcaddy.StartCaddy(t, fmt.Sprintf(`{
%s}
localhost:%d, http://localhost:%d {
	bind 127.0.0.1
	handle /off {
		security_headers {
			hsts off
		}
		reverse_proxy %[4]s
	}
	handle /off-kept {
		security_headers {
			hsts off
			keep_upstream Strict-Transport-Security
		}
		reverse_proxy %[4]s
	}
	handle /kept {
		security_headers {
			keep_upstream Strict-Transport-Security
		}
		reverse_proxy %[4]s
	}
	handle {
		security_headers
		reverse_proxy %[4]s
	}
}
`, localTLSGlobals(t, httpPort, httpsPort), httpsPort, httpPort, up.Listener.Addr()))
	waitTLS(t, fmt.Sprintf("127.0.0.1:%d", httpsPort))
	https, http := fmt.Sprintf("https://localhost:%d", httpsPort), fmt.Sprintf("http://localhost:%d", httpPort)
	for url, want := range map[string]string{
		https + "/":         "max-age=63072000; includeSubDomains",
		http + "/":          "",
		https + "/off":      "",
		http + "/off":       "",
		https + "/off-kept": "max-age=1",
		http + "/off-kept":  "", // kept, yet never over plain HTTP (RFC 6797 7.2)
		https + "/kept":     "max-age=1",
		http + "/kept":      "",
	} {
		resp, _ := getBody(t, url)
		if got := strings.Join(resp.Header.Values("Strict-Transport-Security"), ", "); got != want {
			t.Errorf("%s: Strict-Transport-Security %q, want %q", url, got, want)
		}
	}
}

// An error response (the route returned an error: upstream down, the error directive) is
// written by Caddy past this handler's writer; the header rules apply to it as to the others:
// no HSTS in development (over HTTPS too), remove's headers deleted whoever set them.
func TestHeaderRulesOnErrors(t *testing.T) {
	httpsPort, httpPort, dead := testenv.FreePort(t), testenv.FreePort(t), testenv.FreePort(t)
	testcaddy.StartCaddy(t, fmt.Sprintf(`{
%s	hardening {
		environment development
	}
}
localhost:%d {
	bind 127.0.0.1
	tls internal
	security_headers
	header Strict-Transport-Security "max-age=31536000; includeSubDomains"
	header Server leaky/1.0
	header X-Powered-By PHP/5
	handle /ok {
		respond "ok"
	}
	handle /boom {
		error "boom" 500
	}
	handle /kept {
		security_headers {
			keep_upstream Strict-Transport-Security
		}
		respond "kept, yet development"
	}
	handle {
		reverse_proxy 127.0.0.1:%d
	}
}
`, localTLSGlobals(t, httpPort, httpsPort), httpsPort, dead))
	waitTLS(t, fmt.Sprintf("127.0.0.1:%d", httpsPort))
	for path, status := range map[string]int{"/ok": 200, "/boom": 500, "/dead": 502, "/kept": 200} {
		resp, _ := getBody(t, fmt.Sprintf("https://localhost:%d%s", httpsPort, path))
		if resp.StatusCode != status {
			t.Errorf("%s: status %d, want %d", path, resp.StatusCode, status)
		}
		for _, k := range []string{"Strict-Transport-Security", "Server", "X-Powered-By"} {
			if v := resp.Header.Get(k); v != "" {
				t.Errorf("%s (%d): %s = %q, want none", path, resp.StatusCode, k, v)
			}
		}
		if resp.Header.Get("Content-Security-Policy-Report-Only") == "" {
			t.Errorf("%s: no policy", path)
		}
	}
}

// A page rewritten with a nonce is always sent whole to a request for a page: a 304 would have
// the browser reuse the copy it holds, with an older response's nonce. Assets keep their 304s,
// and HEAD tells what GET would.
func TestInjectSendsPagesWhole(t *testing.T) {
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "index.html"), []byte(`<!doctype html><script src="/app.js"></script>`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "app.js"), []byte(`app()`), 0o644); err != nil {
		t.Fatal(err)
	}
	base := tagsFileServer(t, root)
	get := func(method, path string, hdr map[string]string) (*http.Response, string) {
		req, _ := http.NewRequest(method, base+path, nil)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		return fetch(t, req)
	}
	navigation := "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
	first, _ := get(http.MethodGet, "/", map[string]string{"Accept": navigation})
	etag, lastMod := first.Header.Get("Etag"), first.Header.Get("Last-Modified")
	if !strings.HasPrefix(etag, "W/") || lastMod == "" {
		t.Fatalf("ETag %q, Last-Modified %q: want a weak ETag and a date", etag, lastMod)
	}
	if v := first.Header.Get("Accept-Ranges"); v != "" {
		t.Errorf("GET of a rewritten page: Accept-Ranges %q, want none (Range is removed from requests)", v)
	}
	for name, hdr := range map[string]map[string]string{
		"If-None-Match, Accept text/html":            {"If-None-Match": etag, "Accept": navigation},
		"If-None-Match, Accept application/xhtml":    {"If-None-Match": etag, "Accept": "application/xhtml+xml"},
		"If-None-Match, Sec-Fetch-Dest iframe":       {"If-None-Match": etag, "Sec-Fetch-Dest": "iframe"},
		"If-Modified-Since, Sec-Fetch-Dest document": {"If-Modified-Since": lastMod, "Sec-Fetch-Dest": "document"},
		"If-Modified-Since, Accept text/*":           {"If-Modified-Since": lastMod, "Accept": "text/*"},
	} {
		resp, body := get(http.MethodGet, "/", hdr)
		if resp.StatusCode != http.StatusOK || !strings.Contains(body, `nonce="`+cspNonce(t, resp.Header)+`"`) {
			t.Errorf("%s: %d %q; want the page whole with this response's nonce", name, resp.StatusCode, body)
		}
	}
	// An asset request (Accept */*, Sec-Fetch-Dest script) keeps its 304.
	js, _ := get(http.MethodGet, "/app.js", nil)
	if resp, _ := get(http.MethodGet, "/app.js", map[string]string{"If-None-Match": js.Header.Get("Etag"), "Accept": "*/*", "Sec-Fetch-Dest": "script"}); resp.StatusCode != http.StatusNotModified {
		t.Errorf("asset revalidation: %d, want 304", resp.StatusCode)
	}
	// A request that refuses HTML (q=0) is not a page request either.
	if resp, _ := get(http.MethodGet, "/app.js", map[string]string{"If-None-Match": js.Header.Get("Etag"), "Accept": "text/html;q=0, */*"}); resp.StatusCode != http.StatusNotModified {
		t.Errorf("Accept text/html;q=0: %d, want 304", resp.StatusCode)
	}
	head, _ := get(http.MethodHead, "/", map[string]string{"Accept": navigation})
	for k, want := range map[string]string{"Content-Length": first.Header.Get("Content-Length"), "Accept-Ranges": "", "Etag": etag, "Cache-Control": "no-store"} {
		if got := head.Header.Get(k); got != want {
			t.Errorf("HEAD of a rewritten page: %s %q, want %q (as GET)", k, got, want)
		}
	}
}

func TestAsksForPage(t *testing.T) {
	for _, c := range []struct {
		accept, dest string
		page         bool
	}{
		{"text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", "", true},
		{"application/xhtml+xml", "", true},
		{"TEXT/HTML; charset=utf-8", "", true},
		{"text/*", "", true},
		{"text/html;q=0.001", "", true},
		{"text/html;q=0", "", false},
		{"text/html; q=0.0, */*", "", false},
		{"*/*", "", false},
		{"", "", false},
		{"text/css,*/*;q=0.1", "style", false},
		{"image/avif,image/webp,*/*;q=0.8", "image", false},
		{"*/*", "document", true},
		{"", "iframe", true},
		{"", "frame", true},
		{"", "script", false},
	} {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		if c.accept != "" {
			r.Header.Set("Accept", c.accept)
		}
		if c.dest != "" {
			r.Header.Set("Sec-Fetch-Dest", c.dest)
		}
		if got := asksForPage(r); got != c.page {
			t.Errorf("Accept %q, Sec-Fetch-Dest %q: asksForPage %v, want %v", c.accept, c.dest, got, c.page)
		}
	}
}

// The precedence the README states: a deferred `header` replaces ours and the upstream's,
// remove is applied last (over a `header` directive too), and the policy header name this
// handler does not send is the application's, so it passes.
func TestSecurityHeadersPrecedenceAsDocumented(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'none'")
		h.Set("Content-Security-Policy-Report-Only", "script-src 'none'")
		h.Set("Permissions-Policy", "camera=*")
		_, _ = io.WriteString(w, "ok")
	}))
	t.Cleanup(up.Close)
	port := testenv.FreePort(t)
	testcaddy.StartCaddy(t, fmt.Sprintf(`http://127.0.0.1:%d {
	bind 127.0.0.1
	handle /report-only {
		security_headers {
			report_only
		}
		reverse_proxy %[2]s
	}
	handle {
		security_headers
		header Server "my-edge"
		header Permissions-Policy "camera=(self)" {
			defer
		}
		reverse_proxy %[2]s
	}
}
`, port, up.Listener.Addr()))
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	resp, _ := getBody(t, base+"/report-only")
	if got := resp.Header.Values("Content-Security-Policy"); len(got) != 1 || got[0] != "default-src 'none'" {
		t.Errorf("report_only: the upstream's enforcing policy %q, want it to pass", got)
	}
	if got := resp.Header.Values("Content-Security-Policy-Report-Only"); len(got) != 1 || !strings.Contains(got[0], "'nonce-") {
		t.Errorf("report_only: Content-Security-Policy-Report-Only %q, want ours only", got)
	}
	resp, _ = getBody(t, base+"/")
	if got := resp.Header.Values("Content-Security-Policy-Report-Only"); len(got) != 1 || got[0] != "script-src 'none'" {
		t.Errorf("enforcing: the upstream's report-only policy %q, want it to pass", got)
	}
	if got := resp.Header.Values("Content-Security-Policy"); len(got) != 1 || !strings.Contains(got[0], "'nonce-") {
		t.Errorf("enforcing: Content-Security-Policy %q, want ours only", got)
	}
	if got := resp.Header.Values("Permissions-Policy"); len(got) != 1 || got[0] != "camera=(self)" {
		t.Errorf("a deferred header directive: Permissions-Policy %q, want its value only", got)
	}
	if got := resp.Header.Values("Server"); len(got) != 0 {
		t.Errorf("remove is applied last: Server %q, want none", got)
	}
}

// placeholderProxy starts a Caddy proxying to upstream with security_headers in placeholder
// mode (testPlaceholder), and returns its port.
func placeholderProxy(t *testing.T, upstream string) int {
	return placeholderCaddy(t, "\treverse_proxy "+upstream+"\n")
}

// placeholderCaddy starts a Caddy whose site runs security_headers in placeholder mode
// (testPlaceholder) and then site, the rest of the site block, and returns its port.
func placeholderCaddy(t *testing.T, site string) int {
	t.Helper()
	_, port := placeholderCaddyOf(t, site)
	return port
}

// placeholderCaddyOf is placeholderCaddy, returning the Caddy too (for its log).
func placeholderCaddyOf(t *testing.T, site string) (*testcaddy.Caddy, int) {
	t.Helper()
	t.Setenv("TEST_CSP_PLACEHOLDER", testPlaceholder)
	port := testenv.FreePort(t)
	c := testcaddy.StartCaddy(t, fmt.Sprintf("http://127.0.0.1:%d {\n\tbind 127.0.0.1\n\tsecurity_headers {\n\t\tinject_nonce placeholder {env.TEST_CSP_PLACEHOLDER}\n\t}\n%s}\n", port, site))
	return c, port
}

// localTLSGlobals are the global options of a test Caddy serving HTTPS from its own local CA
// on the given ports (storage in a temporary folder), to go inside the options block.
func localTLSGlobals(t *testing.T, httpPort, httpsPort int) string {
	return fmt.Sprintf("\thttp_port %d\n\thttps_port %d\n\tlocal_certs\n\tskip_install_trust\n\tstorage file_system %s\n",
		httpPort, httpsPort, t.TempDir())
}

// tagsFileServer starts a Caddy serving root with file_server and security_headers in tags
// mode, and returns its base URL.
func tagsFileServer(t *testing.T, root string) string {
	t.Helper()
	port := testenv.FreePort(t)
	testcaddy.StartCaddy(t, fmt.Sprintf(`http://127.0.0.1:%d {
	bind 127.0.0.1
	root * %s
	security_headers {
		inject_nonce tags
	}
	file_server
}
`, port, root))
	return fmt.Sprintf("http://127.0.0.1:%d", port)
}

// hstsUpstream is an upstream answering "ok" with its own Strict-Transport-Security.
func hstsUpstream(t *testing.T, hsts string) *httptest.Server {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Strict-Transport-Security", hsts)
		_, _ = io.WriteString(w, "ok")
	}))
	t.Cleanup(up.Close)
	return up
}

// handle_errors runs outside the route that holds security_headers: an error page served
// there with the placeholder is a finding at start, and repeating the directive inside
// handle_errors gives that page the response's nonce (and silences the finding).
func TestPlaceholderInHandleErrors(t *testing.T) {
	t.Setenv("TEST_CSP_PLACEHOLDER", testPlaceholder)
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "error.html"), []byte(`<script nonce="`+testPlaceholder+`">e()</script>`), 0o644); err != nil {
		t.Fatal(err)
	}
	port := testenv.FreePort(t)
	site := func(inErrors string) string {
		return fmt.Sprintf(`http://127.0.0.1:%d {
	bind 127.0.0.1
	security_headers {
		inject_nonce placeholder {env.TEST_CSP_PLACEHOLDER}
	}
	error "gone" 404
	handle_errors {
%s		root * %s
		rewrite * /error.html
		file_server
	}
}
`, port, inErrors, root)
	}
	c := testcaddy.StartCaddy(t, site(""))
	finding := func(e testenv.LogEntry) bool { return e.Str("code") == "csp.placeholder_in_errors" }
	if found := testenv.Filter(c.Logs(), finding); len(found) != 1 || found[0].Level() != "warn" {
		t.Fatalf("want one WARN csp.placeholder_in_errors at start, got %v", found)
	}
	if err := c.Load(site("\t\tsecurity_headers {\n\t\t\tinject_nonce placeholder {env.TEST_CSP_PLACEHOLDER}\n\t\t}\n")); err != nil {
		t.Fatal(err)
	}
	if n := len(testenv.Filter(c.Logs(), finding)); n != 1 {
		t.Fatalf("security_headers repeated in handle_errors: still warned (%d warnings)", n)
	}
	resp, body := getBody(t, fmt.Sprintf("http://127.0.0.1:%d/x", port))
	nonce := cspNonce(t, resp.Header)
	if resp.StatusCode != http.StatusNotFound || body != `<script nonce="`+nonce+`">e()</script>` || resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("error page: status %d, Cache-Control %q, body %q; want the response's nonce %s", resp.StatusCode, resp.Header.Get("Cache-Control"), body, nonce)
	}
}

// headerListUpstream answers body with the Content-Type and Content-Encoding values listed in
// the query (ct=..., ce=..., each repeatable: several header lines), and the status in
// status= (default 200), with a strong ETag and Accept-Ranges.
func headerListUpstream(t *testing.T, body string) *httptest.Server {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		h := w.Header()
		h["Content-Type"] = q["ct"]
		if ce := q["ce"]; ce != nil {
			h["Content-Encoding"] = ce
		}
		h.Set("ETag", `"v1"`)
		h.Set("Accept-Ranges", "bytes")
		h.Set("Content-Length", fmt.Sprint(len(body)))
		status := http.StatusOK
		if s := q.Get("status"); s != "" {
			fmt.Sscan(s, &status)
			h.Set("Content-Range", fmt.Sprintf("bytes 0-%d/%d", len(body)-1, 2*len(body)))
		}
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(up.Close)
	return up
}

func listQuery(name string, vals ...string) string {
	q := neturl.Values{name: vals}
	return q.Encode()
}

// Several Content-Type values are read as browsers read them (Fetch: the last value that
// parses wins) and sent as that one value; when none parses, the body is rewritten as HTML.
func TestSeveralContentTypesResolvedAsBrowsersDo(t *testing.T) {
	page := `<script nonce="` + testPlaceholder + `">a()</script><script nonce="stolen">b()</script>`
	port := placeholderProxy(t, headerListUpstream(t, page).Listener.Addr().String())
	for _, c := range []struct {
		types    []string
		wantType []string
	}{
		{[]string{"image/png", "text/html"}, []string{"text/html"}},
		{[]string{"text/plain", "text/html; charset=utf-8"}, []string{"text/html; charset=utf-8"}},
		{[]string{"image/png, text/html"}, []string{"text/html"}},
		{[]string{`text/html; x="a,b"`, "*/*"}, []string{`text/html; x="a,b"`}},
		{[]string{"nonsense, more nonsense", "/"}, []string{"nonsense, more nonsense", "/"}}, // none parses: as HTML
	} {
		resp, body := getBody(t, fmt.Sprintf("http://127.0.0.1:%d/?%s", port, listQuery("ct", c.types...)))
		nonce := cspNonce(t, resp.Header)
		if want := `<script nonce="` + nonce + `">a()</script><script >b()</script>`; body != want {
			t.Errorf("Content-Type %q: body %q, want %q", c.types, body, want)
		}
		if got := resp.Header.Values("Content-Type"); strings.Join(got, "|") != strings.Join(c.wantType, "|") {
			t.Errorf("Content-Type %q sent as %q, want %q", c.types, got, c.wantType)
		}
	}
}

// Any coding other than identity, in any Content-Encoding value, means encoded: HTML that
// cannot be rewritten fails closed in placeholder mode.
func TestSeveralContentEncodingsFailClosed(t *testing.T) {
	page := `<script nonce="` + testPlaceholder + `">a()</script>`
	port := placeholderProxy(t, headerListUpstream(t, page).Listener.Addr().String())
	for _, ce := range [][]string{{"identity", "br"}, {"identity, br"}, {"Identity", " ,zstd"}} {
		resp, body := getBody(t, fmt.Sprintf("http://127.0.0.1:%d/?ct=text/html&%s", port, listQuery("ce", ce...)))
		if resp.StatusCode != http.StatusBadGateway || strings.Contains(body, testPlaceholder) || resp.Header.Get("Content-Encoding") != "" {
			t.Errorf("Content-Encoding %q: status %d, encoding %q, body %q; want a 502 without the body", ce, resp.StatusCode, resp.Header.Values("Content-Encoding"), body)
		}
	}
	resp, body := getBody(t, fmt.Sprintf("http://127.0.0.1:%d/?ct=text/html&ce=identity", port))
	if want := `<script nonce="` + cspNonce(t, resp.Header) + `">a()</script>`; resp.StatusCode != 200 || body != want {
		t.Errorf("Content-Encoding identity: status %d, body %q; want the page rewritten", resp.StatusCode, body)
	}
}

// In placeholder mode a redacted body's bytes change: its ETag becomes weak and it offers no
// ranges; a part of it that nobody asked for (Range is removed from the request) may be cut
// inside the placeholder, so it fails closed like a partial page.
func TestRedactedBodiesAreWholeAndWeak(t *testing.T) {
	js := `let n = "` + testPlaceholder + `";`
	up := headerListUpstream(t, js)
	port := placeholderProxy(t, up.Listener.Addr().String())
	base := fmt.Sprintf("http://127.0.0.1:%d/", port)
	resp, body := getBody(t, base+"?ct=text/javascript")
	if want := strings.ReplaceAll(js, testPlaceholder, strings.Repeat("-", len(testPlaceholder))); body != want {
		t.Fatalf("body %q, want %q", body, want)
	}
	if resp.Header.Get("Etag") != `W/"v1"` || resp.Header.Get("Accept-Ranges") != "" {
		t.Errorf("redacted body: ETag %q, Accept-Ranges %q; want a weak ETag and no ranges", resp.Header.Get("Etag"), resp.Header.Get("Accept-Ranges"))
	}
	req, _ := http.NewRequest(http.MethodHead, base+"?ct=text/javascript", nil)
	if resp, _ := fetch(t, req); resp.Header.Get("Etag") != `W/"v1"` || resp.Header.Get("Accept-Ranges") != "" {
		t.Errorf("HEAD: ETag %q, Accept-Ranges %q; want what GET gets", resp.Header.Get("Etag"), resp.Header.Get("Accept-Ranges"))
	}
	// Binary bodies pass as they are, their ETag included; like every response of a route
	// that removes Range, they offer no ranges (TestInjectRouteOffersNoRanges).
	if resp, _ := getBody(t, base+"?ct=image/png"); resp.Header.Get("Etag") != `"v1"` || resp.Header.Get("Accept-Ranges") != "" {
		t.Errorf("binary body: ETag %q, Accept-Ranges %q; want the ETag untouched and no ranges", resp.Header.Get("Etag"), resp.Header.Get("Accept-Ranges"))
	}
	resp, body = getBody(t, base+"?ct=text/javascript&status=206")
	if resp.StatusCode != http.StatusBadGateway || strings.Contains(body, js[:12]) || resp.Header.Get("Content-Range") != "" {
		t.Fatalf("unrequested 206 of JavaScript: status %d, Content-Range %q, body %q; want a 502 without the body",
			resp.StatusCode, resp.Header.Get("Content-Range"), body)
	}
}

// The README's `header >Server my-edge`: deferred, it replaces the Server an upstream sends;
// a plain `header Server my-edge` runs before reverse_proxy, whose upstream Server replaces it.
func TestServerHeaderBehindProxyNeedsDefer(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Server", "gunicorn")
		_, _ = io.WriteString(w, "ok")
	}))
	t.Cleanup(up.Close)
	port := testenv.FreePort(t)
	testcaddy.StartCaddy(t, fmt.Sprintf(`http://127.0.0.1:%d {
	bind 127.0.0.1
	security_headers {
		remove X-Powered-By
	}
	handle /plain {
		header Server my-edge
		reverse_proxy %[2]s
	}
	handle {
		header >Server my-edge
		reverse_proxy %[2]s
	}
}
`, port, up.Listener.Addr()))
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	if resp, _ := getBody(t, base+"/"); strings.Join(resp.Header.Values("Server"), "|") != "my-edge" {
		t.Errorf("header >Server: Server %q, want my-edge alone", resp.Header.Values("Server"))
	}
	if resp, _ := getBody(t, base+"/plain"); strings.Join(resp.Header.Values("Server"), "|") != "gunicorn" {
		t.Errorf("header Server (not deferred): Server %q, want the upstream's (as the README says)", resp.Header.Values("Server"))
	}
}

// A HEAD on a route with inject_nonce gets the headers its GET gets, also where they depend
// on the body: a type sniffed from it (no Content-Type upstream), the length after rewriting,
// no-store. The upstream sees a GET; the client gets no body.
// TestUntypedPageFlushedBeforeItsBytes: an upstream that sends its headers (no Content-Type)
// and flushes before the page's first bytes, through reverse_proxy's immediate flushing, gets
// the page typed by the sniff and nonced, as one that sends it at once: the status waits for
// the bytes that decide it (a flush used to send it untyped, and the page was not injected).
func TestUntypedPageFlushedBeforeItsBytes(t *testing.T) {
	page := `<!doctype html><html><script nonce="` + testPlaceholder + `">ok()</script></html>`
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header()["Content-Type"] = nil
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		time.Sleep(50 * time.Millisecond)
		_, _ = io.WriteString(w, page)
	}))
	t.Cleanup(up.Close)
	port := placeholderCaddy(t, "\treverse_proxy "+up.Listener.Addr().String()+" {\n\t\tflush_interval -1\n\t}\n")
	resp, body := getBody(t, fmt.Sprintf("http://127.0.0.1:%d/", port))
	nonce := cspNonce(t, resp.Header)
	if ct := resp.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" || resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("Content-Type %q, Cache-Control %q: want the sniffed HTML type and no-store", ct, resp.Header.Get("Cache-Control"))
	}
	if !strings.Contains(body, `nonce="`+nonce+`"`) {
		t.Fatalf("the page did not get the nonce: %q", body)
	}
}

func TestHeadGetsTheHeadersOfGet(t *testing.T) {
	page := `<!doctype html><html><script nonce="` + testPlaceholder + `">ok()</script></html>`
	big := page + strings.Repeat("<p>filler</p>", 2000)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		body := page
		switch r.URL.Path {
		case "/nohdr": // the review's upstream: HTML without Content-Type, with its length
			h["Content-Type"] = nil
		case "/nohdr-big":
			h["Content-Type"] = nil
			body = big
		case "/text":
			h["Content-Type"] = nil
			body = "id " + testPlaceholder + "\n"
		case "/typed":
			h.Set("Content-Type", "text/html; charset=utf-8")
			h.Set("ETag", `"v1"`)
			h.Set("Accept-Ranges", "bytes")
		case "/js":
			h.Set("Content-Type", "text/javascript")
			body = `let n = "` + testPlaceholder + `";`
		case "/png":
			h.Set("Content-Type", "image/png")
			body = "\x89PNG\r\n\x1a\n"
		}
		if r.URL.Path != "/nohdr-big" {
			h.Set("Content-Length", fmt.Sprint(len(body)))
		}
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(up.Close)
	port := placeholderProxy(t, up.Listener.Addr().String())
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	normalized := func(resp *http.Response) string {
		nonce := ""
		if m := nonceInCSP.FindStringSubmatch(resp.Header.Get("Content-Security-Policy")); m != nil {
			nonce = m[1]
		}
		var lines []string
		for k, vs := range resp.Header {
			if k == "Date" {
				continue
			}
			for _, v := range vs {
				if nonce != "" {
					v = strings.ReplaceAll(v, nonce, "<nonce>")
				}
				lines = append(lines, k+": "+v)
			}
		}
		slices.Sort(lines)
		return fmt.Sprintf("%d\n%s", resp.StatusCode, strings.Join(lines, "\n"))
	}
	for _, path := range []string{"/nohdr", "/nohdr-big", "/text", "/typed", "/js", "/png"} {
		get, body := getBody(t, base+path)
		if strings.Contains(body, testPlaceholder) {
			t.Fatalf("GET %s: the placeholder left the edge: %q", path, body)
		}
		req, _ := http.NewRequest(http.MethodHead, base+path, nil)
		head, hbody := fetch(t, req)
		if g, h := normalized(get), normalized(head); g != h || hbody != "" {
			t.Errorf("%s: HEAD differs from GET (or has a body %q):\nGET:\n%s\nHEAD:\n%s", path, hbody, g, h)
		}
	}
	// The HEAD response on the wire has no body: the next response on the same connection
	// parses.
	conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, _ = io.WriteString(conn, "HEAD /nohdr HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nGET /js HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
	br := bufio.NewReader(conn)
	for i, method := range []string{http.MethodHead, http.MethodGet} {
		resp, err := http.ReadResponse(br, &http.Request{Method: method})
		if err != nil {
			t.Fatalf("response %d on one connection: %v", i+1, err)
		}
		b, _ := io.ReadAll(resp.Body)
		if method == http.MethodGet && !strings.HasPrefix(string(b), `let n = "---`) {
			t.Fatalf("the GET after a HEAD read %q: the HEAD response carried a body", b)
		}
	}
}

// utf16 encodes s as UTF-16 (little or big endian), without a byte order mark.
func utf16Bytes(s string, bigEndian bool) string {
	var b []byte
	for _, u := range utf16.Encode([]rune(s)) {
		if bigEndian {
			b = append(b, byte(u>>8), byte(u))
		} else {
			b = append(b, byte(u), byte(u>>8))
		}
	}
	return string(b)
}

// utf32LE encodes s as UTF-32LE, without a byte order mark.
func utf32LE(s string) string {
	var b []byte
	for _, r := range s {
		b = append(b, byte(r), byte(r>>8), byte(r>>16), byte(r>>24))
	}
	return string(b)
}

// A page the injector cannot read as the browser will (UTF-16 by byte order mark or charset,
// UTF-16/32 without one, a charset whose bytes for ASCII are not ASCII's) never reaches the
// client in placeholder mode: it holds the placeholder in bytes a byte search does not find.
// It is answered 502, as compressed HTML is. Other bodies in those encodings have the
// placeholder's UTF-16 and UTF-32 forms overwritten. Tags mode passes such a page as it is.
func TestPageInAnEncodingTheInjectorCannotRead(t *testing.T) {
	page := `<!doctype html><html><body><script nonce="` + testPlaceholder + `">ok()</script><script nonce="injected">evil()</script></body></html>`
	const bom16LE, bom16BE, bom8 = "\xff\xfe", "\xfe\xff", "\xef\xbb\xbf"
	type upPage struct{ ct, body string }
	pages := map[string]upPage{
		"/u16-bom":             {"text/html", bom16LE + utf16Bytes(page, false)},
		"/u16be-bom":           {"text/html", bom16BE + utf16Bytes(page, true)},
		"/u16le-charset":       {"text/html; charset=utf-16", utf16Bytes(page, false)},
		"/u16be-charset":       {"text/html; charset=UTF-16BE", utf16Bytes(page, true)},
		"/u16-no-bom":          {"text/html", utf16Bytes(page, false)},
		"/u16-xhtml":           {"application/xhtml+xml", utf16Bytes(`<?xml version="1.0" encoding="UTF-16"?>`+page, false)},
		"/u16-untyped-head":    {"text/html", utf16Bytes(page, true)},
		"/bom-against-utf8":    {"text/html; charset=utf-8", bom16LE + utf16Bytes(page, false)},
		"/u32-bom":             {"text/html", "\xff\xfe\x00\x00" + utf32LE(page)},
		"/u32-charset":         {"text/html; charset=utf-32", utf32LE(page)},
		"/ebcdic":              {"text/html; charset=IBM037", "\x4c\x5a"},  // the placeholder's bytes would differ too
		"/utf16-label-ascii":   {"text/html; charset=utf-16", page},        // the browser reads it as UTF-16
		"/utf8-bom-vs-label":   {"text/html; charset=utf-16", bom8 + page}, // the BOM wins: UTF-8
		"/latin1":              {"text/html; charset=windows-1252", page},
		"/js-u16":              {"text/javascript; charset=utf-16", bom16LE + utf16Bytes(`let n = "`+testPlaceholder+`";`, false)},
		"/text-u32":            {"text/plain", "x" + utf32LE(testPlaceholder) + "y"},
		"/untyped-u16":         {"", bom16LE + utf16Bytes(`id: `+testPlaceholder, false)},
		"/one-byte-at-a-time":  {"text/html", bom16LE + utf16Bytes(page, false)},
		"/ascii-one-at-a-time": {"text/html", page},
	}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok := pages[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		if p.ct == "" {
			w.Header()["Content-Type"] = nil
		} else {
			w.Header().Set("Content-Type", p.ct)
		}
		if !strings.HasSuffix(r.URL.Path, "at-a-time") {
			w.Header().Set("Content-Length", fmt.Sprint(len(p.body)))
			_, _ = io.WriteString(w, p.body)
			return
		}
		for i := 0; i < len(p.body); i++ { // the first bytes (the BOM) split across writes
			_, _ = w.Write([]byte{p.body[i]})
			if i < 4 {
				w.(http.Flusher).Flush()
				time.Sleep(5 * time.Millisecond)
			}
		}
	}))
	t.Cleanup(up.Close)
	t.Setenv("TEST_CSP_PLACEHOLDER", testPlaceholder)
	port, tagsPort := testenv.FreePort(t), testenv.FreePort(t)
	c := testcaddy.StartCaddy(t, fmt.Sprintf(`http://127.0.0.1:%d {
	bind 127.0.0.1
	security_headers {
		inject_nonce placeholder {env.TEST_CSP_PLACEHOLDER}
	}
	reverse_proxy %[3]s {
		flush_interval -1
	}
}
http://127.0.0.1:%[2]d {
	bind 127.0.0.1
	security_headers {
		inject_nonce tags
	}
	reverse_proxy %[3]s
}
`, port, tagsPort, up.Listener.Addr()))
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	leaks := func(body string) bool {
		if strings.Contains(body, testPlaceholder) {
			return true
		}
		for _, form := range []string{utf16Bytes(testPlaceholder, false), utf16Bytes(testPlaceholder, true), utf32LE(testPlaceholder)} {
			if strings.Contains(body, form) {
				return true
			}
		}
		return false
	}
	for _, path := range []string{"/u16-bom", "/u16be-bom", "/u16le-charset", "/u16be-charset", "/u16-no-bom", "/u16-xhtml",
		"/u16-untyped-head", "/bom-against-utf8", "/u32-bom", "/u32-charset", "/ebcdic", "/utf16-label-ascii", "/one-byte-at-a-time"} {
		resp, body := getBody(t, base+path)
		if resp.StatusCode != http.StatusBadGateway || leaks(body) || resp.Header.Get("Content-Type") != "application/problem+json" {
			t.Errorf("%s: status %d, Content-Type %q, body %q; want a 502 problem without the page", path, resp.StatusCode, resp.Header.Get("Content-Type"), body)
		}
		req, _ := http.NewRequest(http.MethodHead, base+path, nil)
		if resp, _ := fetch(t, req); resp.StatusCode != http.StatusBadGateway {
			t.Errorf("HEAD %s: status %d; want what GET gets, 502", path, resp.StatusCode)
		}
	}
	waitLog(t, c, "HTML response in an encoding the injector cannot read as the browser will; answered 502 so the placeholder stays secret")

	// Pages a browser reads as ASCII-compatible are rewritten.
	for _, path := range []string{"/utf8-bom-vs-label", "/latin1", "/ascii-one-at-a-time"} {
		resp, body := getBody(t, base+path)
		nonce := cspNonce(t, resp.Header)
		want := strings.ReplaceAll(strings.ReplaceAll(pages[path].body, testPlaceholder, nonce), `nonce="injected"`, ``)
		if resp.StatusCode != http.StatusOK || body != want {
			t.Errorf("%s: status %d, body %q; want %q", path, resp.StatusCode, body, want)
		}
	}
	// Other bodies: the placeholder's UTF-16 and UTF-32 forms are overwritten, the length kept.
	for _, path := range []string{"/js-u16", "/text-u32", "/untyped-u16"} {
		resp, body := getBody(t, base+path)
		if resp.StatusCode != http.StatusOK || leaks(body) || len(body) != len(pages[path].body) {
			t.Errorf("%s: status %d, %d bytes (sent %d), body %q; want the placeholder overwritten", path, resp.StatusCode, len(body), len(pages[path].body), body)
		}
	}
	// Tags mode: nothing secret; a page it cannot read passes as it is.
	resp, body := getBody(t, fmt.Sprintf("http://127.0.0.1:%d/u16-bom", tagsPort))
	if resp.StatusCode != http.StatusOK || body != pages["/u16-bom"].body {
		t.Errorf("tags mode, UTF-16 page: status %d, body %q; want it as it is", resp.StatusCode, body)
	}
}

// nestedPage is an application page with a script it marked and one an attacker injected.
const nestedPage = `<!doctype html><html><body><div id="out"></div>
<script nonce="` + testPlaceholder + `">document.getElementById('out').textContent += 'marked;';</script>
<p><script>document.getElementById('out').textContent += 'injected;';</script></p>
</body></html>`

// nestedCaddy starts a Caddy whose sites each have a site-wide security_headers and another
// inside `handle`, in front of an upstream serving nestedPage; it returns the sites' base URLs:
// "placeholder/none" (the review's case: the inner one only changes the policy),
// "placeholder/placeholder", "tags/placeholder".
func nestedCaddy(t *testing.T) map[string]string {
	t.Helper()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "max-age=60")
		_, _ = io.WriteString(w, nestedPage)
	}))
	t.Cleanup(up.Close)
	t.Setenv("TEST_CSP_PLACEHOLDER", testPlaceholder)
	p1, p2, p3 := testenv.FreePort(t), testenv.FreePort(t), testenv.FreePort(t)
	testcaddy.StartCaddy(t, fmt.Sprintf(`http://127.0.0.1:%[1]d {
	bind 127.0.0.1
	security_headers {
		coep require-corp
		inject_nonce placeholder {env.TEST_CSP_PLACEHOLDER}
	}
	handle /admin/* {
		security_headers {
			csp {
				connect-src 'self' https://api.example.com
			}
		}
		header X-Nonce {http.vars.csp_nonce}
		uri strip_prefix /admin
		reverse_proxy %[4]s
	}
	handle /ro/* {
		security_headers {
			report_only
		}
		reverse_proxy %[4]s
	}
	reverse_proxy %[4]s
}
http://127.0.0.1:%[2]d {
	bind 127.0.0.1
	security_headers {
		inject_nonce placeholder {env.TEST_CSP_PLACEHOLDER}
	}
	handle /admin/* {
		security_headers {
			csp {
				connect-src 'self' https://api.example.com
			}
			inject_nonce placeholder {env.TEST_CSP_PLACEHOLDER} {
				cache_control private, no-cache
			}
		}
		reverse_proxy %[4]s
	}
	reverse_proxy %[4]s
}
http://127.0.0.1:%[3]d {
	bind 127.0.0.1
	security_headers {
		inject_nonce tags
	}
	handle /admin/* {
		security_headers {
			inject_nonce placeholder {env.TEST_CSP_PLACEHOLDER}
		}
		reverse_proxy %[4]s
	}
	reverse_proxy %[4]s
}
`, p1, p2, p3, up.Listener.Addr()))
	return map[string]string{
		"placeholder/none":        fmt.Sprintf("http://127.0.0.1:%d", p1),
		"placeholder/placeholder": fmt.Sprintf("http://127.0.0.1:%d", p2),
		"tags/placeholder":        fmt.Sprintf("http://127.0.0.1:%d", p3),
	}
}

// A security_headers nested in another (site-wide, and inside `handle`) takes the response
// over: one nonce per request, shared by both (so the policy, {http.vars.csp_nonce} and the
// page agree), the inner one's headers and inject mode; the outer placeholder is still never
// sent; an outer tags mode does not nonce the scripts the inner placeholder mode left without.
func TestNestedSecurityHeadersShareTheNonce(t *testing.T) {
	sites := nestedCaddy(t)
	marked := func(nonce string) string {
		return `<script nonce="` + nonce + `">document.getElementById('out').textContent += 'marked;';</script>`
	}
	const injected = `<p><script>document.getElementById('out').textContent += 'injected;';</script></p>`
	for name, base := range sites {
		resp, body := getBody(t, base+"/admin/page")
		nonce := cspNonce(t, resp.Header)
		if !strings.Contains(body, marked(nonce)) || !strings.Contains(body, injected) || strings.Contains(body, testPlaceholder) {
			t.Errorf("%s: the page does not carry the policy's nonce %q on its marked script only:\n%s", name, nonce, body)
		}
		if got := resp.Header.Values("Content-Security-Policy"); len(got) != 1 {
			t.Errorf("%s: Content-Security-Policy %q, want one", name, got)
		}
		if name != "tags/placeholder" && !strings.Contains(resp.Header.Get("Content-Security-Policy"), "connect-src 'self' https://api.example.com") {
			t.Errorf("%s: the inner one's policy is not the one sent: %q", name, resp.Header.Get("Content-Security-Policy"))
		}
	}
	base := sites["placeholder/none"]
	resp, _ := getBody(t, base+"/admin/page")
	if nonce := cspNonce(t, resp.Header); resp.Header.Get("X-Nonce") != nonce {
		t.Errorf("{http.vars.csp_nonce} %q, the policy's nonce %q", resp.Header.Get("X-Nonce"), nonce)
	}
	// The inner one's headers replace the outer one's: no COEP it does not set, the outer
	// one's no-store for the page it rewrote.
	if resp.Header.Get("Cross-Origin-Embedder-Policy") != "" || resp.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("COEP %q, Cache-Control %q; want none and no-store", resp.Header.Get("Cross-Origin-Embedder-Policy"), resp.Header.Get("Cache-Control"))
	}
	if resp, _ := getBody(t, base+"/page"); resp.Header.Get("Cross-Origin-Embedder-Policy") != "require-corp" {
		t.Errorf("outside the handle: COEP %q, want the site-wide require-corp", resp.Header.Get("Cross-Origin-Embedder-Policy"))
	}
	// An inner report-only policy is the only policy: the outer enforcing one is not sent too.
	resp, body := getBody(t, base+"/ro/page")
	if resp.Header.Get("Content-Security-Policy") != "" || !strings.Contains(body, marked(nonceOf(t, resp.Header.Get("Content-Security-Policy-Report-Only")))) {
		t.Errorf("inner report_only: CSP %q, report-only %q, body %q", resp.Header.Get("Content-Security-Policy"), resp.Header.Get("Content-Security-Policy-Report-Only"), body)
	}
	// Both inject: the inner one's cache_control.
	if resp, _ := getBody(t, sites["placeholder/placeholder"]+"/admin/page"); resp.Header.Get("Cache-Control") != "private, no-cache" {
		t.Errorf("both inject: Cache-Control %q, want the inner one's", resp.Header.Get("Cache-Control"))
	}
	// Outside the handle, the site-wide tags mode nonces every script, as configured.
	if resp, body := getBody(t, sites["tags/placeholder"]+"/page"); strings.Count(body, `nonce="`+cspNonce(t, resp.Header)+`"`) != 2 {
		t.Errorf("site-wide tags mode: %s", body)
	}
}

func nonceOf(t *testing.T, policy string) string {
	t.Helper()
	m := nonceInCSP.FindStringSubmatch(policy)
	if m == nil {
		t.Fatalf("no nonce in %q", policy)
	}
	return m[1]
}

// A nonced page's no-store is for every cache: a CDN in front of Caddy follows the targeted
// fields of RFC 9213 (CDN-Cache-Control, Cloudflare-CDN-Cache-Control) or its own
// (Surrogate-Control: Fastly, Varnish; Edge-Control: Akamai; X-Accel-Expires: nginx's
// proxy_cache) instead of Cache-Control, and an upstream's max-age there would have it store
// the page and hand its nonce to every visitor. They go with Cache-Control; cache_control off
// keeps them all.
func TestNoncedPageDropsTargetedCacheFields(t *testing.T) {
	targeted := []string{"CDN-Cache-Control", "Cloudflare-CDN-Cache-Control", "Surrogate-Control", "Edge-Control", "X-Accel-Expires"}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "max-age=60")
		for _, k := range targeted {
			w.Header().Set(k, "max-age=86400")
		}
		if r.URL.Path == "/app.js" {
			w.Header().Set("Content-Type", "text/javascript")
		}
		_, _ = io.WriteString(w, `<script nonce="`+testPlaceholder+`">ok()</script>`)
	}))
	t.Cleanup(up.Close)
	t.Setenv("TEST_CSP_PLACEHOLDER", testPlaceholder)
	port := testenv.FreePort(t)
	testcaddy.StartCaddy(t, fmt.Sprintf(`http://127.0.0.1:%[1]d {
	bind 127.0.0.1
	handle /off/* {
		security_headers {
			inject_nonce placeholder {env.TEST_CSP_PLACEHOLDER} {
				cache_control off
			}
		}
		reverse_proxy %[2]s
	}
	handle {
		security_headers {
			inject_nonce placeholder {env.TEST_CSP_PLACEHOLDER}
		}
		reverse_proxy %[2]s
	}
}
`, port, up.Listener.Addr()))
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	for path, kept := range map[string]bool{"/page": false, "/off/page": true, "/app.js": true} {
		resp, _ := getBody(t, base+path)
		for _, k := range targeted {
			if got := resp.Header.Get(k); (got != "") != kept {
				t.Errorf("%s: %s %q; want it kept: %v", path, k, got, kept)
			}
		}
	}
}
