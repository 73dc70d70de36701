package caddymodule

import (
	"fmt"
	"iter"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/rewrite"

	"github.com/swarmsec/caddy-hardening/internal/redisconn"
	"github.com/swarmsec/caddy-hardening/ipclass"
)

// checkDetailsBehindProxy warns when monitoring details go to a trusted class that holds
// private addresses while the serving HTTP server has no trusted_proxies: behind a load
// balancer or proxy on those networks, Caddy sees the proxy's address as every client's, so
// every client on the internet is "trusted" and reads component names, targets and errors.
func (m *Monitoring) checkDetailsBehindProxy(ctx caddy.Context) {
	app := m.app
	if app.IPClasses == nil || !app.FeatureEnabled("ip_classes") {
		return
	}
	private := privateTrusted(app.IPClasses.Trusted)
	if private == "" {
		return
	}
	holds := "the private network " + private
	if p := netip.MustParsePrefix(private); !p.Addr().IsPrivate() {
		holds = private + ", which covers private networks (10.0.0.0/8 among them)"
	}
	for name, srv := range httpServers(ctx) {
		if routeListWith(srv.Routes, m) == nil || hasTrustedProxies(srv) {
			continue
		}
		_ = app.Report(Finding{Code: "monitoring.details_behind_proxy", Severity: Warning, Module: "http.handlers.monitoring",
			Config:  "apps.http.servers." + name + ".trusted_proxies",
			Message: "monitoring details go to the trusted class, which holds " + holds + ", and this server has no trusted_proxies: behind a proxy or load balancer there, every client appears to come from it and gets the details",
			Fix:     "declare the proxies in the global options (servers { trusted_proxies static <proxy CIDRs> }) so the real client address is classified, or remove the private range from ip_classes trusted and use api_keys"},
			Production, Staging)
	}
}

// reportCriticalAppRedis warns about a critical `check redis` on the hardening app's own
// Redis (without a URL, or with a URL of one of its servers): every instance checks it, so
// when it fails every /ready fails together and the load balancer has no endpoint left, while
// the modules would have served on from memory.
func (m *Monitoring) reportCriticalAppRedis(ctx caddy.Context, app *App) {
	at := handlerConfigPath(ctx, m)
	if at != "" {
		at += "."
	}
	for i, c := range m.Checks {
		if c.Type != checkRedis || !c.Critical || !appRedisServer(app, c.Redis) {
			continue
		}
		_ = app.Report(Finding{Code: "monitoring.critical_shared_redis", Severity: Warning, Module: "http.handlers.monitoring",
			Config:  fmt.Sprintf("%schecks.%d.critical", at, i),
			Message: fmt.Sprintf("check %s is critical on the hardening app's own Redis: when that Redis fails, /ready fails on every instance at once and the load balancer has no endpoint left, while rate limits, detections and breakers would have gone on from memory", c.name()),
			Fix:     "drop `critical` (the check still shows in /health and in caddy_hardening_dependency_up for alerts); keep `critical` for a dependency without which no instance can serve"},
			Production, Staging)
	}
}

// appRedisServer reports whether a check's Redis URL ("" for the app's own) names a server of
// the hardening app's Redis: its URL's host:port (or socket) is one of the app's endpoints, so
// `check redis shared {env.REDIS_URL}` beside `redis {env.REDIS_URL}` is the app's Redis too,
// whatever db it selects. Names are compared as written: a host name and its address differ.
func appRedisServer(app *App, checkURL string) bool {
	if checkURL == "" {
		return true
	}
	if app.redis == nil {
		return false
	}
	own := app.redis.opts.Endpoints()
	for _, ep := range (redisconn.Options{URL: caddy.NewReplacer().ReplaceKnown(checkURL, "")}).Endpoints() {
		if slices.Contains(own, ep) {
			return true
		}
	}
	return false
}

// reportDisabled says what a handler that features { monitoring off } passes through means:
// its probe routes answer whatever follows (often Caddy's empty 200), so /ready stops
// reflecting readiness (dependencies, critical breakers, draining) and keeps sending traffic.
func (m *Monitoring) reportDisabled(ctx caddy.Context) {
	at := handlerConfigPath(ctx, m)
	if at == "" {
		at = "apps.hardening.features.monitoring"
	}
	_ = m.app.Report(Finding{Code: "monitoring.disabled", Severity: Warning, Module: "http.handlers.monitoring", Config: at,
		Message: "features { monitoring off }: this handler passes requests through, so /ready, /live and /health get what the next handler answers (often an empty 200): readiness passes with critical dependencies down, a critical breaker open or the instance draining",
		Fix:     "turn the monitoring feature back on, or point the orchestrator's probes somewhere that still reflects readiness while it is off"},
		Production)
}

