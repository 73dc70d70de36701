package caddymodule

import (
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/rewrite"
)

// checkReportsReceived reports a warning for each report_uri or report_to of this handler that
// is a path of its own site where browsers' reports reach neither a csp_report nor an
// upstream: they get the site's page, a 405 or an empty 200, and every report is lost, with
// nothing said (report_uri /csp-reports beside csp_report /csp-report; a csp_report left out).
func (h *SecurityHeaders) checkReportsReceived(ctx caddy.Context) {
	var paths []string
	for _, u := range append([]string{h.ReportTo}, h.ReportURI...) {
		if strings.HasPrefix(u, "/") && !strings.HasPrefix(u, "//") && !strings.Contains(u, "{") {
			paths = append(paths, u)
		}
	}
	if len(paths) == 0 {
		return
	}
	for _, srv := range httpServers(ctx) {
		site := siteRoute(srv, h)
		if site == nil {
			continue
		}
		host := ""
		hosts, _ := onlyHosts(site.MatcherSets)
		for _, hh := range hosts {
			if !strings.ContainsAny(hh, "*{") {
				host = hh
				break
			}
		}
		if len(hosts) > 0 && host == "" {
			continue // only wildcards: no request of the site to follow
		}
		for _, p := range paths {
			req := probeRequest(srv, p)
			req.Method = http.MethodPost
			if host != "" {
				req.Host = host
			}
			if reportReceived(srv.Routes, req) {
				continue
			}
			option := "report_uri"
			if p == h.ReportTo {
				option = "report_to"
			}
			_ = h.app.Report(Finding{Code: "csp.report_unreceived", Severity: Warning, Module: "security_headers",
				Config:  optionPath(handlerConfigPath(ctx, h), option),
				Message: "browsers POST CSP reports to " + p + ", where no csp_report answers them and no upstream receives them: every report is lost",
				Fix:     "add csp_report " + p + " to the site (or point " + option + " at the path your csp_report answers)"})
		}
	}
}

// siteRoute returns the server's top-level route (a Caddyfile site) that holds h.
func siteRoute(srv *caddyhttp.Server, h caddyhttp.MiddlewareHandler) *caddyhttp.Route {
	for i, r := range srv.Routes {
		if routeListWith(caddyhttp.RouteList{r}, h) != nil {
			return &srv.Routes[i]
		}
	}
	return nil
}

// reportReceived reports whether serving req would run a csp_report or hand it to an upstream.
// It follows every route that matches, into subroutes (applying handle_path's strip), and
// does not stop at a handler that answers: it would rather miss a lost report than warn about
// one that arrives.
func reportReceived(routes caddyhttp.RouteList, req *http.Request) bool {
	for _, hh := range servedHandlers(routes, req, "") {
		switch hh := hh.(type) {
		case *CSPReport:
			return true
		case *caddyhttp.Subroute:
			if reportReceived(hh.Routes, req) {
				return true
			}
		case *rewrite.Rewrite:
			repl, _ := req.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
			hh.Rewrite(req, repl)
		default:
			if isModule("http.handlers.reverse_proxy")(hh) {
				return true
			}
		}
	}
	return false
}
