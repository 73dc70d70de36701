package caddymodule

import (
	"fmt"
	"slices"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/fileserver"

	"github.com/swarmsec/caddy-hardening/csp"
)

// checkTagsBehindProxy reports a warning when inject_nonce tags is used in a route list that
// also proxies: tags mode nonces every script of the page, including one an attacker injected
// into the upstream's user content; placeholder mode is the one for applications.
func (h *SecurityHeaders) checkTagsBehindProxy(ctx caddy.Context) {
	for _, srv := range httpServers(ctx) {
		if list := routeListWith(srv.Routes, h); list != nil && h.pageHandlerWhere(list, isModule("http.handlers.reverse_proxy")) {
			_ = h.app.Report(Finding{Code: "csp.tags_behind_proxy", Severity: Warning, Module: "security_headers",
				Config:  optionPath(handlerConfigPath(ctx, h), "inject_nonce"),
				Message: "inject_nonce tags on a route that proxies: every <script> of the upstream's pages gets the nonce, including one injected into user content",
				Fix:     "use inject_nonce placeholder {env.CSP_NONCE_PLACEHOLDER} and mark the application's own tags; keep tags for files you serve (file_server)"})
		}
	}
}

// checkInjectNeighbours reports handlers beside this one that defeat its mode: templates in
// tags mode (a template that writes a request value, `{{.Req.URL.Query.Get "q"}}`, turns an
// injected <script> into one with the nonce), and file_server with precompressed in
// placeholder mode (compressed copies of the pages hold the placeholder, and a request for
// index.html.gz gets them as they are: binary, never redacted).
func (h *SecurityHeaders) checkInjectNeighbours(ctx caddy.Context) {
	for _, srv := range httpServers(ctx) {
		list := routeListWith(srv.Routes, h)
		if list == nil {
			continue
		}
		if h.injectMode == csp.Tags && h.pageHandlerWhere(list, isModule("http.handlers.templates")) {
			_ = h.app.Report(Finding{Code: "csp.tags_with_templates", Severity: Warning, Module: "security_headers",
				Config:  optionPath(handlerConfigPath(ctx, h), "inject_nonce"),
				Message: "inject_nonce tags on a route that runs templates: a template that writes a request value gives an injected <script> the nonce",
				Fix:     "use inject_nonce placeholder and write nonce=\"{{placeholder \"http.vars.csp_nonce\"}}\" on the page's own tags (or the placeholder)"})
		}
		if h.injectMode != 0 && h.runsInside(list, isModule("http.handlers.encode")) {
			_ = h.app.Report(Finding{Code: "csp.encode_inside", Severity: Warning, Module: "security_headers",
				Config:  optionPath(handlerConfigPath(ctx, h), "inject_nonce"),
				Message: "encode runs after security_headers with inject_nonce (the Caddyfile's directive order puts security_headers first): inject_nonce removes the request's Accept-Encoding so that pages reach it uncompressed, and encode then compresses no response of the route, assets included",
				Fix:     "run encode before it: `order encode before security_headers` in the global options, or `route { encode zstd gzip; security_headers ...; ... }`"})
		}
		if h.injectMode == csp.Placeholder && h.pageHandlerWhere(list, func(hh caddyhttp.MiddlewareHandler) bool {
			fs, ok := hh.(*fileserver.FileServer)
			return ok && (len(fs.PrecompressedRaw) > 0 || len(fs.PrecompressedOrder) > 0)
		}) {
			_ = h.app.Report(Finding{Code: "csp.placeholder_precompressed", Severity: Warning, Module: "security_headers",
				Config:  optionPath(handlerConfigPath(ctx, h), "inject_nonce"),
				Message: "inject_nonce placeholder beside file_server with precompressed: compressed copies of the pages (index.html.gz, .br, .zst) hold the placeholder, and a request for one gets it as it is (compressed bodies cannot be rewritten)",
				Fix:     "drop precompressed on this route and let an outer encode compress the rewritten pages; keep no compressed copies of pages holding the placeholder under the site's root"})
		}
	}
}

