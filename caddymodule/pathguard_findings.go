package caddymodule

import (
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/rewrite"
)

// clientPlaceholders start the placeholders whose value the client writes outside the path:
// the query, headers, cookies, the body. Caddy's rewrite puts their decoded value into the
// new path as it is (?f=..%2f..%2fetc%2fpasswd gives /files/../../etc/passwd).
var clientPlaceholders = []string{"{query", "{http.request.uri.query", "{http.request.orig_uri.query",
	"{header.", "{http.request.header.", "{cookie.", "{http.request.cookie.", "{http.request.body"}

// checkRewriteAfter warns about each rewrite that runs after this path_guard in its server and
// builds the new path from a placeholder the client writes outside the path (`rewrite /dl
// /files/{query.f}`): path_guard judged the request's path before the rewrite, so the path
// the upstream (or any later handler) receives holds whatever the query said, `..` included.
// Caddy's file_server keeps such a path under its root; a reverse_proxy forwards it as it is.
// It follows the handlers in the order Caddy runs them (routes, then subroutes), ignoring
// matchers: a rewrite that a disjoint matcher keeps away from the guard is reported too.
func (h *PathGuard) checkRewriteAfter(ctx caddy.Context) {
	for name, srv := range httpServers(ctx) {
		after := false
		walkHandlers(srv.Routes, "apps.http.servers."+name+".routes", func(hh caddyhttp.MiddlewareHandler, at string) {
			if hh == caddyhttp.MiddlewareHandler(h) {
				after = true
				return
			}
			rw, ok := hh.(*rewrite.Rewrite)
			if !ok || !after {
				return
			}
			p, _, _ := strings.Cut(rw.URI, "?")
			for _, ph := range clientPlaceholders {
				if i := strings.Index(p, ph); i >= 0 {
					used := p[i:]
					if j := strings.IndexByte(used, '}'); j >= 0 {
						used = used[:j+1]
					}
					_ = h.app.Report(Finding{Code: "path_guard.rewrite_after", Severity: Warning, Module: "http.handlers.path_guard", Config: at,
						Message: "a rewrite after path_guard builds the path from " + used + ", which the client writes and path_guard never judged: ?x=../../etc/passwd reaches the handlers after it, and a reverse_proxy's upstream, as /../../etc/passwd",
						Fix:     "run path_guard after the rewrite: route { rewrite ... ; path_guard ; reverse_proxy ... } (path_guard then judges the rewritten path)"})
					return
				}
			}
		})
	}
}

// walkHandlers calls fn with each handler of routes and of their subroutes, in the order Caddy
// runs them, and its place in the JSON config.
func walkHandlers(routes caddyhttp.RouteList, at string, fn func(caddyhttp.MiddlewareHandler, string)) {
	for i, r := range routes {
		for j, h := range r.Handlers {
			p := at + "." + strconv.Itoa(i) + ".handle." + strconv.Itoa(j)
			fn(h, p)
			if sub, ok := h.(*caddyhttp.Subroute); ok {
				walkHandlers(sub.Routes, p+".routes", fn)
			}
		}
	}
}
