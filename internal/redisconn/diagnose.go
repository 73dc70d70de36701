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

// Cause is what a failed Redis command reveals: a configuration mistake, or an outage.
type Cause int

// The causes Diagnose recognises.
const (
	// Unknown: nothing in the error names the cause (a network fault, an unexpected reply).
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
	// NotCluster: the configuration names a Cluster (cluster) and the server runs without
	// cluster support: a standalone server, to give as a URL.
	NotCluster
	// ClusterNode: the configuration names one server (a URL) and it is a node of a Cluster:
	// commands on keys of other nodes' slots are refused with MOVED.
	ClusterNode

	// The outages: Redis did not answer. Waiting may end them; the address is what to check.

	// Refused: the connection was refused, nothing listens at the address.
	Refused
	// Unresolvable: the host name does not resolve.
	Unresolvable
	// NoAnswer: no answer within the timeouts (a firewall that drops, a frozen server).
	NoAnswer
	// NoSocket: no Unix socket at the path.
	NoSocket
)

// Mistake reports whether the cause is a configuration mistake (Redis answered, or a TLS or
// Cluster setting does not match the server), rather than an outage or an unknown failure.
func (c Cause) Mistake() bool { return c >= Credentials && c <= ClusterNode }

// Diagnosis names what went wrong in words an operator can act on. Summary says what happened
// ("redis refused this client's credentials", "redis unreachable"), Hint why or what to check,
// in parentheses when it stands alone ("(connection refused: nothing listens there)"), Fix what
// to change in the configuration (the hardening option's redis) or what to check. Every user of
// a Redis connection (the app's startup ping, the monitoring checks) words the same failure the
// same way through it: the one place that explains Redis errors.
type Diagnosis struct {
	Cause   Cause
	Summary string
	Hint    string
	Fix     string
}

// String is the summary and the hint, e.g. for a check's output.
func (d Diagnosis) String() string {
	if d.Hint == "" {
		return d.Summary
	}
	return d.Summary + " " + d.Hint
}

// Diagnose reads the error of a command sent with a client built from o. A configuration
// mistake is named before an outage (a TLS client's timeout against a plain port is the
// mismatch); an error that names neither is Unknown, worded as an outage ("it did not
// answer").
func Diagnose(err error, o Options) Diagnosis {
	if err == nil {
		return Diagnosis{}
	}
	msg := err.Error()
	switch {
	case RefusedCredentials(err):
		return Diagnosis{Credentials, "redis refused this client's credentials", "(username, password or ACL)", credentialsFix(msg, o)}
	case strings.Contains(msg, "DB index is out of range"):
		// The server answered: it has fewer databases than the db asked for.
		return Diagnosis{MissingDB, "redis refused the configured db", "(the server has fewer databases: see its `databases` setting, 16 by default)",
			"give a db the server has (0 to its `databases` - 1), in the URL's path or with db"}
	case certificateRefused(err):
		// The server answered the handshake: its certificate is the problem, not reachability.
		return Diagnosis{Certificate, "redis's TLS certificate was refused", "(signed by a CA neither this machine nor tls ca_file trusts, or issued for another name than the address or tls server_name)",
			"trust the CA that issued it with tls { ca_file <pem> }, and connect by a name its certificate holds (or set tls { server_name <name> })"}
	case o.TLSEnabled() && (isTimeout(err) || strings.Contains(msg, "does not look like a TLS handshake")):
		return Diagnosis{TLSHandshake, "redis did not complete the TLS handshake", "(TLS is on: rediss:// or tls): the port may serve plain Redis, which never answers one (use its tls-port, or turn TLS off), or Redis is down or a firewall drops the traffic",
			"give the server's tls-port, or, for a port that serves plain Redis, redis:// without a tls block"}
	case !o.TLSEnabled() && o.Mode() != Sentinel && (errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)):
		return Diagnosis{PlainToTLSPort, "redis closed the connection", "without an answer: a port that serves TLS only (tls-port) does that to plain connections (use rediss:// or tls)",
			"use rediss:// (or a tls block) for this port, or give the server's plain port"}
	case o.Mode() == Sentinel && errors.Is(err, redis.Nil):
		// go-redis says "all sentinels ... unreachable" also when a sentinel answered that it
		// knows no master of that name: a typo, not an outage.
		return Diagnosis{UnknownMaster, "a sentinel answered", fmt.Sprintf("but knows no master named %q (check the name)", o.SentinelMaster),
			"give the name the sentinels monitor (their `sentinel monitor <name> ...`; SENTINEL MASTERS lists them) as the first argument of sentinel"}
	case o.Mode() == Cluster && strings.Contains(msg, "cluster support disabled"):
		// The server answered CLUSTER SLOTS with an error: it is no Cluster node.
		return Diagnosis{NotCluster, "redis is no Cluster node", "(it runs without cluster support) but is given as cluster",
			"give a standalone server as a URL (redis redis://<host:port>/0), not with cluster"}
	case o.Mode() == Standalone && (strings.HasPrefix(msg, "MOVED ") || strings.Contains(msg, ": MOVED ")):
		return Diagnosis{ClusterNode, "redis is a Cluster node", "but is given as one server (a URL): it refuses commands on keys of other nodes' slots (MOVED)", ClusterNodeFix}
	}
	return unreachable(err)
}

