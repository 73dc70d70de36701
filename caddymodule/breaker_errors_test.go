package caddymodule

import (
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/swarmsec/caddy-hardening/internal/testcaddy"
	"github.com/swarmsec/caddy-hardening/internal/testenv"
)

// TestBreakerInHandleErrors: a breaker in handle_errors, in front of the reverse_proxy that
// serves the error pages, counts that upstream's failures and opens like one in the site's
// routes, answering the 503 problem without calling it; a POST's body, read by the site's own
// route first, does not make its failures the client's fault.
func TestBreakerInHandleErrors(t *testing.T) {
	pages := startUpstream(t, "fail")
	port := testenv.FreePort(t)
	url := fmt.Sprintf("http://127.0.0.1:%d/missing", port)
	testcaddy.StartCaddy(t, fmt.Sprintf(`http://127.0.0.1:%d {
	bind 127.0.0.1
	error 404
	handle_errors {
		upstream_breaker t_errpages {
			consecutive_failures 2
			open_for 1m
		}
		reverse_proxy %s {
			transport http {
				response_header_timeout 2s
			}
		}
	}
}
`, port, pages.addr()))
	failures := breakerRequestsVec.WithLabelValues("t_errpages", "failure")
	before := metricValue(t, failures)
	post := func() int {
		t.Helper()
		resp, err := http.Post(url, "text/plain", strings.NewReader("a form"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if s := post(); s != http.StatusInternalServerError {
		t.Fatalf("POST: %d, want the error pages' 500", s)
	}
	if r := getReply(t, url); r.status != http.StatusInternalServerError {
		t.Fatalf("GET: %d, want the error pages' 500", r.status)
	}
	if n := metricValue(t, failures) - before; n != 2 {
		t.Fatalf("%v failures counted, want 2 (the POST's and the GET's)", n)
	}
	waitBreakerState(t, "t_errpages", "open")
	hits := pages.hits.Load()
	assertOpenReply(t, getReply(t, url), 60)
	if n := pages.hits.Load() - hits; n != 0 {
		t.Fatalf("the open breaker let %d requests through", n)
	}
}

// TestBreakerInHandleErrorsAfterBreaker: the site's own breaker in front of a dead upstream
// (502), and a breaker in handle_errors in front of the error pages' upstream, which fails too.
// A POST's body was taken by the site's breaker and closed by the transport; the error pages'
// breaker must still count its upstream's failure, not exclude it as the client's fault.
func TestBreakerInHandleErrorsAfterBreaker(t *testing.T) {
	pages := startUpstream(t, "fail")
	dead := deadAddr(t)
	port := testenv.FreePort(t)
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	testcaddy.StartCaddy(t, fmt.Sprintf(`http://127.0.0.1:%d {
	bind 127.0.0.1
	upstream_breaker t_site {
		consecutive_failures 100
	}
	reverse_proxy %s
	handle_errors {
		upstream_breaker t_errpages2 {
			consecutive_failures 100
		}
		reverse_proxy %s {
			transport http {
				response_header_timeout 2s
			}
		}
	}
}
`, port, dead, pages.addr()))
	outcome := func(name, o string) float64 { return metricValue(t, breakerRequestsVec.WithLabelValues(name, o)) }
	for i := range 3 {
		siteBefore, pagesBefore := outcome("t_site", "failure"), outcome("t_errpages2", "failure")
		excludedBefore := outcome("t_errpages2", "excluded")
		resp, err := http.Post(url, "text/plain", strings.NewReader(strings.Repeat("form ", 1000)))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode < 500 {
			t.Fatalf("POST %d: %d, want a 5xx", i+1, resp.StatusCode)
		}
		if d, p, x := outcome("t_site", "failure")-siteBefore, outcome("t_errpages2", "failure")-pagesBefore, outcome("t_errpages2", "excluded")-excludedBefore; d != 1 || p != 1 || x != 0 {
			t.Fatalf("POST %d (%d): site breaker failures +%v (want 1), error pages' failures +%v (want 1), excluded +%v (want 0); error pages' upstream hit %d times",
				i+1, resp.StatusCode, d, p, x, pages.hits.Load())
		}
	}
}

// deadAddr is a loopback address that refuses connections.
func deadAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
