// Package dashboard holds the security dashboard's data in fixed memory: time series of the
// project's counters and gauges at two resolutions (15 minutes at 5 s, 1 hour at 1 min), a
// space-saving top-K of rate-limited keys, a ring of the last security events, and the
// Redis publish/aggregate of the "all instances" view.
//
// It imports nothing from Caddy: the routes and the feeds live in caddymodule.
package dashboard
