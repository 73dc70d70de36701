package caddymodule

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/swarmsec/caddy-hardening/breaker"
)

// benchBreaker is a handler wired as Provision wires it, without a running Caddy.
func benchBreaker(b *testing.B, s breaker.Settings) *UpstreamBreaker {
	br, err := breaker.New(s)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(br.Close)
	h := &UpstreamBreaker{Name: s.Name, on: true, entry: &breakerEntry{b: br}, metrics: newBreakerMetrics(s.Name)}
	h.classifier.Statuses, _ = breaker.ParseStatuses(nil)
	return h
}

var okNext = caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	_, err := io.WriteString(w, "ok")
	return err
})

func serveBench(b *testing.B, h caddyhttp.MiddlewareHandler, next caddyhttp.Handler) {
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	// Caddy gives every request its variables (the breaker marks the requests it holds there).
	r = r.WithContext(context.WithValue(r.Context(), caddyhttp.VarsCtxKey, map[string]any{}))
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		if err := h.ServeHTTP(w, r, next); err != nil {
			b.Fatal(err)
		}
	}
}

type passThrough struct{}

func (passThrough) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	return next.ServeHTTP(w, r)
}

// BenchmarkBreakerBaseline is the same request without the breaker (the recorder's cost).
func BenchmarkBreakerBaseline(b *testing.B) { serveBench(b, passThrough{}, okNext) }

// BenchmarkBreakerClosed is a request through a closed breaker to a handler answering 200.
func BenchmarkBreakerClosed(b *testing.B) {
	serveBench(b, benchBreaker(b, breaker.Settings{Name: "bench_closed"}), okNext)
}

// BenchmarkBreakerOpen is the 503 problem of an open breaker.
func BenchmarkBreakerOpen(b *testing.B) {
	h := benchBreaker(b, breaker.Settings{Name: "bench_open", ConsecutiveFailures: 1, OpenFor: time.Hour})
	tk, _ := h.entry.b.Allow()
	tk.Report(breaker.Failure)
	serveBench(b, h, okNext)
}

// BenchmarkBreakerRespond503 is what a bare `respond "..." 503` writes, for comparison.
func BenchmarkBreakerRespond503(b *testing.B) {
	serveBench(b, passThrough{}, caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, err := io.WriteString(w, "service unavailable")
		return err
	}))
}

// BenchmarkBreakerJudge is the judging of a proxied 200 (not gRPC) as its header is written:
// the header lookups it takes, which every proxied response pays.
func BenchmarkBreakerJudge(b *testing.B) {
	h := benchBreaker(b, breaker.Settings{Name: "bench_judge"})
	rec := &breakerRecorder{h: h}
	rec.ResponseWriter = httptest.NewRecorder()
	hdr := rec.Header()
	hdr.Set("Content-Type", "text/html; charset=utf-8")
	hdr.Set("Content-Length", "1024")
	hdr.Set("Date", "Sun, 29 Nov 2026 09:00:00 GMT")
	hdr.Set("Server", "upstream")
	b.ReportAllocs()
	for b.Loop() {
		if s, later := rec.judge(http.StatusOK); s != http.StatusOK || later {
			b.Fatal(s, later)
		}
	}
}
