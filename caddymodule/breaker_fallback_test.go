package caddymodule

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	neturl "net/url"
	"testing"

	"github.com/swarmsec/caddy-hardening/internal/testcaddy"
)

// TestBreakerFailedFallbackCountedApart: short_circuited_total counts what the client got. A
// fallback whose own upstream is down too (reverse_proxy returns Caddy's 502) or answers 500
// did not serve the client: response="fallback_5xx", not "fallback" as if it were served. A
// fallback that answers below 500, also through an error (`error 404`), is "fallback".
func TestBreakerFailedFallbackCountedApart(t *testing.T) {
	u := startUpstream(t, "fail")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := l.Addr().String()
	l.Close()
	backup := startUpstream(t, "fail")
	open := "consecutive_failures 1\nopen_for 1m\n"
	bDown, downURL := breakerSite(t, "t_fb_down", open+"fallback {\n\treverse_proxy "+refused+"\n}", u.addr())
	b500, url500 := breakerSite(t, "t_fb_500", open+"fallback {\n\treverse_proxy "+backup.addr()+"\n}", u.addr())
	b404, url404 := breakerSite(t, "t_fb_404", open+"fallback {\n\terror 404\n}", u.addr())
	testcaddy.StartCaddy(t, bDown+b500+b404)

	for _, c := range []struct {
		name, url string
		status    int
		response  string
	}{
		{"t_fb_down", downURL, http.StatusBadGateway, "fallback_5xx"},
		{"t_fb_500", url500, http.StatusInternalServerError, "fallback_5xx"},
		{"t_fb_404", url404, http.StatusNotFound, "fallback"},
	} {
		before := map[string]float64{}
		for _, resp := range []string{"fallback", "fallback_5xx", "problem"} {
			before[resp] = metricValue(t, breakerShortCircuitedVec.WithLabelValues(c.name, "open", resp))
		}
		getReply(t, c.url) // the upstream's 500 opens it
		waitBreakerState(t, c.name, "open")
		if r := getReply(t, c.url); r.status != c.status {
			t.Fatalf("%s: the fallback answered %d, want %d", c.name, r.status, c.status)
		}
		for resp, b := range before {
			want := 0.0
			if resp == c.response {
				want = 1
			}
			if n := metricValue(t, breakerShortCircuitedVec.WithLabelValues(c.name, "open", resp)) - b; n != want {
				t.Errorf("%s: short_circuited_total{response=%s} grew by %v, want %v", c.name, resp, n, want)
			}
		}
	}
}

// TestBreakerAbortedFallbackIsCounted: a fallback that ends in a panic was not counted at all.
// Caddy's `abort` panics with http.ErrAbortHandler (the client gets no answer: fallback_5xx),
// and so does a fallback reverse_proxy whose upstream cuts the body it streams (the header
// went out: counted by its status, 200 here, fallback).
func TestBreakerAbortedFallbackIsCounted(t *testing.T) {
	u := startUpstream(t, "fail")
	cut := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1000")
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, "the first bytes")
		http.NewResponseController(w).Flush()
		if c, _, err := http.NewResponseController(w).Hijack(); err == nil {
			c.Close() // 985 bytes short
		}
	}))
	t.Cleanup(cut.Close)
	open := "consecutive_failures 1\nopen_for 1m\n"
	bAbort, abortURL := breakerSite(t, "t_fb_abort", open+"fallback {\n\tabort\n}", u.addr())
	bCut, cutURL := breakerSite(t, "t_fb_cut", open+"fallback {\n\treverse_proxy "+cut.Listener.Addr().String()+"\n}", u.addr())
	testcaddy.StartCaddy(t, bAbort+bCut)

	for _, c := range []struct{ name, url, response string }{
		{"t_fb_abort", abortURL, "fallback_5xx"},
		{"t_fb_cut", cutURL, "fallback"},
	} {
		counter := breakerShortCircuitedVec.WithLabelValues(c.name, "open", c.response)
		getReply(t, c.url) // the upstream's 500 opens it
		waitBreakerState(t, c.name, "open")
		before := metricValue(t, counter)
		getUntilClosed(t, c.url) // abort: no answer; cut: a short body
		if n := metricValue(t, counter) - before; n != 1 {
			t.Errorf("%s: short_circuited_total{response=%s} grew by %v, want 1", c.name, c.response, n)
		}
	}
}

// getUntilClosed sends one GET over a connection of its own and reads until the server closes it
// (rawGet in pathguard_test.go fails on an answer that is not HTTP): a
// net/http client would resend a request that got no answer.
func getUntilClosed(t *testing.T, url string) {
	t.Helper()
	u, err := neturl.Parse(url)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "GET "+u.RequestURI()+" HTTP/1.1\r\nHost: "+u.Host+"\r\nConnection: close\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, c)
}
