package monitor

import (
	"context"
	"encoding/pem"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// flaky is an upstream whose answer the test switches.
func flaky(t *testing.T) (*httptest.Server, *atomic.Int32) {
	var code atomic.Int32
	code.Store(200)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Probe") != "yes" || r.Host != "billing.internal" {
			w.WriteHeader(400)
			return
		}
		w.WriteHeader(int(code.Load()))
		_, _ = w.Write([]byte(`{"database":"ok"}`))
	}))
	t.Cleanup(srv.Close)
	return srv, &code
}

func TestHTTPCheckerFailsAndRecovers(t *testing.T) {
	srv, code := flaky(t)
	h, err := NewHTTPChecker(HTTPOptions{URL: srv.URL + "/healthz", Header: http.Header{"X-Probe": {"yes"}, "Host": {"billing.internal"}},
		Expect: []StatusRange{{200, 200}}, BodyContains: `"database":"ok"`})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if out := h.Check(context.Background()); out.Status != Pass {
		t.Fatalf("healthy: %+v", out)
	}
	code.Store(503)
	if out := h.Check(context.Background()); out.Status != Fail || out.Output != "status 503, expected 200" {
		t.Fatalf("503: %+v", out)
	}
	code.Store(200)
	if out := h.Check(context.Background()); out.Status != Pass {
		t.Fatalf("recovered: %+v", out)
	}
	h2, _ := NewHTTPChecker(HTTPOptions{URL: srv.URL, Header: http.Header{"X-Probe": {"yes"}, "Host": {"billing.internal"}}, BodyContains: "nope"})
	if out := h2.Check(context.Background()); out.Status != Fail || !strings.Contains(out.Output, "do not contain") {
		t.Fatalf("body substring missing: %+v", out)
	}
	srv.Close()
	if out := h.Check(context.Background()); out.Status != Fail || strings.Contains(out.Output, "/healthz") {
		t.Fatalf("server gone (the cause, not the URL): %+v", out)
	}
}

func TestHTTPCheckerDoesNotFollowRedirects(t *testing.T) {
	srv := httptest.NewServer(http.RedirectHandler("/login", http.StatusFound))
	defer srv.Close()
	h, _ := NewHTTPChecker(HTTPOptions{URL: srv.URL})
	if out := h.Check(context.Background()); out.Status != Fail || !strings.Contains(out.Output, "302") {
		t.Fatalf("%+v", out)
	}
	h, _ = NewHTTPChecker(HTTPOptions{URL: srv.URL, Expect: []StatusRange{{300, 399}}})
	if out := h.Check(context.Background()); out.Status != Pass {
		t.Fatalf("3xx expected: %+v", out)
	}
}

func TestHTTPCheckerVerifiesTLS(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	h, _ := NewHTTPChecker(HTTPOptions{URL: srv.URL})
	// The output names the way out: the CA is a configuration matter, not an outage.
	if out := h.Check(context.Background()); out.Status != Fail || !strings.Contains(out.Output, "certificate") ||
		!strings.HasSuffix(out.Output, "; trust the server's CA with the check's ca_file") {
		t.Fatalf("an unknown CA must fail: %+v", out)
	}
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	h, err := NewHTTPChecker(HTTPOptions{URL: srv.URL, CAFile: ca})
	if err != nil {
		t.Fatal(err)
	}
	if out := h.Check(context.Background()); out.Status != Pass {
		t.Fatalf("trusted through ca_file: %+v", out)
	}
	if _, err := NewHTTPChecker(HTTPOptions{URL: srv.URL, CAFile: filepath.Join(t.TempDir(), "none.pem")}); err == nil {
		t.Fatal("a missing ca_file was accepted")
	}
}

func TestParseHTTPOptions(t *testing.T) {
	for _, bad := range []string{"", "billing.internal/healthz", "ftp://x/", "http://", "https://u:hunter2@/x"} {
		_, err := ParseCheckURL(bad)
		if err == nil {
			t.Errorf("%q accepted", bad)
		} else if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("error shows the password: %v", err)
		}
	}
	for in, want := range map[string]StatusRange{"200": {200, 200}, "2xx": {200, 299}, "503": {503, 503}} {
		if got, err := ParseStatusRange(in); err != nil || got != want {
			t.Errorf("%q: %v %v", in, got, err)
		}
	}
	for _, bad := range []string{"20", "600", "6xx", "abc", "2XX"} {
		if _, err := ParseStatusRange(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if got := SafeTarget("https://u:p@billing.internal:8443/healthz?token=abc"); got != "https://billing.internal:8443/healthz" {
		t.Errorf("SafeTarget = %q", got)
	}
}

func TestTCPCheckerFailsAndRecovers(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	c := TCPChecker{Address: addr}
	if out := c.Check(context.Background()); out.Status != Pass {
		t.Fatalf("listening: %+v", out)
	}
	l.Close()
	if out := c.Check(context.Background()); out.Status != Fail || !strings.Contains(out.Output, "refused") {
		t.Fatalf("closed: %+v", out)
	}
	l, err = net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listening again on %s: %v", addr, err)
	}
	defer l.Close()
	if out := c.Check(context.Background()); out.Status != Pass {
		t.Fatalf("listening again: %+v", out)
	}
}

// TestHTTPCheckOfAHungServerNamesTheTimeout: a server that never answers fails the check with
// the timeout in its output, not Go's "context deadline exceeded" alone.
func TestHTTPCheckOfAHungServerNamesTheTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer srv.Close()
	defer close(release)
	h, err := NewHTTPChecker(HTTPOptions{URL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewCheck(Config{Name: "app", Interval: time.Minute, Timeout: 100 * time.Millisecond, FailuresBeforeDown: 1}, h)
	if err != nil {
		t.Fatal(err)
	}
	st := c.RunOnce(context.Background())
	if st.Up || st.Status != Fail || !strings.HasPrefix(st.Output, "no answer within the check's timeout (100ms): ") {
		t.Fatalf("%+v", st)
	}
}

// TestHTTPCheckerSaysWhatItExpected: a failed status names the statuses expected, and a
// redirect says where it leads (without its query, which may hold a token) and that it is not
// followed: "status 302 is not the expected one" sent operators looking for a broken server.
func TestHTTPCheckerSaysWhatItExpected(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/moved" {
			http.Redirect(w, r, "https://login.example/healthz?token=secret", http.StatusFound)
			return
		}
		w.WriteHeader(http.StatusTeapot)
	}))
	t.Cleanup(srv.Close)
	for _, tc := range []struct {
		path   string
		expect []StatusRange
		want   string
	}{
		{"/moved", nil, "status 302, expected 2xx; the redirect to https://login.example/healthz is not followed (expect 302, or check its target)"},
		{"/teapot", []StatusRange{{200, 200}, {204, 204}, {300, 399}}, "status 418, expected 200, 204 or 3xx"},
	} {
		h, err := NewHTTPChecker(HTTPOptions{URL: srv.URL + tc.path, Expect: tc.expect})
		if err != nil {
			t.Fatal(err)
		}
		if out := h.Check(context.Background()); out.Status != Fail || out.Output != tc.want {
			t.Errorf("%s: %q, want %q", tc.path, out.Output, tc.want)
		}
		h.Close()
	}
}
