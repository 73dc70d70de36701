package caddymodule

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/swarmsec/caddy-hardening/internal/testcaddy"
	"github.com/swarmsec/caddy-hardening/internal/testenv"
)

// TestPlaceholderPageLogsAreBounded: a page that reflects a query parameter lets any client
// put an ESC byte into it, and placeholder mode gives up on such a page (fail closed) with a
// WARN. That WARN was written for every response, outside any budget: one log line per
// request the client sends. It now goes through a budget like the security log's (a few a
// second, one client's share bounded), and a logged line carries `suppressed`.
func TestPlaceholderPageLogsAreBounded(t *testing.T) {
	t.Setenv("TEST_CSP_PLACEHOLDER", testPlaceholder)
	port := testenv.FreePort(t)
	c := testcaddy.StartCaddy(t, fmt.Sprintf(`{
	admin off
}
http://:%d {
	bind 127.0.0.1
	security_headers {
		inject_nonce placeholder {env.TEST_CSP_PLACEHOLDER}
	}
	header Content-Type text/html
	respond "<p>You searched {http.request.uri.query.q}</p><script nonce=\"{env.TEST_CSP_PLACEHOLDER}\">app()</script>"
}
`, port))
	const sent = 200
	for i := range sent {
		if i == sent-1 {
			time.Sleep(1100 * time.Millisecond) // the budget refills: the last one is logged, with the count
		}
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/?q=%%1b%d", port, i))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.Contains(string(body), testPlaceholder) {
			t.Fatalf("the placeholder left the edge: %s", body)
		}
	}
	var lines, suppressed int
	for _, e := range c.Logs() {
		if strings.Contains(e.Str("msg"), "placeholder mode lost track") {
			lines++
			if n, _ := e["suppressed"].(float64); n > 0 {
				suppressed++
			}
		}
	}
	if lines == 0 || lines > 30 {
		t.Errorf("%d pages given up on logged %d lines, want a few (at most 30)", sent, lines)
	}
	if lines < sent && suppressed == 0 {
		t.Errorf("no logged line says how many were suppressed")
	}
}
