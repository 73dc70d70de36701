package caddymodule

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/swarmsec/caddy-hardening/ipclass"
	"github.com/swarmsec/caddy-hardening/pathguard"
)

// benchPathGuard is path_guard wired as Provision wires it (10,000 trusted prefixes, the
// detector, the built-in probe paths), without a running Caddy.
func benchPathGuard(b *testing.B) *PathGuard {
	var prefixes []netip.Prefix
	for i := range 10_000 {
		prefixes = append(prefixes, netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 32))
	}
	probes, err := ipclass.NewProbeMatcher(ipclass.DefaultProbePaths)
	if err != nil {
		b.Fatal(err)
	}
	app := &App{probes: probes, classifier: &ipclass.Classifier{
		Trusted:  ipclass.NewPrefixSet(prefixes),
		Detector: ipclass.NewDetector(ipclass.Settings{}),
	}}
	h := &PathGuard{app: app, on: true, signals: true, merge: true, blocked: map[pathguard.Reason]prometheus.Counter{}}
	return h
}

// servePathGuardBench serves GET target from 198.51.100.7 with Caddy's request vars in place.
func servePathGuardBench(b *testing.B, h caddyhttp.MiddlewareHandler, target string) {
	b.ReportAllocs()
	for b.Loop() {
		r := httptest.NewRequest(http.MethodGet, target, nil)
		vars := map[string]any{caddyhttp.ClientIPVarKey: "198.51.100.7"}
		r = r.WithContext(context.WithValue(r.Context(), caddyhttp.VarsCtxKey, vars))
		if err := h.ServeHTTP(httptest.NewRecorder(), r, okNext); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPathGuardBaseline is the same request without path_guard (request and recorder).
func BenchmarkPathGuardBaseline(b *testing.B) {
	servePathGuardBench(b, passThrough{}, "/api/v1/users/123")
}

// BenchmarkPathGuard is an ordinary request through path_guard: path check, class of the
// client, probe match, status capture for the detector.
func BenchmarkPathGuard(b *testing.B) {
	servePathGuardBench(b, benchPathGuard(b), "/api/v1/users/123")
}
