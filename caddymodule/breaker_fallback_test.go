package caddymodule

import (
	"net"
	"net/http"
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