// privateTrusted returns the first trusted prefix (after runtime placeholders) inside the
// RFC 1918 or unique-local ranges, or "" when there is none. Loopback is left out: a proxy on
// the same host is rare and an operator's curl on the host is the point of trusting it.
func privateTrusted(list []string) string {
	repl := caddy.NewReplacer()
	for _, item := range list {
		for _, s := range strings.FieldsFunc(repl.ReplaceKnown(item, ""), func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\n' }) {
			p, err := ipclass.ParsePrefix(s)
			if err != nil {
				continue
			}
			if p.Addr().IsPrivate() || p.Contains(netip.MustParseAddr("10.0.0.1")) {
				return p.String()
			}
		}
	}
	return ""
}

// hasTrustedProxies reports whether the server has trusted_proxies. Provisioning clears
// TrustedProxiesRaw and keeps the loaded source in an unexported field, which reflection can
// test for nil without reading it.
func hasTrustedProxies(srv *caddyhttp.Server) bool {
	if len(srv.TrustedProxiesRaw) > 0 {
		return true
	}
	f := reflect.ValueOf(srv).Elem().FieldByName("trustedProxies")
	return f.IsValid() && f.Kind() == reflect.Interface && !f.IsNil()
}

// handlerConfigPath returns where h sits in the JSON config, as findings give it
// ("apps.http.servers.srv0.routes.0.handle.0.routes.1.handle.0"), or "" when no server's
// routes hold it.
func handlerConfigPath(ctx caddy.Context, h caddyhttp.MiddlewareHandler) string {
	for name, srv := range httpServers(ctx) {
		if p := routesPath(srv.Routes, h, "apps.http.servers."+name+".routes"); p != "" {
			return p
		}
	}
	return ""
}

func routesPath(routes caddyhttp.RouteList, h caddyhttp.MiddlewareHandler, prefix string) string {
	for i, r := range routes {
		for j, hh := range r.Handlers {
			p := prefix + "." + strconv.Itoa(i) + ".handle." + strconv.Itoa(j)
			if hh == h {
				return p
			}
			if sub, ok := hh.(*caddyhttp.Subroute); ok {
				if found := routesPath(sub.Routes, h, p+".routes"); found != "" {
					return found
				}
			}
		}
	}
	return ""
}

// probeRoutes are the monitoring routes platforms call to decide whether to restart an
// instance or send it traffic (Kubernetes liveness, startup and readiness probes, load
// balancer and Render health checks). They must answer every caller, whatever its class.
var probeRoutes = []string{"live", "ready", "simple-health", "health"}

// checkProbesBehindBlock warns when a path_guard with suspicious_action block runs, in the
// same server, before this handler's probe routes: a load balancer's or kubelet's address that
// turns suspicious (a static prefix, or a detection: probes of many clients arrive from it
// behind a proxy) gets 403 on /live and /ready, and the orchestrator restarts the instance or
// takes it out of rotation. It follows the routes as Caddy runs them for each probe path
// (matchers, handle groups, handle_path's prefix strip), so a path_guard whose matcher leaves
// the probes out passes.
func (m *Monitoring) checkProbesBehindBlock(ctx caddy.Context) {
	app := m.app
	if !app.FeatureEnabled("path_guard") || !app.FeatureEnabled("ip_classes") && !app.FeatureEnabled("detection") {
		return
	}
	m.probesMeeting(ctx, blockingGuard, func(blocked []string, guard, mount string) {
		_ = app.Report(Finding{Code: "monitoring.probes_blocked", Severity: Warning, Module: "http.handlers.monitoring", Config: guard,
			Message: "the health probes " + strings.Join(blocked, ", ") + " run behind a path_guard with suspicious_action block: a load balancer or kubelet whose address is suspicious (a static prefix, or detected) gets 403, and the orchestrator restarts the instance or takes it out of rotation, although /live depends on nothing",
			Fix:     "give path_guard a matcher that leaves the probes out: @guarded not path " + mount + "live " + mount + "ready " + mount + "simple-health " + mount + "health, then path_guard @guarded { ... } (Caddyfile.example)"})
	})
}

