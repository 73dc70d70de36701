package caddymodule

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/swarmsec/caddy-hardening/internal/testcaddy"
	"github.com/swarmsec/caddy-hardening/internal/testenv"
)

// rawExchange sends raw HTTP/1.1 requests on one connection and parses the answers in order,
// each read as an answer to its method: an answer with a body where none is allowed (HEAD)
// leaves bytes that the next answer cannot be parsed from.
func rawExchange(t *testing.T, url string, methods ...string) []*http.Response {
	t.Helper()
	host := strings.TrimSuffix(strings.TrimPrefix(url, "http://"), "/")
	conn, err := net.DialTimeout("tcp", host, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	var out []*http.Response
	br := bufio.NewReader(conn)
	for _, m := range methods {
		if _, err := fmt.Fprintf(conn, "%s / HTTP/1.1\r\nHost: %s\r\n\r\n", m, host); err != nil {
			t.Fatal(err)
		}
		req, _ := http.NewRequest(m, url, nil)
		resp, err := http.ReadResponse(br, req)
		if err != nil {
			t.Fatalf("answer to %s after %d answers: %v", m, len(out), err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if m == http.MethodHead && len(body) != 0 {
			t.Fatalf("HEAD answered with a body: %q", body)
		}
		out = append(out, resp)
	}
	return out
}

// A HEAD to an open breaker gets the 503 and its headers, no body: the next answer on the
// same connection parses.
func TestBreakerOpenAnswersHEADWithoutBody(t *testing.T) {
	u := startUpstream(t, "fail")
	block, url := breakerSite(t, "t_head", "consecutive_failures 1\nopen_for 1m", u.addr())
	c := testcaddy.StartCaddy(t, block)
	if r := getReply(t, url); r.status != 500 {
		t.Fatalf("first request: %d", r.status)
	}
	got := rawExchange(t, url, http.MethodHead, http.MethodGet, http.MethodHead)
	for i, resp := range got {
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" ||
			resp.Header.Get("Content-Type") != "application/problem+json" {
			t.Fatalf("answer %d: %d %v", i, resp.StatusCode, resp.Header)
		}
	}
	if n := u.hits.Load(); n != 1 {
		t.Fatalf("the upstream got %d requests, want 1", n)
	}
	for _, e := range c.Logs() {
		if strings.Contains(fmt.Sprint(e), "not allowed") {
			t.Fatalf("a HEAD to the open breaker was logged as an error: %v", e)
		}
	}
}

// Retry-After is the whole seconds until half-open, rounded up: never 0 or negative, and
// counting down with the time left (open_for 2.5s: 3 at once, 1 with less than a second left).
func TestBreakerRetryAfterCountsDownToOne(t *testing.T) {
	u := startUpstream(t, "fail")
	block, url := breakerSite(t, "t_retry_after", "consecutive_failures 1\nopen_for 2500ms", u.addr())
	testcaddy.StartCaddy(t, block)
	getReply(t, url)
	opened := time.Now()
	first := getReply(t, url)
	assertOpenReply(t, first, 3)
	if ra := first.header.Get("Retry-After"); ra != "3" && time.Since(opened) < 400*time.Millisecond {
		t.Fatalf("Retry-After %s with 2.5 s left, want 3 (rounded up)", ra)
	}
	time.Sleep(time.Until(opened.Add(1700 * time.Millisecond)))
	var last int
	for time.Since(opened) < 2300*time.Millisecond {
		r := getReply(t, url)
		if r.status != http.StatusServiceUnavailable {
			break // half-open already on a slow machine
		}
		assertOpenReply(t, r, 1)
		last, _ = strconv.Atoi(r.header.Get("Retry-After"))
		time.Sleep(50 * time.Millisecond)
	}
	if last != 0 && last != 1 {
		t.Fatalf("Retry-After %d with less than a second left", last)
	}
}

// bodyUpstream answers every request with the length and the bytes of its body; it counts
// requests, and holds each one while hold is set, until released.
type bodyUpstream struct {
	srv     *httptest.Server
	hits    atomic.Int64
	status  atomic.Int64
	hold    atomic.Bool
	held    atomic.Int64
	release chan struct{}
}

func startBodyUpstream(t *testing.T) *bodyUpstream {
	t.Helper()
	u := &bodyUpstream{release: make(chan struct{})}
	u.status.Store(200)
	done := make(chan struct{})
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.hits.Add(1)
		body, _ := io.ReadAll(r.Body)
		if u.hold.Load() {
			u.held.Add(1)
			select {
			case <-u.release:
			case <-done:
			}
		}
		w.WriteHeader(int(u.status.Load()))
		fmt.Fprintf(w, "%d:%s", len(body), body)
	}))
	t.Cleanup(func() { close(done); u.srv.Close() })
	return u
}

