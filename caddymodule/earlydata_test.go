package caddymodule

import (
	"fmt"
	"net"
	"net/http"
	"sync"
	"testing"

	"github.com/quic-go/quic-go/http3"

	"github.com/swarmsec/caddy-hardening/internal/testcaddy"
	"github.com/swarmsec/caddy-hardening/internal/testenv"
)

// h3Client sends requests over HTTP/3 to a localhost site on 127.0.0.1:port, each on a new
// QUIC connection that resumes the last one's session (testenv.H3Client, a process of its
// own): a GET sent with http3.MethodGet0RTT goes out as TLS early data. Each verified request
// waits for the session ticket of its connection, so that the next one has a ticket to resume.
type h3Client struct {
	t     *testing.T
	port  int    // the site's HTTPS port
	relay int    // where GET_0RTT requests go: firstFlightRelay's port
	renew string // a path whose verified GET gets a new session ticket, changing nothing
	h3    *testenv.H3Client
}

func newH3Client(t *testing.T, port int, renew string) *h3Client {
	c := &h3Client{t: t, port: port, renew: renew, h3: testenv.StartH3Client(t)}
	c.relay = firstFlightRelay(t, fmt.Sprintf("127.0.0.1:%d", port))
	return c
}

// get sends one request and returns the status, the body and whether the server took it as
// early data (the site's `header @early Early-Data 1`, with `@early tls early_data`). A GET_0RTT
// goes through the relay; when the server rejects its early data (it then never serves it,
// and the relay drops the client's retransmission after the handshake), it is sent again
// with a new ticket.
func (c *h3Client) get(method, path string) (int, string, bool) {
	c.t.Helper()
	if method != http3.MethodGet0RTT {
		a := c.roundTrip(method, c.port, path)
		if a.Err != "" {
			c.t.Fatalf("%s %s: %s", method, path, a.Err)
		}
		return a.Code, a.Body, a.Early
	}
	var a testenv.H3Answer
	for range 3 {
		if a = c.roundTrip(method, c.relay, path); a.Err == "" {
			return a.Code, a.Body, a.Early
		}
		if r := c.roundTrip(http.MethodGet, c.port, c.renew); r.Err != "" {
			c.t.Fatalf("GET %s: %s", c.renew, r.Err)
		}
	}
	c.t.Fatalf("%s %s: %s", method, path, a.Err)
	return 0, "", false
}

// roundTrip sends one request to port; through the relay, the handshake never completes, so
// no new ticket is waited for.
func (c *h3Client) roundTrip(method string, port int, path string) testenv.H3Answer {
	return c.h3.RoundTrip(method, fmt.Sprintf("https://127.0.0.1:%d%s", port, path), fmt.Sprintf("localhost:%d", c.port), port == c.port)
}

// TestEarlyDataScoresNothing: a 0-RTT request (HTTP/3 early data, which Caddy accepts by
// default) is served before the client's address is verified: its QUIC packets may carry any
// source address. Before, path_guard scored its traversal against that address: one 0-RTT
// `/%2e%2e/x` with a victim's address as source banned the victim (its next request got 403).
// Now such a refusal or probe is answered 425 Too Early and scores nothing; the same request
// sent after the handshake counts as before.
func TestEarlyDataScoresNothing(t *testing.T) {
	httpPort, httpsPort := testenv.FreePort(t), testenv.FreePort(t)
	testcaddy.StartCaddy(t, fmt.Sprintf(`{
%s}
localhost:%d {
	bind 127.0.0.1
	@early tls early_data
	route {
		header @early Early-Data 1
		path_guard {
			suspicious_action block
		}
		respond "ok {http.vars.ip_class}"
	}
}
`, localTLSGlobals(t, httpPort, httpsPort), httpsPort))
	waitTLS(t, fmt.Sprintf("127.0.0.1:%d", httpsPort))
	c := newH3Client(t, httpsPort, "/")
	if code, body, _ := c.get(http.MethodGet, "/"); code != http.StatusOK {
		t.Fatalf("first request: %d %s", code, body)
	}
	for _, p := range []string{"/%2e%2e/etc/passwd", "/.env", "/a/..%2f..%2fetc"} {
		code, body, early := c.get(http3.MethodGet0RTT, p)
		if !early {
			t.Fatalf("0-RTT %s: the server did not take it as early data", p)
		}
		if code != http.StatusTooEarly {
			t.Errorf("0-RTT %s: %d %s, want 425 Too Early", p, code, body)
		}
	}
	if code, body, _ := c.get(http.MethodGet, "/after"); code != http.StatusOK || body != "ok default" {
		t.Fatalf("after the 0-RTT attacks: %d %q, want 200 \"ok default\": an unverified address was scored", code, body)
	}
	// An ordinary 0-RTT request is served as before.
	if code, body, early := c.get(http3.MethodGet0RTT, "/page"); code != http.StatusOK || !early {
		t.Errorf("0-RTT /page: %d %s (early data: %v), want 200", code, body, early)
	}

	// Sent once the handshake is complete, the traversal is refused and counts (20 points:
	// the default threshold).
	if code, _, _ := c.get(http.MethodGet, "/%2e%2e/etc/passwd"); code != http.StatusBadRequest {
		t.Fatalf("verified traversal: %d, want 400", code)
	}
	if code, body, _ := c.get(http.MethodGet, "/after"); code != http.StatusForbidden {
		t.Fatalf("after a verified traversal: %d %s, want 403 (detected)", code, body)
	}
}

