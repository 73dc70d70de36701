//go:build chaos

package chaos

import (
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// upstream is the application behind Caddy, on one port the test can take down and bring
// back. Down, the port is held by a listener that counts the connections Caddy opens and
// answers none of them for hold, then closes them: a hung application.
type upstream struct {
	Addr    string
	accepts atomic.Int64 // connections opened while down

	mu   sync.Mutex
	srv  *http.Server
	hung net.Listener
}

func startUpstream(t *testing.T) *upstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &upstream{Addr: ln.Addr().String()}
	u.serve(ln)
	t.Cleanup(func() {
		u.mu.Lock()
		defer u.mu.Unlock()
		if u.srv != nil {
			u.srv.Close()
		}
		if u.hung != nil {
			u.hung.Close()
		}
	})
	return u
}

func (u *upstream) serve(ln net.Listener) {
	u.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "missing") {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte("ok\n"))
	}), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = u.srv.Serve(ln) }()
}

// listen takes the upstream's port again; it can take a moment after a close.
func (u *upstream) listen(t *testing.T) net.Listener {
	t.Helper()
	var err error
	for i := 0; i < 100; i++ {
		var ln net.Listener
		if ln, err = net.Listen("tcp", u.Addr); err == nil {
			return ln
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("upstream: listening on %s again: %v", u.Addr, err)
	return nil
}

// down stops the application and hangs every new connection for hold.
func (u *upstream) down(t *testing.T, hold time.Duration) {
	t.Helper()
	u.mu.Lock()
	defer u.mu.Unlock()
	_ = u.srv.Close()
	u.srv = nil
	u.hung = u.listen(t)
	ln := u.hung
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u.accepts.Add(1)
			go func() {
				time.Sleep(hold)
				c.Close()
			}()
		}
	}()
}

// up serves the application again.
func (u *upstream) up(t *testing.T) {
	t.Helper()
	u.mu.Lock()
	defer u.mu.Unlock()
	u.hung.Close()
	u.hung = nil
	u.serve(u.listen(t))
}
