package caddymodule

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	dto "github.com/prometheus/client_model/go"

	"github.com/swarmsec/caddy-hardening/internal/testcaddy"
	"github.com/swarmsec/caddy-hardening/internal/testenv"
)

// upstream is a real HTTP server whose behaviour a test switches: ok, fail (500), hold
// (answers 200 once released), hang (never answers until the test ends), slow (200 after
// 150 ms).
type upstream struct {
	srv     *httptest.Server
	mode    atomic.Value
	hits    atomic.Int64
	release chan struct{}
	held    atomic.Int64
}

func startUpstream(t *testing.T, mode string) *upstream {
	t.Helper()
	u := &upstream{release: make(chan struct{})}
	u.mode.Store(mode)
	done := make(chan struct{})
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.hits.Add(1)
		switch u.mode.Load().(string) {
		case "fail":
			http.Error(w, "upstream broke", http.StatusInternalServerError)
			return
		case "hold":
			u.held.Add(1)
			select {
			case <-u.release:
			case <-done:
			}
		case "hang":
			select {
			case <-r.Context().Done():
			case <-done:
			}
			return
		case "slow":
			time.Sleep(150 * time.Millisecond)
		case "stream": // the header at once, the body once released
			w.WriteHeader(http.StatusOK)
			http.NewResponseController(w).Flush()
			select {
			case <-u.release:
			case <-done:
			}
		}
		_, _ = io.WriteString(w, "upstream ok")
	}))
	t.Cleanup(func() { close(done); u.srv.Close() })
	return u
}

func (u *upstream) addr() string { return strings.TrimPrefix(u.srv.URL, "http://") }

// breakerSite is a site with upstream_breaker (settings as the block's lines) before a
// reverse_proxy to addr with a 300 ms response header timeout.
func breakerSite(t *testing.T, name, settings, addr string) (string, string) {
	port := testenv.FreePort(t)
	return fmt.Sprintf(`http://127.0.0.1:%d {
	bind 127.0.0.1
	upstream_breaker %s {
		%s
	}
	reverse_proxy %s {
		transport http {
			response_header_timeout 300ms
		}
	}
}
`, port, name, strings.ReplaceAll(settings, "\n", "\n\t\t"), addr), fmt.Sprintf("http://127.0.0.1:%d/", port)
}

// breakerStatus is the health report the breaker registered in the running config.
func breakerStatus(t *testing.T, name string) StatusReport {
	t.Helper()
	s := componentStatus(t, "breaker:"+name)
	if s.Component == "" {
		t.Fatalf("no status registered for breaker:%s", name)
	}
	return s
}

