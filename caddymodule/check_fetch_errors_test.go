package caddymodule

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/swarmsec/caddy-hardening/internal/testenv"
)

// listen serves each connection of a loopback listener with serve, until the test ends.
func listen(t *testing.T, serve func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
			serve(c)
		}
	}()
	return ln.Addr().String()
}

// TestCheckGradeNetworkFailures: `check --url` against a host that never answers printed, after
// 10 s, Go's `Get "http://...": context deadline exceeded (Client.Timeout exceeded while
// awaiting headers)`, and the other failures (refused, DNS, TLS) Go's messages alone; each now
// says, after the URL, what happened and what to do.
func TestCheckGradeNetworkFailures(t *testing.T) {
	defer func(d time.Duration) { gradeTimeout = d }(gradeTimeout)
	gradeTimeout = 500 * time.Millisecond // the same path as 10 s, sooner

	silent := listen(t, func(net.Conn) {})                   // accepts, never answers
	closing := listen(t, func(c net.Conn) { _ = c.Close() }) // accepts, hangs up
	plain := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer plain.Close()
	noCert := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	noCert.TLS = &tls.Config{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
		return nil, errors.New("no certificate for this name") // as Caddy for a name it has no site for
	}}
	noCert.StartTLS() // asked for by name (localhost): by address, it sends its own certificate
	defer noCert.Close()
	refused := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))

	for _, tc := range []struct{ url, want string }{
		{"http://" + silent + "/", "no response within 500ms"},
		{"https://" + silent + "/", "no response within 500ms"},
		{"http://" + refused + "/", "the connection was refused: nothing listens on that address and port"},
		{"https://" + refused + "/", "the connection was refused"},
		{"http://no-such-host.invalid/", "DNS"},
		{"https://" + strings.TrimPrefix(plain.URL, "http://") + "/", "the server answered the TLS handshake in plain HTTP: that port serves http://, not https://"},
		{strings.Replace(noCert.URL, "127.0.0.1", "localhost", 1) + "/", "the server refused the TLS handshake (tls: internal error): it may have no certificate for this host name"},
		{"http://" + closing + "/", "the server closed the connection without an answer"},
		{"https://" + closing + "/", "the server closed the connection without an answer"},
	} {
		var out bytes.Buffer
		err := runGrade(context.Background(), &out, tc.url, "", "", "", false)
		if err == nil || !strings.HasPrefix(err.Error(), tc.url+": ") || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), `Get "`) {
			t.Errorf("%s: %v\nwant the URL, then %q", tc.url, err, tc.want)
		}
	}
}

// TestFetchFailureServerClosedBeforeTheRequest: a server that hangs up at once fails the fetch
// with EOF or, when the close comes before the request is written, net/http's "server closed
// idle connection"; both say the same (CI saw the second on the `closing` listener above).
func TestFetchFailureServerClosedBeforeTheRequest(t *testing.T) {
	err := &url.Error{Op: "Get", URL: "http://127.0.0.1:1/", Err: errors.New("http: server closed idle connection")}
	if got, want := fetchFailure(err, ""), "http://127.0.0.1:1/: the server closed the connection without an answer"; !strings.HasPrefix(got, want) {
		t.Fatalf("fetchFailure = %q, want it to start with %q", got, want)
	}
}
