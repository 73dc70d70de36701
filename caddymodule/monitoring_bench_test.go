package caddymodule

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/swarmsec/caddy-hardening/apikey"
	"github.com/swarmsec/caddy-hardening/monitor"
)

// benchMonitoring is a provisioned-like handler with three checked TCP dependencies.
func benchMonitoring(b *testing.B) (*Monitoring, string) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Close() })
	key, _ := apikey.Generate("")
	keys, _ := apikey.ParseSet([]string{apikey.Digest(key)})
	m := &Monitoring{app: &App{}, enabled: true, keys: keys, system: &monitor.SystemSampler{}}
	for _, name := range []string{"db", "cache", "smtp"} {
		c, err := monitor.NewCheck(monitor.Config{Name: name, Type: "tcp", Critical: true}, monitor.TCPChecker{Address: l.Addr().String()})
		if err != nil {
			b.Fatal(err)
		}
		c.RunOnce(context.Background())
		m.checks = append(m.checks, c)
	}
	return m, key
}

func benchRoute(b *testing.B, m *Monitoring, route, key string) {
	req := httptest.NewRequest("GET", "/api/monitoring/"+route, nil)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		if err := m.ServeHTTP(w, req, nil); err != nil || w.Code != http.StatusOK {
			b.Fatalf("%d %v", w.Code, err)
		}
	}
}

// BenchmarkMonitoringReady is one /ready probe: cached states, aggregation, a small body.
func BenchmarkMonitoringReady(b *testing.B) {
	m, _ := benchMonitoring(b)
	benchRoute(b, m, "ready", "")
}

// BenchmarkMonitoringHealthWithKey is /health with details: key check (constant time over
// every digest) and the full health+json document.
func BenchmarkMonitoringHealthWithKey(b *testing.B) {
	m, key := benchMonitoring(b)
	benchRoute(b, m, "health", key)
}

// BenchmarkMonitoringLive is the liveness probe.
func BenchmarkMonitoringLive(b *testing.B) {
	m, _ := benchMonitoring(b)
	benchRoute(b, m, "live", "")
}
