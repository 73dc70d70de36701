package redisconn

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/redis/go-redis/v9"
)

// Cause is the configuration mistake a failed Redis command reveals.
type Cause int

// The causes Diagnose recognises.
const (
	// Unknown: nothing in the error points at the configuration (Redis down, a network fault).
	Unknown Cause = iota
	// Credentials: Redis answered and refused the username, password or ACL.
	Credentials
	// MissingDB: the server has fewer databases than the db asked for.
	MissingDB
	// Certificate: the server's TLS certificate failed verification.
	Certificate
	// TLSHandshake: TLS is on and the handshake never completed (a plain port, or no server).
	TLSHandshake
	// PlainToTLSPort: a plain connection was closed without an answer (a TLS-only port).
	PlainToTLSPort
	// UnknownMaster: a sentinel answered but monitors no master of the configured name.
	UnknownMaster
)

// Diagnosis names what went wrong in words an operator can act on. Summary says what happened
// ("redis refused this client's credentials"), Hint what to check; both are empty for Unknown.
// Every user of a Redis connection (the app's startup ping, the monitoring checks) words the
// same failure the same way through it.
type Diagnosis struct {
	Cause   Cause
	Summary string
	Hint    string
}

// String is the summary and the hint, e.g. for a check's output.
func (d Diagnosis) String() string {
	if d.Hint == "" {
		return d.Summary
	}
	return d.Summary + " " + d.Hint
}

// Diagnose reads the error of a command sent with a client built from o.
func Diagnose(err error, o Options) Diagnosis {
	if err == nil {
		return Diagnosis{}
	}
	msg := err.Error()
	switch {
	case RefusedCredentials(err):
		return Diagnosis{Credentials, "redis refused this client's credentials", "(username, password or ACL)"}
	case strings.Contains(msg, "DB index is out of range"):
		// The server answered: it has fewer databases than the db asked for.
		return Diagnosis{MissingDB, "redis refused the configured db", "(the server has fewer databases: see its `databases` setting, 16 by default)"}
	case certificateRefused(err):
		// The server answered the handshake: its certificate is the problem, not reachability.
		return Diagnosis{Certificate, "redis's TLS certificate was refused", "(signed by a CA neither this machine nor tls ca_file trusts, or issued for another name than the address or tls server_name)"}
	case o.TLSEnabled() && (isTimeout(err) || strings.Contains(msg, "does not look like a TLS handshake")):
		return Diagnosis{TLSHandshake, "redis did not complete the TLS handshake", "(TLS is on: rediss:// or tls): the port may serve plain Redis, which never answers one (use its tls-port, or turn TLS off), or Redis is down or a firewall drops the traffic"}
	case !o.TLSEnabled() && o.Mode() != Sentinel && (errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)):
		return Diagnosis{PlainToTLSPort, "redis closed the connection", "without an answer: a port that serves TLS only (tls-port) does that to plain connections (use rediss:// or tls)"}
	case o.Mode() == Sentinel && errors.Is(err, redis.Nil):
		// go-redis says "all sentinels ... unreachable" also when a sentinel answered that it
		// knows no master of that name: a typo, not an outage.
		return Diagnosis{UnknownMaster, "a sentinel answered", fmt.Sprintf("but knows no master named %q (check the name)", o.SentinelMaster)}
	}
	return Diagnosis{}
}

// RefusedCredentials reports whether Redis answered but refused the client's credentials or
// its ACL refused the command: a configuration mistake, not an outage. The code starts the
// error, or follows a wrapping (go-redis's for sentinels refusing sentinel_password: "redis: all
// sentinels specified in configuration are unreachable: WRONGPASS ...", a Cluster node's
// address: "127.0.0.1:7000: NOPERM ...").
func RefusedCredentials(err error) bool {
	msg := err.Error()
	for _, code := range []string{"WRONGPASS", "NOAUTH", "NOPERM"} {
		if strings.HasPrefix(msg, code) || strings.Contains(msg, ": "+code+" ") {
			return true
		}
	}
	return false
}

// Full reports whether Redis refused a write for want of memory: maxmemory reached under the
// noeviction policy (the error starts "OOM command not allowed"). Redis answers, and reads
// work: it is not an outage, and waiting does not end it.
func Full(err error) bool {
	msg := err.Error()
	return strings.HasPrefix(msg, "OOM ") || strings.Contains(msg, ": OOM ")
}

// certificateRefused reports whether the TLS handshake failed on the server's certificate.
func certificateRefused(err error) bool {
	var verify *tls.CertificateVerificationError
	var unknown x509.UnknownAuthorityError
	var host x509.HostnameError
	var invalid x509.CertificateInvalidError
	return errors.As(err, &verify) || errors.As(err, &unknown) || errors.As(err, &host) || errors.As(err, &invalid)
}

// isTimeout reports whether err is a deadline: the client's, or the connection's.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}
