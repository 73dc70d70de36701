package caddymodule

import (
	"net/netip"
	"reflect"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

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
	v, err := ctx.AppIfConfigured("http")
	if err != nil {
		return
	}
	for name, srv := range v.(*caddyhttp.App).Servers {
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
	v, err := ctx.AppIfConfigured("http")
	if err != nil {
		return ""
	}
	servers := v.(*caddyhttp.App).Servers
	for _, name := range sortedKeys(servers) {
		if p := routesPath(servers[name].Routes, h, "apps.http.servers."+name+".routes"); p != "" {
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
