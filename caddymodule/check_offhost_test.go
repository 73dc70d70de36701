package caddymodule

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/swarmsec/caddy-hardening/internal/testcaddy"
	"github.com/swarmsec/caddy-hardening/internal/testenv"
	"github.com/swarmsec/caddy-hardening/observatory"
)

// TestCheckGradeOffHostRedirect: a --url whose redirects end on another host (a login page at
// an identity provider, a parked domain) had that host's answer graded with no word of it, and
// --min-grade passed or failed on another site's headers: a CI gate could pass on the identity
// provider's A+. The report now says which host it graded and that the redirects left the
// host asked for, and --min-grade fails on it (exit 1); a redirect on the same host (another
// port included) says nothing.
func TestCheckGradeOffHostRedirect(t *testing.T) {
	a, b := testenv.FreePort(t), testenv.FreePort(t)
	testcaddy.StartCaddy(t, fmt.Sprintf(`http://localhost:%d {
	bind 127.0.0.1
	redir /away http://127.0.0.1:%d/login 302
	redir /port http://localhost:%d/ 302
	respond "ok"
}
http://localhost:%d, http://127.0.0.1:%d {
	bind 127.0.0.1
	respond "sign in"
}
`, a, b, b, b, b))
	away := fmt.Sprintf("http://localhost:%d/away", a)
	var out bytes.Buffer
	if err := runGrade(context.Background(), &out, away, "", "", "", false); err != nil ||
		!strings.Contains(out.String(), fmt.Sprintf("http://127.0.0.1:%d/login: score", b)) ||
		!strings.Contains(out.String(), "note: the redirects of "+away+" end on another host, 127.0.0.1, whose answer is graded") {
		t.Fatalf("off-host redirect, text: %v\n%s", err, out.String())
	}
	out.Reset()
	var rep observatory.Report
	if err := runGrade(context.Background(), &out, away, "", "", "", true); err != nil || json.Unmarshal(out.Bytes(), &rep) != nil ||
		!strings.Contains(rep.Note, "another host, 127.0.0.1") {
		t.Fatalf("off-host redirect, --json: %v\n%s", err, out.String())
	}
	out.Reset()
	err := runGrade(context.Background(), &out, away, "", "", "F", false)
	if err == nil || !strings.Contains(err.Error(), "ends on another host") {
		t.Fatalf("off-host redirect with --min-grade F: %v, want a failure\n%s", err, out.String())
	}

	// Another port of the same host is the same site: no note, and the gate passes.
	out.Reset()
	if err := runGrade(context.Background(), &out, fmt.Sprintf("http://localhost:%d/port", a), "", "", "F", false); err != nil ||
		strings.Contains(out.String(), "note:") {
		t.Fatalf("same-host redirect with --min-grade F: %v\n%s", err, out.String())
	}
}

// TestOtherHostIDN: a host written in Unicode in --url reaches the server as its A-label
// (xn--...), so the redirect Caddy sends back names it that way: the same host, not another.
func TestOtherHostIDN(t *testing.T) {
	for _, c := range []struct{ target, graded, want string }{
		{"http://bücher.example/", "https://xn--bcher-kva.example/", ""},
		{"http://BÜCHER.example./", "https://xn--bcher-kva.example:8443/", ""},
		{"http://bücher.example/", "https://sso.example.net/login", "sso.example.net"},
		{"http://[::1]:8080/", "https://[::1]:8443/", ""},
	} {
		if got := otherHost(c.target, c.graded); got != c.want {
			t.Errorf("otherHost(%s, %s) = %q, want %q", c.target, c.graded, got, c.want)
		}
	}
}
