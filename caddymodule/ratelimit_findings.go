package caddymodule

import (
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/headers"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"

	"github.com/swarmsec/caddy-hardening/ipclass"
)

// spoofableKeyHeaders are request headers any client can write; a key made of them lets a
// client pick a fresh bucket per request.
var spoofableKeyHeaders = []string{"x-forwarded-for", "x-real-ip", "forwarded", "true-client-ip", "cf-connecting-ip", "x-client-ip"}

// reportKeyFindings reports keys that do not partition clients the way the operator expects,
// at config: the policy's key, or the handler's own (a route key, whose place in the routes
// is known only once the whole configuration is provisioned: see Provision).
func (h *PolicyRateLimit) reportKeyFindings(config string) {
	key := strings.ToLower(h.key)
	if strings.Contains(key, "{http.request.remote.host}") {
		_ = h.app.Report(Finding{Code: "ratelimit.key_remote_host", Severity: Warning, Module: "policy_rate_limit", Config: config,
			Message: "policy " + h.policy.name + " keys buckets by the peer's address ({remote_host}): behind a load balancer or ingress every client shares the proxy's bucket",
			Fix:     "use key {client_ip}, and list the proxies in the server's trusted_proxies"})
	}
	for _, hdr := range spoofableKeyHeaders {
		if strings.Contains(key, "{http.request.header."+hdr+"}") {
			_ = h.app.Report(Finding{Code: "ratelimit.key_spoofable", Severity: Warning, Module: "policy_rate_limit", Config: config,
				Message: "policy " + h.policy.name + " keys buckets by a header any client can write (" + hdr + "): each request can claim a fresh bucket",
				Fix:     "use key {client_ip}: Caddy reads the client address from those headers only when the peer is in trusted_proxies"})
		}
	}
	if !strings.Contains(h.key, "{http.") {
		_ = h.app.Report(Finding{Code: "ratelimit.global_key", Severity: Info, Module: "policy_rate_limit", Config: config,
			Message: "policy " + h.policy.name + " has a key without request placeholders (" + h.key + "): the same for every request, one bucket for every client (a global limit)",
			Fix:     "if the limit is meant per client, use key {client_ip} or a header such as {http.request.header.X-API-Key}"})
	}
	if unknown := unknownKeyPlaceholders(h.key); len(unknown) > 0 {
		_ = h.app.Report(Finding{Code: "ratelimit.key_unknown_placeholder", Severity: Warning, Module: "policy_rate_limit", Config: config,
			Message: "policy " + h.policy.name + "'s key uses " + strings.Join(unknown, ", ") + ", which Caddy does not know: unless another plugin sets it, it is empty for every request and every client falls back to its IP's bucket",
			Fix:     "check the spelling against Caddy's placeholders (https://caddyserver.com/docs/json/apps/http/#docs)"})
	}
}

// reportPolicyFindings reports a policy's rows that treat the classes the wrong way round, and
// a shadow policy.
func (h *PolicyRateLimit) reportPolicyFindings() {
	rows := &h.policy.rows
	if rows[ipclass.Suspicious].looser(rows[ipclass.Default]) || rows[ipclass.Default].looser(rows[ipclass.Trusted]) {
		_ = h.app.Report(Finding{Code: "ratelimit.classes_inverted", Severity: Warning, Module: "policy_rate_limit", Config: "apps.hardening.policies." + h.policy.name,
			Message: "policy " + h.policy.name + " treats the classes the wrong way round (trusted " + rows[ipclass.Trusted].String() +
				", default " + rows[ipclass.Default].String() + ", suspicious " + rows[ipclass.Suspicious].String() + "): a client gains by being suspicious, or loses by being trusted",
			Fix: "give suspicious at most the limit row and trusted at least it, e.g. suspicious 1/1m or suspicious deny, trusted unlimited"})
	}
	if h.policy.shadow {
		_ = h.app.Report(Finding{Code: "ratelimit.shadow", Severity: Info, Module: "policy_rate_limit", Config: "apps.hardening.policies." + h.policy.name + ".shadow",
			Message: "policy " + h.policy.name + " is in shadow mode: it counts and logs what it would refuse, and refuses nothing",
			Fix:     "remove shadow once the rate_limit_exceeded events with shadow=true show the limit is right"}, Production)
	}
}

