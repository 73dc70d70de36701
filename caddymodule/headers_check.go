package caddymodule

import (
	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// checkTagsBehindProxy reports a warning when inject_nonce tags is used in a route list that
// also proxies: tags mode nonces every script of the page, including one an attacker injected
// into the upstream's user content; placeholder mode is the one for applications.
func (h *SecurityHeaders) checkTagsBehindProxy(ctx caddy.Context) {
	v, err := ctx.AppIfConfigured("http")
	if err != nil {
		return
	}
	for name, srv := range v.(*caddyhttp.App).Servers {
		if list := routeListWith(srv.Routes, h); list != nil && proxies(list) {
			_ = h.app.Report(Finding{Code: "csp.tags_behind_proxy", Severity: Warning, Module: "security_headers",
				Config:  "apps.http.servers." + name,
				Message: "inject_nonce tags on a route that proxies: every <script> of the upstream's pages gets the nonce, including one injected into user content",
				Fix:     "use inject_nonce placeholder {env.CSP_NONCE_PLACEHOLDER} and mark the application's own tags; keep tags for files you serve (file_server)"})
		}
	}
}

// routeListWith returns the route list (at any depth) that holds the handler.
func routeListWith(routes caddyhttp.RouteList, h caddyhttp.MiddlewareHandler) caddyhttp.RouteList {
	for _, r := range routes {
		for _, hh := range r.Handlers {
			if hh == h {
				return routes
			}
			if sub, ok := hh.(*caddyhttp.Subroute); ok {
				if found := routeListWith(sub.Routes, h); found != nil {
					return found
				}
			}
		}
	}
	return nil
}

// proxies reports whether a reverse_proxy handler is in the routes, at any depth.
func proxies(routes caddyhttp.RouteList) bool {
	for _, r := range routes {
		for _, hh := range r.Handlers {
			if m, ok := hh.(caddy.Module); ok && m.CaddyModule().ID == "http.handlers.reverse_proxy" {
				return true
			}
			if sub, ok := hh.(*caddyhttp.Subroute); ok && proxies(sub.Routes) {
				return true
			}
		}
	}
	return false
}
