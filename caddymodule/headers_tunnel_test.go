package caddymodule

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/quic-go/quic-go/http3"

	"github.com/swarmsec/caddy-hardening/internal/testcaddy"
	"github.com/swarmsec/caddy-hardening/internal/testenv"
)

// TestWebSocketOverHTTP3ThroughEveryModule: a WebSocket over HTTP/3 (extended CONNECT, RFC
// 9220, which Caddy's HTTP/3 server offers and reverse_proxy turns into an HTTP/1.1 upgrade to
// the upstream) through every module that wraps the response. The 200 that answers a CONNECT
// opens a tunnel: it has no body to type or inject, so it goes out at once (security_headers in
// an injecting mode held it for the first bytes to sniff, and the client, waiting for it before
// sending its first message, never got it).
func TestWebSocketOverHTTP3ThroughEveryModule(t *testing.T) {
	up := websocketEchoUpstream(t)
	t.Setenv("TEST_CSP_PLACEHOLDER", testPlaceholder)
	for _, inject := range []string{"tags", "placeholder {env.TEST_CSP_PLACEHOLDER}"} {
		t.Run(inject, func(t *testing.T) {
			httpsPort, httpPort := testenv.FreePort(t), testenv.FreePort(t)
			testcaddy.StartCaddy(t, fmt.Sprintf(`{
%s}
localhost:%d {
	bind 127.0.0.1
	tls internal
	path_guard
	policy_rate_limit public
	security_headers {
		inject_nonce %s
	}
	upstream_breaker ws_h3 {
		consecutive_failures 3
	}
	reverse_proxy %s
}
`, localTLSGlobals(t, httpPort, httpsPort), httpsPort, inject, up.Listener.Addr()))
			waitTLS(t, fmt.Sprintf("127.0.0.1:%d", httpsPort))
			tr := &http3.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true, ServerName: "localhost"}}
			t.Cleanup(func() { _ = tr.Close() })
			pr, pw := io.Pipe()
			t.Cleanup(func() { _ = pw.Close() })
			req, _ := http.NewRequestWithContext(t.Context(), http.MethodConnect, fmt.Sprintf("https://127.0.0.1:%d/ws", httpsPort), pr)
			req.Host = fmt.Sprintf("localhost:%d", httpsPort)
			req.Proto = "websocket" // :protocol
			req.Header.Set("Sec-WebSocket-Version", "13")
			type answer struct {
				resp *http.Response
				err  error
			}
			got := make(chan answer, 1)
			go func() {
				resp, err := tr.RoundTrip(req)
				got <- answer{resp, err}
			}()
			var a answer
			select {
			case a = <-got:
			case <-time.After(15 * time.Second):
				t.Fatal("the tunnel's 200 did not arrive while the upstream waited for the first message")
			}
			if a.err != nil || a.resp.StatusCode != http.StatusOK {
				t.Fatalf("extended CONNECT: %v %v", a.resp, a.err)
			}
			defer a.resp.Body.Close()
			if a.resp.Header.Get("Content-Security-Policy") == "" {
				t.Error("the tunnel's 200 carries no Content-Security-Policy")
			}
			if _, err := io.WriteString(pw, "hello\n"); err != nil {
				t.Fatal(err)
			}
			if line, err := bufio.NewReader(a.resp.Body).ReadString('\n'); err != nil || line != "echo hello\n" {
				t.Fatalf("through the tunnel: %q %v", line, err)
			}
			// Closed and done before Caddy stops: Caddy v2.11.9 races with itself when it
			// stops with an HTTP/2 or HTTP/3 tunnel open (see TestBreakerWebSocketOverHTTP2).
			_ = pw.Close()
			a.resp.Body.Close()
			waitTunnelsDone(t)
		})
	}
}
