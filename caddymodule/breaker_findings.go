package caddymodule

import (
	"iter"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
)

// checkPlacement reports a shared breaker without Redis, and a breaker that the routes never
// let run, that has nothing to guard, or that sits after the block that proxies: each looks
// healthy forever (closed, /health pass) while the upstream fails. And, as
// info, a guarded reverse_proxy without response_header_timeout, whose hangs the breaker only
// sees when a client waits long enough.
func (h *UpstreamBreaker) checkPlacement(ctx caddy.Context) {
	if h.Shared && h.app.RedisClient() == nil {
		at := handlerConfigPath(ctx, h)
		if at == "" {
			at = "upstream_breaker " + h.Name
		}
		_ = h.app.Report(Finding{Code: "breaker.shared_without_redis", Severity: Warning, Module: "upstream_breaker", Config: at,
			Message: "shared is set but the hardening app has no Redis: this breaker's state is per instance",
			Fix:     "configure redis in the hardening global option, or remove shared"})
	}
	if name, found := cacheableRefusalOn(ctx, h, http.StatusServiceUnavailable); found {
		_ = h.app.Report(Finding{Code: "breaker.open_response_cacheable", Severity: Warning, Module: "upstream_breaker",
			Config:  "apps.http.servers." + name,
			Message: "a header directive before upstream_breaker " + h.Name + " sets a caching header (Cache-Control, CDN-Cache-Control, Surrogate-Control) deferred, when the response is written: it replaces the open breaker's Cache-Control: no-store, so a CDN or shared cache in front keeps the 503 and serves it after the upstream has recovered",
			Fix:     "set the caching header after upstream_breaker, in a route block (route { upstream_breaker " + h.Name + " header >Cache-Control ... reverse_proxy ... }), or without > and apart from deletions (header Cache-Control ... on a line of its own is applied before the breaker's answer, which replaces it)"})
	}
	for name, srv := range httpServers(ctx) {
		h.checkNamedRoutes(ctx, name, srv)
		chain := chainTo(srv.Routes, h)
		if chain == nil {
			continue
		}
		at := handlerConfigPath(ctx, h)
		if answeredBefore(chain) {
			_ = h.app.Report(Finding{Code: "breaker.never_runs", Severity: Warning, Module: "upstream_breaker", Config: at,
				Message: "upstream_breaker " + h.Name + " runs after a respond or error that answers every request first: the breaker never runs and never opens",
				Fix:     "put the breaker inside the block whose upstream it guards (handle /api/* { upstream_breaker " + h.Name + " ...; reverse_proxy ... }): Caddy orders upstream_breaker after respond and error"})
			continue
		}
		guarded, proxied, unbounded, outlasting, spread := false, false, false, false, false
		for hh := range handlersAfter(chain) {
			guarded = true
			proxied = proxied || findHandler(caddyhttp.RouteList{{Handlers: []caddyhttp.MiddlewareHandler{hh}}}, isModule("http.handlers.reverse_proxy"), nil)
			if rp := unboundedProxy(hh); rp != nil && !unbounded {
				unbounded = true
				_ = h.app.Report(Finding{Code: "breaker.no_response_timeout", Severity: Info, Module: "upstream_breaker", Config: handlerConfigPath(ctx, rp),
					Message: "upstream_breaker " + h.Name + " guards a reverse_proxy without response_header_timeout: a hung upstream counts only once a client waits it out, and clients that give up first are not failures (unless they waited past slow_threshold), so the breaker may never open",
					Fix:     "give the reverse_proxy transport http { response_header_timeout <duration> } (or an upstream_breaker slow_threshold shorter than your clients' patience: clients that give up after it count as slow)"})
			}
			if rp, pool := proxySpreadWithoutRetries(hh); rp != nil && !spread {
				spread = true
				_ = h.app.Report(Finding{Code: "breaker.multi_upstream_no_retries", Severity: Warning, Module: "upstream_breaker", Config: handlerConfigPath(ctx, rp),
					Message: "upstream_breaker " + h.Name + " guards a reverse_proxy to " + pool + " without lb_retries or lb_try_duration: a request sent to a dead upstream fails (502) without trying another, so one dead upstream of two fails about half the requests, the breaker opens (failure_ratio 0.5 or less, or consecutive failures by chance) and holds back the requests the healthy upstreams would have answered",
					Fix:     "give the reverse_proxy lb_retries 1 (or more: a failed dial is retried on another upstream, any method), and passive health checks (fail_duration 10s) so a dead upstream leaves the pool; see lb_retry_match for upstreams that answer 5xx"})
			}
			if rp, fail := proxyOutlasting(hh, h.openFor()); rp != nil && !outlasting {
				outlasting = true
				_ = h.app.Report(Finding{Code: "breaker.open_for_below_fail_duration", Severity: Info, Module: "upstream_breaker", Config: handlerConfigPath(ctx, rp),
					Message: "upstream_breaker " + h.Name + " (open_for " + h.openFor().String() + ") guards a reverse_proxy whose passive health checks keep a failed host out for fail_duration " + fail.String() + ": a half-open probe before then gets reverse_proxy's own 503 without reaching the host and opens the breaker again, so a recovered upstream waits for fail_duration",
					Fix:     "give the breaker an open_for of at least " + fail.String() + ", or the reverse_proxy a shorter fail_duration"})
			}
		}
		switch {
		case !guarded:
			_ = h.app.Report(Finding{Code: "breaker.never_runs", Severity: Warning, Module: "upstream_breaker", Config: at,
				Message: "upstream_breaker " + h.Name + " has no handler after it on server " + name + ": it guards nothing and never opens",
				Fix:     "put the breaker before the reverse_proxy it guards, in the same block"})
		case !proxied && proxiedBefore(chain):
			_ = h.app.Report(Finding{Code: "breaker.behind_proxy", Severity: Warning, Module: "upstream_breaker", Config: at,
				Message: "upstream_breaker " + h.Name + " runs after the block that proxies (Caddy orders handle and route blocks first) and guards no reverse_proxy: the upstream has no breaker",
				Fix:     "put the breaker inside the block whose upstream it guards: handle /api/* { upstream_breaker " + h.Name + " ...; reverse_proxy ... }"})
		}
	}
}