func waitBreakerState(t *testing.T, name, state string) StatusReport {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		s := breakerStatus(t, name)
		if s.Observed["state"] == state {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("breaker %s is %v, want %s", name, s.Observed["state"], state)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// assertOpenReply checks the fast 503: problem+json, Retry-After, no upstream call.
func assertOpenReply(t *testing.T, r reply, maxRetry int) {
	t.Helper()
	if r.status != http.StatusServiceUnavailable || r.header.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("open breaker answered %d %q: %s", r.status, r.header.Get("Content-Type"), r.body)
	}
	ra, err := strconv.Atoi(r.header.Get("Retry-After"))
	if err != nil || ra < 1 || ra > maxRetry {
		t.Fatalf("Retry-After %q, want 1..%d", r.header.Get("Retry-After"), maxRetry)
	}
	var p map[string]any
	if err := json.Unmarshal([]byte(r.body), &p); err != nil || p["status"] != float64(503) || p["retry_after"] != float64(ra) {
		t.Fatalf("problem body %s (%v)", r.body, err)
	}
}

func TestBreakerOpensOnStatusAndRecoversThroughHalfOpen(t *testing.T) {
	u := startUpstream(t, "fail")
	// open_for 3s: the five refusals below come before it ends on a loaded machine too.
	block, url := breakerSite(t, "t_status", "consecutive_failures 3\nopen_for 3s\nhalf_open_requests 2", u.addr())
	c := testcaddy.StartCaddy(t, block)
	shortBefore := metricValue(t, breakerShortCircuitedVec.WithLabelValues("t_status", "open", "problem"))
	failBefore := breakerCount(t, "t_status", "failure")

	for i := range 3 {
		if r := getReply(t, url); r.status != 500 {
			t.Fatalf("request %d: %d, want the upstream's 500", i, r.status)
		}
	}
	if s := breakerStatus(t, "t_status"); s.Observed["state"] != "open" || s.Status != HealthWarn {
		t.Fatalf("after 3 failures: %+v", s)
	}
	for range 5 {
		assertOpenReply(t, getReply(t, url), 3)
	}
	if n := metricValue(t, breakerShortCircuitedVec.WithLabelValues("t_status", "open", "problem")) - shortBefore; n != 5 {
		t.Fatalf("short_circuited_total{state=open,response=problem} = %v, want 5", n)
	}
	if n := breakerCount(t, "t_status", "failure") - failBefore; n != 3 {
		t.Fatalf("requests_total{outcome=failure} = %v, want 3", n)
	}
	if n := u.hits.Load(); n != 3 {
		t.Fatalf("the upstream got %d requests, want 3: none while open", n)
	}

	// Half-open admits exactly 2 probes; a third request is refused while they run.
	u.mode.Store("hold")
	waitBreakerState(t, "t_status", "half_open")
	var wg sync.WaitGroup
	probes := make([]reply, 2)
	for i := range probes {
		wg.Add(1)
		go func() { defer wg.Done(); probes[i] = getReply(t, url) }()
	}
	deadline := time.Now().Add(5 * time.Second)
	for u.held.Load() < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("%d probes reached the upstream, want 2", u.held.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
	third := getReply(t, url)
	assertOpenReply(t, third, 1)
	if third.header.Get("Retry-After") != "1" {
		t.Fatalf("half-open Retry-After %q, want 1", third.header.Get("Retry-After"))
	}
	close(u.release)
	wg.Wait()
	for i, p := range probes {
		if p.status != 200 {
			t.Fatalf("probe %d: %d", i, p.status)
		}
	}
	if n := u.hits.Load(); n != 5 {
		t.Fatalf("the upstream got %d requests, want 3 + 2 probes", n)
	}
	waitBreakerState(t, "t_status", "closed")
	u.mode.Store("ok")
	if r := getReply(t, url); r.status != 200 {
		t.Fatalf("closed breaker: %d", r.status)
	}

	// Each transition is a security event and a Caddy event, in order.
	want := "warn:closed>open:local info:open>half_open:local info:half_open>closed:local"
	if got := breakerEvents(t, c, "t_status", 3); got != want {
		t.Fatalf("security events %s, want %s", got, want)
	}
}

// breakerEvents waits (bounded) for n state-change events of the breaker in the security log
// and returns them as "level:from>to:cause", space-separated.
func breakerEvents(t *testing.T, c *testcaddy.Caddy, name string, n int) string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		var got []string
		for _, e := range c.Logs() {
			if e.Logger() == securityLoggerName && e.Msg() == EventBreakerStateChanged && e.Str("breaker") == name {
				got = append(got, e.Level()+":"+e.Str("from")+">"+e.Str("to")+":"+e.Str("cause"))
			}
		}
		if len(got) >= n || time.Now().After(deadline) {
			return strings.Join(got, " ")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestBreakerRefusedThenRecoveredUpstream(t *testing.T) {
	// A port that refuses connections, later served again: while open, nothing dials it.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	// open_for 3s: the refusals below come before it ends on a loaded machine too.
	block, url := breakerSite(t, "t_refused", "consecutive_failures 2\nopen_for 3s", addr)
	testcaddy.StartCaddy(t, block)
	for range 2 {
		if r := getReply(t, url); r.status != http.StatusBadGateway {
			t.Fatalf("refused dial: %d, want 502", r.status)
		}
	}
	waitBreakerState(t, "t_refused", "open")

	l, err = net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("the port was taken meanwhile: %v", err)
	}
	var accepts atomic.Int64
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "back") }),
		ConnState: func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				accepts.Add(1)
			}
		}}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { srv.Close() })
	start := time.Now()
	for range 3 {
		assertOpenReply(t, getReply(t, url), 3)
	}
	if accepts.Load() != 0 {
		t.Fatalf("the upstream got %d connections while the breaker was open", accepts.Load())
	}
	if time.Since(start) > 3*time.Second {
		t.Fatal("the open breaker waited for something")
	}
	waitBreakerState(t, "t_refused", "half_open")
	if r := getReply(t, url); r.status != 200 || r.body != "back" {
		t.Fatalf("probe: %d %q", r.status, r.body)
	}
	waitBreakerState(t, "t_refused", "closed")
}

func TestBreakerOpensOnHangsAndSlowResponses(t *testing.T) {
	hang := startUpstream(t, "hang")
	slow := startUpstream(t, "slow")
	b1, hangURL := breakerSite(t, "t_hang", "consecutive_failures 2\nopen_for 1m", hang.addr())
	b2, slowURL := breakerSite(t, "t_slow", "consecutive_failures 2\nopen_for 1m\nslow_threshold 50ms", slow.addr())
	// The slow upstream answers after 150 ms: the site's 300 ms response_header_timeout left a
	// loaded machine 150 ms, and CI-like load made it a 504 (a failure too, but not the slow
	// 200 this tests).
	b2 = strings.Replace(b2, "response_header_timeout 300ms", "response_header_timeout 10s", 1)
	testcaddy.StartCaddy(t, b1+b2)
	for range 2 {
		if r := getReply(t, hangURL); r.status != http.StatusGatewayTimeout {
			t.Fatalf("hung upstream: %d, want 504 from response_header_timeout", r.status)
		}
		if r := getReply(t, slowURL); r.status != 200 {
			t.Fatalf("slow upstream: %d", r.status)
		}
	}
	assertOpenReply(t, getReply(t, hangURL), 60)
	assertOpenReply(t, getReply(t, slowURL), 60)
	if hang.hits.Load() != 2 || slow.hits.Load() != 2 {
		t.Fatalf("upstream hits %d and %d while open, want 2 each", hang.hits.Load(), slow.hits.Load())
	}
}

