package caddymodule

import (
	"net/http"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"golang.org/x/net/http/httpguts"
)

// refusedVar marks a request that one of our handlers answered itself, refusing it before it
// reached the rest of the route (policy_rate_limit, path_guard): an upstream_breaker written
// around that handler (in a route block, before it) must not judge the upstream by that
// answer, which the upstream never saw. Counted, a 503 refusal was an upstream failure (one
// client over its limit opened the breaker for everyone) and a 429 a success (refusals reset
// consecutive failures, and a refused probe closed a half-open breaker).
const refusedVar = "hardening.refused"

// markRefused marks r as answered by a refusal of ours, and readies w for an answer that
// leaves the body unread (see closeForHeldBody); call it before writing the refusal.
func markRefused(w http.ResponseWriter, r *http.Request) {
	caddyhttp.SetVar(r.Context(), refusedVar, true)
	closeForHeldBody(w, r)
}

// closeForHeldBody sets `Connection: close` on the answer to an HTTP/1.1 request whose client
// holds its body back until it hears 100 Continue (`Expect: 100-continue`), for an answer that
// does not read the body (a refusal). net/http sends such an answer at once, and closes the
// connection, only while the request's body is its own; Caddy replaces it with its own reader
// (the access log's byte count, read timeouts), and net/http then reads the body, to reuse
// the connection, before the answer goes out: the client waits for a 100 Continue that never
// comes (curl a second, then it uploads the body that was refused; a strict client until its
// timeout). With `Connection: close` net/http skips that read, as it does itself for such a
// request: the answer goes out at once and the body is never sent.
func closeForHeldBody(w http.ResponseWriter, r *http.Request) {
	if r.ProtoMajor == 1 && r.ProtoMinor >= 1 && r.ContentLength != 0 &&
		httpguts.HeaderValuesContainsToken(r.Header["Expect"], "100-continue") {
		w.Header().Set("Connection", "close")
	}
}

// refused reports whether a request's vars carry the mark of markRefused.
func refused(vars map[string]any) bool {
	v, _ := vars[refusedVar].(bool)
	return v
}
