package caddymodule

import (
	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"
)

func init() {
	caddy.RegisterModule(metricsCarrier{})
}

// metricsCarrier keeps our series on the admin endpoint's /metrics when a load fails. Caddy
// points /metrics at a new configuration's registry before it provisions the apps, and leaves
// it there when the load fails while the previous configuration goes on running: our
// collectors, registered by our modules' Provision, were missing from /metrics after a
// refused reload (a typo in a PATCH) until the next load that succeeded, so alerts on them
// went silent. When a configuration's context ends — its load failed, or a later one replaced
// it and its registry is served no more — the carrier registers on that registry what the
// running configuration uses: the collectors are package-level and count for the running
// configuration. It has no route: Caddy provisions every admin.api module with the
// configuration's context, which is all it needs.
type metricsCarrier struct{}

// CaddyModule returns the Caddy module information.
func (metricsCarrier) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.hardening_metrics",
		New: func() caddy.Module { return new(metricsCarrier) },
	}
}

// Routes returns no route.
func (metricsCarrier) Routes() []caddy.AdminRoute { return nil }

// Provision waits, in the background, for the configuration's context to end. (ctx.OnCancel
// cannot be used: Caddy runs the cleanup functions of the parent context, not of the copy a
// module is given.)
func (metricsCarrier) Provision(ctx caddy.Context) error {
	if reg := ctx.GetMetricsRegistry(); reg != nil {
		go func() {
			<-ctx.Done()
			carryRunningMetrics(reg)
		}()
	}
	return nil
}

// carryRunningMetrics registers on reg the collectors the running configuration uses: the
// IP-class, CSP report and check counters with any hardening app, the rate limiter's and the
// breakers' while a live configuration has them, and the monitoring states of the newest
// configuration with a monitoring handler.
func carryRunningMetrics(reg *prometheus.Registry) {
	if _, err := activeHardeningApp(); err != nil {
		return // the running configuration has none of our modules
	}
	_ = registerIPClassMetrics(reg)
	_ = registerCSPReportMetrics(reg)
	_ = registerCheckMetrics(reg)
	if liveLimiterApps.any() {
		_ = registerRateLimitMetrics(reg)
	}
	if anyBreakerSeries() {
		_ = registerBreakerMetrics(reg)
	}
	_ = reg.Register(carriedState{reg})
}

// carriedState reports the monitoring handlers' dependency and component states on a
// registry whose configuration no longer has its own, from the newest configuration that
// has. It describes nothing (an unchecked collector), so it never conflicts with a state
// collector of reg's own.
type carriedState struct{ reg *prometheus.Registry }

func (carriedState) Describe(chan<- *prometheus.Desc) {}

func (c carriedState) Collect(ch chan<- prometheus.Metric) {
	if sc := newestStateCollectorBut(c.reg); sc != nil {
		sc.Collect(ch)
	}
}

var (
	_ caddy.AdminRouter = metricsCarrier{}
	_ caddy.Provisioner = metricsCarrier{}
)