// reportFailOpen warns when a failing Redis lets every request through.
func (a *App) reportFailOpen() {
	if a.RateLimit != nil && a.RateLimit.OnStoreFailure == "allow" && a.redis != nil {
		_ = a.Report(Finding{Code: "ratelimit.fail_open", Severity: Warning, Module: "policy_rate_limit", Config: "apps.hardening.rate_limit.on_store_failure",
			Message: "on_store_failure allow: while Redis fails, no rate limit applies at all (an attacker who can slow Redis lifts every limit)",
			Fix:     "use fallback (the default): each instance keeps limiting in memory while Redis fails"}, Production, Staging)
	}
}

// checkTrustedProxies reports, once the whole configuration is provisioned, servers whose
// routes rate-limit by client IP without trusted_proxies: behind a load balancer or ingress
// Caddy then sees the proxy's address, and every client shares one bucket. A key of client
// placeholders ({header.X-API-Key}) is one too: requests without the header fall back to the
// client IP. A key without any (one bucket for all, or per site or route) is not.
func (h *PolicyRateLimit) checkTrustedProxies(ctx caddy.Context) {
	message := "policy_rate_limit keys by client IP on a server without trusted_proxies: if Caddy runs behind a load balancer or ingress, every client shares the proxy's bucket"
	if !h.ipKey {
		if !keyNamesClient(h.key) {
			return
		}
		message = "policy_rate_limit's key " + h.key + " falls back to the client IP where it comes out empty (a request without the header or the user), on a server without trusted_proxies: if Caddy runs behind a load balancer or ingress, all those requests share the proxy's bucket"
	}
	for name, srv := range httpServers(ctx) {
		if routeListWith(srv.Routes, h) != nil && !hasTrustedProxies(srv) {
			_ = h.app.Report(Finding{Code: "ratelimit.no_trusted_proxies", Severity: Info, Module: "policy_rate_limit",
				Config:  "apps.http.servers." + name + ".trusted_proxies",
				Message: message,
				Fix:     "behind a proxy, add `servers { trusted_proxies static <proxy ranges> }` to the global options; facing clients directly, nothing to do"},
				Production)
		}
	}
}

// checkKeyAfterAuth reports a key made of what authentication sets ({http.auth.user.id}) on a
// handler that runs before any authentication on its way through the routes: Caddy orders
// policy_rate_limit before basic_auth, so the key is always empty and every client falls back
// to its IP bucket.
func (h *PolicyRateLimit) checkKeyAfterAuth(ctx caddy.Context) {
	if !strings.Contains(h.key, "{http.auth.") {
		return
	}
	for name, srv := range httpServers(ctx) {
		if before, found := handlerBefore(srv.Routes, h, "http.handlers.authentication", false); found && !before {
			_ = h.app.Report(Finding{Code: "ratelimit.key_before_auth", Severity: Warning, Module: "policy_rate_limit",
				Config:  handlerPathIn(name, srv, h),
				Message: "policy " + h.policy.name + " keys buckets by " + h.key + ", but runs before authentication on its route (Caddy orders policy_rate_limit before basic_auth): the key is always empty, and every client falls back to its IP's bucket",
				Fix:     "put them in a route block, authentication first: route { basic_auth { ... } policy_rate_limit " + h.policy.name + " ... }; keep a policy keyed by {client_ip} before it against password guessing"})
		}
	}
}