// unreachable words an outage: why Redis did not answer (nothing listens, no answer, a name
// that does not resolve, no socket) and what to check.
func unreachable(err error) Diagnosis {
	const summary = "redis unreachable"
	var dns *net.DNSError
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return Diagnosis{Refused, summary, "(connection refused: nothing listens there)",
			"check the host and port (redis-server's default is 6379, a sentinel's 26379) and that Redis runs"}
	case errors.As(err, &dns):
		return Diagnosis{Unresolvable, summary, "(the host name does not resolve)", "check the host name"}
	case isTimeout(err):
		return Diagnosis{NoAnswer, summary, "(no answer within dial_timeout + read_timeout)",
			"check the address, and that no firewall drops the traffic; a Redis this slow at the start of a connection is overloaded"}
	case errors.Is(err, syscall.ENOENT):
		return Diagnosis{NoSocket, summary, "(no socket at that path)", "check the socket path (unixsocket in redis.conf) and that Redis runs"}
	}
	return Diagnosis{Unknown, summary, "(it did not answer)", "check the address and that Redis runs"}
}

// ClusterNodeFix is what to write for a Cluster node given as a URL.
const ClusterNodeFix = "give the Cluster's nodes with cluster <host:port>... instead of the URL"

// credentialsFix says which setting to change for refused credentials: NOAUTH means none was
// sent where the server wants one; with Sentinel, a refusal wrapped in "all sentinels" is the
// sentinels' own password, not the master's; NOPERM is an ACL that lacks a permission (the
// command, when Redis names it).
func credentialsFix(msg string, o Options) string {
	switch cmd := RefusedCommand(errors.New(msg)); {
	case cmd != "":
		return fmt.Sprintf("grant the ACL user the command Redis refused: ACL SETUSER <user> +%s (what the modules use: ~<key_prefix>* &<key_prefix>* +@all -@dangerous)", cmd)
	case strings.Contains(msg, "NOPERM") || strings.Contains(msg, scriptRefusal):
		return "grant the ACL user the commands and keys the modules use (ACL SETUSER <user> ~<key_prefix>* &<key_prefix>* +@all -@dangerous; a narrower user needs +time besides its categories)"
	case o.Mode() == Sentinel && strings.Contains(msg, "sentinels"):
		return "set sentinel_password (and sentinel_username for an ACL user) to what the sentinels require (their requirepass); password is the master's"
	case strings.Contains(msg, "NOAUTH") && !o.HasPassword():
		return "the server requires a password and none is sent: add password {env.REDIS_PASSWORD} (its requirepass, or the ACL user's with username)"
	}
	return "set password (and username for an ACL user) to what the server requires: its requirepass, or the ACL user's password"
}

// RefusedCredentials reports whether Redis answered but refused the client's credentials or
// its ACL refused the command: a configuration mistake, not an outage. The code starts the
// error, or follows a wrapping (go-redis's for sentinels refusing sentinel_password: "redis: all
// sentinels specified in configuration are unreachable: WRONGPASS ...", a Cluster node's
// address: "127.0.0.1:7000: NOPERM ...").
func RefusedCredentials(err error) bool {
	msg := err.Error()
	for _, code := range []string{"WRONGPASS", "NOAUTH", "NOPERM"} {
		if hasCode(msg, code) {
			return true
		}
	}
	return ScriptRefused(err)
}

// hasCode reports whether a Redis error code (READONLY, NOPERM) starts msg or follows a
// wrapping ("rate limit store unavailable: redis: READONLY ...", "127.0.0.1:7000: NOPERM ...").
func hasCode(msg, code string) bool {
	return strings.HasPrefix(msg, code+" ") || strings.Contains(msg, ": "+code+" ")
}

// scriptRefusal is what Redis 7 answers when the ACL refuses a command a Lua script calls: an
// ERR, not a NOPERM, and without the command's name.
const scriptRefusal = "The user executing the script can't run this command"

// ScriptRefused reports whether the ACL refused a command that a script called (the rate
// limiter's script calls TIME, which a user granted only +@read +@write +@scripting lacks:
// TIME is in no category but @fast).
func ScriptRefused(err error) bool { return strings.Contains(err.Error(), scriptRefusal) }

// RefusedCommand names the command an ACL refused, lower case as Redis writes it ("subscribe"
// of "NOPERM this user has no permissions to run the 'subscribe' command"); "" when the error
// names none (a key or channel refused, a script's call).
func RefusedCommand(err error) string {
	msg := err.Error()
	const lead = "permissions to run the '"
	i := strings.Index(msg, lead)
	if !hasCode(msg, "NOPERM") || i < 0 {
		return ""
	}
	name, _, ok := strings.Cut(msg[i+len(lead):], "'")
	if !ok || name == "" || len(name) > 64 || strings.ContainsAny(name, " \t\r\n") {
		return ""
	}
	return name
}

// ReadOnly reports whether Redis refused a write because the server is a read-only replica
// (READONLY): the address names a replica (a stale URL after a failover, a replica's service).
// Redis answers, and reads work: it is not an outage, and waiting does not end it.
func ReadOnly(err error) bool { return hasCode(err.Error(), "READONLY") }

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
