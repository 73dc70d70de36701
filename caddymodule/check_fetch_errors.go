package caddymodule

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"time"

	"github.com/swarmsec/caddy-hardening/observatory"
)

// gradeTimeout bounds each request of `check --url`.
var gradeTimeout = 10 * time.Second

// gradeDeadline bounds a whole `check --url`: a chain of redirects is up to 11 requests, each
// bounded by gradeTimeout, and a CI step must not wait for all of them.
var gradeDeadline = time.Minute

// fetchFailure is why `check --url` could not fetch the site: for a failure of the network,
// of DNS or of TLS, what happened and what to do, instead of Go's message (`Get "...":
// context deadline exceeded (Client.Timeout exceeded while awaiting headers)`); for an
// untrusted certificate, withCAHint; else err's message.
func fetchFailure(err error, caFile string) string {
	var cert *observatory.CertError
	if errors.As(err, &cert) {
		return withCAHint(err, caFile)
	}
	where := "the site"
	var ue *url.Error
	if errors.As(err, &ue) {
		where = ue.URL
	}
	if s := networkFailure(err); s != "" {
		return where + ": " + s
	}
	return err.Error()
}

// errServerClosedIdle is net/http's unexported error for a connection the server closed before
// the request was written (a server that hangs up at once): the same failure as an EOF after
// it, which of the two depends on timing.
const errServerClosedIdle = "http: server closed idle connection"

// networkFailure describes err when it is one of the network's, DNS's or TLS's; "" otherwise.
func networkFailure(err error) string {
	var dns *net.DNSError
	var op *net.OpError
	var header tls.RecordHeaderError
	var ne net.Error
	switch {
	case errors.As(err, &dns) && dns.IsNotFound:
		return fmt.Sprintf("the host name %s does not resolve (DNS: no such host): check its spelling, and its DNS records as this machine's resolver sees them", dns.Name)
	case errors.As(err, &dns):
		return fmt.Sprintf("the DNS lookup of %s failed (%s): check this machine's resolver (/etc/resolv.conf) and its network", dns.Name, dns.Err)
	case errors.Is(err, syscall.ECONNREFUSED):
		return "the connection was refused: nothing listens on that address and port; check the port (http:// means 80 and https:// 443 unless the URL gives one) and that the server runs"
	case errors.Is(err, http.ErrSchemeMismatch):
		return "the server answered the TLS handshake in plain HTTP: that port serves http://, not https://; use http:// or the server's HTTPS port"
	case errors.As(err, &header):
		return "the server's answer to the TLS handshake is not TLS: that port serves another protocol; check the port"
	case errors.As(err, &op) && op.Op == "remote error":
		return fmt.Sprintf("the server refused the TLS handshake (%v): it may have no certificate for this host name (Caddy answers `internal error` for a name none of its sites has) or share no TLS version with this client (TLS 1.2 or later); check that the URL's host is one of the site's addresses", op.Err)
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) ||
		strings.Contains(err.Error(), errServerClosedIdle):
		return "the server closed the connection without an answer: look at the server's logs (a proxy or firewall refusing this client, a TLS port given http://, a crash)"
	case errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout():
		return fmt.Sprintf("no response within %s (the connection was not accepted, or it was and neither an answer nor, for https://, the TLS handshake came): check that the server is up, that the URL's host and port are right, and that no firewall between this machine and the server drops the traffic", gradeTimeout)
	}
	return ""
}