// checkKeyHeaderSetLater reports a key of a request header that a handler after it on its
// route sets: forward_auth's copy_headers (Remote-User from Authelia, Authentik, ...) or
// request_header, which Caddy orders after policy_rate_limit. The key then reads the header
// as the client sent it: an authenticated user, whose client sends none, falls back to its
// IP's bucket (the per-user limit is per address), and a client that sends one picks its
// bucket.
func (h *PolicyRateLimit) checkKeyHeaderSetLater(ctx caddy.Context) {
	names := keyHeaders(h.key)
	if len(names) == 0 {
		return
	}
	// A deletion is no value: one before the line leaves the key empty (a later setter still
	// warrants the warning), one after it changes nothing the line read.
	writes := func(hh caddyhttp.MiddlewareHandler) bool { return writesRequestHeader(hh, names, false) }
	for name, srv := range httpServers(ctx) {
		chain := chainTo(srv.Routes, h)
		if chain == nil {
			continue
		}
		if before, _ := handlerBeforeWhere(srv.Routes, h, writes, false); before {
			continue
		}
		later := false
		for hh := range handlersAfter(chain) {
			if later = findHandler(caddyhttp.RouteList{{Handlers: []caddyhttp.MiddlewareHandler{hh}}}, writes, nil); later {
				break
			}
		}
		if !later {
			continue
		}
		read := "the key is the header as the client sent it, so authenticated users fall back to their IP's bucket and a client that sends the header picks its bucket"
		if deleted, _ := handlerBeforeWhere(srv.Routes, h, func(hh caddyhttp.MiddlewareHandler) bool { return writesRequestHeader(hh, names, true) }, false); deleted {
			read = "a handler before it deletes the header, so the key is always empty there and every user falls back to its IP's bucket"
		}
		_ = h.app.Report(Finding{Code: "ratelimit.key_before_auth", Severity: Warning, Module: "policy_rate_limit",
			Config:  handlerPathIn(name, srv, h),
			Message: "policy " + h.policy.name + " keys buckets by " + h.key + ", but a handler after it on its route sets that header (forward_auth's copy_headers, or request_header, which Caddy orders after policy_rate_limit): " + read,
			Fix:     "put them in a route block, the handler that sets the header first: route { forward_auth ... { copy_headers ... } policy_rate_limit " + h.policy.name + " ... }; keep a policy keyed by {client_ip} before it against password guessing"})
		return
	}
}

// cachingHeaders are the response headers that let a shared cache keep a response: a
// deferred Cache-Control replaces the refusal's no-store, and CDNs obey the CDN-specific ones
// before Cache-Control.
var cachingHeaders = []string{"cache-control", "cdn-cache-control", "surrogate-control", "cloudflare-cdn-cache-control"}

// checkRefusalCaching reports a deferred caching header before the handler (see
// cacheableRefusalOn): the refusal goes out with the site's caching header, and a CDN in front
// serves one client's refusal to every client of that URL for max-age.
func (h *PolicyRateLimit) checkRefusalCaching(ctx caddy.Context) {
	if name, found := cacheableRefusalOn(ctx, h, h.StatusCode); found {
		_ = h.app.Report(Finding{Code: "ratelimit.refusal_cacheable", Severity: Warning, Module: "policy_rate_limit",
			Config:  "apps.http.servers." + name,
			Message: "a header directive before policy_rate_limit " + h.policy.name + " sets a caching header (Cache-Control, CDN-Cache-Control, Surrogate-Control) deferred, when the response is written: it replaces the refusal's Cache-Control: no-store, so a CDN or shared cache in front keeps one client's " + strconv.Itoa(h.StatusCode) + " and serves it to every client of that URL",
			Fix:     "set the caching header after policy_rate_limit, in a route block (route { policy_rate_limit " + h.policy.name + " header >Cache-Control ... reverse_proxy ... }), or without > and apart from deletions (header Cache-Control ... on a line of its own is applied before the refusal, which replaces it)"})
	}
}

// cacheableRefusalOn returns the first server on which a header directive before h sets a
// caching header on responses of the given status when they are written (deferred: `header
// >Cache-Control ...`, or a block that also deletes a field, `header { -Server; Cache-Control
// ... }`, which Caddy defers whole). Those operations run after h's refusal set
// Cache-Control: no-store, and replace it.
func cacheableRefusalOn(ctx caddy.Context, h caddyhttp.MiddlewareHandler, status int) (server string, found bool) {
	for name, srv := range httpServers(ctx) {
		if before, _ := handlerBeforeWhere(srv.Routes, h, setsCachingOn(status), false); before {
			return name, true
		}
	}
	return "", false
}

