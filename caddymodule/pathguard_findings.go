package caddymodule

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
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
// Caddy's file_server keeps such a path under its root, so only a rewrite that a reverse_proxy
// follows is reported. It follows the handlers in the order Caddy runs them (routes, then
// subroutes), ignoring matchers: a rewrite that a disjoint matcher keeps away from the guard
// is reported too.
func (h *PathGuard) checkRewriteAfter(ctx caddy.Context) {
	for name, srv := range httpServers(ctx) {
		after := false
		var pending []Finding // rewrites reported once a reverse_proxy follows them
		walkHandlers(srv.Routes, "apps.http.servers."+name+".routes", func(hh caddyhttp.MiddlewareHandler, at string) {
			switch hh := hh.(type) {
			case *PathGuard:
				after = after || hh == h
			case *reverseproxy.Handler:
				for _, f := range pending {
					_ = h.app.Report(f)
				}
				pending = nil
			case *rewrite.Rewrite:
				if !after {
					return
				}
				if used := clientPlaceholder(hh.URI); used != "" {
					pending = append(pending, Finding{Code: "path_guard.rewrite_after", Severity: Warning, Module: "http.handlers.path_guard", Config: at,
						Message: "a rewrite after path_guard builds the path from " + used + ", which the client writes and path_guard never judged: ?x=../../etc/passwd reaches the reverse_proxy's upstream as /../../etc/passwd",
						Fix:     "run path_guard after the rewrite: route { rewrite ... ; path_guard ; reverse_proxy ... } (path_guard then judges the rewritten path)"})
				}
			}
		})
	}
}

// clientPlaceholder returns the first placeholder of clientPlaceholders in the path part of a
// rewrite's URI, or "".
func clientPlaceholder(uri string) string {
	p, _, _ := strings.Cut(uri, "?")
	for _, ph := range clientPlaceholders {
		if i := strings.Index(p, ph); i >= 0 {
			used := p[i:]
			if j := strings.IndexByte(used, '}'); j >= 0 {
				used = used[:j+1]
			}
			return used
		}
	}
	return ""
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

// checkMatcherEscape warns when this path_guard's route takes it by a path prefix (`path_guard
// /static/*`) and a traversal out of that prefix reaches a reverse_proxy unguarded: Caddy's
// path matchers clean the path first, so /static/../../etc/passwd is /etc/passwd to them, the
// guard does not run, and a reverse_proxy for every path forwards /static/../../etc/passwd as
// sent. It follows such a request through the server's routes as Caddy would (matchers,
// handle groups, rewrites) and reports when it meets a reverse_proxy before any path_guard.
func (h *PathGuard) checkMatcherEscape(ctx caddy.Context) {
	for name, srv := range httpServers(ctx) {
		chain := chainTo(srv.Routes, h)
		if chain == nil {
			continue
		}
		last := chain[len(chain)-1]
		prefix := ""
		for _, set := range last.routes[last.route].MatcherSets {
			for _, m := range set {
				if paths, ok := m.(*caddyhttp.MatchPath); ok {
					for _, p := range *paths {
						if pre, ok := strings.CutSuffix(p, "/*"); ok && strings.HasPrefix(pre, "/") && !strings.ContainsAny(pre, "*") {
							prefix = pre + "/"
						}
					}
				}
			}
		}
		if prefix == "" {
			continue
		}
		at := "apps.http.servers." + name + ".routes"
		proxy := ""
		// Out of the prefix to the root, and to each prefix a route of the server takes
		// (/static/../api/x: a reverse_proxy /api/* receives it as sent).
		for _, target := range append([]string{"/"}, pathPrefixes(srv.Routes)...) {
			req := probeRequest(srv, prefix+".."+target+"caddy-hardening-escape")
			if host := chainHost(chain); host != "" {
				req.Host = host
			}
			if proxy = proxyBeforeGuard(srv.Routes, req, at); proxy != "" {
				break
			}
		}
		if proxy != "" {
			_ = h.app.Report(Finding{Code: "path_guard.matcher_escape", Severity: Warning, Module: "http.handlers.path_guard", Config: handlerConfigPath(ctx, h),
				Message: "path_guard runs only for " + prefix + "*, which Caddy matches on the cleaned path: " + prefix + "../../etc/passwd is /etc/passwd to the matcher, skips path_guard and reaches the reverse_proxy at " + proxy + " as sent, traversal included",
				Fix:     "guard every path the proxy serves: path_guard without a matcher (or with one that only leaves routes out, such as @guarded not path ...), or put path_guard and the reverse_proxy in one handle " + prefix + "* block"})
		}
	}
}

// proxyBeforeGuard follows req through routes as Caddy runs them and returns the config path of
// the first reverse_proxy it meets before any path_guard, or "" when a path_guard comes first
// or no reverse_proxy serves it.
func proxyBeforeGuard(routes caddyhttp.RouteList, req *http.Request, at string) string {
	proxy, _ := firstProxyOrGuard(routes, req, at)
	return proxy
}

// firstProxyOrGuard returns the first reverse_proxy's config path ("" when the first of the two
// is a path_guard) and whether either was met.
func firstProxyOrGuard(routes caddyhttp.RouteList, req *http.Request, at string) (string, bool) {
	for p, hh := range servedHandlers(routes, req, at) {
		switch hh := hh.(type) {
		case *PathGuard:
			return "", true
		case *reverseproxy.Handler:
			return p, true
		case *caddyhttp.Subroute:
			if proxy, met := firstProxyOrGuard(hh.Routes, req, p+".routes"); met {
				return proxy, true
			}
		case *rewrite.Rewrite:
			repl, _ := req.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
			hh.Rewrite(req, repl)
		}
	}
	return "", false
}

// pathPrefixes lists the prefixes (`/api/` of `/api/*`) of the path matchers of routes and
// their subroutes.
func pathPrefixes(routes caddyhttp.RouteList) []string {
	var out []string
	for _, r := range routes {
		for _, set := range r.MatcherSets {
			for _, m := range set {
				if paths, ok := m.(*caddyhttp.MatchPath); ok {
					for _, p := range *paths {
						if pre, ok := strings.CutSuffix(p, "/*"); ok && strings.HasPrefix(pre, "/") && !strings.ContainsAny(pre, "*") {
							out = append(out, pre+"/")
						}
					}
				}
			}
		}
		for _, h := range r.Handlers {
			if sub, ok := h.(*caddyhttp.Subroute); ok {
				out = append(out, pathPrefixes(sub.Routes)...)
			}
		}
	}
	return out
}

// chainHost is the first plain host a route on chain matches ("" when none names one), so a
// request made up to follow the routes reaches the site the handler is in.
func chainHost(chain []chainStep) string {
	for _, step := range chain {
		for _, set := range step.routes[step.route].MatcherSets {
			for _, m := range set {
				if hosts, ok := m.(*caddyhttp.MatchHost); ok {
					for _, h := range *hosts {
						if !strings.ContainsAny(h, "*{") {
							return h
						}
					}
				}
			}
		}
	}
	return ""
}
