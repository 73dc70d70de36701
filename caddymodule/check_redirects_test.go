package caddymodule

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// redirectingHandler redirects /a to /b and /b back to /a (a loop), /n/<i> to /n/<i+1> (a
// chain without end), and /c to itself with a cookie, which it then answers (no loop for a
// browser); other paths answer 200.
func redirectingHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/a":
			http.Redirect(w, r, "/b", http.StatusFound)
		case r.URL.Path == "/b":
			http.Redirect(w, r, "/a", http.StatusFound)
		case r.URL.Path == "/c" && r.Header.Get("Cookie") == "":
			http.SetCookie(w, &http.Cookie{Name: "seen", Value: "1", Path: "/"})
			http.Redirect(w, r, "/c", http.StatusFound)
		case strings.HasPrefix(r.URL.Path, "/n/"):
			i, _ := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/n/"))
			http.Redirect(w, r, fmt.Sprintf("/n/%d", i+1), http.StatusMovedPermanently)
		default:
			_, _ = w.Write([]byte("ok"))
		}
	})
}

// TestCheckGradeRedirectLoop: `check --url` against a URL whose redirects loop (or never end)
// said only `Error: more than 10 redirects` for an https:// URL, without the URL or the chain,
// and for an http:// URL graded the tenth redirect with a note about its 3xx status and exit 0.
// It now fails (exit 1) with the URL, whether the redirects loop or exceed 10, and the chain.
func TestCheckGradeRedirectLoop(t *testing.T) {
	plain := httptest.NewServer(redirectingHandler())
	defer plain.Close()
	tlsSrv := httptest.NewTLSServer(redirectingHandler())
	defer tlsSrv.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tlsSrv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		base, caFile string
	}{{plain.URL, ""}, {tlsSrv.URL, ca}} {
		loop := tc.base + "/a"
		var out bytes.Buffer
		err := runGrade(context.Background(), &out, loop, "", tc.caFile, "", false)
		want := loop + ": the redirects loop: " + loop + " → " + tc.base + "/b → " + loop
		if testing.Verbose() && err != nil {
			t.Log(err)
		}
		if err == nil || !strings.HasPrefix(err.Error(), want) || out.Len() != 0 {
			t.Errorf("loop: %v\n%s\nwant an error starting with %q and no grade", err, out.String(), want)
		}

		endless := tc.base + "/n/0"
		out.Reset()
		err = runGrade(context.Background(), &out, endless, "", tc.caFile, "", false)
		want = endless + ": more than 10 redirects: " + endless + " → " + tc.base + "/n/1 → "
		if err == nil || !strings.HasPrefix(err.Error(), want) || !strings.Contains(err.Error(), tc.base+"/n/10 → "+tc.base+"/n/11") ||
			strings.Contains(err.Error(), "/n/12") || out.Len() != 0 {
			t.Errorf("endless: %v\n%s\nwant an error starting with %q, the chain to /n/11, and no grade", err, out.String(), want)
		}
	}

	// A redirect that sets a cookie and comes back answers the second time: graded.
	var out bytes.Buffer
	if err := runGrade(context.Background(), &out, plain.URL+"/c", "", "", "", false); err != nil || strings.Contains(out.String(), "note:") {
		t.Errorf("a redirect back with a cookie: %v\n%s", err, out.String())
	}

	// An https:// URL that answers, whose http:// side loops: graded, the redirection test
	// fails and the note gives the chain.
	out.Reset()
	err := runGrade(context.Background(), &out, tlsSrv.URL+"/", plain.URL+"/a", ca, "", false)
	if err != nil || !strings.Contains(out.String(), "FAIL  -20  redirection                      redirection-loop") ||
		!strings.Contains(out.String(), "note: "+plain.URL+"/a: the redirects loop: ") {
		t.Errorf("https:// URL with a looping --http-url: %v\n%s", err, out.String())
	}
}

// TestCheckGradeBadFlags: `--url example.com` (no scheme) said `the URL must be absolute,
// http:// or https://` without the URL, and a missing --ca-file `open x: no such file or
// directory` without the flag; each now names the flag and its value, and the scheme-less
// URL gets the https:// it needs.
func TestCheckGradeBadFlags(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "root.crt")
	for _, tc := range []struct{ url, ca, want string }{
		{"example.com", "", "--url example.com: the URL must be absolute, http:// or https:// (https://example.com/?)"},
		{"ftp://example.com/", "", "--url ftp://example.com/: the URL must be absolute, http:// or https://"},
		{"https://example.com/", missing, "--ca-file " + missing + ": open " + missing + ": no such file or directory"},
		{"localhost:8443", "", "--url localhost:8443: the URL must be absolute, http:// or https:// (https://localhost:8443/?)"},
	} {
		var out bytes.Buffer
		if err := runGrade(context.Background(), &out, tc.url, "", tc.ca, "", false); err == nil || err.Error() != tc.want {
			t.Errorf("--url %s --ca-file %q: %v, want %q", tc.url, tc.ca, err, tc.want)
		}
	}
	err := runGrade(context.Background(), io.Discard, "https://example.com/", "example.com", "", "", false)
	if want := "--http-url example.com: the URL must be absolute, http:// (http://example.com/?)"; err == nil || err.Error() != want {
		t.Errorf("--http-url example.com: %v, want %q", err, want)
	}
}

// TestCheckGradeClientKeepsTheEnvironmentProxy: `check --url` went through HTTPS_PROXY (Go's
// default transport) without --ca-file and straight to the site with it (a bare transport),
// so a CI runner that must use a proxy failed only when it added the CA; both now use the
// environment's proxy (which Go never applies to loopback) and TLS 1.2 at least.
func TestCheckGradeClientKeepsTheEnvironmentProxy(t *testing.T) {
	srv := httptest.NewTLSServer(http.NotFoundHandler())
	defer srv.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, caFile := range []string{"", ca} {
		c, err := gradeClient(caFile)
		if err != nil {
			t.Fatal(err)
		}
		tr, ok := c.Transport.(*http.Transport)
		if !ok || tr.Proxy == nil || tr.TLSClientConfig == nil || tr.TLSClientConfig.MinVersion < tls.VersionTLS12 || c.Timeout != gradeTimeout {
			t.Errorf("--ca-file %q: transport %#v, timeout %v", caFile, c.Transport, c.Timeout)
		}
	}
}

// TestCheckGradeWholeRunBounded: each request of `check --url` was bounded (10 s) but not the
// run: a chain of slow redirects (up to 11 requests, and the https:// side) could hold a CI
// step for minutes. The run now ends at gradeDeadline with the URL and why.
func TestCheckGradeWholeRunBounded(t *testing.T) {
	defer func(d, w time.Duration) { gradeTimeout, gradeDeadline = d, w }(gradeTimeout, gradeDeadline)
	gradeTimeout, gradeDeadline = 2*time.Second, 400*time.Millisecond
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(100 * time.Millisecond) // each answer is in time; together they are not
		i, _ := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/n/"))
		if i < 8 {
			http.Redirect(w, r, fmt.Sprintf("/n/%d", i+1), http.StatusFound)
		}
	}))
	defer slow.Close()
	start := time.Now()
	err := runGrade(context.Background(), io.Discard, slow.URL+"/n/0", "", "", "", false)
	want := slow.URL + "/n/0: the check did not end within 400ms"
	if err == nil || !strings.HasPrefix(err.Error(), want) || time.Since(start) > time.Second {
		t.Fatalf("after %v: %v, want an error starting with %q", time.Since(start), err, want)
	}
}