func TestBreakerFallbackWhileOpen(t *testing.T) {
	u := startUpstream(t, "fail")
	block, url := breakerSite(t, "t_fallback", `consecutive_failures 1
open_for 1m
fallback {
	header X-Degraded "{http.vars.breaker_name}"
	header Retry-After "{http.vars.breaker_retry_after}"
	respond "degraded: {http.vars.breaker_state}" 200
}`, u.addr())
	testcaddy.StartCaddy(t, block)
	before := metricValue(t, breakerShortCircuitedVec.WithLabelValues("t_fallback", "open", "fallback"))
	getReply(t, url)
	r := getReply(t, url)
	if r.status != 200 || r.body != "degraded: open" || r.header.Get("X-Degraded") != "t_fallback" {
		t.Fatalf("fallback: %d %q %v", r.status, r.body, r.header)
	}
	if ra, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || ra < 59 || ra > 60 {
		t.Fatalf("fallback Retry-After %q", r.header.Get("Retry-After"))
	}
	if u.hits.Load() != 1 {
		t.Fatalf("the upstream got %d requests, want 1", u.hits.Load())
	}
	if n := metricValue(t, breakerShortCircuitedVec.WithLabelValues("t_fallback", "open", "fallback")) - before; n != 1 {
		t.Fatalf("short_circuited_total{response=fallback} = %v, want 1", n)
	}
	// Transitions are delivered on the breaker's own goroutine: the gauge follows shortly.
	deadline := time.Now().Add(2 * time.Second)
	for metricValue(t, breakerStateVec.WithLabelValues("t_fallback", "open")) != 1 {
		if time.Now().After(deadline) {
			t.Fatal("breaker_state{state=open} did not become 1")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestBreakerFallbackErrorReachesHandleErrors: the open breaker's own 503 skips the site's
// handle_errors (README says so); a fallback that returns an error hands it to them, with the
// headers it set before.
func TestBreakerFallbackErrorReachesHandleErrors(t *testing.T) {
	u := startUpstream(t, "fail")
	block, url := breakerSite(t, "t_fallback_err", `consecutive_failures 1
open_for 1m
fallback {
	header Retry-After {http.vars.breaker_retry_after}
	error 503
}`, u.addr())
	block = strings.Replace(block, "\n}\n", "\n\thandle_errors 503 {\n\t\trespond \"branded: {err.status_code}\" 503\n\t}\n}\n", 1)
	testcaddy.StartCaddy(t, block)
	getReply(t, url)
	r := getReply(t, url)
	if r.status != http.StatusServiceUnavailable || r.body != "branded: 503" {
		t.Fatalf("fallback error: %d %q", r.status, r.body)
	}
	if ra, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || ra < 59 || ra > 60 {
		t.Fatalf("Retry-After %q", r.header.Get("Retry-After"))
	}
	if u.hits.Load() != 1 {
		t.Fatalf("the upstream got %d requests, want 1", u.hits.Load())
	}
}

// metricValue reads a counter or gauge.
func metricValue(t *testing.T, c interface{ Write(*dto.Metric) error }) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	if m.Gauge != nil {
		return m.GetGauge().GetValue()
	}
	return m.GetCounter().GetValue()
}

func TestBreakerFallbackWithoutResponseSendsProblem(t *testing.T) {
	u := startUpstream(t, "fail")
	block, url := breakerSite(t, "t_fallback_hdr", "consecutive_failures 1\nopen_for 1m\nfallback {\n\theader X-Degraded yes\n}", u.addr())
	testcaddy.StartCaddy(t, block)
	problem := breakerShortCircuitedVec.WithLabelValues("t_fallback_hdr", "open", "problem")
	fallback := breakerShortCircuitedVec.WithLabelValues("t_fallback_hdr", "open", "fallback")
	problemBefore, fallbackBefore := metricValue(t, problem), metricValue(t, fallback)
	getReply(t, url)
	r := getReply(t, url)
	assertOpenReply(t, r, 60)
	if r.header.Get("X-Degraded") != "yes" {
		t.Fatal("the fallback's header is missing")
	}
	// Counted as what the client got: the problem, not the fallback.
	if p, f := metricValue(t, problem)-problemBefore, metricValue(t, fallback)-fallbackBefore; p != 1 || f != 0 {
		t.Fatalf("short_circuited_total grew by problem %v, fallback %v; want 1 and 0", p, f)
	}
}

func TestBreakerClientCancellationIsNotAFailure(t *testing.T) {
	u := startUpstream(t, "hang")
	block, url := breakerSite(t, "t_cancel", "consecutive_failures 1\nopen_for 1m", u.addr())
	testcaddy.StartCaddy(t, block)
	before := breakerCount(t, "t_cancel", "excluded")
	for range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			t.Fatal("the hung upstream answered")
		}
		cancel()
	}
	deadline := time.Now().Add(5 * time.Second)
	for breakerCount(t, "t_cancel", "excluded")-before < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("%v cancellations counted as excluded, want 3", breakerCount(t, "t_cancel", "excluded")-before)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if s := breakerStatus(t, "t_cancel"); s.Observed["state"] != "closed" {
		t.Fatalf("cancelled requests opened the breaker: %+v", s)
	}
	u.mode.Store("ok")
	if r := getReply(t, url); r.status != 200 {
		t.Fatalf("after cancellations: %d", r.status)
	}
}