// checkBrowseWithoutInject reports a warning when file_server browse runs under this handler
// and this one does not inject: browse sets its own Content-Security-Policy (with its own
// nonce) on every directory listing, which replaces this handler's there (a replaced value
// stays), so listings go out without the edge's report-uri and upgrade-insecure-requests and
// with frame-ancestors 'self'. With inject_nonce, this handler's policy is sent and the
// listing's tags get its nonce (see takeOver); with keep_upstream Content-Security-Policy,
// the listing's policy is wanted.
func (h *SecurityHeaders) checkBrowseWithoutInject(ctx caddy.Context) {
	if h.cspHeader != "Content-Security-Policy" || h.keep["Content-Security-Policy"] {
		return // report-only here: browse's enforcing policy is another header, and passes
	}
	for _, srv := range httpServers(ctx) {
		if list := routeListWith(srv.Routes, h); list != nil && h.pageHandlerWhere(list, func(hh caddyhttp.MiddlewareHandler) bool {
			fs, ok := hh.(*fileserver.FileServer)
			return ok && fs.Browse != nil
		}) {
			_ = h.app.Report(Finding{Code: "csp.browse_policy", Severity: Warning, Module: "security_headers",
				Config:  optionPath(handlerConfigPath(ctx, h), "inject_nonce"),
				Message: "file_server browse sets its own Content-Security-Policy on directory listings, which replaces this handler's there: listings go out without its report-uri and upgrade-insecure-requests, and with frame-ancestors 'self'",
				Fix:     "add inject_nonce (tags, for files you serve; or placeholder {env.CSP_NONCE_PLACEHOLDER}): listings then get this handler's policy and their <style> and <script> its nonce; or keep_upstream Content-Security-Policy to send the listing's own policy on purpose"},
				Production, Staging)
			return
		}
	}
}

// checkErrorRoutes reports a warning when a server runs this injecting handler in its routes
// and has error routes (handle_errors blocks) that it does not reach: Caddy runs the error
// routes after the primary chain returned, outside this handler, with its own writer. In
// placeholder mode, an error route without a security_headers of the same placeholder would
// send an error page from file_server or reverse_proxy with the secret placeholder in it. In
// tags mode, an error page served there without a security_headers that injects goes out with
// this handler's policy (set before the error) but without its nonce on the page's tags: the
// browser blocks the error page's own inline scripts and styles.
func (h *SecurityHeaders) checkErrorRoutes(ctx caddy.Context) {
	for name, srv := range httpServers(ctx) {
		errRoutes := siteErrorRoutes(srv, h)
		if errRoutes == nil {
			continue
		}
		switch {
		case h.injectMode == csp.Placeholder && !coversAll(errRoutes, h.sameSecret):
			_ = h.app.Report(Finding{Code: "csp.placeholder_in_errors", Severity: Warning, Module: "security_headers",
				Config:  "apps.http.servers." + name + ".errors.routes",
				Message: "inject_nonce placeholder is not applied to every handle_errors block: Caddy runs the error routes outside security_headers, so an error page served there (file_server, reverse_proxy) reaches the client with the secret placeholder and the upstream's caching headers",
				Fix:     "repeat the same `security_headers { inject_nonce placeholder ... }` inside each handle_errors block"})
		case h.injectMode == csp.Tags && servesUncovered(errRoutes, injects, servesPages):
			_ = h.app.Report(Finding{Code: "csp.tags_in_errors", Severity: Warning, Module: "security_headers",
				Config:  "apps.http.servers." + name + ".errors.routes",
				Message: "inject_nonce tags is not applied to a handle_errors block that serves pages: Caddy runs the error routes outside security_headers, so an error page served there (file_server, reverse_proxy, templates) gets this handler's policy but no nonce on its tags, and browsers block its own scripts and styles",
				Fix:     "repeat `security_headers { inject_nonce tags }` inside each handle_errors block that serves pages"})
		}
	}
}

