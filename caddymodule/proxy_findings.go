package caddymodule

// checkProxiesStrict reports servers that trust proxies without trusted_proxies_strict. Caddy
// then takes the left-most X-Forwarded-For address as the client's, and a proxy that appends
// to the header (most load balancers do) leaves that entry to the client: it can name any
// address, a trusted one included, or a fresh one per request, or an innocent one it gets
// detected (TestDetectionScoresCaddysClientIPOnly). Every module here keys on
// Caddy's client IP (classes, detection, rate-limit buckets, monitoring details).
func (a *App) checkProxiesStrict() {
	for name, srv := range httpServers(a.ctx) {
		if !hasTrustedProxies(srv) || srv.TrustedProxiesStrict > 0 {
			continue
		}
		_ = a.Report(Finding{Code: "proxies.not_strict", Severity: Warning, Module: "hardening",
			Config:  "apps.http.servers." + name + ".trusted_proxies_strict",
			Message: "the server trusts proxies but takes the left-most X-Forwarded-For address as the client's: behind a proxy that appends to the header, the client writes that entry, and can claim a trusted address, dodge its detection score, take a fresh rate-limit bucket per request, and get any address it names detected as suspicious (a scan sent under another's address bans that address)",
			Fix:     "add trusted_proxies_strict to the server's options (servers { trusted_proxies static <ranges>; trusted_proxies_strict }): Caddy then takes the right-most address that is not a trusted proxy"})
	}
}
