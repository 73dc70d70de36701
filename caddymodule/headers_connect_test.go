package caddymodule

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go/http3"

	"github.com/swarmsec/caddy-hardening/internal/testcaddy"
	"github.com/swarmsec/caddy-hardening/internal/testenv"
)

// TestPlaceholderStaysSecretFromCONNECT: any client may send CONNECT. A 2xx to it was taken
// for a tunnel (a WebSocket's extended CONNECT) and its bytes passed untouched, so a page
// answered to `CONNECT /page HTTP/1.1` (a respond, an upstream whose catch-all route takes any
// method) reached the client with the secret placeholder in it: whoever reads it can get the
// nonce onto a tag it writes. In placeholder mode only an extended CONNECT answered untyped
// (the tunnel reverse_proxy opens) passes as a tunnel; any other answer is a response.
func TestPlaceholderStaysSecretFromCONNECT(t *testing.T) {
	page := `<html><script nonce="` + testPlaceholder + `">app()</script><p>` + testPlaceholder + `</p></html>`
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = io.WriteString(w, page) // a catch-all route: any method, any path
	}))
	t.Cleanup(up.Close)
	t.Setenv("TEST_CSP_PLACEHOLDER", testPlaceholder)
	port := testenv.FreePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	testcaddy.StartCaddy(t, fmt.Sprintf(`{
	admin off
}
http://:%d {
	bind 127.0.0.1
	security_headers {
		inject_nonce placeholder {env.TEST_CSP_PLACEHOLDER}
	}
	handle /respond {
		header Content-Type text/html
		respond %q
	}
	reverse_proxy %s
}
`, port, page, up.Listener.Addr()))
	for _, target := range []string{"/respond", "/up", addr} {
		conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(conn, "CONNECT "+target+" HTTP/1.1\r\nHost: "+addr+"\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		var got strings.Builder
		buf := make([]byte, 4096)
		for !strings.Contains(got.String(), "</html>") {
			n, err := conn.Read(buf)
			got.Write(buf[:n])
			if err != nil {
				break
			}
		}
		conn.Close()
		resp := got.String()
		if strings.Contains(resp, testPlaceholder) {
			t.Errorf("CONNECT %s: the answer carries the placeholder:\n%.400s", target, resp)
		}
		if strings.HasPrefix(resp, "HTTP/1.1 200") && !strings.Contains(resp, `<script nonce="`) {
			t.Errorf("CONNECT %s: a 200 without the page's nonce:\n%.400s", target, resp)
		}
	}
}

// TestPlaceholderStaysSecretFromExtendedCONNECT: an extended CONNECT (HTTP/3, which Caddy
// offers on every HTTPS site) to a path whose upstream is no WebSocket: reverse_proxy turns it
// into a GET with Upgrade, the upstream answers its page (200, typed), and that page went out
// as a tunnel's bytes, placeholder included. The same with a page the upstream sends without
// Content-Type: an untyped 2xx to an extended CONNECT is the answer reverse_proxy gives when it
// opens a WebSocket's tunnel, so it went out as one; the tunnel is told apart by reverse_proxy
// flushing its 200 before any byte, a page by its first write, which types it as net/http
// would and gets it rewritten.
func TestPlaceholderStaysSecretFromExtendedCONNECT(t *testing.T) {
	page := `<html><script nonce="` + testPlaceholder + `">app()</script></html>`
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/untyped" {
			w.Header()["Content-Type"] = nil // net/http then sends none and sniffs nothing
		} else {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
		}
		_, _ = io.WriteString(w, page) // no WebSocket here: the Upgrade is ignored
	}))
	t.Cleanup(up.Close)
	t.Setenv("TEST_CSP_PLACEHOLDER", testPlaceholder)
	httpsPort, httpPort := testenv.FreePort(t), testenv.FreePort(t)
	testcaddy.StartCaddy(t, fmt.Sprintf(`{
%s}
localhost:%d {
	bind 127.0.0.1
	tls internal
	security_headers {
		inject_nonce placeholder {env.TEST_CSP_PLACEHOLDER}
	}
	reverse_proxy %s
}
`, localTLSGlobals(t, httpPort, httpsPort), httpsPort, up.Listener.Addr()))
	waitTLS(t, fmt.Sprintf("127.0.0.1:%d", httpsPort))
	tr := &http3.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true, ServerName: "localhost"}}
	t.Cleanup(func() { _ = tr.Close() })
	for _, path := range []string{"/page", "/untyped"} {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodConnect, fmt.Sprintf("https://127.0.0.1:%d%s", httpsPort, path), http.NoBody)
		req.Host = fmt.Sprintf("localhost:%d", httpsPort)
		req.Proto = "websocket" // :protocol
		req.Header.Set("Sec-WebSocket-Version", "13")
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
		resp.Body.Close()
		if strings.Contains(string(body), testPlaceholder) {
			t.Errorf("extended CONNECT %s: %d, the answer carries the placeholder: %.300s", path, resp.StatusCode, body)
		}
		if resp.StatusCode == http.StatusOK && !strings.Contains(string(body), `<script nonce="`) {
			t.Errorf("extended CONNECT %s: a 200 without the page's nonce: %.300s", path, body)
		}
	}
}