// siteErrorRoutes returns the server's error routes that can run for the site whose routes
// hold h, nil when none can (or h is not in the server). Sites that share a server (every
// HTTPS site on :443) each have their handle_errors under the site's host matcher: an error
// route whose host matchers name only other sites' hosts never runs for h's requests, and its
// pages are another site's business. Any other error route counts (wildcards and placeholders
// may match h's hosts, and so may a JSON config's own matchers).
func siteErrorRoutes(srv *caddyhttp.Server, h caddyhttp.MiddlewareHandler) caddyhttp.RouteList {
	if srv.Errors == nil {
		return nil
	}
	var hosts []string
	found := false
	for _, r := range srv.Routes {
		if routeListWith(caddyhttp.RouteList{r}, h) != nil {
			hosts, _ = onlyHosts(r.MatcherSets)
			found = true
			break
		}
	}
	if !found {
		return nil
	}
	var routes caddyhttp.RouteList
	for _, r := range srv.Errors.Routes {
		if other, ok := onlyHosts(r.MatcherSets); ok && hosts != nil && !hostsMayMeet(hosts, other) {
			continue
		}
		routes = append(routes, r)
	}
	return routes
}

// onlyHosts returns the hosts of matcher sets made of host matchers alone (a Caddyfile site's
// routes); false for any others, or none.
func onlyHosts(sets caddyhttp.MatcherSets) ([]string, bool) {
	var hosts []string
	for _, set := range sets {
		for _, m := range set {
			mh, ok := m.(*caddyhttp.MatchHost)
			if !ok {
				return nil, false
			}
			hosts = append(hosts, *mh...)
		}
	}
	return hosts, len(hosts) > 0
}

// hostsMayMeet reports whether a request's host could match both lists: a name in both, or a
// wildcard or placeholder in either, which this does not try to resolve.
func hostsMayMeet(a, b []string) bool {
	for _, x := range a {
		for _, y := range b {
			if strings.EqualFold(x, y) || strings.ContainsAny(x+y, "*{") {
				return true
			}
		}
	}
	return false
}

// coversAll reports whether a handler that covers runs on every path through the routes: one
// in a route without matchers covers its whole list; otherwise each route must be covered on
// its own (a site's handle_errors blocks are routes of one subroute, each matched by its
// status codes, and each needs its own).
func coversAll(routes caddyhttp.RouteList, covers func(caddyhttp.MiddlewareHandler) bool) bool {
	for _, r := range routes {
		if len(r.MatcherSets) == 0 && slices.ContainsFunc(r.Handlers, covers) {
			return true
		}
	}
	for _, r := range routes {
		if !slices.ContainsFunc(r.Handlers, func(hh caddyhttp.MiddlewareHandler) bool {
			sub, ok := hh.(*caddyhttp.Subroute)
			return covers(hh) || ok && coversAll(sub.Routes, covers)
		}) {
			return false
		}
	}
	return true
}

// servesUncovered reports whether a handler that serves (at any depth) runs in a route list
// where no handler that covers runs: a list with one in a route without matchers is covered
// as coversAll has it, and so is the rest of a route after one.
func servesUncovered(routes caddyhttp.RouteList, covers, serves func(caddyhttp.MiddlewareHandler) bool) bool {
	for _, r := range routes {
		if len(r.MatcherSets) == 0 && slices.ContainsFunc(r.Handlers, covers) {
			return false
		}
	}
	for _, r := range routes {
		for _, hh := range r.Handlers {
			if covers(hh) {
				break
			}
			if sub, ok := hh.(*caddyhttp.Subroute); serves(hh) || ok && servesUncovered(sub.Routes, covers, serves) {
				return true
			}
		}
	}
	return false
}

// injects reports whether hh is a security_headers that injects its nonce into pages.
func injects(hh caddyhttp.MiddlewareHandler) bool {
	o, ok := hh.(*SecurityHeaders)
	return ok && o.injectMode != 0
}

