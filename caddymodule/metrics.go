package caddymodule

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// registerCollector registers c on the config's registry (ctx.GetMetricsRegistry(), fresh on
// every config load) and returns the collector that is registered. Define collectors once at
// package level, so counts survive reloads, and register them in every Provision; a second
// module registering the same collector in one config is not an error. A nil registry (metrics
// off in a test context) is ignored.
func registerCollector[T prometheus.Collector](reg *prometheus.Registry, c T) (T, error) {
	if reg == nil {
		return c, nil
	}
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(T); ok {
				return existing, nil
			}
		}
		return c, err
	}
	return c, nil
}
