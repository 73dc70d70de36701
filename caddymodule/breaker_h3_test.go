package caddymodule

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go/http3"

	"github.com/swarmsec/caddy-hardening/internal/testcaddy"
	"github.com/swarmsec/caddy-hardening/internal/testenv"
)

// TestBreakerOpenOverHTTP3: an open breaker's answers reach an HTTP/3 client (quic-go) as over
// HTTP/1.1 and HTTP/2: the 503 problem with Retry-After, Cache-Control: no-store and the JSON
// body; the same without a body to a HEAD; a POST whose body the open breaker never reads leaves
// the connection usable; and a fallback's answer with the breaker's placeholders.
func TestBreakerOpenOverHTTP3(t *testing.T) {
	u := startUpstream(t, "fail")
	httpsPort, httpPort := testenv.FreePort(t), testenv.FreePort(t)
	testcaddy.StartCaddy(t, fmt.Sprintf(`{
%s}
localhost:%d {
	bind 127.0.0.1
	tls internal
	handle /open/* {
		upstream_breaker t_h3 {
			consecutive_failures 1
			open_for 1m
		}
		reverse_proxy %s
	}
	handle /fb/* {
		upstream_breaker t_h3_fb {
			consecutive_failures 1
			open_for 1m
			fallback {
				header Retry-After {http.vars.breaker_retry_after}
				header Cache-Control no-store
				respond "degraded: {http.vars.breaker_name} is {http.vars.breaker_state}" 200
			}
		}
		reverse_proxy %s
	}
}
`, localTLSGlobals(t, httpPort, httpsPort), httpsPort, u.addr(), u.addr()))
	waitTLS(t, fmt.Sprintf("127.0.0.1:%d", httpsPort))
	h3tr := &http3.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true, ServerName: "localhost"}}
	t.Cleanup(func() { _ = h3tr.Close() })
	h3 := &http.Client{Transport: h3tr}

	do := func(method, path, body string) (*http.Response, string) {
		t.Helper()
		var rd io.Reader
		if body != "" {
			rd = strings.NewReader(body)
		}
		req, _ := http.NewRequestWithContext(t.Context(), method, fmt.Sprintf("https://127.0.0.1:%d%s", httpsPort, path), rd)
		req.Host = fmt.Sprintf("localhost:%d", httpsPort)
		resp, err := h3.Do(req)
		if err != nil {
			t.Fatalf("%s %s over HTTP/3: %v", method, path, err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("%s %s over HTTP/3: reading the body: %v", method, path, err)
		}
		if resp.Proto != "HTTP/3.0" {
			t.Fatalf("%s %s: answered over %s, want HTTP/3.0", method, path, resp.Proto)
		}
		return resp, string(b)
	}

	// The upstream's 500 opens each breaker.
	for _, p := range []string{"/open/x", "/fb/x"} {
		if resp, _ := do(http.MethodGet, p, ""); resp.StatusCode != http.StatusInternalServerError {
			t.Fatalf("GET %s: %d, want the upstream's 500", p, resp.StatusCode)
		}
	}
	waitBreakerState(t, "t_h3", "open")
	waitBreakerState(t, "t_h3_fb", "open")
	hits := u.hits.Load()

	resp, body := do(http.MethodGet, "/open/x", "")
	var problem struct {
		Status     int `json:"status"`
		RetryAfter int `json:"retry_after"`
	}
	if err := json.Unmarshal([]byte(body), &problem); err != nil || resp.StatusCode != http.StatusServiceUnavailable || problem.Status != 503 ||
		resp.Header.Get("Content-Type") != "application/problem+json" || resp.Header.Get("Cache-Control") != "no-store" ||
		resp.Header.Get("Retry-After") != fmt.Sprint(problem.RetryAfter) || problem.RetryAfter < 1 || problem.RetryAfter > 60 {
		t.Fatalf("open breaker over HTTP/3: %d %v %q (%v)", resp.StatusCode, resp.Header, body, err)
	}
	if resp, body := do(http.MethodHead, "/open/x", ""); resp.StatusCode != http.StatusServiceUnavailable || body != "" || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("HEAD to the open breaker over HTTP/3: %d %q, Retry-After %q", resp.StatusCode, body, resp.Header.Get("Retry-After"))
	}
	if resp, _ := do(http.MethodPost, "/open/x", strings.Repeat("a", 64<<10)); resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("POST to the open breaker over HTTP/3: %d, want 503", resp.StatusCode)
	}
	resp, body = do(http.MethodGet, "/fb/x", "")
	if resp.StatusCode != http.StatusOK || body != "degraded: t_h3_fb is open" || resp.Header.Get("Cache-Control") != "no-store" ||
		resp.Header.Get("Retry-After") == "" || resp.Header.Get("Retry-After") == "0" {
		t.Fatalf("fallback over HTTP/3: %d %q, headers %v", resp.StatusCode, body, resp.Header)
	}
	if n := u.hits.Load() - hits; n != 0 {
		t.Fatalf("the open breakers let %d requests through to the upstream", n)
	}
}

// TestBreakerClientGoneOverHTTP3: an HTTP/3 client that gives up on a hung upstream (before
// slow_threshold, here none) is not counted, as over HTTP/1.1 and HTTP/2: quic-go cancels the
// request's context when the client resets its stream, and the breaker reads that as the
// client's going away, not as the 504 the proxy would have answered after
// response_header_timeout.
func TestBreakerClientGoneOverHTTP3(t *testing.T) {
	u := startUpstream(t, "hang")
	httpsPort, httpPort := testenv.FreePort(t), testenv.FreePort(t)
	testcaddy.StartCaddy(t, fmt.Sprintf(`{
%s}
localhost:%d {
	bind 127.0.0.1
	tls internal
	upstream_breaker t_h3_gone {
		consecutive_failures 1
		open_for 1m
	}
	reverse_proxy %s {
		transport http {
			response_header_timeout 2s
		}
	}
}
`, localTLSGlobals(t, httpPort, httpsPort), httpsPort, u.addr()))
	waitTLS(t, fmt.Sprintf("127.0.0.1:%d", httpsPort))
	h3tr := &http3.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true, ServerName: "localhost"}}
	t.Cleanup(func() { _ = h3tr.Close() })

	excluded := breakerRequestsVec.WithLabelValues("t_h3_gone", "excluded")
	failed := breakerRequestsVec.WithLabelValues("t_h3_gone", "failure")
	before := metricValue(t, excluded) + metricValue(t, failed)
	ctx, cancel := context.WithCancel(t.Context())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("https://127.0.0.1:%d/", httpsPort), nil)
	req.Host = fmt.Sprintf("localhost:%d", httpsPort)
	done := make(chan error, 1)
	go func() {
		resp, err := h3tr.RoundTrip(req)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	for u.hits.Load() == 0 { // the request reached the upstream, which holds it
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; err == nil {
		t.Fatal("the request got an answer from a hung upstream")
	}
	deadline := time.Now().Add(10 * time.Second)
	for metricValue(t, excluded)+metricValue(t, failed)-before == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the abandoned request was never counted")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := metricValue(t, failed); n != 0 {
		t.Fatalf("an HTTP/3 client's giving up counted as %v failure(s); the breaker is %v", n, breakerStatus(t, "t_h3_gone").Observed["state"])
	}
	if s := breakerStatus(t, "t_h3_gone"); s.Observed["state"] != "closed" {
		t.Fatalf("the breaker is %v, want closed", s.Observed["state"])
	}
}
