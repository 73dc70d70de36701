package caddymodule

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/swarmsec/caddy-hardening/internal/testcaddy"
	"github.com/swarmsec/caddy-hardening/internal/testenv"
)

// TestRefusalsAnswerExpectContinueAtOnce: a client that sends `Expect: 100-continue` holds its
// body until it gets 100 Continue or a final status, so that a refusal costs it no upload. Our
// refusals never read the body, yet the refusal did not go out: Caddy replaces the request's
// body with its own reader (for the access log and its read timeouts), so net/http no longer
// sees an unanswered 100-continue and reads the body the client is holding back, to keep the
// connection, before sending the response. The client waited for 100 Continue (curl a second,
// then it uploads the refused body; a strict client until its own timeout). A refusal now
// says `Connection: close` to such a request, as net/http does itself when the body is its
// own: the refusal goes out at once and the body is never sent.
//
// The body is never sent here: without the fix the refusal does not come (the read below
// would wait for as long as Caddy waits for the body); the deadline only bounds that wait.
func TestRefusalsAnswerExpectContinueAtOnce(t *testing.T) {
	port := testenv.FreePort(t)
	dead := testenv.FreePort(t) // nothing listens: the breaker's upstream fails
	testcaddy.StartCaddy(t, fmt.Sprintf(`{
	hardening {
		features {
			detection off
		}
		policy t_continue {
			limit 1/1h
			key {header.X-Client}
		}
	}
}
http://127.0.0.1:%d {
	bind 127.0.0.1
	route /limited/* {
		policy_rate_limit t_continue
		respond "ok"
	}
	path_guard
	route /broken/* {
		upstream_breaker t_continue {
			consecutive_failures 1
			open_for 1h
		}
		reverse_proxy 127.0.0.1:%d
	}
}
`, port, dead))
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	if r := getReply(t, "http://"+addr+"/limited/x", "X-Client: c"); r.status != http.StatusOK {
		t.Fatalf("the client's first request: %d", r.status)
	}
	if r := getReply(t, "http://"+addr+"/broken/x"); r.status != http.StatusBadGateway {
		t.Fatalf("the breaker's first request: %d, want the dead upstream's 502", r.status)
	}
	for _, c := range []struct {
		target string
		status int
	}{
		{"/limited/x", http.StatusTooManyRequests},
		{"/static/..%2f..%2fetc/passwd", http.StatusBadRequest},
		{"/broken/x", http.StatusServiceUnavailable},
	} {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: %s\r\nX-Client: c\r\nContent-Type: application/octet-stream\r\nContent-Length: 100000\r\nExpect: 100-continue\r\n\r\n", c.target, addr)
		resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: http.MethodPost})
		if err != nil {
			conn.Close()
			t.Errorf("POST %s with Expect: 100-continue, body held back: no response (%v): the refusal waited for the body", c.target, err)
			continue
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		conn.Close()
		if resp.StatusCode != c.status || !resp.Close {
			t.Errorf("POST %s: %d, Connection %q; want %d and the connection closed (its unsent body is still due on it)",
				c.target, resp.StatusCode, resp.Header.Get("Connection"), c.status)
		}
	}
}