// TestBreakerUnreadableRequestBodyIsNotAFailure: a request whose body cannot be read (malformed
// chunked encoding, or over request_body's max_size) gets reverse_proxy's 502 or 413 with the
// upstream healthy; counted as a failure, three such requests from anyone opened the breaker for
// every client. They are excluded, and the upstream answers the next request.
func TestBreakerUnreadableRequestBodyIsNotAFailure(t *testing.T) {
	u := startUpstream(t, "ok")
	port := testenv.FreePort(t)
	testcaddy.StartCaddy(t, fmt.Sprintf(`http://127.0.0.1:%d {
	bind 127.0.0.1
	handle /limited/* {
		request_body {
			max_size 10
		}
		upstream_breaker t_body {
			consecutive_failures 2
			open_for 1m
		}
		reverse_proxy %[2]s
	}
	upstream_breaker t_body {
		consecutive_failures 2
		open_for 1m
	}
	reverse_proxy %[2]s
}
`, port, u.addr()))
	before := breakerCount(t, "t_body", "excluded")
	for range 3 {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.WriteString(c, "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX\r\nzz\r\n")
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		status, _ := io.ReadAll(io.LimitReader(c, 12))
		c.Close()
		if !strings.HasPrefix(string(status), "HTTP/1.1 5") {
			t.Fatalf("malformed chunked body: %q", status)
		}
	}
	for range 3 {
		resp, err := http.Post(fmt.Sprintf("http://127.0.0.1:%d/limited/x", port), "text/plain", io.MultiReader(strings.NewReader(strings.Repeat("x", 100)))) // chunked: no length to refuse up front
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	if n := breakerCount(t, "t_body", "excluded") - before; n != 6 {
		t.Errorf("%v unreadable bodies counted as excluded, want 6", n)
	}
	if s := breakerStatus(t, "t_body"); s.Observed["state"] != "closed" {
		t.Fatalf("requests with unreadable bodies opened the breaker of a healthy upstream: %+v", s)
	}
	if r := getReply(t, fmt.Sprintf("http://127.0.0.1:%d/", port)); r.status != 200 {
		t.Fatalf("after unreadable bodies: %d", r.status)
	}
}

// TestWatchedBodyBlamesOnlyTheClient: a read error is the client's unless the route closed the
// body first (the transport does when the upstream fails mid-upload, and the read it was
// blocked in then fails): an upstream dying during uploads must still count.
func TestWatchedBodyBlamesOnlyTheClient(t *testing.T) {
	pr, pw := io.Pipe()
	b := &watchedBody{ReadCloser: pr}
	_ = pw.CloseWithError(errors.New("malformed chunked encoding"))
	if _, err := b.Read(make([]byte, 8)); err == nil || !b.failed.Load() {
		t.Fatalf("a failed read of the client's body: err %v, failed %v", err, b.failed.Load())
	}
	pr, _ = io.Pipe()
	b = &watchedBody{ReadCloser: pr}
	_ = b.Close()
	if _, err := b.Read(make([]byte, 8)); err == nil || b.failed.Load() {
		t.Fatalf("a read after the route closed the body: err %v, failed %v", err, b.failed.Load())
	}
}

// TestBreakerRequestRefusedByTheTransportIsNotAFailure: Go's HTTP/2 client refuses a request
// with an Upgrade header (HTTP/2 has none), and reverse_proxy answers 502 with the h2c upstream
// healthy; counted as a failure, a few `Upgrade: websocket` requests from anyone opened the
// breaker for every client. They are excluded.
func TestBreakerRequestRefusedByTheTransportIsNotAFailure(t *testing.T) {
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, r.Proto)
	}))
	up.Config.Protocols = new(http.Protocols)
	up.Config.Protocols.SetUnencryptedHTTP2(true)
	up.Start()
	t.Cleanup(up.Close)
	block, url := breakerSite(t, "t_upgrade", "consecutive_failures 2\nopen_for 1m", "h2c://"+strings.TrimPrefix(up.URL, "http://"))
	testcaddy.StartCaddy(t, block)
	if r := getReply(t, url); r.status != 200 || r.body != "HTTP/2.0" {
		t.Fatalf("through h2c: %d %q", r.status, r.body)
	}
	before := breakerCount(t, "t_upgrade", "excluded")
	for range 3 {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		req.Header.Set("Connection", "Upgrade")
		req.Header.Set("Upgrade", "websocket")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadGateway {
			t.Fatalf("an upgrade to an h2c upstream: %d", resp.StatusCode)
		}
	}
	if n := breakerCount(t, "t_upgrade", "excluded") - before; n != 3 {
		t.Errorf("%v refused upgrades counted as excluded, want 3", n)
	}
	if s := breakerStatus(t, "t_upgrade"); s.Observed["state"] != "closed" {
		t.Fatalf("upgrade requests opened the breaker of a healthy upstream: %+v", s)
	}
}