// TestPlaceholderPageStreamsOverHTTP2AndHTTP3: a page that the upstream flushes in parts
// reaches the client part by part over HTTP/2 and HTTP/3 too, rewritten (the marked script's
// placeholder, split across the flush, becomes the nonce when its end arrives), while the
// upstream still holds the rest.
func TestPlaceholderPageStreamsOverHTTP2AndHTTP3(t *testing.T) {
	first, second := `<p>first</p><script nonce="`+testPlaceholder[:8], testPlaceholder[8:]+`">a()</script><p>then</p>`
	third := `<script nonce="` + testPlaceholder + `">b()</script>`
	var steps sync.Map // request path -> chan struct{} (closed: write the rest)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ch, _ := steps.LoadOrStore(r.URL.Path, make(chan struct{}))
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = io.WriteString(w, first)
		w.(http.Flusher).Flush()
		_, _ = io.WriteString(w, second)
		w.(http.Flusher).Flush()
		select {
		case <-ch.(chan struct{}):
		case <-r.Context().Done():
			return
		}
		_, _ = io.WriteString(w, third)
	}))
	t.Cleanup(up.Close)
	t.Setenv("TEST_CSP_PLACEHOLDER", testPlaceholder)
	httpsPort, httpPort := testenv.FreePort(t), testenv.FreePort(t)
	testcaddy.StartCaddy(t, fmt.Sprintf(`{
%s}
localhost:%d {
	bind 127.0.0.1
	tls internal
	security_headers {
		inject_nonce placeholder {env.TEST_CSP_PLACEHOLDER}
	}
	reverse_proxy %s {
		flush_interval -1
	}
}
`, localTLSGlobals(t, httpPort, httpsPort), httpsPort, up.Listener.Addr()))
	waitTLS(t, fmt.Sprintf("127.0.0.1:%d", httpsPort))
	tlsConf := &tls.Config{InsecureSkipVerify: true, ServerName: "localhost"}
	h3 := &http3.Transport{TLSClientConfig: tlsConf}
	t.Cleanup(func() { _ = h3.Close() })
	h2 := &http.Transport{TLSClientConfig: tlsConf, ForceAttemptHTTP2: true}
	t.Cleanup(h2.CloseIdleConnections)
	for name, rt := range map[string]http.RoundTripper{"HTTP/2.0": h2, "HTTP/3.0": h3} {
		t.Run(name, func(t *testing.T) {
			path := "/" + strings.ReplaceAll(name, "/", "")
			ch, _ := steps.LoadOrStore(path, make(chan struct{}))
			release := sync.OnceFunc(func() { close(ch.(chan struct{})) })
			t.Cleanup(release)
			req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, fmt.Sprintf("https://127.0.0.1:%d%s", httpsPort, path), nil)
			req.Host = fmt.Sprintf("localhost:%d", httpsPort)
			resp, err := rt.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.Proto != name {
				t.Fatalf("proto %s, want %s", resp.Proto, name)
			}
			n := cspNonce(t, resp.Header)
			want := `<p>first</p><script nonce="` + n + `">a()</script><p>then</p>`
			got := make([]byte, len(want))
			done := make(chan error, 1)
			go func() { _, err := io.ReadFull(resp.Body, got); done <- err }()
			select {
			case err := <-done:
				if err != nil || string(got) != want {
					t.Fatalf("flushed part: %q, %v; want %q", got, err, want)
				}
			case <-time.After(15 * time.Second):
				t.Fatal("the flushed part of the page did not arrive while the upstream was still writing")
			}
			release()
			rest, _ := io.ReadAll(resp.Body)
			if string(rest) != `<script nonce="`+n+`">b()</script>` {
				t.Fatalf("rest %q", rest)
			}
		})
	}
}
