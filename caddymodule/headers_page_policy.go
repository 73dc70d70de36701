package caddymodule

import (
	"net/http"
	"slices"

	"github.com/swarmsec/caddy-hardening/csp"
)

// A handler after security_headers may set a policy of its own, with a nonce of its own on
// its page's tags: Caddy's file_server browse does on every directory listing, a template can.
// A page's nonces and the policy it is sent with must agree, or the browser blocks the page's
// own scripts and styles. The rules, applied when a page on an injecting route starts:
//
//   - takeOver: this handler's policy was replaced by one that lists one nonce of its own,
//     long enough to be a per-response secret (keep_upstream does not list the header). The
//     edge's policy is the one sent, and the page's nonce becomes this response's: the page's
//     own tags keep working under the edge's policy (its report-uri, frame-ancestors,
//     upgrade-insecure-requests), in both modes.
//   - Otherwise, when an enforced policy lists nonces but not this response's (keep_upstream,
//     or report-only here beside another enforcing one), the page's nonce attributes belong to
//     that policy and are left as they are: tags mode adds none, placeholder mode still
//     replaces its placeholder (and stays fail-closed) but removes no other nonce attribute.
//
// And on every response, X-Frame-Options says what the enforced frame-ancestors says
// (matchFrameOptions).

// pageMode decides how a page is rewritten (mode is the handler's, Placeholder or Tags): as
// the mode says when the policy sent lists this response's nonce or none, and otherwise
// leaving the page's nonces alone (Substitute for the placeholder alone, 0 for no rewriting).
// It takes the policy over first where takeOver says so.
func (sw *securityWriter) pageMode(mode csp.Mode) csp.Mode {
	hdr := sw.Header()
	if !sw.inner { // under a nested security_headers, that one's headers stand
		sw.takeOver(hdr)
	}
	for _, v := range hdr["Content-Security-Policy"] {
		if sw.h.cspHeader != "" && v == sw.vals[0] {
			continue // ours lists this response's nonce, or no nonce at all
		}
		if nonces := csp.Nonces(v); len(nonces) > 0 && !slices.Contains(nonces, sw.nonce) {
			if mode == csp.Placeholder {
				return csp.Substitute
			}
			return 0
		}
	}
	return mode
}

// takeOver sends this handler's policy instead of one that replaced it and lists one nonce of
// its own (at least csp.MinPlaceholderLen characters: a per-response secret, as browse's UUID
// is, not a short word anyone can guess), and remembers that nonce (alias) so that the page's
// tags carrying it get this response's, and the policy (taken) for giveBack. A value kept by
// keep_upstream stays.
func (sw *securityWriter) takeOver(hdr http.Header) {
	name := sw.h.cspHeader
	if name == "" || sw.h.keep[name] {
		return
	}
	vals := hdr[name]
	if len(vals) != 1 || vals[0] == sw.vals[0] {
		return
	}
	nonces := csp.Nonces(vals[0])
	if len(nonces) != 1 || nonces[0] == sw.nonce || len(nonces[0]) < csp.MinPlaceholderLen {
		return
	}
	hdr[name] = sw.vals[0:1:1]
	p := sw.rewriting()
	p.alias, p.taken = nonces[0], vals[0]
}

// giveBack undoes takeOver for a page passed as it is after all (tags mode, a page in an
// encoding the injector cannot read, see release): its tags keep their own nonce, so its own
// policy is sent.
func (sw *securityWriter) giveBack() {
	p := sw.page
	if p == nil || p.alias == "" {
		return
	}
	sw.Header()[sw.h.cspHeader] = []string{p.taken}
	p.alias, p.taken = "", ""
	sw.matchFrameOptions()
}

// matchFrameOptions makes this handler's X-Frame-Options say what the frame-ancestors of the
// enforced policy sent says, where that policy is not this handler's (one that replaced it and
// stayed, one kept by keep_upstream, or another enforcing one beside this handler's
// report-only policy): DENY, SAMEORIGIN, or none for a list of hosts. Browsers that know CSP
// follow frame-ancestors and ignore X-Frame-Options; the others would otherwise frame by a
// different rule. Without frame-ancestors there, or when X-Frame-Options was not left as this
// handler set it, nothing changes.
//
// Where this handler sends none because its frame-ancestors lists hosts, an X-Frame-Options
// set by anyone else (an application's SAMEORIGIN, Rails' default; a header directive) is
// made to say what the enforced frame-ancestors sent says, so removed beside a list of hosts,
// unless keep_upstream lists it. Where no enforced policy has frame-ancestors (report_only
// here, a rollout), it stays: it is what enforces.
func (sw *securityWriter) matchFrameOptions() {
	if sw.inner || sw.redactOnly {
		return
	}
	if sw.h.xfo == "" {
		if sw.h.xfoHosts && !sw.h.keep["X-Frame-Options"] {
			sw.matchOthersFrameOptions()
		}
		return
	}
	hdr := sw.Header()
	xfo := hdr["X-Frame-Options"]
	if len(xfo) != 1 || xfo[0] != sw.h.xfo {
		return
	}
	enforced := hdr["Content-Security-Policy"]
	if len(enforced) == 0 || len(enforced) == 1 && sw.h.cspHeader == "Content-Security-Policy" && enforced[0] == sw.vals[0] {
		return
	}
	switch v, ok := csp.FrameOptionsOf(enforced); {
	case !ok || v == xfo[0]:
	case v == "":
		delete(hdr, "X-Frame-Options")
	default:
		hdr["X-Frame-Options"] = []string{v}
	}
}

// matchOthersFrameOptions makes an X-Frame-Options that this handler did not set say what
// the frame-ancestors of the enforced policies sent say (see matchFrameOptions).
func (sw *securityWriter) matchOthersFrameOptions() {
	hdr := sw.Header()
	xfo, set := hdr["X-Frame-Options"]
	if !set {
		return
	}
	switch v, ok := csp.FrameOptionsOf(hdr["Content-Security-Policy"]); {
	case !ok:
	case v == "":
		delete(hdr, "X-Frame-Options")
	case len(xfo) != 1 || xfo[0] != v:
		hdr["X-Frame-Options"] = []string{v}
	}
}