// probesMeeting calls found, for each server whose routes hold this handler and whose probe
// routes meet, before it, a handler that refuses takes, with those probes, the config path
// of the handler met and where this handler is mounted.
func (m *Monitoring) probesMeeting(ctx caddy.Context, refuses probeRefuser, found func(probes []string, at, mount string)) {
	for name, srv := range httpServers(ctx) {
		chain := chainTo(srv.Routes, m)
		if chain == nil {
			continue
		}
		mount := mountPrefix(chain)
		if probes, at := probesBehind(chain, srv, name, mount, refuses); at != "" {
			found(probes, at, mount)
		}
	}
}

// probeRefuser reports whether a handler may refuse a probe before it reaches monitoring.
type probeRefuser func(caddyhttp.MiddlewareHandler) bool

// blockingGuard is a path_guard that answers 403 to the suspicious class.
func blockingGuard(h caddyhttp.MiddlewareHandler) bool {
	g, ok := h.(*PathGuard)
	return ok && g.SuspiciousAction == "block"
}

// refusingRateLimit is a policy_rate_limit that may refuse: enabled, not a shadow policy, and
// with a row that is not unlimited.
func refusingRateLimit(h caddyhttp.MiddlewareHandler) bool {
	l, ok := h.(*PolicyRateLimit)
	if !ok || !l.on || l.policy == nil || l.policy.shadow {
		return false
	}
	for _, row := range l.policy.rows {
		if row.kind != rowUnlimited {
			return true
		}
	}
	return false
}

// probesBehind returns the probe paths (under mount) that would meet, before the handler at
// chain's end, a handler that refuses reports, and the config path of the last one found (""
// for none). Matchers are tried with a default-class client: a handler behind an ip_class
// matcher is not found, though a kubelet whose address turns suspicious would meet it.
func probesBehind(chain []chainStep, srv *caddyhttp.Server, name, mount string, refuses probeRefuser) (probes []string, at string) {
	for _, route := range probeRoutes {
		if g := guardBefore(chain, probeRequest(srv, mount+route), "apps.http.servers."+name+".routes", refuses); g != "" {
			probes, at = append(probes, mount+route), g
		}
	}
	return probes, at
}

// checkProbesRateLimited warns when a policy_rate_limit runs, in the same server, before this
// handler's probe routes: written at the site level it comes before `handle_path` (its
// directive order), so a kubelet or load balancer spends a bucket keyed by its address with
// every probe (about 36 a minute for a kubelet), shares it with the clients that address
// stands for (kube-proxy's SNAT gives them the node's), and meets the suspicious row once that
// address is detected: a 429 on /live restarts the instance, on /ready takes it out of rotation.
func (m *Monitoring) checkProbesRateLimited(ctx caddy.Context) {
	if !m.app.FeatureEnabled("rate_limit") {
		return
	}
	var policy string
	refuses := func(h caddyhttp.MiddlewareHandler) bool {
		if refusingRateLimit(h) {
			policy = "policy_rate_limit " + h.(*PolicyRateLimit).Policy
			return true
		}
		return false
	}
	m.probesMeeting(ctx, refuses, func(limited []string, at, mount string) {
		_ = m.app.Report(Finding{Code: "monitoring.probes_rate_limited", Severity: Warning, Module: "http.handlers.monitoring", Config: at,
			Message: "the health probes " + strings.Join(limited, ", ") + " run behind " + policy + ": a load balancer or kubelet spends a bucket keyed by its address with every probe (a kubelet's probes come from its node's address, which kube-proxy's SNAT also gives to clients), and meets the suspicious row once that address is detected: a 429 on /live restarts the instance, on /ready takes it out of rotation, although /live depends on nothing",
			Fix:     "give policy_rate_limit a matcher that leaves the probes out: @limited not path " + mount + "live " + mount + "ready " + mount + "simple-health " + mount + "health, then policy_rate_limit @limited <policy>; or write it inside the handle blocks it protects"})
	})
}

// chainStep is one level of the way from a server's routes to a handler: the handler sits at
// (or under) routes[route].Handlers[handler].
type chainStep struct {
	routes         caddyhttp.RouteList
	route, handler int
}

// chainTo returns the steps from routes to h, or nil when h is not in them.
func chainTo(routes caddyhttp.RouteList, h caddyhttp.MiddlewareHandler) []chainStep {
	for i, r := range routes {
		for j, hh := range r.Handlers {
			step := chainStep{routes, i, j}
			if hh == h {
				return []chainStep{step}
			}
			if sub, ok := hh.(*caddyhttp.Subroute); ok {
				if rest := chainTo(sub.Routes, h); rest != nil {
					return append([]chainStep{step}, rest...)
				}
			}
		}
	}
	return nil
}