// TestBreakerSlowUploadIsNotASlowUpstream: slow_threshold judges the upstream's time to answer,
// counted from the end of the request body: a client that trickles its body made a fast
// upstream "slow", and two such uploads from anyone opened the breaker.
func TestBreakerSlowUploadIsNotASlowUpstream(t *testing.T) {
	u := startUpstream(t, "ok")
	block, url := breakerSite(t, "t_upload", "slow_threshold 100ms\nconsecutive_failures 2\nopen_for 1m", u.addr())
	testcaddy.StartCaddy(t, block)
	host := strings.TrimSuffix(strings.TrimPrefix(url, "http://"), "/")
	for range 3 {
		c, err := net.Dial("tcp", host)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.WriteString(c, "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 4\r\nConnection: close\r\n\r\n")
		for _, b := range []byte("slow") { // 4 x 60 ms: longer than slow_threshold
			time.Sleep(60 * time.Millisecond)
			_, _ = c.Write([]byte{b})
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		status, _ := io.ReadAll(io.LimitReader(c, 12))
		c.Close()
		if string(status) != "HTTP/1.1 200" {
			t.Fatalf("a slow upload to a fast upstream: %q", status)
		}
	}
	if s := breakerStatus(t, "t_upload"); s.Observed["state"] != "closed" {
		t.Fatalf("slow uploads opened the breaker of a fast upstream: %+v", s)
	}
	u.mode.Store("slow") // 150 ms after the whole body: slow
	for range 2 {
		resp, err := http.Post(url, "text/plain", strings.NewReader("fast upload"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	waitBreakerState(t, "t_upload", "open")
}

// TestBreakerUnknownMethodIsNotAFailure: an upstream answers a method it does not know with 501
// (Apache, Python's http.server); any client can send one, so the default 5xx must not count it,
// or three `PURGE /` opened the breaker for everyone.
func TestBreakerUnknownMethodIsNotAFailure(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			w.WriteHeader(http.StatusNotImplemented)
		}
	}))
	t.Cleanup(up.Close)
	block, url := breakerSite(t, "t_method", "consecutive_failures 2\nopen_for 1m", strings.TrimPrefix(up.URL, "http://"))
	testcaddy.StartCaddy(t, block)
	for range 3 {
		req, _ := http.NewRequest("PURGE", url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotImplemented {
			t.Fatalf("PURGE: %d, want the upstream's 501", resp.StatusCode)
		}
	}
	if s := breakerStatus(t, "t_method"); s.Observed["state"] != "closed" {
		t.Fatalf("unknown methods opened the breaker of a healthy upstream: %+v", s)
	}
}

// breakerCount reads breaker_requests_total{breaker, outcome}.
func breakerCount(t *testing.T, name, outcome string) float64 {
	t.Helper()
	return metricValue(t, breakerRequestsVec.WithLabelValues(name, outcome))
}

func TestBreakerNameSharedAcrossRoutesAndReloads(t *testing.T) {
	u := startUpstream(t, "fail")
	ok := startUpstream(t, "ok")
	b1, failURL := breakerSite(t, "t_same", "consecutive_failures 2\nopen_for 1m", u.addr())
	b2, okURL := breakerSite(t, "t_same", "consecutive_failures 2\nopen_for 1m", ok.addr())
	c := testcaddy.StartCaddy(t, b1+b2)
	getReply(t, failURL)
	getReply(t, failURL)
	assertOpenReply(t, getReply(t, okURL), 60) // the other route's breaker is the same one
	if ok.hits.Load() != 0 {
		t.Fatal("the second route reached its upstream through an open breaker")
	}

	// A reload with the same rules keeps the open state; new rules start a new breaker.
	if err := c.Load(b1 + b2); err != nil {
		t.Fatal(err)
	}
	assertOpenReply(t, getReply(t, okURL), 60)
	b1, _ = breakerSite(t, "t_same", "consecutive_failures 3\nopen_for 1m", u.addr())
	b2, okURL = breakerSite(t, "t_same", "consecutive_failures 3\nopen_for 1m", ok.addr())
	if err := c.Load(b1 + b2); err != nil {
		t.Fatal(err)
	}
	if r := getReply(t, okURL); r.status != 200 {
		t.Fatalf("new rules kept the old breaker: %d", r.status)
	}
	n := 0
	breakerPool.Range(func(k, _ any) bool {
		if strings.Contains(k.(string), "Name:t_same ") {
			n++
		}
		return true
	})
	if n != 1 {
		t.Fatalf("%d t_same breakers in the pool after the reload, want 1 (the old one released)", n)
	}
}

// TestBreakerLocalSurvivesRedisReload: Redis and key_prefix are no setting of a breaker that
// is not shared, so a reload that adds Redis or tunes it keeps an open local breaker open.
func TestBreakerLocalSurvivesRedisReload(t *testing.T) {
	r := testenv.StartRedis(t)
	u := startUpstream(t, "fail")
	block, url := breakerSite(t, "t_local_redis", "consecutive_failures 2\nopen_for 1m", u.addr())
	c := testcaddy.StartCaddy(t, block)
	getReply(t, url)
	getReply(t, url)
	assertOpenReply(t, getReply(t, url), 60)
	for _, global := range []string{
		"redis " + r.URL(0),
		"redis " + r.URL(0) + " {\n\t\t\tread_timeout 150ms\n\t\t\tkey_prefix other:\n\t\t}",
	} {
		if err := c.Load("{\n\thardening {\n\t\t" + global + "\n\t}\n}\n" + block); err != nil {
			t.Fatal(err)
		}
		assertOpenReply(t, getReply(t, url), 60)
	}
	if u.hits.Load() != 2 {
		t.Fatalf("the upstream got %d requests, want the 2 that opened the breaker", u.hits.Load())
	}
	if got := breakerEvents(t, c, "t_local_redis", 2); got != "warn:closed>open:local" {
		t.Fatalf("state-change events %q, want only the opening (no reload reset)", got)
	}
}

// twoRoutes is one site whose routes /a/* and the rest each have the breaker name with the
// given settings (lines of the block), in front of addr.
func twoRoutes(t *testing.T, name, first, second, addr string) string {
	indent := func(s string) string { return strings.ReplaceAll(s, "\n", "\n\t\t\t") }
	return fmt.Sprintf(`http://127.0.0.1:%d {
	bind 127.0.0.1
	handle /a/* {
		upstream_breaker %[2]s {
			%[3]s
		}
		reverse_proxy %[5]s
	}
	handle {
		upstream_breaker %[2]s {
			%[4]s
		}
		reverse_proxy %[5]s
	}
}
`, testenv.FreePort(t), name, indent(first), indent(second), addr)
}

// sameName writes the last `upstream_breaker <name>` of a Caddyfile as <name>_same, a breaker
// the adapter takes for another; oneName gives it name back in the adapted JSON. Together they
// make a JSON config with one breaker name and two rule sets, which the Caddyfile adapter
// itself refuses, so that Provision's check runs.
func sameName(caddyfile, name string) string {
	i := strings.LastIndex(caddyfile, "upstream_breaker "+name+" ")
	return caddyfile[:i] + "upstream_breaker " + name + "_same " + caddyfile[i+len("upstream_breaker "+name+" "):]
}

func oneName(cfgJSON, name string) string {
	return strings.ReplaceAll(cfgJSON, `"name":"`+name+`_same"`, `"name":"`+name+`"`)
}

// adaptedJSON is a Caddyfile adapted to JSON.
func adaptedJSON(t *testing.T, caddyfile string) string {
	t.Helper()
	cfg, err := testcaddy.Adapt(caddyfile)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return string(raw)
}

// TestBreakerSameNameDifferentSettingsRefused: one name with two rule sets is refused, from a
// Caddyfile when adapted (the second one's line, the first one's line: the adapt golden files
// err_breaker_same_name_*), from JSON when provisioned, naming both handlers' places.
func TestBreakerSameNameDifferentSettingsRefused(t *testing.T) {
	u := startUpstream(t, "ok")
	c := testcaddy.StartCaddy(t, "")
	const (
		firstAt  = "apps.http.servers.srv0.routes.0.handle.0.routes.0.handle.0.routes.0.handle.0"
		secondAt = "apps.http.servers.srv0.routes.0.handle.0.routes.1.handle.0.routes.0.handle.0"
	)
	for _, tc := range []struct{ first, second, setting, a, b string }{
		{"consecutive_failures 2", "consecutive_failures 3", "consecutive_failures", "2", "3"},
		{"critical", "open_for 30s", "critical", "true", "false"},
		{"failure_status 5xx", "failure_status 500 502", "failure_status", "5xx", "500 502"},
		{"open_for 30s", "slow_threshold 2s", "slow_threshold", "off", "2s"},
		{"failure_ratio 0.5", "failure_ratio 0.5\ninterval 2m", "interval", "1m0s", "2m0s"},
		{"shared\nsync_interval 1s", "shared", "sync_interval", "1s", "500ms"},
	} {
		cf := twoRoutes(t, "t_conflict", tc.first, tc.second, u.addr())
		want := fmt.Sprintf("upstream_breaker t_conflict is configured twice with different settings: %s is %s here and %s in the first upstream_breaker t_conflict (Caddyfile:", tc.setting, tc.b, tc.a)
		if _, err := testcaddy.Adapt(cf); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q vs %q: adapt error %v, want %q", tc.first, tc.second, err, want)
		}
		err := c.LoadJSON(oneName(adaptedJSON(t, sameName(cf, "t_conflict")), "t_conflict"))
		want = fmt.Sprintf("upstream_breaker t_conflict is configured twice with different settings: %s is %s at %s and %s at %s", tc.setting, tc.a, firstAt, tc.b, secondAt)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q vs %q as JSON: load error %v, want %q", tc.first, tc.second, err, want)
		}
	}
	// The refused configs left nothing behind.
	breakerPool.Range(func(k, _ any) bool {
		if strings.Contains(k.(string), "Name:t_conflict ") {
			t.Errorf("pool still holds %s", k)
		}
		return true
	})
	configBreakers.Range(func(k, _ any) bool {
		if k.(breakerInConfig).name == "t_conflict" {
			t.Errorf("configBreakers still holds %v", k)
		}
		return true
	})
	// Equal in effect (a default spelled out), and different fallbacks: one breaker.
	if err := c.Load(twoRoutes(t, "t_conflict", "open_for 30s\nfailure_status 5xx\nfallback {\n\trespond degraded 503\n}",
		"half_open_requests 1", u.addr())); err != nil {
		t.Fatalf("same settings in effect refused: %v", err)
	}
}

