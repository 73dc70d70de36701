package caddymodule

import (
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// wantsExposition reports whether a request to the metrics route asks for Prometheus's text or
// OpenMetrics format: Prometheus's scrapes list both in Accept; browsers and curl (`*/*`) do
// not, and keep the JSON view.
func wantsExposition(r *http.Request) bool {
	for _, accept := range r.Header["Accept"] {
		if strings.Contains(accept, "application/openmetrics-text") || strings.Contains(accept, "text/plain") {
			return true
		}
	}
	return false
}

// serveExposition answers a scrape of the metrics route with the whole registry Caddy's admin
// /metrics serves for this configuration (Go and process collectors, Caddy's own series, every
// caddy_hardening_* family), so that Prometheus can scrape a pod through the site's port, with
// the route's access rule (the trusted class or a monitoring key), where the admin endpoint
// listens on loopback only. A scrape without either gets 401: a status word in JSON would be a
// parse error in Prometheus, not a clear refusal.
func (m *Monitoring) serveExposition(w http.ResponseWriter, r *http.Request, detail bool) error {
	if !detail {
		w.Header().Set("WWW-Authenticate", `Bearer realm="monitoring"`)
		return writeProblem(w, http.StatusUnauthorized, "Unauthorized",
			"metrics in Prometheus's format are for the trusted class or a monitoring key (Authorization: Bearer <key>)", nil)
	}
	w.Header().Set("Cache-Control", "no-store")
	promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{
		EnableOpenMetrics: true,
		ErrorHandling:     promhttp.ContinueOnError, // one failing collector does not hide the rest
	}).ServeHTTP(w, r)
	return nil
}
