package testenv

import (
	"bufio"
	"net"
	"testing"
	"time"
)

// echoServer answers each line with the same line.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if _, err := c.Write([]byte(line)); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// roundTrip sends one line on c and returns the time until the echo arrived.
func roundTrip(t *testing.T, c net.Conn, r *bufio.Reader) (time.Duration, error) {
	t.Helper()
	start := time.Now()
	_ = c.SetDeadline(start.Add(5 * time.Second))
	if _, err := c.Write([]byte("ping\n")); err != nil {
		return 0, err
	}
	line, err := r.ReadString('\n')
	if err == nil && line != "ping\n" {
		t.Fatalf("echo %q", line)
	}
	return time.Since(start), err
}

func TestProxyForwardsAddsLatencyAndCuts(t *testing.T) {
	p := StartProxy(t, echoServer(t))
	c, err := net.Dial("tcp", p.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	if _, err := roundTrip(t, c, r); err != nil {
		t.Fatalf("through the proxy: %v", err)
	}

	p.SetLatency(150 * time.Millisecond)
	d, err := roundTrip(t, c, r)
	if err != nil {
		t.Fatal(err)
	}
	if d < 300*time.Millisecond { // 150 ms each way
		t.Fatalf("round trip with 150ms latency each way took %v", d)
	}
	p.SetLatency(0)
	if _, err := roundTrip(t, c, r); err != nil {
		t.Fatal(err)
	}

	p.Cut()
	if _, err := roundTrip(t, c, r); err == nil {
		t.Fatal("an open connection still works after Cut")
	}
	c2, err := net.Dial("tcp", p.Addr)
	if err == nil {
		_, err = roundTrip(t, c2, bufio.NewReader(c2))
		c2.Close()
	}
	if err == nil {
		t.Fatal("a new connection works while cut")
	}

	p.Restore()
	c3, err := net.Dial("tcp", p.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	if _, err := roundTrip(t, c3, bufio.NewReader(c3)); err != nil {
		t.Fatalf("after Restore: %v", err)
	}
}