// proxiedBefore reports whether a reverse_proxy runs before the chain's handler: earlier in a
// route on its way, or in an earlier route of a list on its way (any depth).
func proxiedBefore(chain []chainStep) bool {
	for _, s := range chain {
		before := s.routes[:s.route+1]
		last := before[s.route]
		before = append(caddyhttp.RouteList{}, before[:s.route]...)
		before = append(before, caddyhttp.Route{Handlers: last.Handlers[:s.handler]})
		if findHandler(before, isModule("http.handlers.reverse_proxy"), nil) {
			return true
		}
	}
	return false
}

// answeredBefore reports whether a respond (static_response) or error (static_error) handler
// answers every request before the chain's handler: earlier in a route on its way, or in an
// earlier route of a list on its way that has no matcher. Neither calls the next handler.
func answeredBefore(chain []chainStep) bool {
	for _, s := range chain {
		for i, r := range s.routes[:s.route+1] {
			if i < s.route && len(r.MatcherSets) > 0 {
				continue
			}
			before := r.Handlers
			if i == s.route {
				before = before[:s.handler]
			}
			if slices.ContainsFunc(before, answersAll) {
				return true
			}
		}
	}
	return false
}

// answersAll reports whether hh answers every request it gets without calling the next
// handler: respond (but for 103 Early Hints, which goes on) and error.
func answersAll(hh caddyhttp.MiddlewareHandler) bool {
	switch v := hh.(type) {
	case *caddyhttp.StaticResponse:
		return v.StatusCode != "103"
	case *caddyhttp.StaticError:
		return true
	}
	return false
}

// handlersAfter yields the handlers that may run after the chain's handler, as Caddy compiles
// routes: the rest of its route, then the later routes of its list (not those of its route's
// group, of which only one runs), then the same outward through each enclosing subroute. A
// terminal route ends the walk (Caddy's empty handler follows it); a later terminal route does
// only when it has no matcher.
func handlersAfter(chain []chainStep) iter.Seq[caddyhttp.MiddlewareHandler] {
	return func(yield func(caddyhttp.MiddlewareHandler) bool) {
		for k := len(chain) - 1; k >= 0; k-- {
			s := chain[k]
			r := s.routes[s.route]
			for _, hh := range r.Handlers[s.handler+1:] {
				if !yield(hh) {
					return
				}
			}
			if r.Terminal {
				return
			}
			for _, next := range s.routes[s.route+1:] {
				if r.Group != "" && next.Group == r.Group {
					continue
				}
				for _, hh := range next.Handlers {
					if !yield(hh) {
						return
					}
				}
				if next.Terminal && len(next.MatcherSets) == 0 {
					return
				}
			}
		}
	}
}

// unboundedProxy returns the reverse_proxy in hh (itself or in its subroutes) whose HTTP
// transport has no response_header_timeout, or nil.
func unboundedProxy(hh caddyhttp.MiddlewareHandler) caddyhttp.MiddlewareHandler {
	var found caddyhttp.MiddlewareHandler
	findHandler(caddyhttp.RouteList{{Handlers: []caddyhttp.MiddlewareHandler{hh}}}, func(c caddyhttp.MiddlewareHandler) bool {
		rp, ok := c.(*reverseproxy.Handler)
		if !ok {
			return false
		}
		if t, ok := rp.Transport.(*reverseproxy.HTTPTransport); ok && t.ResponseHeaderTimeout == 0 {
			found = c
		}
		return found != nil
	}, nil)
	return found
}

// openFor is open_for as in effect.
func (h *UpstreamBreaker) openFor() time.Duration {
	s, _ := h.settings()
	return s.WithDefaults().OpenFor
}

