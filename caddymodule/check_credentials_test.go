package caddymodule

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/swarmsec/caddy-hardening/internal/testcaddy"
	"github.com/swarmsec/caddy-hardening/internal/testenv"
	"github.com/swarmsec/caddy-hardening/observatory"
)

// TestCheckGradeURLCredentials: a --url with credentials (a staging site behind basic_auth)
// was graded, but the report's URL, its notes and the errors printed them in full, into the CI
// log of the gate. The credentials still reach the site (as Basic authentication, on the URL's
// host only) and appear nowhere in the output.
func TestCheckGradeURLCredentials(t *testing.T) {
	port, other, closed := testenv.FreePort(t), testenv.FreePort(t), testenv.FreePort(t)
	const hash = "$2a$04$v9tdOiafwg6Zu1AuT7dAVe5zA8lYcYWXuBN98J217IAW7KbzoMX9a" // "hiccup" at bcrypt's least cost
	testcaddy.StartCaddy(t, fmt.Sprintf(`http://localhost:%d {
	bind 127.0.0.1
	basic_auth {
		ops %s
	}
	redir /away http://127.0.0.1:%d/ 302
	respond "ok"
}
http://127.0.0.1:%d {
	bind 127.0.0.1
	basic_auth {
		ops %s
	}
	respond "ok"
}
`, port, hash, other, other, hash))
	site := fmt.Sprintf("http://ops:hiccup@localhost:%d/", port)
	var out bytes.Buffer
	var rep observatory.Report
	if err := runGrade(context.Background(), &out, site, "", "", "", true); err != nil || json.Unmarshal(out.Bytes(), &rep) != nil {
		t.Fatalf("--json: %v\n%s", err, out.String())
	}
	if rep.Status != 200 || strings.Contains(out.String(), "hiccup") {
		t.Fatalf("status %d (want 200: the credentials reach the site), and no password in the report:\n%s", rep.Status, out.String())
	}
	out.Reset()
	if err := runGrade(context.Background(), &out, site, "", "", "", false); err != nil || strings.Contains(out.String(), "hiccup") ||
		!strings.Contains(out.String(), fmt.Sprintf("http://localhost:%d/: score", port)) {
		t.Fatalf("text: %v\n%s", err, out.String())
	}
	// Another host gets no credentials (it answers 401 without them), and the note names the
	// URL without them.
	out.Reset()
	away := fmt.Sprintf("http://ops:hiccup@localhost:%d/away", port)
	rep = observatory.Report{}
	if err := runGrade(context.Background(), &out, away, "", "", "", true); err != nil || json.Unmarshal(out.Bytes(), &rep) != nil ||
		rep.Status != 401 || strings.Contains(out.String(), "hiccup") {
		t.Fatalf("off-host redirect: %v\n%s", err, out.String())
	}
	// An error names the URL without its password.
	out.Reset()
	err := runGrade(context.Background(), &out, fmt.Sprintf("https://ops:hiccup@localhost:%d/", closed), "", "", "", false)
	if err == nil || strings.Contains(err.Error(), "hiccup") || strings.Contains(out.String(), "hiccup") {
		t.Fatalf("unreachable: %v\n%s", err, out.String())
	}
}

// TestCheckGradeURLCredentialsNotOverHTTP: the credentials of an https:// --url went, in
// clear text, to the http:// side the check also fetches for the redirection test (port 80 of
// the same host, or --http-url); a browser keeps them to the https:// origin. They now go over
// HTTPS only, unless the --url itself is http://.
func TestCheckGradeURLCredentialsNotOverHTTP(t *testing.T) {
	httpsPort, httpPort := testenv.FreePort(t), testenv.FreePort(t)
	const hash = "$2a$04$v9tdOiafwg6Zu1AuT7dAVe5zA8lYcYWXuBN98J217IAW7KbzoMX9a" // "hiccup"
	ca := localCertsCaddy(t, httpPort, httpsPort, `	basic_auth {
		ops `+hash+`
	}
	respond "ok"
`)
	var gotAuth atomic.Value
	gotAuth.Store("")
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotAuth.Store(r.Header.Get("Authorization"))
		http.Redirect(w, r, fmt.Sprintf("https://localhost:%d/", httpsPort), http.StatusPermanentRedirect)
	}))
	defer plain.Close()
	httpSide := strings.Replace(plain.URL, "127.0.0.1", "localhost", 1) + "/"
	var out bytes.Buffer
	var rep observatory.Report
	if err := runGrade(context.Background(), &out, fmt.Sprintf("https://ops:hiccup@localhost:%d/", httpsPort), httpSide, ca, "", true); err != nil ||
		json.Unmarshal(out.Bytes(), &rep) != nil || rep.Status != 200 {
		t.Fatalf("https:// with credentials: %v\n%s", err, out.String())
	}
	if a := gotAuth.Load().(string); a != "" {
		t.Fatalf("the http:// side got Authorization %q: the credentials of an https:// URL went over plain HTTP", a)
	}
}
