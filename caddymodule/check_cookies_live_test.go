package caddymodule

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/swarmsec/caddy-hardening/internal/testenv"
	"github.com/swarmsec/caddy-hardening/observatory"
)

// TestCheckGradesLiveCookies grades real Caddy responses behind security_headers' defaults
// (HSTS two years) whose cookies lack Secure, HttpOnly or SameSite, reached from http:// through
// Caddy's redirect to https://, with the outcome and score mdn/mdn-http-observatory's
// cookies.js gives the same Set-Cookie (the worst outcome in its order wins; bonuses only
// from 90).
func TestCheckGradesLiveCookies(t *testing.T) {
	httpsPort, httpPort := testenv.FreePort(t), testenv.FreePort(t)
	ca := localCertsCaddy(t, httpPort, httpsPort, `	security_headers
	header /session Set-Cookie "sessionid=abc; Path=/"
	header /theme Set-Cookie "theme=dark; Path=/; Secure"
	header /good Set-Cookie "sessionid=abc; Path=/; Secure; HttpOnly; SameSite=Lax"
	header /csrf Set-Cookie "csrftoken=x; Path=/; Secure"
	header /none Set-Cookie "id=x; Path=/; SameSite=None"
	header /plain Set-Cookie "id=x; Path=/; SameSite=Lax"
	respond "ok"
`)
	for _, c := range []struct {
		path, result string
		score        int
	}{
		// Session cookie without Secure (-10 under HSTS) and without HttpOnly (-30): -30 wins,
		// and at 70 the bonuses (+25) do not count.
		{"/session", "cookies-session-without-httponly-flag", 70},
		{"/theme", "cookies-secure-with-httponly-sessions", 125},
		{"/good", "cookies-secure-with-httponly-sessions-and-samesite", 130},
		{"/csrf", "cookies-anticsrf-without-samesite-flag", 80},
		// SameSite=None without Secure (-20) outranks a cookie without Secure under HSTS (-5).
		{"/none", "cookies-samesite-flag-invalid", 80},
		// 95 is at least 90: the bonuses count (CSP 5, CORP 10, Referrer-Policy 5, frame-ancestors 5).
		{"/plain", "cookies-without-secure-flag-but-protected-by-hsts", 120},
	} {
		var out bytes.Buffer
		if err := runGrade(context.Background(), &out, fmt.Sprintf("http://localhost:%d%s", httpPort, c.path), "", ca, "", true); err != nil {
			t.Fatalf("%s: %v", c.path, err)
		}
		var rep observatory.Report
		if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
			t.Fatal(err)
		}
		for _, r := range rep.Results {
			if r.Test == observatory.TestCookies && r.Result != c.result {
				t.Errorf("%s: cookies = %s, want %s", c.path, r.Result, c.result)
			}
			if r.Test == observatory.TestRedirection && r.Result != "redirection-to-https" {
				t.Errorf("%s: redirection = %s", c.path, r.Result)
			}
		}
		if rep.Score != c.score {
			t.Errorf("%s: score %d, want %d", c.path, rep.Score, c.score)
		}
	}
}