// firstFlightRelay relays QUIC datagrams between clients and the server at to, and passes on
// from a client only datagrams of Initial and 0-RTT packets: its ClientHello and early data,
// never its Handshake packet (the Finished that completes the handshake) nor 1-RTT packets.
// The server thus serves the early data as it would a spoofed client's, whose Finished never
// comes; the client still reads the answer (the server's 0.5-RTT data). It returns the relay's
// port.
func firstFlightRelay(t *testing.T, to string) int {
	t.Helper()
	ln, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	server, err := net.ResolveUDPAddr("udp", to)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	upstreams := map[string]net.PacketConn{} // one socket towards the server per client
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, up := range upstreams {
			_ = up.Close()
		}
		upstreams = nil // the relay takes no new client
	})
	go func() {
		buf := make([]byte, 65536)
		for {
			n, client, err := ln.ReadFrom(buf)
			if err != nil {
				return
			}
			if !onlyFirstFlight(buf[:n]) {
				continue
			}
			mu.Lock()
			if upstreams == nil {
				mu.Unlock()
				return
			}
			up, ok := upstreams[client.String()]
			if !ok {
				if up, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
					mu.Unlock()
					return
				}
				upstreams[client.String()] = up
				go func() { // the server's answers, back to the client
					b := make([]byte, 65536)
					for {
						n, _, err := up.ReadFrom(b)
						if err != nil {
							return
						}
						_, _ = ln.WriteTo(b[:n], client)
					}
				}()
			}
			mu.Unlock()
			_, _ = up.WriteTo(buf[:n], server)
		}
	}()
	return ln.LocalAddr().(*net.UDPAddr).Port
}

// onlyFirstFlight reports whether a QUIC v1 datagram holds only Initial and 0-RTT packets
// (RFC 9000 §17.2: long headers, coalesced one after another).
func onlyFirstFlight(b []byte) bool {
	for len(b) > 0 {
		if b[0]&0x80 == 0 || len(b) < 7 { // a short header: 1-RTT
			return false
		}
		typ := b[0] & 0x30 >> 4 // 0 Initial, 1 0-RTT, 2 Handshake, 3 Retry
		if typ > 1 {
			return false
		}
		i := 5 // first byte, version
		i += 1 + int(b[i])
		if i >= len(b) {
			return false
		}
		i += 1 + int(b[i])
		if typ == 0 {
			tokenLen, n := quicVarint(b[i:])
			if n == 0 {
				return false
			}
			i += n + int(tokenLen)
		}
		length, n := quicVarint(b[min(i, len(b)):])
		if n == 0 {
			return false
		}
		i += n + int(length)
		if i > len(b) {
			return false
		}
		b = b[i:]
	}
	return true
}

// quicVarint reads a QUIC variable-length integer; n is 0 when b is too short.
func quicVarint(b []byte) (v uint64, n int) {
	if len(b) == 0 {
		return 0, 0
	}
	n = 1 << (b[0] >> 6)
	if len(b) < n {
		return 0, 0
	}
	v = uint64(b[0] & 0x3f)
	for _, c := range b[1:n] {
		v = v<<8 | uint64(c)
	}
	return v, n
}

// TestEarlyDataIsNotTrustedNorSpendsABucket: before, a 0-RTT request (its address not verified:
// see TestEarlyDataScoresNothing) was in the trusted class when its source address was a
// trusted one (the trusted rate-limit row, monitoring details), and spent the bucket of the
// address it claimed: a flood of them in a victim's name drained the victim's bucket, whose
// own requests then got 429 (and scored rate_limited until it was banned). Now such a request
// is in the default class, and a policy keyed by the client's address answers it 425 Too
// Early without spending anything; after the handshake it is decided as before.
func TestEarlyDataIsNotTrustedNorSpendsABucket(t *testing.T) {
	httpPort, httpsPort := testenv.FreePort(t), testenv.FreePort(t)
	testcaddy.StartCaddy(t, fmt.Sprintf(`{
%s	hardening {
		ip_classes {
			trusted 127.0.0.1
		}
		policy two {
			limit 2/1h burst 2
			trusted 2/1h burst 2
		}
	}
}
localhost:%d {
	bind 127.0.0.1
	@early tls early_data
	route {
		header @early Early-Data 1
		path_guard
		handle /class {
			respond "{http.vars.ip_class}"
		}
		policy_rate_limit two
		respond "ok"
	}
}
`, localTLSGlobals(t, httpPort, httpsPort), httpsPort))
	waitTLS(t, fmt.Sprintf("127.0.0.1:%d", httpsPort))
	c := newH3Client(t, httpsPort, "/class")
	if code, body, _ := c.get(http.MethodGet, "/class"); code != http.StatusOK || body != "trusted" {
		t.Fatalf("verified /class: %d %q, want 200 trusted", code, body)
	}
	code, body, early := c.get(http3.MethodGet0RTT, "/class")
	if !early {
		t.Fatal("0-RTT /class: the server did not take it as early data")
	}
	if code != http.StatusOK || body != "default" {
		t.Errorf("0-RTT /class: %d %q, want 200 default: an unverified address was trusted", code, body)
	}
	for i := range 3 {
		code, body, early := c.get(http3.MethodGet0RTT, "/page")
		if !early {
			t.Fatalf("0-RTT /page #%d: the server did not take it as early data", i+1)
		}
		if code != http.StatusTooEarly {
			t.Errorf("0-RTT /page #%d: %d %s, want 425 Too Early", i+1, code, body)
		}
	}
	// The bucket is whole: two verified requests pass, the third is refused.
	for i, want := range []int{http.StatusOK, http.StatusOK, http.StatusTooManyRequests} {
		if code, body, _ := c.get(http.MethodGet, "/page"); code != want {
			t.Errorf("verified /page #%d: %d %s, want %d", i+1, code, body, want)
		}
	}
}
