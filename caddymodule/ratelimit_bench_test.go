package caddymodule

import (
	"testing"
	"time"

	"github.com/swarmsec/caddy-hardening/ipclass"
	"github.com/swarmsec/caddy-hardening/ratelimit"
)

// benchRateLimit is policy_rate_limit wired as Provision wires it (memory store, the class of
// the client), without a running Caddy.
func benchRateLimit(b *testing.B, limit *LimitRow) *PolicyRateLimit {
	p, err := resolvePolicy("bench", nil, &PolicyConfig{Limit: limit})
	if err != nil {
		b.Fatal(err)
	}
	adaptive, err := ratelimit.NewAdaptive(ratelimit.AdaptiveOptions{Source: new(fixedLoad)})
	if err != nil {
		b.Fatal(err)
	}
	app := &App{classifier: &ipclass.Classifier{Detector: ipclass.NewDetector(ipclass.Settings{})}}
	mem := ratelimit.NewPolicyMemoryStores(ratelimit.MemoryOptions{})
	e := &limiterEntry{memory: mem, store: mem, adaptive: adaptive}
	h := &PolicyRateLimit{on: true, app: app, policy: p, key: p.key, ipKey: true, StatusCode: 429,
		bucketSet: p.name, limiter: e, store: e.storeFor(p.name), metrics: newRateLimitMetrics("bench"), setHandlers: new(int)}
	for c := range h.replies {
		if h.replies[c], err = newRowReplies(p, p.rows[c], 429, ""); err != nil {
			b.Fatal(err)
		}
	}
	h.proxied.Store(proxiedNo) // no reverse_proxy after it, as validation finds on a respond route
	return h
}

// BenchmarkRateLimitBaseline is the same request without the handler (request and recorder).
func BenchmarkRateLimitBaseline(b *testing.B) {
	servePathGuardBench(b, passThrough{}, "/api/v1/users/123")
}

// BenchmarkRateLimitAdmit is an admitted request: class, key, GCRA decision in memory, the two
// RateLimit header fields, a counter.
func BenchmarkRateLimitAdmit(b *testing.B) {
	servePathGuardBench(b, benchRateLimit(b, row(1_000_000, time.Second, 1_000_000)), "/api/v1/users/123")
}

// BenchmarkRateLimitAdmitProxied is BenchmarkRateLimitAdmit on a line with a reverse_proxy
// after it: the response is watched for the upstream's RateLimit members (upstreamFieldsWriter).
func BenchmarkRateLimitAdmitProxied(b *testing.B) {
	h := benchRateLimit(b, row(1_000_000, time.Second, 1_000_000))
	h.proxied.Store(proxiedYes)
	servePathGuardBench(b, h, "/api/v1/users/123")
}

// BenchmarkRateLimitDeny is a refused request: the 429 problem with Retry-After and the
// header fields, a counter, the detector signal, the sampled event.
func BenchmarkRateLimitDeny(b *testing.B) {
	servePathGuardBench(b, benchRateLimit(b, row(1, time.Hour, 1)), "/api/v1/users/123")
}

// BenchmarkRateLimitDenyDashboard is BenchmarkRateLimitDeny with the dashboard on: each
// refusal also counts its key in the top-K.
func BenchmarkRateLimitDenyDashboard(b *testing.B) {
	e, _ := newDashEntry()
	defer func() { _ = e.Destruct() }()
	servePathGuardBench(b, benchRateLimit(b, row(1, time.Hour, 1)), "/api/v1/users/123")
}