// servesPages reports whether hh may answer with an HTML page of tags: a file, an upstream's
// answer, a template.
func servesPages(hh caddyhttp.MiddlewareHandler) bool {
	return isModule("http.handlers.file_server")(hh) || isModule("http.handlers.reverse_proxy")(hh) || isModule("http.handlers.templates")(hh)
}

// sameSecret reports whether hh is a security_headers in placeholder mode with h's placeholder.
func (h *SecurityHeaders) sameSecret(hh caddyhttp.MiddlewareHandler) bool {
	o, ok := hh.(*SecurityHeaders)
	return ok && o.injectMode == csp.Placeholder && o.ph == h.ph
}

// pageHandlerWhere reports whether a handler of the routes, at any depth, satisfies match,
// among the pages this handler injects into: it leaves out
// subroutes with a security_headers of their own that injects, whose pages that one decides
// (innermost wins, see securityWriter.mode) and whose own findings cover them.
func (h *SecurityHeaders) pageHandlerWhere(routes caddyhttp.RouteList, match func(caddyhttp.MiddlewareHandler) bool) bool {
	return findHandler(routes, match, h.injectorIn)
}

// runsInside reports whether a handler that satisfies match runs inside this one: after it in
// its route list (at any depth of the later handlers' subroutes), so under its writer and
// after its changes to the request.
func (h *SecurityHeaders) runsInside(routes caddyhttp.RouteList, match func(caddyhttp.MiddlewareHandler) bool) bool {
	seen := false
	for _, r := range routes {
		handlers := r.Handlers
		if !seen {
			i := slices.IndexFunc(handlers, func(hh caddyhttp.MiddlewareHandler) bool { return hh == h })
			if i < 0 {
				continue
			}
			seen, handlers = true, handlers[i+1:]
		}
		if findHandler(caddyhttp.RouteList{{Handlers: handlers}}, match, nil) {
			return true
		}
	}
	return false
}

// findHandler reports whether a handler of the routes satisfies match, descending into
// subroutes that skip (if set) does not leave out.
func findHandler(routes caddyhttp.RouteList, match func(caddyhttp.MiddlewareHandler) bool, skip func(caddyhttp.RouteList) bool) bool {
	for _, r := range routes {
		for _, hh := range r.Handlers {
			if match(hh) {
				return true
			}
			if sub, ok := hh.(*caddyhttp.Subroute); ok && (skip == nil || !skip(sub.Routes)) && findHandler(sub.Routes, match, skip) {
				return true
			}
		}
	}
	return false
}