func TestBreakerCriticalFailsReadiness(t *testing.T) {
	u := startUpstream(t, "fail")
	block, url := breakerSite(t, "t_critical", "consecutive_failures 1\nopen_for 1m\ncritical", u.addr())
	testcaddy.StartCaddy(t, block)
	if s := breakerStatus(t, "t_critical"); s.Status != HealthPass || !s.Critical {
		t.Fatalf("closed critical breaker: %+v", s)
	}
	getReply(t, url)
	s := breakerStatus(t, "t_critical")
	if s.Status != HealthFail || !strings.HasPrefix(s.Output, "open: ") || s.Observed["retry_after_s"] == nil {
		t.Fatalf("open critical breaker: %+v", s)
	}
}

func TestBreakerFeatureOffPassesThrough(t *testing.T) {
	u := startUpstream(t, "fail")
	block, url := breakerSite(t, "t_off", "consecutive_failures 1", u.addr())
	testcaddy.StartCaddy(t, "{\n\thardening {\n\t\tfeatures {\n\t\t\tupstream_breaker off\n\t\t}\n\t}\n}\n"+block)
	for range 3 {
		if r := getReply(t, url); r.status != 500 {
			t.Fatalf("disabled breaker: %d", r.status)
		}
	}
	if u.hits.Load() != 3 {
		t.Fatal("the disabled breaker held requests back")
	}
}

func TestBreakerSharedWithoutRedisWarns(t *testing.T) {
	u := startUpstream(t, "ok")
	block, _ := breakerSite(t, "t_noredis", "shared", u.addr())
	c := testcaddy.StartCaddy(t, block)
	if codes := strings.Join(findingCodes(c), " "); !strings.Contains(codes, "warn:breaker.shared_without_redis") {
		t.Fatalf("findings %q", codes)
	}
}