// mountPrefix is where the handler is mounted, from the first path matcher with a trailing
// wildcard on its way (handle_path /api/monitoring/* gives /api/monitoring/); "/" without one.
func mountPrefix(chain []chainStep) string {
	for _, step := range chain {
		for _, set := range step.routes[step.route].MatcherSets {
			for _, matcher := range set {
				paths, ok := matcher.(*caddyhttp.MatchPath)
				if !ok {
					continue
				}
				for _, p := range *paths {
					if prefix, ok := strings.CutSuffix(p, "*"); ok && strings.HasPrefix(prefix, "/") {
						if !strings.HasSuffix(prefix, "/") {
							prefix += "/"
						}
						return prefix
					}
				}
			}
		}
	}
	return "/"
}

// probeRequest is a GET of path as the server would prepare it, from an address of no class.
func probeRequest(srv *caddyhttp.Server, path string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, path, nil)
	r.RemoteAddr = "192.0.2.1:40000"
	return caddyhttp.PrepareRequest(r, caddy.NewReplacer(), nil, srv)
}

// guardBefore follows req through the routes of chain[0] up to the chain's route, then down
// the chain, and returns the config path of the first handler that refuses (a path_guard with
// suspicious_action block, for blockingGuard) that would run before the handler at the chain's
// end ("" when none would).
func guardBefore(chain []chainStep, req *http.Request, at string, refuses probeRefuser) string {
	step := chain[0]
	groups := map[string]bool{}
	for i, r := range step.routes[:step.route+1] {
		p := at + "." + strconv.Itoa(i) + ".handle."
		onChain := i == step.route
		if !onChain {
			if r.Group != "" && (groups[r.Group] || r.Group == step.routes[step.route].Group) || !routeMatches(r, req) {
				continue
			}
			if r.Group != "" {
				groups[r.Group] = true
			}
		}
		for j, h := range r.Handlers {
			if onChain && j == step.handler {
				if len(chain) == 1 {
					return ""
				}
				return guardBefore(chain[1:], req, p+strconv.Itoa(j)+".routes", refuses)
			}
			if g := guardHandler(h, req, p+strconv.Itoa(j), refuses); g != "" {
				return g
			}
		}
		if r.Terminal {
			return "" // a matched terminal route: the handler is not reached that way
		}
	}
	return ""
}

// guardIn is guardBefore for routes off the chain: every matching route, in order.
func guardIn(routes caddyhttp.RouteList, req *http.Request, at string, refuses probeRefuser) string {
	for p, h := range servedHandlers(routes, req, at) {
		if g := guardHandler(h, req, p, refuses); g != "" {
			return g
		}
	}
	return ""
}

// servedHandlers yields the handlers that serving req would run from routes, in order, with
// their config paths (at.<route>.handle.<handler>): those of every route whose matchers take
// req (of a group, the first one only), up to a matched terminal route. Subroutes are yielded,
// not entered; a caller that follows a rewrite applies it to req itself.
func servedHandlers(routes caddyhttp.RouteList, req *http.Request, at string) iter.Seq2[string, caddyhttp.MiddlewareHandler] {
	return func(yield func(string, caddyhttp.MiddlewareHandler) bool) {
		groups := map[string]bool{}
		for i, r := range routes {
			if r.Group != "" && groups[r.Group] || !routeMatches(r, req) {
				continue
			}
			if r.Group != "" {
				groups[r.Group] = true
			}
			for j, h := range r.Handlers {
				if !yield(at+"."+strconv.Itoa(i)+".handle."+strconv.Itoa(j), h) {
					return
				}
			}
			if r.Terminal {
				return
			}
		}
	}
}

// guardHandler returns at when refuses(h) (a blocking path_guard, a rate limit), looks into a
// subroute, and applies a rewrite (handle_path's strip) to req, as serving it would.
func guardHandler(h caddyhttp.MiddlewareHandler, req *http.Request, at string, refuses probeRefuser) string {
	if refuses(h) {
		return at
	}
	switch h := h.(type) {
	case *caddyhttp.Subroute:
		return guardIn(h.Routes, req, at+".routes", refuses)
	case *rewrite.Rewrite:
		repl, _ := req.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
		h.Rewrite(req, repl)
	}
	return ""
}

// routeMatches reports whether the route's matchers take req; a matcher that errs counts as a
// match (the finding would rather warn than miss).
func routeMatches(r caddyhttp.Route, req *http.Request) bool {
	ok, err := r.MatcherSets.AnyMatchWithError(req)
	return ok || err != nil
}