// setsCachingOn returns whether a handler is a headers handler whose response operations,
// applied when the response is written, set a caching header on a response of that status.
func setsCachingOn(status int) func(caddyhttp.MiddlewareHandler) bool {
	return func(hh caddyhttp.MiddlewareHandler) bool {
		hd, ok := hh.(*headers.Handler)
		if !ok || hd.Response == nil || hd.Response.HeaderOps == nil {
			return false
		}
		resp := hd.Response
		if req := resp.Require; req != nil {
			// A condition on header fields (the `?` default needs the field absent, and the
			// refusal sets Cache-Control) or on other statuses spares the refusal.
			if len(req.Headers) > 0 || len(req.StatusCode) > 0 && !slices.ContainsFunc(req.StatusCode, func(c int) bool { return caddyhttp.StatusCodeMatches(status, c) }) {
				return false
			}
		} else if !resp.Deferred {
			return false // applied before the refusal, which sets its own Cache-Control
		}
		caching := func(n string) bool { return slices.Contains(cachingHeaders, strings.ToLower(n)) }
		return slices.ContainsFunc(slices.Collect(maps.Keys(resp.Set)), caching) ||
			slices.ContainsFunc(slices.Collect(maps.Keys(resp.Add)), caching) ||
			slices.ContainsFunc(slices.Collect(maps.Keys(resp.Replace)), caching)
	}
}

// keyHeaders lists the request headers key reads, in lower case.
func keyHeaders(key string) []string {
	var names []string
	if all, err := keyPlaceholders(key); err == nil {
		for _, name := range all {
			if hdr, ok := strings.CutPrefix(strings.ToLower(name), "http.request.header."); ok {
				names = append(names, hdr)
			}
		}
	}
	return names
}

// setsRequestHeader reports whether hh sets, adds, replaces or deletes one of the request
// headers names (lower case): a headers handler's request operations (request_header), or a
// reverse_proxy whose handle_response routes do so (forward_auth's copy_headers).
func setsRequestHeader(hh caddyhttp.MiddlewareHandler, names []string) bool {
	return writesRequestHeader(hh, names, true)
}

// writesRequestHeader is setsRequestHeader, deletions counted only when deletes is set.
func writesRequestHeader(hh caddyhttp.MiddlewareHandler, names []string, deletes bool) bool {
	switch hh := hh.(type) {
	case *headers.Handler:
		ops := hh.Request
		if ops == nil {
			return false
		}
		named := func(n string) bool { return slices.Contains(names, strings.ToLower(n)) }
		return slices.ContainsFunc(slices.Collect(maps.Keys(ops.Set)), named) ||
			slices.ContainsFunc(slices.Collect(maps.Keys(ops.Add)), named) ||
			slices.ContainsFunc(slices.Collect(maps.Keys(ops.Replace)), named) ||
			deletes && slices.ContainsFunc(ops.Delete, named)
	case *reverseproxy.Handler:
		for _, rh := range hh.HandleResponse {
			if findHandler(rh.Routes, func(x caddyhttp.MiddlewareHandler) bool { return writesRequestHeader(x, names, deletes) }, nil) {
				return true
			}
		}
	}
	return false
}

// handlerPathIn is where h is in the server's JSON config (apps.http.servers.<name>.routes.
// ...handle.<j>), so that a finding names the line, not only the server: two lines of one
// policy are told apart. The server's path when h is not found there.
func handlerPathIn(name string, srv *caddyhttp.Server, h caddyhttp.MiddlewareHandler) string {
	at := "apps.http.servers." + name
	if p := routesPath(srv.Routes, h, at+".routes"); p != "" {
		return p
	}
	return at
}