// proxyOutlasting returns the reverse_proxy in hh (itself or in its subroutes) whose passive
// health checks keep a failed host out of the pool longer than open, and that fail_duration.
func proxyOutlasting(hh caddyhttp.MiddlewareHandler, open time.Duration) (caddyhttp.MiddlewareHandler, time.Duration) {
	var found caddyhttp.MiddlewareHandler
	var fail time.Duration
	findHandler(caddyhttp.RouteList{{Handlers: []caddyhttp.MiddlewareHandler{hh}}}, func(c caddyhttp.MiddlewareHandler) bool {
		rp, ok := c.(*reverseproxy.Handler)
		if ok && rp.HealthChecks != nil && rp.HealthChecks.Passive != nil && time.Duration(rp.HealthChecks.Passive.FailDuration) > open {
			found, fail = c, time.Duration(rp.HealthChecks.Passive.FailDuration)
		}
		return found != nil
	}, nil)
	return found, fail
}

// proxySpreadWithoutRetries returns the reverse_proxy in hh (itself or in its subroutes) that
// balances over more than one upstream (static, or a dynamic source, which may resolve to
// several) and never tries another (neither lb_retries nor lb_try_duration), and its pool as
// the finding words it.
func proxySpreadWithoutRetries(hh caddyhttp.MiddlewareHandler) (caddyhttp.MiddlewareHandler, string) {
	var found caddyhttp.MiddlewareHandler
	var pool string
	findHandler(caddyhttp.RouteList{{Handlers: []caddyhttp.MiddlewareHandler{hh}}}, func(c caddyhttp.MiddlewareHandler) bool {
		rp, ok := c.(*reverseproxy.Handler)
		if !ok || rp.LoadBalancing != nil && (rp.LoadBalancing.Retries > 0 || rp.LoadBalancing.TryDuration > 0) {
			return false
		}
		switch {
		case rp.DynamicUpstreams != nil:
			found, pool = c, "dynamic upstreams (which may resolve to several)"
		case len(rp.Upstreams) > 1:
			found, pool = c, strconv.Itoa(len(rp.Upstreams))+" upstreams"
		}
		return found != nil
	}, nil)
	return found, pool
}

// checkNamedRoutes reports a breaker that ends a named route (&(name) in a Caddyfile) when no
// invoke of that route has a handler after it: it guards nothing. Caddy's Caddyfile adapter
// (v2.11.9) makes this of `&(backend) { upstream_breaker api; reverse_proxy ... }`: of a named
// route with several directives and no matcher it keeps the first directive only, so the
// reverse_proxy is dropped and every request gets Caddy's empty 200.
func (h *UpstreamBreaker) checkNamedRoutes(ctx caddy.Context, server string, srv *caddyhttp.Server) {
	for _, route := range sortedKeys(srv.NamedRoutes) {
		nr := caddyhttp.RouteList{*srv.NamedRoutes[route]}
		chain := chainTo(nr, h)
		if chain == nil || guardsAny(chain) {
			continue
		}
		if guardedByInvoke(srv, route) {
			continue
		}
		at := "apps.http.servers." + server + ".named_routes." + route + strings.TrimPrefix(routesPath(nr, h, ""), ".0")
		_ = h.app.Report(Finding{Code: "breaker.never_runs", Severity: Warning, Module: "upstream_breaker", Config: at,
			Message: "upstream_breaker " + h.Name + " ends the named route &(" + route + ") and no handler follows its invoke: it guards nothing and never opens. " +
				"Caddy's Caddyfile adapter keeps only the first directive of a named route that has several and no matcher, so a reverse_proxy written after the breaker there is dropped (every request gets an empty 200)",
			Fix: "wrap the named route's directives in a route block: &(" + route + ") { route { upstream_breaker " + h.Name + " ...; reverse_proxy ... } }"})
	}
}

// guardedByInvoke reports whether an invoke of the named route may have a handler after it: in
// the server's routes or error routes, or (not followed further) in another named route.
func guardedByInvoke(srv *caddyhttp.Server, route string) bool {
	invokes := func(hh caddyhttp.MiddlewareHandler) bool {
		inv, ok := hh.(*caddyhttp.Invoke)
		return ok && inv.Name == route
	}
	for name, other := range srv.NamedRoutes {
		if name != route && findHandler(caddyhttp.RouteList{*other}, invokes, nil) {
			return true
		}
	}
	lists := []caddyhttp.RouteList{srv.Routes}
	if srv.Errors != nil {
		lists = append(lists, srv.Errors.Routes)
	}
	guarded := false
	for _, routes := range lists {
		findHandler(routes, func(hh caddyhttp.MiddlewareHandler) bool {
			guarded = guarded || invokes(hh) && guardsAny(chainTo(routes, hh))
			return guarded
		}, nil)
	}
	return guarded
}

// guardsAny reports whether a handler may run after the chain's handler.
func guardsAny(chain []chainStep) bool {
	for range handlersAfter(chain) {
		return true
	}
	return false
}
