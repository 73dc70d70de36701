package caddymodule

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/swarmsec/caddy-hardening/internal/testcaddy"
	"github.com/swarmsec/caddy-hardening/internal/testenv"
)

var (
	anyNonceInPolicy = regexp.MustCompile(`'nonce-([^']+)'`)
	nonceAttribute   = regexp.MustCompile(`nonce="([^"]*)"`)
)

// browseRoot is a folder with a sub-folder dir/ of three files, one of them named with the
// test placeholder (its name is written into the listing), for file_server browse.
func browseRoot(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	for _, name := range []string{"aaa.txt", "bbb.txt", testPlaceholder + ".txt"} {
		if err := os.MkdirAll(filepath.Join(root, "dir"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, "dir", name), []byte(name), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// browseCaddy starts a Caddy on port serving root's listings under prefixes of different
// security_headers blocks, all with report_uri /csp-report: /tags/ and /ph/ inject (the
// review's case), /plain/ does not, /kept/ keeps the listing's own policy (keep_upstream),
// /ro/ is report-only in placeholder mode.
func browseCaddy(t *testing.T, root string, port int) *testcaddy.Caddy {
	t.Helper()
	t.Setenv("TEST_CSP_PLACEHOLDER", testPlaceholder)
	route := func(prefix, options string) string {
		return fmt.Sprintf("\thandle_path /%s/* {\n\t\tsecurity_headers {\n\t\t\treport_uri /csp-report\n%s\t\t}\n\t\troot * %s\n\t\tfile_server browse\n\t}\n", prefix, options, root)
	}
	return testcaddy.StartCaddy(t, fmt.Sprintf("http://127.0.0.1:%d {\n\tbind 127.0.0.1\n\tcsp_report /csp-report\n", port)+
		route("tags", "\t\t\tinject_nonce tags\n")+
		route("ph", "\t\t\tinject_nonce placeholder {env.TEST_CSP_PLACEHOLDER}\n")+
		route("plain", "")+
		route("kept", "\t\t\tinject_nonce tags\n\t\t\tkeep_upstream Content-Security-Policy\n")+
		route("ro", "\t\t\tinject_nonce placeholder {env.TEST_CSP_PLACEHOLDER}\n\t\t\treport_only\n")+
		"}\n")
}

// policyNonce returns the one nonce a policy lists (all its nonce sources are the same).
func policyNonce(t *testing.T, policy string) string {
	t.Helper()
	var nonces []string
	for _, m := range anyNonceInPolicy.FindAllStringSubmatch(policy, -1) {
		if !slices.Contains(nonces, m[1]) {
			nonces = append(nonces, m[1])
		}
	}
	if len(nonces) != 1 {
		t.Fatalf("policy %q: want one nonce, got %q", policy, nonces)
	}
	return nonces[0]
}

// A handler after security_headers that sets its own policy with its own nonce (Caddy's
// file_server browse): on a route that injects, the edge's policy is sent and the listing's
// own tags carry the response's nonce, in both modes; where the listing's policy is the one
// sent (no inject_nonce, keep_upstream, or report-only here with the listing's enforcing),
// its tags keep their nonces. Either way X-Frame-Options says what the enforced
// frame-ancestors says, and the placeholder never leaves.
func TestBrowseListingNoncesMatchThePolicySent(t *testing.T) {
	port := testenv.FreePort(t)
	browseCaddy(t, browseRoot(t), port)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	get := func(prefix string) (*http.Response, string) {
		req, _ := http.NewRequest(http.MethodGet, base+"/"+prefix+"/dir/", nil)
		req.Header.Set("Accept", "text/html")
		resp, body := fetch(t, req)
		if resp.StatusCode != http.StatusOK || !strings.Contains(body, "bbb.txt") {
			t.Fatalf("%s: %d, not a listing: %.300q", prefix, resp.StatusCode, body)
		}
		if strings.Contains(body, testPlaceholder) && prefix != "tags" && prefix != "plain" && prefix != "kept" {
			t.Errorf("%s: the placeholder left the edge in the listing", prefix)
		}
		return resp, body
	}
	// checkBody: the page's nonce attributes are the two of the listing (its <style> and
	// <script>), each with the policy's nonce.
	checkBody := func(prefix, body, nonce string) {
		t.Helper()
		var got []string
		for _, m := range nonceAttribute.FindAllStringSubmatch(body, -1) {
			got = append(got, m[1])
		}
		if len(got) != 2 || got[0] != nonce || got[1] != nonce {
			t.Errorf("%s: nonce attributes %q, want the policy's %q on the listing's <style> and <script>", prefix, got, nonce)
		}
	}

	for _, prefix := range []string{"tags", "ph"} {
		resp, body := get(prefix)
		policies := resp.Header.Values("Content-Security-Policy")
		if len(policies) != 1 || resp.Header.Get("Content-Security-Policy-Report-Only") != "" {
			t.Fatalf("%s: policies %q, report-only %q: want the edge's only", prefix, policies, resp.Header.Get("Content-Security-Policy-Report-Only"))
		}
		nonce := policyNonce(t, policies[0])
		want := "default-src 'self'; script-src 'nonce-" + nonce + "' 'strict-dynamic'; style-src 'self' 'nonce-" + nonce +
			"'; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'; upgrade-insecure-requests; report-uri /csp-report"
		if policies[0] != want || len(nonce) != 24 {
			t.Errorf("%s: Content-Security-Policy %q\nwant %q", prefix, policies[0], want)
		}
		if got := resp.Header.Values("X-Frame-Options"); len(got) != 1 || got[0] != "DENY" {
			t.Errorf("%s: X-Frame-Options %q, want DENY (frame-ancestors 'none')", prefix, got)
		}
		if resp.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("%s: Cache-Control %q, want no-store (a nonced page)", prefix, resp.Header.Get("Cache-Control"))
		}
		checkBody(prefix, body, nonce)

		// HEAD gets the headers of GET.
		req, _ := http.NewRequest(http.MethodHead, base+"/"+prefix+"/dir/", nil)
		req.Header.Set("Accept", "text/html")
		head, _ := fetch(t, req)
		if got := head.Header.Get("Content-Security-Policy"); !strings.Contains(got, "report-uri /csp-report") || head.Header.Get("X-Frame-Options") != "DENY" {
			t.Errorf("%s: HEAD: Content-Security-Policy %q, X-Frame-Options %q: want GET's", prefix, got, head.Header.Get("X-Frame-Options"))
		}
	}

	// The listing's own policy is sent: its tags keep its nonce.
	for _, prefix := range []string{"plain", "kept", "ro"} {
		resp, body := get(prefix)
		policies := resp.Header.Values("Content-Security-Policy")
		if len(policies) != 1 || !strings.Contains(policies[0], "frame-ancestors 'self'") || strings.Contains(policies[0], "report-uri") {
			t.Fatalf("%s: Content-Security-Policy %q, want the listing's own", prefix, policies)
		}
		nonce := policyNonce(t, policies[0])
		if got := resp.Header.Values("X-Frame-Options"); len(got) != 1 || got[0] != "SAMEORIGIN" {
			t.Errorf("%s: X-Frame-Options %q, want SAMEORIGIN (the enforced frame-ancestors 'self')", prefix, got)
		}
		checkBody(prefix, body, nonce)
		if ro := resp.Header.Get("Content-Security-Policy-Report-Only"); (prefix == "ro") != strings.Contains(ro, "report-uri /csp-report") {
			t.Errorf("%s: Content-Security-Policy-Report-Only %q", prefix, ro)
		}
	}
}

// The general case, with a `header` directive for the handler that replaces the policy: one
// that lists a long nonce of its own is taken over on a page that is rewritten (and given back
// on one passed as it is: a UTF-16 page in tags mode); one whose nonce is short stays, and the
// page keeps its nonces (placeholder mode still replaces the placeholder). X-Frame-Options
// follows the frame-ancestors sent: none for a host list.
func TestPolicyReplacedByALaterHandler(t *testing.T) {
	const appNonce, shortNonce = "AppNonce0123456789xyz", "abc"
	pages := map[string]string{
		"/long/page":  `<!doctype html><script nonce="` + appNonce + `">a()</script><script nonce="other">b()</script>`,
		"/long/u16":   "\xff\xfe" + utf16Bytes(`<!doctype html><script nonce="`+appNonce+`">a()</script>`, false),
		"/short/page": `<!doctype html><script nonce="` + shortNonce + `">a()</script><p>` + testPlaceholder + `</p>`,
	}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		_, _ = io.WriteString(w, pages[r.URL.Path])
	}))
	t.Cleanup(up.Close)
	t.Setenv("TEST_CSP_PLACEHOLDER", testPlaceholder)
	port := testenv.FreePort(t)
	testcaddy.StartCaddy(t, fmt.Sprintf(`http://127.0.0.1:%d {
	bind 127.0.0.1
	handle /long/* {
		security_headers {
			inject_nonce tags
		}
		header Content-Security-Policy "script-src 'nonce-%s'"
		reverse_proxy %s
	}
	handle /short/* {
		security_headers {
			inject_nonce placeholder {env.TEST_CSP_PLACEHOLDER}
		}
		header Content-Security-Policy "script-src 'nonce-%s'; frame-ancestors https://partner.example"
		reverse_proxy %[3]s
	}
}
`, port, appNonce, up.Listener.Addr(), shortNonce))
	base := fmt.Sprintf("http://127.0.0.1:%d", port)

	resp, body := getBody(t, base+"/long/page")
	nonce := cspNonce(t, resp.Header)
	if !strings.Contains(resp.Header.Get("Content-Security-Policy"), "'strict-dynamic'") {
		t.Errorf("long nonce: Content-Security-Policy %q, want the edge's", resp.Header.Get("Content-Security-Policy"))
	}
	if want := `<!doctype html><script nonce="` + nonce + `">a()</script><script  nonce="` + nonce + `">b()</script>`; body != want {
		t.Errorf("long nonce: body %q\nwant %q", body, want)
	}
	if got := resp.Header.Get("X-Frame-Options"); got != "DENY" {
		t.Errorf("long nonce: X-Frame-Options %q, want DENY", got)
	}

	resp, body = getBody(t, base+"/long/u16")
	if got := resp.Header.Values("Content-Security-Policy"); len(got) != 1 || got[0] != "script-src 'nonce-"+appNonce+"'" || body != pages["/long/u16"] {
		t.Errorf("a page passed as it is: Content-Security-Policy %q, body changed %v; want the page's own policy and bytes", got, body != pages["/long/u16"])
	}

	resp, body = getBody(t, base+"/short/page")
	if got := resp.Header.Values("Content-Security-Policy"); len(got) != 1 || got[0] != "script-src 'nonce-"+shortNonce+"'; frame-ancestors https://partner.example" {
		t.Errorf("short nonce: Content-Security-Policy %q, want the header directive's", got)
	}
	if !strings.Contains(body, `<script nonce="`+shortNonce+`">`) || strings.Contains(body, testPlaceholder) || strings.Count(body, "<p>") != 1 {
		t.Errorf("short nonce: body %q: want the page's nonce kept and the placeholder replaced", body)
	}
	if got := resp.Header.Values("X-Frame-Options"); len(got) != 0 {
		t.Errorf("short nonce: X-Frame-Options %q, want none (frame-ancestors lists a host)", got)
	}
}
