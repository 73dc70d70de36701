package caddymodule

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/swarmsec/caddy-hardening/internal/testcaddy"
	"github.com/swarmsec/caddy-hardening/internal/testenv"
)

// A custom error page served by handle_errors runs outside the route that holds
// security_headers: in tags mode it went out with that route's policy (set before the error)
// and no nonce on its tags, so browsers blocked its own <style> and <script>, and nothing
// warned. Now it is a finding at start, silenced by repeating the directive in handle_errors
// (which gives the page the nonce of the policy it is sent with); a handle_errors that only
// responds with text serves no page and is no finding.
func TestTagsInHandleErrors(t *testing.T) {
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "error.html"), []byte(`<style>h1{}</style><h1>gone</h1>`), 0o644); err != nil {
		t.Fatal(err)
	}
	port := testenv.FreePort(t)
	site := func(errors string) string {
		return fmt.Sprintf(`http://127.0.0.1:%d {
	bind 127.0.0.1
	security_headers {
		inject_nonce tags
	}
	error "gone" 404
	handle_errors {
%s	}
}
`, port, errors)
	}
	page := fmt.Sprintf("\t\troot * %s\n\t\trewrite * /error.html\n\t\tfile_server\n", root)
	c := testcaddy.StartCaddy(t, site(page))
	finding := func(e testenv.LogEntry) bool { return e.Str("code") == "csp.tags_in_errors" }
	if found := testenv.Filter(c.Logs(), finding); len(found) != 1 || found[0].Level() != "warn" {
		t.Fatalf("want one WARN csp.tags_in_errors at start, got %v", found)
	}
	if err := c.Load(site("\t\tsecurity_headers {\n\t\t\tinject_nonce tags\n\t\t}\n" + page)); err != nil {
		t.Fatal(err)
	}
	if n := len(testenv.Filter(c.Logs(), finding)); n != 1 {
		t.Fatalf("security_headers repeated in handle_errors: still warned (%d warnings)", n)
	}
	resp, body := getBody(t, fmt.Sprintf("http://127.0.0.1:%d/x", port))
	nonce := cspNonce(t, resp.Header)
	if resp.StatusCode != http.StatusNotFound || body != `<style nonce="`+nonce+`">h1{}</style><h1>gone</h1>` {
		t.Fatalf("error page: status %d, body %q; want the response's nonce %s", resp.StatusCode, body, nonce)
	}
	if err := c.Load(site("\t\trespond \"error {err.status_code}\" {err.status_code}\n")); err != nil {
		t.Fatal(err)
	}
	if n := len(testenv.Filter(c.Logs(), finding)); n != 1 {
		t.Fatalf("handle_errors that only responds with text: warned (%d warnings)", n)
	}
}
