package caddymodule

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/swarmsec/caddy-hardening/internal/testcaddy"
	"github.com/swarmsec/caddy-hardening/internal/testenv"
)

// TestInjectRouteOffersNoRanges: a route with inject_nonce removes every request's Range and
// If-Range (a page must reach the injector whole), so no response of that route is partial,
// whatever its type. Before, a video, an image or a download there still said `Accept-Ranges:
// bytes` (the upstream's, or file_server's): a client that read it asked for a range (a video
// element seeking, a download resuming) and got the whole body every time. Every response of
// such a route now drops Accept-Ranges, as Caddy's `encode` drops it from what it compresses;
// the same requests without inject_nonce keep their ranges.
func TestInjectRouteOffersNoRanges(t *testing.T) {
	video := bytes.Repeat([]byte("\x00\x00\x00\x18ftypmp42"), 4096)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "video/mp4")
		http.ServeContent(w, r, "clip.mp4", time.Unix(1700000000, 0), bytes.NewReader(video))
	}))
	t.Cleanup(up.Close)
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "clip.mp4"), video, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TEST_CSP_PLACEHOLDER", testPlaceholder)
	port := testenv.FreePort(t)
	testcaddy.StartCaddy(t, fmt.Sprintf(`http://127.0.0.1:%[1]d {
	bind 127.0.0.1
	route /tags/* {
		uri strip_prefix /tags
		security_headers {
			inject_nonce tags
		}
		reverse_proxy %[2]s
	}
	route /placeholder/* {
		uri strip_prefix /placeholder
		security_headers {
			inject_nonce placeholder {env.TEST_CSP_PLACEHOLDER}
		}
		reverse_proxy %[2]s
	}
	route /files/* {
		uri strip_prefix /files
		security_headers {
			inject_nonce tags
		}
		file_server {
			root %[3]s
		}
	}
	reverse_proxy %[2]s
}
`, port, up.Listener.Addr(), root))
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	ranged := func(path string) (*http.Response, string) {
		req, _ := http.NewRequest(http.MethodGet, url+path, nil)
		req.Header.Set("Range", "bytes=0-9")
		return fetch(t, req)
	}
	// Without inject_nonce the range is served: the check that the upstream offers ranges.
	if resp, body := ranged("/clip.mp4"); resp.StatusCode != http.StatusPartialContent || len(body) != 10 {
		t.Fatalf("without inject_nonce: %d, %d bytes, want 206 and 10 bytes", resp.StatusCode, len(body))
	}
	if resp, _ := getBody(t, url+"/clip.mp4"); resp.Header.Get("Accept-Ranges") != "bytes" {
		t.Fatalf("without inject_nonce: Accept-Ranges %q, want the upstream's bytes", resp.Header.Get("Accept-Ranges"))
	}
	for _, path := range []string{"/tags/clip.mp4", "/placeholder/clip.mp4", "/files/clip.mp4"} {
		for _, method := range []string{http.MethodGet, http.MethodHead} {
			req, _ := http.NewRequest(method, url+path, nil)
			resp, _ := fetch(t, req)
			if ar, ok := resp.Header["Accept-Ranges"]; ok {
				t.Errorf("%s %s: Accept-Ranges %q on a route that never serves a range", method, path, ar)
			}
		}
		resp, body := ranged(path)
		if resp.StatusCode != http.StatusOK || len(body) != len(video) || resp.Header.Get("Content-Range") != "" {
			t.Errorf("ranged GET %s: %d, %d bytes, Content-Range %q: want the whole body (200, %d bytes)",
				path, resp.StatusCode, len(body), resp.Header.Get("Content-Range"), len(video))
		}
		if ar, ok := resp.Header["Accept-Ranges"]; ok {
			t.Errorf("ranged GET %s: Accept-Ranges %q on a route that never serves a range", path, ar)
		}
	}
}