// injectorIn reports whether a security_headers other than h that injects runs in routes.
func (h *SecurityHeaders) injectorIn(routes caddyhttp.RouteList) bool {
	for _, r := range routes {
		for _, hh := range r.Handlers {
			if other, ok := hh.(*SecurityHeaders); ok && other != h && other.injectMode != 0 {
				return true
			}
		}
	}
	return false
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

// hasToken reports whether a comma-separated header value lists the token (any case).
func hasToken(v, token string) bool {
	for t := range strings.SplitSeq(v, ",") {
		if strings.EqualFold(strings.TrimSpace(t), token) {
			return true
		}
	}
	return false
}

// isModule matches a handler of module ID id.
func isModule(id caddy.ModuleID) func(caddyhttp.MiddlewareHandler) bool {
	return func(hh caddyhttp.MiddlewareHandler) bool {
		m, ok := hh.(caddy.Module)
		return ok && m.CaddyModule().ID == id
	}
}

// optionPath is the place of a handler's option in the JSON config: the handler's path (at,
// from handlerConfigPath) and the option, or the option alone where the handler was not found
// (a configuration without an http app).
func optionPath(at, option string) string {
	if at == "" {
		return option
	}
	return at + "." + option
}

// builtPolicy is what build settled: the policy, its mode and HSTS, read by the findings.
type builtPolicy struct {
	policy     csp.Policy
	reportOnly bool
	hsts       csp.HSTS
	hstsOff    bool
	devPreset  bool // the development preset: no HSTS, whatever the environment
}

// reportFindings records the production findings of the settled headers: each weakens a
// defence an attacker meets first (HSTS against downgrade, CSP against injected script).
func (h *SecurityHeaders) reportFindings(app *App, at string) {
	b := h.built
	report := func(code, config, msg, fix string) {
		_ = app.Report(Finding{Code: code, Severity: Warning, Module: "security_headers", Config: optionPath(at, config), Message: msg, Fix: fix}, Production)
	}
	switch {
	case b.devPreset:
		report("hsts.off", "preset",
			"production with the development preset: no HSTS is sent (and the policy is report-only), so a first visit or a typed http:// link can be downgraded",
			"use the strict preset (the default in production); for a rollout, strict with report_only")
	case b.hstsOff:
		report("hsts.off", "hsts.off",
			"production without HSTS: a first visit or a typed http:// link can be downgraded and its cookies read on the way",
			"remove `hsts off`; the default is max-age=63072000; includeSubDomains")
	case b.hsts.MaxAge < csp.HSTSPreloadMinAge:
		report("hsts.short_max_age", "hsts.max_age",
			fmt.Sprintf("HSTS max-age is %d s, under one year: browsers forget it between visits and the first request can be downgraded again", b.hsts.MaxAge),
			"use hsts max-age=63072000 includeSubDomains (two years; at least 31536000)")
	}
	if len(b.policy.Directives) == 0 {
		report("csp.absent", "preset",
			"production without a Content-Security-Policy: any injected <script> runs",
			"use the strict preset (the default) or give csp directives with 'nonce' 'strict-dynamic'")
		return
	}
	if h.InjectNonce != nil && !hasToken(h.cacheCtl, "no-store") {
		report("csp.nonce_cached", "inject_nonce.cache_control",
			"nonced pages may be stored by caches (cache_control is not no-store): a page served again from a cache carries a nonce already sent, which an attacker who saw it can put on an injected script",
			"remove the cache_control line (the default is no-store) or set cache_control no-store")
	}
	if _, ok := b.policy.Get("base-uri"); !ok {
		report("csp.no_base_uri", "csp.base-uri",
			"the policy has no base-uri (it does not fall back to default-src): an injected <base href> points the page's relative script URLs at another host",
			"keep the preset's base-uri 'none' (remove `-base-uri`), or set csp { base-uri 'self' }")
	}
	if _, ok := b.policy.Get("object-src"); !ok {
		if d, ok := b.policy.Get("default-src"); !ok || len(d) != 1 || d[0] != "'none'" {
			report("csp.no_object_src", "csp.object-src",
				"the policy has no object-src: <object> and <embed> fall back to default-src (or to anything), and plugin content runs script outside the nonce",
				"keep the preset's object-src 'none' (remove `-object-src`), or set csp { object-src 'none' }")
		}
	}
	if b.reportOnly {
		report("csp.report_only", "report_only",
			"the policy is report-only in production: its violations are reported and none is blocked",
			"remove `report_only` once the csp_violation events show no legitimate violation")
	}
	name, scripts := "script-src", []string(nil)
	if v, ok := b.policy.Get("script-src"); ok {
		scripts = v
	} else if v, ok := b.policy.Get("default-src"); ok {
		name, scripts = "default-src", v
	} else {
		report("csp.no_script_policy", "csp",
			"the policy restricts no scripts (no script-src, no default-src): injected scripts run",
			"add csp { script-src 'nonce' 'strict-dynamic' }")
		return
	}
	strong := len(scripts) == 1 && scripts[0] == "'none'" // no script at all
	unsafeInline, unsafeEval, strictDynamic, wide := false, false, false, ""
	for _, v := range scripts {
		lv := strings.ToLower(v)
		switch lv {
		case "*", "data:", "http:", "https:":
			wide = v
		case "'strict-dynamic'":
			strictDynamic = true
		}
		switch {
		case v == csp.NonceToken || lv == "'strict-dynamic'" || strings.HasPrefix(lv, "'nonce-") ||
			strings.HasPrefix(lv, "'sha256-") || strings.HasPrefix(lv, "'sha384-") || strings.HasPrefix(lv, "'sha512-"):
			strong = true
		case lv == "'unsafe-inline'":
			unsafeInline = true
		case lv == "'unsafe-eval'":
			unsafeEval = true
		}
	}
	if unsafeInline && !strong { // with a nonce or hash, browsers ignore 'unsafe-inline'
		report("csp.unsafe_inline", "csp."+name,
			name+" allows 'unsafe-inline': any script injected into a page runs, which is what CSP exists to stop",
			"replace 'unsafe-inline' with 'nonce' 'strict-dynamic' and put nonce=\"{http.vars.csp_nonce}\" on your own scripts (or inject_nonce)")
	}
	if unsafeEval {
		report("csp.unsafe_eval", "csp."+name,
			name+" allows 'unsafe-eval': strings reaching eval(), setTimeout(string) or new Function() run as code",
			"remove 'unsafe-eval' and replace the eval-based code (template compilers usually have a precompiled build)")
	}
	if wide != "" && !strictDynamic { // with 'strict-dynamic', browsers ignore hosts and schemes
		report("csp.wide_script_source", "csp."+name,
			name+" allows "+wide+": scripts from any host (or data: URLs) run, so an attacker who can inject a tag loads their own script whatever the nonce",
			"remove "+wide+" from "+name+"; use 'nonce' 'strict-dynamic' (the strict preset), which browsers then follow instead of sources")
	}
	if !strong && !unsafeInline {
		report("csp.no_nonce", "csp."+name,
			name+" is a host allowlist without a nonce, hash or 'strict-dynamic': allowlisted CDNs and JSONP endpoints let an attacker load script",
			"use script-src 'nonce' 'strict-dynamic' (the strict preset) and mark your own scripts with the nonce")
	}
}

// reportUnknownPermissions warns of Permissions-Policy features no browser knows (most often a
// misspelling, `camra=()`): browsers skip such a member with a console message only, and the
// feature keeps its default. A warning, not a refusal: browsers add features every release.
func (h *SecurityHeaders) reportUnknownPermissions(app *App, at string) {
	if h.PermissionsPolicy == "" || h.PermissionsPolicy == off {
		return
	}
	if unknown := csp.UnknownPermissionsFeatures(h.PermissionsPolicy); len(unknown) > 0 {
		_ = app.Report(Finding{Code: "csp.permissions_unknown_feature", Severity: Warning, Module: "security_headers",
			Config:  optionPath(at, "permissions_policy"),
			Message: fmt.Sprintf("permissions_policy names features that Chromium and Firefox do not know: %s; browsers skip them (the feature keeps its default), so a misspelt name leaves the feature on", strings.Join(unknown, ", ")),
			Fix:     "check the spelling against the browsers' feature lists (camera, geolocation, microphone, ...); a feature newer than this module's list can stay"})
	}
}

// reportSandboxReportOnly warns of a sandbox directive in a report-only policy: browsers
// ignore it there (Chromium: "The Content Security Policy directive 'sandbox' is ignored when
// delivered in a report-only policy") and sandbox violations are never reported, so the
// rollout tells nothing about it and the page is not sandboxed.
func (h *SecurityHeaders) reportSandboxReportOnly(app *App, at string) {
	if _, ok := h.built.policy.Get("sandbox"); ok && h.built.reportOnly {
		_ = app.Report(Finding{Code: "csp.sandbox_report_only", Severity: Warning, Module: "security_headers",
			Config:  optionPath(at, "csp.sandbox"),
			Message: "the policy is report-only and has a sandbox directive: browsers ignore sandbox in a report-only policy and report nothing about it, so the page is not sandboxed",
			Fix:     "enforce the policy (report_only off) to sandbox the page, or send the sandbox in an enforced header of its own: header Content-Security-Policy \"sandbox allow-scripts ...\""})
	}
}
