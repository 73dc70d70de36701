package testenv

import (
	"net"
	"sync"
	"testing"
	"time"
)

// Proxy is a TCP proxy on a free loopback port in front of one target, for faults between a
// client and a server: added latency on every chunk in both directions, and a cut that drops
// every connection and refuses new ones until Restore. It is closed when the test ends.
type Proxy struct {
	Addr   string // 127.0.0.1:<port>, what the client dials
	Port   int
	target string
	ln     net.Listener

	mu      sync.Mutex
	latency time.Duration
	cut     bool
	conns   map[net.Conn]struct{}
	closed  bool
}

// StartProxy listens on a free loopback port and forwards each connection to target.
func StartProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("proxy listen: %v", err)
	}
	p := &Proxy{Addr: ln.Addr().String(), Port: ln.Addr().(*net.TCPAddr).Port, target: target, ln: ln,
		conns: map[net.Conn]struct{}{}}
	go p.serve()
	t.Cleanup(p.Close)
	return p
}

// SetLatency delays every chunk by d in each direction from now on (0: none). Chunks already
// queued keep the delay they were read with.
func (p *Proxy) SetLatency(d time.Duration) {
	p.mu.Lock()
	p.latency = d
	p.mu.Unlock()
}

// Cut closes every open connection and makes new ones close at once, as a network partition
// seen by a client whose packets are answered with resets.
func (p *Proxy) Cut() {
	p.mu.Lock()
	p.cut = true
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
}

// Restore undoes Cut: new connections are forwarded again.
func (p *Proxy) Restore() {
	p.mu.Lock()
	p.cut = false
	p.mu.Unlock()
}

// Close stops the proxy and closes every connection.
func (p *Proxy) Close() {
	p.mu.Lock()
	p.closed = true
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.ln.Close()
}

func (p *Proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		go p.handle(c)
	}
}

func (p *Proxy) handle(client net.Conn) {
	if !p.track(client) {
		client.Close()
		return
	}
	server, err := net.DialTimeout("tcp", p.target, 2*time.Second)
	if err != nil || !p.track(server) {
		client.Close()
		if server != nil {
			server.Close()
		}
		p.untrack(client)
		return
	}
	done := make(chan struct{}, 2)
	go func() { p.pump(server, client); done <- struct{}{} }()
	go func() { p.pump(client, server); done <- struct{}{} }()
	<-done // one side ended: end both
	client.Close()
	server.Close()
	<-done
	p.untrack(client)
	p.untrack(server)
}

// track registers c unless the proxy is cut or closed.
func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut || p.closed {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

// chunk is bytes read from one side, due to be written to the other at due.
type chunk struct {
	b   []byte
	due time.Time
}

// pump copies src to dst, each chunk delayed by the latency at the time it was read. A
// bounded queue between the reader and the writer keeps the order and the memory bounded.
func (p *Proxy) pump(dst, src net.Conn) {
	queue := make(chan chunk, 64)
	go func() {
		defer close(queue)
		for {
			buf := make([]byte, 32*1024)
			n, err := src.Read(buf)
			if n > 0 {
				p.mu.Lock()
				d := p.latency
				p.mu.Unlock()
				queue <- chunk{b: buf[:n], due: time.Now().Add(d)}
			}
			if err != nil {
				return
			}
		}
	}()
	for c := range queue {
		if wait := time.Until(c.due); wait > 0 {
			time.Sleep(wait)
		}
		if _, err := dst.Write(c.b); err != nil {
			src.Close() // unblock the reader
			for range queue {
			}
			return
		}
	}
	if tc, ok := dst.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
}
