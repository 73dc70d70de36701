package observatory

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestFetchSilentHostWaitsOneTimeout: from an http:// URL whose host answers neither http://
// nor https:// (a firewall that drops packets), the check waited the client's timeout twice,
// once per scheme, one after the other. The https:// fetch now starts beside the http:// one
// after FallbackAfter, so the whole fetch takes about one timeout.
func TestFetchSilentHostWaitsOneTimeout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept() // accepted, never answered
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
		}
	}()
	defer func(d time.Duration) { FallbackAfter = d }(FallbackAfter)
	FallbackAfter = 100 * time.Millisecond
	const timeout = time.Second
	var mu sync.Mutex
	var addrs []string
	client := &http.Client{Timeout: timeout, Transport: &http.Transport{
		// Every address (the http:// port and the https:// one) leads to the silent listener.
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			mu.Lock()
			addrs = append(addrs, addr)
			mu.Unlock()
			return (&net.Dialer{}).DialContext(ctx, network, ln.Addr().String())
		},
	}}
	start := time.Now()
	_, err = (&Fetcher{Client: client}).Fetch(context.Background(), "http://silent.test/", "")
	took := time.Since(start)
	if err == nil {
		t.Fatal("a silent host fetched")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(addrs) != 2 || addrs[0] != "silent.test:80" || addrs[1] != "silent.test:443" {
		t.Fatalf("dialled %v, want silent.test:80 then silent.test:443", addrs)
	}
	if took > timeout+FallbackAfter+600*time.Millisecond {
		t.Fatalf("the fetch took %v: more than one timeout (%v) and the head start (%v)", took, timeout, FallbackAfter)
	}
}

// TestFetchRedirectTargetShownBounded: the note on a redirect whose https:// target cannot be
// fetched quoted the target whole, as long as the server's Location header (up to net/http's
// 1 MB of headers); it is cut at 200 bytes.
func TestFetchRedirectTargetShownBounded(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0") // taken then closed: refuses connections
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	long := "https://" + closed + "/" + strings.Repeat("a", 5000)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, long, http.StatusMovedPermanently)
	}))
	defer srv.Close()
	s, err := (&Fetcher{}).Fetch(context.Background(), srv.URL+"/", "")
	if err != nil {
		t.Fatal(err)
	}
	if s.RedirectErr == nil || len(s.RedirectErr.Error()) > 600 || !strings.Contains(s.RedirectErr.Error(), "aaa... (the redirect's target)") {
		t.Fatalf("note of %d bytes: %.300v", len(fmt.Sprint(s.RedirectErr)), s.RedirectErr)
	}
}

// TestFetchBodyBounded: a page whose body never ends is read up to maxBody (for SRI) and
// graded; the fetch neither waits for its end nor holds more of it.
func TestFetchBodyBounded(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		chunk := []byte(strings.Repeat("<p>endless</p>", 1024))
		for r.Context().Err() == nil {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}))
	defer srv.Close()
	scan, err := (&Fetcher{}).Fetch(context.Background(), srv.URL+"/", "")
	if err != nil {
		t.Fatal(err)
	}
	if len(scan.Body) != maxBody {
		t.Fatalf("read %d bytes of an endless body, want maxBody (%d)", len(scan.Body), maxBody)
	}
	if rep := Analyze(scan); rep.Status != 200 {
		t.Fatalf("status %d", rep.Status)
	}
}
