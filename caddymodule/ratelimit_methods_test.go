package caddymodule

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/swarmsec/caddy-hardening/internal/testcaddy"
)

// TestRateLimitHeadAndOptionsCount: HEAD and OPTIONS requests (a CORS preflight) spend the
// client's bucket like any other (README: left out, they would reach the upstream without a
// limit), carry the fields, and a refused HEAD gets the 429 with Retry-After and no body; the
// refusal is no handler error in Caddy's log.
func TestRateLimitHeadAndOptionsCount(t *testing.T) {
	block, url := site(t, "\tpolicy_rate_limit headopts")
	c := testcaddy.StartCaddy(t, "{\n\thardening {\n\t\tpolicy headopts {\n\t\t\tlimit 2/1h\n\t\t}\n\t}\n}\n"+block)
	for i, method := range []string{http.MethodOptions, http.MethodHead, http.MethodHead, http.MethodGet} {
		req, err := http.NewRequest(method, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Origin", "https://app.example")
		req.Header.Set("Access-Control-Request-Method", "POST")
		resp, err := replyClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		want := http.StatusOK
		if i >= 2 {
			want = http.StatusTooManyRequests
		}
		if resp.StatusCode != want {
			t.Fatalf("request %d (%s): %d, want %d", i+1, method, resp.StatusCode, want)
		}
		if rl := resp.Header.Get("RateLimit"); !strings.HasPrefix(rl, fmt.Sprintf(`"headopts";r=%d;`, max(0, 1-i))) {
			t.Fatalf("request %d (%s): RateLimit %q", i+1, method, rl)
		}
		if want == http.StatusTooManyRequests && resp.Header.Get("Retry-After") == "" {
			t.Fatalf("request %d (%s): a refusal without Retry-After", i+1, method)
		}
		if method == http.MethodHead && len(body) != 0 {
			t.Fatalf("HEAD answered with a body: %q", body)
		}
	}
	for _, e := range c.Logs() {
		if e.Level() == "error" {
			t.Fatalf("Caddy logged an error for a refusal: %v", e)
		}
	}
}
