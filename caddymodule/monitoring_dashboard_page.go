package caddymodule

import (
	"net/http"

	"github.com/swarmsec/caddy-hardening/csp"
	"github.com/swarmsec/caddy-hardening/dashboard/page"
)

// serveDashboardPage writes the page under its own CSP. When security_headers wraps the route,
// its nonce is the one the page carries: its HTML rewriting then keeps the page's nonces
// instead of stripping them, and our policy replaces its CSP header (a replaced value stays).
func serveDashboardPage(w http.ResponseWriter) error {
	nonce := ""
	if sw := findSecurityWriter(w); sw != nil {
		nonce = sw.nonce
	}
	if nonce == "" {
		nonce = csp.NewNonce()
	}
	h := w.Header()
	h.Set("Content-Security-Policy", page.CSP(nonce))
	h.Del("Content-Security-Policy-Report-Only")
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Referrer-Policy", "no-referrer")
	return writeBody(w, http.StatusOK, page.Render(nonce))
}

// findSecurityWriter finds security_headers' writer among the wrappers of w.
func findSecurityWriter(w http.ResponseWriter) *securityWriter {
	for i := 0; i < 16 && w != nil; i++ {
		if sw, ok := w.(*securityWriter); ok {
			return sw
		}
		u, ok := w.(interface{ Unwrap() http.ResponseWriter })
		if !ok {
			return nil
		}
		w = u.Unwrap()
	}
	return nil
}
