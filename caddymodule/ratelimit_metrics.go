package caddymodule

import (
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/swarmsec/caddy-hardening/ipclass"
	"github.com/swarmsec/caddy-hardening/ratelimit"
)

// The rate limiter's metrics, at package level so counts survive reloads (see
// registerCollector).
var (
	rateLimitDecisions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "hardening", Name: "ratelimit_decisions_total",
		Help: "Rate-limit decisions by policy, client class and result (allowed, denied, shadow_denied: a shadow policy would have refused, unlimited: the class's row is unlimited, store_failed_open / store_failed_closed: Redis failed and on_store_failure allow / deny decided).",
	}, []string{"policy", "class", "result"})
	storeMode = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "caddy", Subsystem: "hardening", Name: "ratelimit_store_mode",
		Help: "1 for the rate limiter's current store mode (redis, memory-fallback, memory), 0 for the others.",
	}, []string{"mode"})
	fallbackDecisions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "hardening", Name: "ratelimit_fallback_decisions_total",
		Help: "Decisions the in-memory fallback made although Redis is configured (Redis failed or timed out on that decision, or the limiter is in memory-fallback mode): limits per instance for those requests.",
	}, []string{"policy"})
	storeDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: "caddy", Subsystem: "hardening", Name: "ratelimit_store_duration_seconds",
		Help:    "Time to decide a request with Redis configured, fallback included (bounded by store_timeout).",
		Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25},
	})
)

// The decision results, as metric labels.
const (
	resultAllowed = iota
	resultDenied
	resultShadowDenied
	resultUnlimited
	resultStoreFailedOpen   // Redis failing, on_store_failure allow: admitted unmetered
	resultStoreFailedClosed // Redis failing, on_store_failure deny: refused with 503
)

var resultNames = [...]string{"allowed", "denied", "shadow_denied", "unlimited", "store_failed_open", "store_failed_closed"}

var storeModes = [...]string{storeModeRedis, storeModeFallback, storeModeMemory}

// rateLimitMetrics are one policy's counters, resolved once so a request only increments.
type rateLimitMetrics struct {
	decisions [3][len(resultNames)]prometheus.Counter // by class, result
	fallback  prometheus.Counter                      // decisions the memory fallback made
}

// policiesWithSeries are the policies whose decision and fallback series exist, so that a
// configuration that starts without one can delete them (keepPolicySeries).
var (
	policySeriesMu     sync.Mutex
	policiesWithSeries = map[string]bool{}
)

// keepPolicySeries deletes the series of every policy not in used: a policy a reload removed
// leaves no counters behind (as a removed breaker's series go).
func keepPolicySeries(used map[string]bool) {
	policySeriesMu.Lock()
	defer policySeriesMu.Unlock()
	for name := range policiesWithSeries {
		if !used[name] {
			rateLimitDecisions.DeletePartialMatch(prometheus.Labels{"policy": name})
			fallbackDecisions.DeleteLabelValues(name)
			delete(policiesWithSeries, name)
		}
	}
}

func newRateLimitMetrics(policy string) rateLimitMetrics {
	policySeriesMu.Lock()
	policiesWithSeries[policy] = true
	policySeriesMu.Unlock()
	var m rateLimitMetrics
	for c := range m.decisions {
		for res, name := range resultNames {
			m.decisions[c][res] = rateLimitDecisions.WithLabelValues(policy, ipclass.Class(c).String(), name)
		}
	}
	m.fallback = fallbackDecisions.WithLabelValues(policy)
	return m
}

func (m *rateLimitMetrics) count(c ipclass.Class, result int) { m.decisions[c][result].Inc() }

// setStoreModeMetric marks mode as the current one.
func setStoreModeMetric(mode string) {
	for _, m := range storeModes {
		v := 0.0
		if m == mode {
			v = 1
		}
		storeMode.WithLabelValues(m).Set(v)
	}
}

// registerRateLimitMetrics registers the collectors on the config's registry, with gauges of
// the keys each policy's in-memory store tracks and of the adaptive factor (read at scrape
// time, from the limiter of the configuration that started last).
func registerRateLimitMetrics(reg *prometheus.Registry) error {
	for _, c := range []prometheus.Collector{rateLimitDecisions, fallbackDecisions, storeMode, storeDuration, memoryKeys, adaptiveFactor} {
		if _, err := registerCollector(reg, c); err != nil {
			return err
		}
	}
	return nil
}

// memoryKeys is caddy_hardening_ratelimit_memory_keys{policy}: each policy's store is bounded
// by max_keys on its own, so the gauge is per policy.
var memoryKeys = &memoryKeysCollector{desc: prometheus.NewDesc("caddy_hardening_ratelimit_memory_keys",
	"Keys the in-memory rate-limit store of each policy tracks (each bounded by max_keys).", []string{"policy"}, nil)}

type memoryKeysCollector struct {
	desc   *prometheus.Desc
	stores atomic.Pointer[ratelimit.PolicyMemoryStores]
}

func (c *memoryKeysCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *memoryKeysCollector) Collect(ch chan<- prometheus.Metric) {
	if s := c.stores.Load(); s != nil {
		s.Each(func(policy string, keys int) {
			ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(keys), policy)
		})
	}
}

// adaptiveFactor is caddy_hardening_ratelimit_adaptive_factor: what adaptive policies multiply
// their rate and burst by now, so an operator sees why their limits shrank.
var adaptiveFactor = &adaptiveFactorCollector{desc: prometheus.NewDesc("caddy_hardening_ratelimit_adaptive_factor",
	"The load factor adaptive rate-limit policies multiply their rate and burst by: 1 below the adaptive cpu_target (and inflight_target), falling to min_factor at full load.", nil, nil)}

type adaptiveFactorCollector struct {
	desc     *prometheus.Desc
	adaptive atomic.Pointer[ratelimit.Adaptive]
}

func (c *adaptiveFactorCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *adaptiveFactorCollector) Collect(ch chan<- prometheus.Metric) {
	if a := c.adaptive.Load(); a != nil {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, a.Factor())
	}
}