// checkClientChosenKey reports a key made only of what the client writes (headers, cookies,
// the URI) on a handler that no client-IP policy_rate_limit runs before: a client that sends a
// new value with each request has a new bucket each time, so the limit binds only clients
// that keep their value. An API key the upstream checks later does not change that: the
// requests with made-up keys reach it. Keys of X-Forwarded-For and the like are
// ratelimit.key_spoofable already.
func (h *PolicyRateLimit) checkClientChosenKey(ctx caddy.Context) {
	if h.ipKey || h.keyParts != nil || !clientChosenKey(h.key) {
		return
	}
	ipPolicy := func(hh caddyhttp.MiddlewareHandler) bool {
		p, ok := hh.(*PolicyRateLimit)
		return ok && p.on && (p.ipKey || p.keyParts != nil)
	}
	// Headers that handlers before it set (forward_auth's copy_headers) are the
	// authentication's, not the client's: a key made only of them is not the client's choice.
	setBefore := func(routes caddyhttp.RouteList) bool {
		all, _ := keyPlaceholders(h.key)
		hdrs := keyHeaders(h.key)
		if len(hdrs) != len(all) {
			return false
		}
		for _, hdr := range hdrs {
			if set, _ := handlerBeforeWhere(routes, h, func(hh caddyhttp.MiddlewareHandler) bool { return setsRequestHeader(hh, []string{hdr}) }, false); !set {
				return false
			}
		}
		return true
	}
	for name, srv := range httpServers(ctx) {
		if before, found := handlerBeforeWhere(srv.Routes, h, ipPolicy, false); found && !before {
			if setBefore(srv.Routes) {
				continue
			}
			_ = h.app.Report(Finding{Code: "ratelimit.key_client_chosen", Severity: Info, Module: "policy_rate_limit",
				Config:  "apps.http.servers." + name,
				Message: "policy " + h.policy.name + " keys buckets only by what the client sends (" + h.key + "), and no policy keyed by {client_ip} runs before it: a client that sends a new value with each request gets a new bucket each time (a credential the upstream checks afterwards does not stop that)",
				Fix:     "put a policy keyed by {client_ip} before it on the route (policy_rate_limit per_ip, then policy_rate_limit " + h.policy.name + "), or key by what authentication sets ({http.auth.user.id}) after the authentication"})
			return
		}
	}
}

// clientChosenKey reports whether every placeholder of key is one the client writes freely:
// a header, a cookie or a part of the URI, none of them X-Forwarded-For and the like.
func clientChosenKey(key string) bool {
	names, err := keyPlaceholders(key)
	if err != nil || len(names) == 0 {
		return false
	}
	for _, name := range names {
		lower := strings.ToLower(name)
		if !strings.HasPrefix(lower, "http.request.header.") && !strings.HasPrefix(lower, "http.request.cookie.") && !strings.HasPrefix(lower, "http.request.uri") {
			return false
		}
		if slices.Contains(spoofableKeyHeaders, strings.TrimPrefix(lower, "http.request.header.")) {
			return false
		}
	}
	return true
}

// handlerBefore reports whether a handler with module ID id runs before h on the way to h
// through routes, in the order Caddy runs them (matchers aside; a sibling block's handlers do
// not count), and whether h is there at all.
func handlerBefore(routes caddyhttp.RouteList, h caddyhttp.MiddlewareHandler, id caddy.ModuleID, seen bool) (before, found bool) {
	return handlerBeforeWhere(routes, h, func(hh caddyhttp.MiddlewareHandler) bool {
		m, ok := hh.(caddy.Module)
		return ok && m.CaddyModule().ID == id
	}, seen)
}

// handlerBeforeWhere is handlerBefore for the handlers match accepts.
func handlerBeforeWhere(routes caddyhttp.RouteList, h caddyhttp.MiddlewareHandler, match func(caddyhttp.MiddlewareHandler) bool, seen bool) (before, found bool) {
	for _, r := range routes {
		for _, hh := range r.Handlers {
			if hh == h {
				return seen, true
			}
			if match(hh) {
				seen = true
			}
			if sub, ok := hh.(*caddyhttp.Subroute); ok {
				if b, f := handlerBeforeWhere(sub.Routes, h, match, seen); f {
					return b, true
				}
			}
		}
	}
	return seen, false
}
