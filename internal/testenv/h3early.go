package testenv

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"testing"
)

// H3Client is an HTTP/3 client in a process of its own (./internal/testenv/h3early, built
// without -race: quic-go's client races with itself on a 0-RTT dial), which sends each
// request on a new QUIC connection that resumes the last one's TLS session, so that a
// GET_0RTT goes out as TLS early data.
type H3Client struct {
	t   testing.TB
	in  io.WriteCloser
	out *bufio.Scanner
}

// H3Answer is what a request got: the status, the body, and whether the server answered it
// as early data (the site's `header @early Early-Data 1`).
type H3Answer struct {
	Code  int    `json:"code"`
	Body  string `json:"body"`
	Early bool   `json:"early"`
	Err   string `json:"error,omitempty"`
}

// StartH3Client starts the client process; it ends with the test.
func StartH3Client(t testing.TB) *H3Client {
	t.Helper()
	bin, err := buildBinary("./internal/testenv/h3early", "h3early")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin)
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		in.Close() // the client exits at the end of its input
		_ = cmd.Wait()
	})
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 64*1024), 16<<20)
	return &H3Client{t: t, in: in, out: sc}
}

// RoundTrip sends method (GET, or http3.MethodGet0RTT) to url with the given Host, on a new
// connection; with ticket, it also waits for that connection's session ticket, for the next
// request to resume. A failed exchange is an answer with Err set.
func (c *H3Client) RoundTrip(method, url, host string, ticket bool) H3Answer {
	c.t.Helper()
	line, _ := json.Marshal(map[string]any{"method": method, "url": url, "host": host, "ticket": ticket})
	if _, err := fmt.Fprintf(c.in, "%s\n", line); err != nil {
		c.t.Fatalf("h3early: %v", err)
	}
	if !c.out.Scan() {
		c.t.Fatalf("h3early ended: %v", c.out.Err())
	}
	var a H3Answer
	if err := json.Unmarshal(c.out.Bytes(), &a); err != nil {
		c.t.Fatalf("h3early printed %q: %v", c.out.Bytes(), err)
	}
	return a
}