func post(t *testing.T, url, body string) reply {
	t.Helper()
	resp, err := http.Post(url, "text/plain", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return reply{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

// A POST that is the half-open probe reaches the upstream with its whole body; a POST refused
// while the probe runs gets the 503 and does not reach the upstream; the probe's success closes
// the breaker and later POSTs go through with their bodies.
func TestBreakerPOSTWhileHalfOpen(t *testing.T) {
	u := startBodyUpstream(t)
	u.status.Store(500)
	block, url := breakerSite(t, "t_post", "consecutive_failures 1\nopen_for 300ms", strings.TrimPrefix(u.srv.URL, "http://"))
	testcaddy.StartCaddy(t, block)
	if r := post(t, url, "first"); r.status != 500 || r.body != "5:first" {
		t.Fatalf("first POST: %d %q", r.status, r.body)
	}
	assertOpenReply(t, post(t, url, "refused"), 1)
	if n := u.hits.Load(); n != 1 {
		t.Fatalf("the upstream got %d requests while open", n)
	}

	u.status.Store(200)
	u.hold.Store(true)
	waitBreakerState(t, "t_post", "half_open")
	payload := strings.Repeat("x", 100<<10) // larger than one read
	probe := make(chan reply, 1)
	go func() { probe <- post(t, url, payload) }()
	testenv.WaitFor(t, 5*time.Second, "the probe at the upstream", func() bool { return u.held.Load() == 1 })
	other := post(t, url, "while the probe runs")
	assertOpenReply(t, other, 1)
	if n := u.hits.Load(); n != 2 {
		t.Fatalf("the upstream got %d requests, want 2: the refused POST must not reach it", n)
	}
	u.hold.Store(false)
	close(u.release)
	if r := <-probe; r.status != 200 || r.body != fmt.Sprintf("%d:%s", len(payload), payload) {
		t.Fatalf("probe POST: %d, body of %d bytes", r.status, len(r.body))
	}
	waitBreakerState(t, "t_post", "closed")
	if r := post(t, url, "after"); r.status != 200 || r.body != "5:after" {
		t.Fatalf("POST after recovery: %d %q", r.status, r.body)
	}
}

// wsUpstream answers 500 while failing, else upgrades to an echo tunnel (one line per line)
// that lasts until the client closes it.
func wsUpstream(t *testing.T) (*httptest.Server, *atomic.Bool) {
	t.Helper()
	var failing atomic.Bool
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if failing.Load() {
			http.Error(w, "down", http.StatusInternalServerError)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		_, _ = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		_ = brw.Flush()
		for {
			line, err := brw.ReadString('\n')
			if err != nil {
				return
			}
			_, _ = brw.WriteString("echo " + line)
			_ = brw.Flush()
		}
	}))
	t.Cleanup(up.Close)
	return up, &failing
}

// An HTTP/1.1 WebSocket upgrade through the breaker: the 101 counts as a success at once, the
// tunnel carries data, and a tunnel that stays open as the half-open probe does not hold the
// probe slot: its 101 closes the breaker, and the next upgrade goes through beside it.
func TestBreakerWebSocketOverHTTP1(t *testing.T) {
	up, failing := wsUpstream(t)
	block, url := breakerSite(t, "t_h1_ws", "consecutive_failures 1\nopen_for 300ms\nhalf_open_requests 1", up.Listener.Addr().String())
	testcaddy.StartCaddy(t, block)
	host := strings.TrimSuffix(strings.TrimPrefix(url, "http://"), "/")
	upgrade := func() (net.Conn, *bufio.Reader, int) {
		t.Helper()
		conn, err := net.DialTimeout("tcp", host, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(conn, "GET /ws HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n", host)
		br := bufio.NewReader(conn)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusSwitchingProtocols {
			b, _ := io.ReadAll(resp.Body)
			return conn, br, resp.StatusCode + 0*len(b)
		}
		return conn, br, resp.StatusCode
	}
	echo := func(conn net.Conn, br *bufio.Reader, msg string) {
		t.Helper()
		fmt.Fprint(conn, msg+"\n")
		if line, err := br.ReadString('\n'); err != nil || line != "echo "+msg+"\n" {
			t.Fatalf("through the tunnel: %q %v", line, err)
		}
	}
	success := breakerCount(t, "t_h1_ws", "success")
	conn, br, code := upgrade()
	if code != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade through the breaker: %d", code)
	}
	testenv.WaitFor(t, 5*time.Second, "the open tunnel counted as a success", func() bool {
		return breakerCount(t, "t_h1_ws", "success") == success+1
	})
	echo(conn, br, "one")

	failing.Store(true)
	if _, _, code := upgrade(); code != 500 {
		t.Fatalf("upgrade to a failing upstream: %d", code)
	}
	if _, _, code := upgrade(); code != http.StatusServiceUnavailable {
		t.Fatalf("upgrade to an open breaker: %d, want 503", code)
	}
	echo(conn, br, "still") // the tunnel opened before is not cut by the breaker opening

	failing.Store(false)
	waitBreakerState(t, "t_h1_ws", "half_open")
	probe, pbr, code := upgrade()
	if code != http.StatusSwitchingProtocols {
		t.Fatalf("half-open probe upgrade: %d", code)
	}
	waitBreakerState(t, "t_h1_ws", "closed")
	next, nbr, code := upgrade()
	if code != http.StatusSwitchingProtocols {
		t.Fatalf("an upgrade while the probe's tunnel is open: %d, want 101", code)
	}
	echo(probe, pbr, "probe")
	echo(next, nbr, "next")
}

// Behind active health checks: one unhealthy replica of two is routed around and the breaker
// stays closed; with both unhealthy, reverse_proxy's own 503 ("no upstreams available") counts
// and opens it; once a replica passes its health check again, the next probe closes it.
func TestBreakerBehindActiveHealthChecks(t *testing.T) {
	a, b := startUpstream(t, "ok"), startUpstream(t, "fail")
	port := testenv.FreePort(t)
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	testcaddy.StartCaddy(t, fmt.Sprintf(`http://127.0.0.1:%d {
	bind 127.0.0.1
	upstream_breaker t_active {
		consecutive_failures 3
		open_for 500ms
	}
	reverse_proxy %s %s {
		lb_policy round_robin
		health_uri /health
		health_interval 100ms
		health_timeout 1s
	}
}
`, port, a.addr(), b.addr()))
	time.Sleep(300 * time.Millisecond) // the first checks ran: b is down
	for i := range 10 {
		if r := getReply(t, url); r.status != 200 {
			t.Fatalf("request %d with one healthy replica: %d", i, r.status)
		}
	}
	if s := breakerStatus(t, "t_active"); s.Observed["state"] != "closed" {
		t.Fatalf("one unhealthy replica opened the breaker: %v", s.Observed["state"])
	}
	a.mode.Store("fail")
	testenv.WaitFor(t, 5*time.Second, "the breaker open with both replicas unhealthy", func() bool {
		getReply(t, url)
		return breakerStatus(t, "t_active").Observed["state"] == "open"
	})
	assertOpenReply(t, getReply(t, url), 1)
	a.mode.Store("ok")
	testenv.WaitFor(t, 10*time.Second, "the breaker closed after a replica recovered", func() bool {
		getReply(t, url)
		return breakerStatus(t, "t_active").Observed["state"] == "closed"
	})
	if r := getReply(t, url); r.status != 200 {
		t.Fatalf("after recovery: %d", r.status)
	}
}
