package caddymodule

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/quic-go/quic-go/http3"

	"github.com/swarmsec/caddy-hardening/internal/testcaddy"
	"github.com/swarmsec/caddy-hardening/internal/testenv"
)

// TestRateLimitAuthUserOverHTTP2AndHTTP3: the README's shape for a per-user limit, `route {
// basic_auth {...} policy_rate_limit users }` with `key {http.auth.user.id}`, through real
// Caddy over HTTP/2 and HTTP/3: each user has a bucket of its own whatever protocol it comes
// over (alice's third request is refused, bob's first admitted), a request whose password is
// wrong is answered 401 by basic_auth and spends nothing, and the refusal carries the RateLimit
// fields, Retry-After and the problem body on both protocols.
func TestRateLimitAuthUserOverHTTP2AndHTTP3(t *testing.T) {
	httpsPort, httpPort := testenv.FreePort(t), testenv.FreePort(t)
	const hash = "$2a$04$v9tdOiafwg6Zu1AuT7dAVe5zA8lYcYWXuBN98J217IAW7KbzoMX9a" // "hiccup" at bcrypt's least cost
	testcaddy.StartCaddy(t, fmt.Sprintf(`{
%s	hardening {
		policy rlusers {
			limit 2/1h
			key {http.auth.user.id}
		}
	}
}
localhost:%d {
	bind 127.0.0.1
	tls internal
	route {
		basic_auth {
			alice %s
			bob %s
		}
		policy_rate_limit rlusers
		respond "hello {http.auth.user.id}"
	}
}
`, localTLSGlobals(t, httpPort, httpsPort), httpsPort, hash, hash))
	waitTLS(t, fmt.Sprintf("127.0.0.1:%d", httpsPort))
	tlsConfig := &tls.Config{InsecureSkipVerify: true, ServerName: "localhost"}
	h2 := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsConfig, ForceAttemptHTTP2: true}}
	h3tr := &http3.Transport{TLSClientConfig: tlsConfig}
	t.Cleanup(func() { _ = h3tr.Close() })
	h3 := &http.Client{Transport: h3tr}

	type answer struct {
		status int
		proto  string
		header http.Header
		body   string
	}
	get := func(c *http.Client, user, password string) answer {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, fmt.Sprintf("https://127.0.0.1:%d/", httpsPort), nil)
		req.Host = fmt.Sprintf("localhost:%d", httpsPort)
		req.SetBasicAuth(user, password)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", user, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return answer{resp.StatusCode, resp.Proto, resp.Header, string(b)}
	}

	steps := []struct {
		client         *http.Client
		proto          string
		user, password string
		status         int
		rateLimit      string // the RateLimit field up to t's value (1800 s at most: 2 an hour)
	}{
		{h2, "HTTP/2.0", "alice", "hiccup", 200, `"rlusers";r=1;t=`},
		{h3, "HTTP/3.0", "alice", "hiccup", 200, `"rlusers";r=0;t=`},
		{h2, "HTTP/2.0", "alice", "wrong", 401, ""}, // basic_auth refuses first: nothing spent, no fields
		{h2, "HTTP/2.0", "alice", "hiccup", 429, `"rlusers";r=0;t=`},
		{h3, "HTTP/3.0", "alice", "hiccup", 429, `"rlusers";r=0;t=`},
		{h3, "HTTP/3.0", "bob", "hiccup", 200, `"rlusers";r=1;t=`},
	}
	for i, s := range steps {
		a := get(s.client, s.user, s.password)
		rl, t0 := a.header.Get("RateLimit"), 0
		if s.rateLimit != "" {
			if _, err := fmt.Sscanf(strings.TrimPrefix(rl, s.rateLimit), "%d", &t0); err != nil || !strings.HasPrefix(rl, s.rateLimit) || t0 < 1 || t0 > 1800 {
				t.Fatalf("step %d (%s as %s): RateLimit %q; want %s<1 to 1800>", i+1, s.proto, s.user, rl, s.rateLimit)
			}
		}
		if a.proto != s.proto || a.status != s.status || (s.rateLimit == "") != (rl == "") {
			t.Fatalf("step %d (%s as %s): %s %d, RateLimit %q; want %s %d, %q", i+1, s.proto, s.user, a.proto, a.status, a.header.Get("RateLimit"), s.proto, s.status, s.rateLimit)
		}
		switch s.status {
		case 200:
			if a.body != "hello "+s.user || a.header.Get("RateLimit-Policy") != `"rlusers";q=2;w=3600` {
				t.Fatalf("step %d: body %q, RateLimit-Policy %q", i+1, a.body, a.header.Get("RateLimit-Policy"))
			}
		case 429:
			var body struct {
				Status     int    `json:"status"`
				Policy     string `json:"policy"`
				RetryAfter int    `json:"retry_after"`
			}
			if err := json.Unmarshal([]byte(a.body), &body); err != nil || body.Status != 429 || body.Policy != "rlusers" ||
				a.header.Get("Content-Type") != "application/problem+json" || a.header.Get("Retry-After") != fmt.Sprint(body.RetryAfter) || body.RetryAfter != t0 {
				t.Fatalf("step %d (%s): refusal %q (%v), Content-Type %q, Retry-After %q", i+1, s.proto, a.body, err, a.header.Get("Content-Type"), a.header.Get("Retry-After"))
			}
		}
	}
}