func TestBreakerJSONValidation(t *testing.T) {
	c := testcaddy.StartCaddy(t, "")
	for _, tc := range []struct{ handler, want string }{
		{`"name": "j", "failure_ratio": 2`, "upstream_breaker j: failure_ratio must be in (0, 1], got 2"},
		{`"name": "j", "open_for": -1000000000`, "upstream_breaker j: open_for must be positive, got -1s"},
		{`"name": "j", "failure_status": ["6xx"]`, `upstream_breaker j: failure_status cannot list "6xx"`},
		{`"name": ""`, `upstream_breaker: a breaker needs a name ("name": letters, digits`},
		{``, `upstream_breaker: a breaker needs a name ("name": letters, digits`},
		{`"name": "j", "half_open_requests": -1`, "half_open_requests must be from 1 to 1000000 (0 for the default), got -1"},
		{`"name": "j", "slow_threshold": -1`, "upstream_breaker j: slow_threshold must be positive, got -1ns"},
		{`"name": "j", "sync_interval": -1000000`, "upstream_breaker j: sync_interval must be positive, got -1ms"},
		{`"name": "j", "interval": 5000000`, "upstream_breaker j: interval must be at least 10ms (10 buckets of 1ms), got 5ms"},
		{`"name": "j", "shared": true, "sync_interval": 1`, "upstream_breaker j: sync_interval must be at least 100ms (every instance reads Redis once per sync_interval), got 1ns"},
		{`"name": "j", "shared": true, "sync_interval": 99999999`, "upstream_breaker j: sync_interval must be at least 100ms (every instance reads Redis once per sync_interval), got 99.999999ms"},
		{`"name": "j", "shared": true, "sync_interval": 3600000000000000000`, "upstream_breaker j: sync_interval must be at most 1m0s (the other instances follow a trip only when they next read, so a longer one leaves them sending to an upstream that is open elsewhere), got 1000000h0m0s"},
		{`"name": "j", "min_requests": 20`, "upstream_breaker j: min_requests applies to failure_ratio, which is not set"},
		{`"name": "j", "open_for": 1`, "upstream_breaker j: open_for must be at least 100ms (a shorter one, a unit typo such as 1ns, half-opens at once and holds nothing back), got 1ns"},
		{`"name": "j", "slow_threshold": 999999`, "upstream_breaker j: slow_threshold must be at least 1ms (a shorter one, a unit typo such as 1ns, makes every response slow), got 999.999µs"},
	} {
		fields := tc.handler
		if fields != "" {
			fields = ", " + fields
		}
		cfg := fmt.Sprintf(`{"apps": {"http": {"servers": {"s": {"listen": ["127.0.0.1:%d"],
			"routes": [{"handle": [{"handler": "upstream_breaker"%s}]}]}}}}}`, testenv.FreePort(t), fields)
		if err := c.LoadJSON(cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: load error %v, want %q", tc.handler, err, tc.want)
		}
	}
}

func TestBreakerLongResponseDoesNotHoldTheProbeSlot(t *testing.T) {
	u := startUpstream(t, "fail")
	block, url := breakerSite(t, "t_stream", "consecutive_failures 1\nopen_for 500ms\nhalf_open_requests 1", u.addr())
	testcaddy.StartCaddy(t, block)
	getReply(t, url)
	waitBreakerState(t, "t_stream", "open")
	u.mode.Store("stream")
	waitBreakerState(t, "t_stream", "half_open")
	streamed := make(chan reply, 1)
	go func() { streamed <- getReply(t, url) }()
	// The probe's header closes the breaker while its body is still streaming.
	waitBreakerState(t, "t_stream", "closed")
	u.mode.Store("ok")
	if r := getReply(t, url); r.status != 200 || r.body != "upstream ok" {
		t.Fatalf("request during the streaming probe: %d %q", r.status, r.body)
	}
	close(u.release)
	if r := <-streamed; r.status != 200 {
		t.Fatalf("streamed probe: %d", r.status)
	}
}

// TestBreakerRefusedReloadKeepsReporting: a reload refused after one of its handlers took the
// running config's breaker must not silence that breaker: the running config still logs and
// counts its transitions.
func TestBreakerRefusedReloadKeepsReporting(t *testing.T) {
	u := startUpstream(t, "fail")
	good, url := breakerSite(t, "t_owner", "consecutive_failures 2\nopen_for 1m", u.addr())
	c := testcaddy.StartCaddy(t, good)

	// The refused config: its first route takes t_owner (same rules, so the same breaker); its
	// second route gives t_owner other rules, which fails provisioning after that.
	port := testenv.FreePort(t)
	refused := fmt.Sprintf(`http://127.0.0.1:%d {
	bind 127.0.0.1
	handle /a/* {
		upstream_breaker t_owner {
			consecutive_failures 2
			open_for 1m
		}
		reverse_proxy %[2]s
	}
	handle {
		upstream_breaker t_owner {
			consecutive_failures 3
			open_for 1m
		}
		reverse_proxy %[2]s
	}
}
`, port, u.addr())
	if err := c.LoadJSON(oneName(adaptedJSON(t, sameName(refused, "t_owner")), "t_owner")); err == nil || !strings.Contains(err.Error(), "upstream_breaker t_owner is configured twice") {
		t.Fatalf("the conflicting config was not refused: %v", err)
	}

	openedBefore := metricValue(t, breakerTransitionsVec.WithLabelValues("t_owner", "open"))
	getReply(t, url)
	getReply(t, url)
	assertOpenReply(t, getReply(t, url), 60)
	if got := breakerEvents(t, c, "t_owner", 1); got != "warn:closed>open:local" {
		t.Fatalf("state-change events after the refused reload: %q, want the opening", got)
	}
	if n := metricValue(t, breakerTransitionsVec.WithLabelValues("t_owner", "open")) - openedBefore; n != 1 {
		t.Fatalf("transitions_total{to=open} grew by %v, want 1", n)
	}
	if v := metricValue(t, breakerStateVec.WithLabelValues("t_owner", "open")); v != 1 {
		t.Fatalf("breaker_state{state=open} = %v, want 1", v)
	}
}

