package caddymodule

import (
	"net/http"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// refusedVar marks a request that one of our handlers answered itself, refusing it before it
// reached the rest of the route (policy_rate_limit, path_guard): an upstream_breaker written
// around that handler (in a route block, before it) must not judge the upstream by that
// answer, which the upstream never saw. Counted, a 503 refusal was an upstream failure (one
// client over its limit opened the breaker for everyone) and a 429 a success (refusals reset
// consecutive failures, and a refused probe closed a half-open breaker).
const refusedVar = "hardening.refused"

// markRefused marks r as answered by a refusal of ours; call it before writing the refusal.
func markRefused(r *http.Request) { caddyhttp.SetVar(r.Context(), refusedVar, true) }

// refused reports whether a request's vars carry the mark of markRefused.
func refused(vars map[string]any) bool {
	v, _ := vars[refusedVar].(bool)
	return v
}