// TestBreakerHandlerErrorStatusAgainstFailureStatus: file_server answers a missing file with a
// handler error carrying 404, which failure_status 404 counts as a failure; without it the
// 404 stays excluded.
func TestBreakerHandlerErrorStatusAgainstFailureStatus(t *testing.T) {
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "index.html"), []byte("here"), 0o644); err != nil {
		t.Fatal(err)
	}
	site := func(name, settings string) (string, string) {
		port := testenv.FreePort(t)
		return fmt.Sprintf(`http://127.0.0.1:%d {
	bind 127.0.0.1
	upstream_breaker %s {
		consecutive_failures 2
		open_for 1m
		%s
	}
	file_server {
		root %s
	}
}
`, port, name, settings, root), fmt.Sprintf("http://127.0.0.1:%d/", port)
	}
	counted, countedURL := site("t_files404", "failure_status 404 5xx")
	plain, plainURL := site("t_files", "failure_status 5xx")
	testcaddy.StartCaddy(t, counted+plain)
	failBefore, exclBefore := breakerCount(t, "t_files404", "failure"), breakerCount(t, "t_files", "excluded")

	for _, url := range []string{countedURL, plainURL} {
		for range 2 {
			if r := getReply(t, url+"missing.html"); r.status != http.StatusNotFound {
				t.Fatalf("%smissing.html: %d, want file_server's 404", url, r.status)
			}
		}
	}
	assertOpenReply(t, getReply(t, countedURL+"index.html"), 60)
	if n := breakerCount(t, "t_files404", "failure") - failBefore; n != 2 {
		t.Fatalf("failure_status 404: requests_total{outcome=failure} grew by %v, want 2", n)
	}
	if r := getReply(t, plainURL+"index.html"); r.status != 200 || r.body != "here" {
		t.Fatalf("default failure_status: %d %q, want the file (404 errors excluded)", r.status, r.body)
	}
	if n := breakerCount(t, "t_files", "excluded") - exclBefore; n != 2 {
		t.Fatalf("default failure_status: requests_total{outcome=excluded} grew by %v, want 2", n)
	}
}

// TestBreakerEventsNameTheBreakerModule: with one breaker name in two routes, each next to a
// reverse_proxy, the state change is reported by upstream_breaker (security log `module`,
// Caddy event origin), not by a sibling handler Caddy loaded after it.
func TestBreakerEventsNameTheBreakerModule(t *testing.T) {
	u := startUpstream(t, "fail")
	port := testenv.FreePort(t)
	c := startWithEvents(t, twoRoutes(t, "t_origin", "consecutive_failures 1\nopen_for 1m", "consecutive_failures 1\nopen_for 1m", u.addr())+
		fmt.Sprintf(`http://127.0.0.1:%d {
	bind 127.0.0.1
	route {
		upstream_breaker t_origin {
			consecutive_failures 1
			open_for 1m
		}
		reverse_proxy %s
	}
}
`, port, u.addr()), EventBreakerStateChanged)
	if r := getReply(t, fmt.Sprintf("http://127.0.0.1:%d/", port)); r.status != 500 {
		t.Fatalf("first request: %d, want the upstream's 500", r.status)
	}
	if got := breakerEvents(t, c, "t_origin", 1); got != "warn:closed>open:local" {
		t.Fatalf("state-change events %q", got)
	}
	for _, e := range securityLogs(c, EventBreakerStateChanged) {
		if e.Str("breaker") == "t_origin" && e.Str("module") != "http.handlers.upstream_breaker" {
			t.Errorf("security log module %q, want http.handlers.upstream_breaker", e.Str("module"))
		}
	}
	var events []caddy.Event
	deadline := time.Now().Add(5 * time.Second)
	for len(events) == 0 && time.Now().Before(deadline) {
		events = recordedEvents(EventBreakerStateChanged)
		time.Sleep(10 * time.Millisecond)
	}
	if len(events) != 1 {
		t.Fatalf("%d Caddy events %s, want 1", len(events), EventBreakerStateChanged)
	}
	if src := events[0].CloudEvent().Source; src != "http.handlers.upstream_breaker" { // the origin's ID
		t.Fatalf("Caddy event origin %q, want http.handlers.upstream_breaker", src)
	}
}

// TestBreakerBehindRetriesOfAnotherReplica: README's recipe for a breaker over several
// replicas. reverse_proxy retries another upstream only after a failed dial, so one replica
// of two answering 500 opened a failure_ratio breaker for the healthy one too; with
// lb_retry_match on the response status, the client gets the healthy replica's answer and the
// breaker stays closed until every replica fails.
func TestBreakerBehindRetriesOfAnotherReplica(t *testing.T) {
	bad, good := startUpstream(t, "fail"), startUpstream(t, "ok")
	site := func(name, retry string) (string, string) {
		port := testenv.FreePort(t)
		return fmt.Sprintf(`http://127.0.0.1:%d {
	bind 127.0.0.1
	upstream_breaker %s {
		failure_ratio 0.4
		min_requests 6
		open_for 1m
	}
	reverse_proxy %s %s {
		lb_policy round_robin
		lb_retries 2%s
	}
}
`, port, name, bad.addr(), good.addr(), retry), fmt.Sprintf("http://127.0.0.1:%d/", port)
	}
	plain, plainURL := site("t_replicas", "")
	retried, retriedURL := site("t_replicas_retry", "\n\t\tlb_retry_match {\n\t\t\tmethod GET HEAD\n\t\t\texpression `{rp.status_code} in [500, 502, 503, 504]`\n\t\t}")
	testcaddy.StartCaddy(t, plain+retried)
	for range 10 {
		getReply(t, plainURL)
		if r := getReply(t, retriedURL); r.status != http.StatusOK {
			t.Fatalf("with the retry on another replica: %d %s", r.status, r.body)
		}
	}
	waitBreakerState(t, "t_replicas", "open") // one bad replica of two: half the answers are 500
	if s := breakerStatus(t, "t_replicas_retry"); s.Observed["state"] != "closed" {
		t.Fatalf("the retried answers opened the breaker: %+v", s)
	}
	good.mode.Store("fail")
	for range 10 {
		getReply(t, retriedURL)
	}
	waitBreakerState(t, "t_replicas_retry", "open") // every replica fails
}
