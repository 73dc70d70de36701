package caddymodule

import (
	"fmt"
	"net"
	"net/http"
	"net/http/fcgi"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/swarmsec/caddy-hardening/pathguard"
)

// TestPathGuardBeforePHPFastCGI: in front of php_fastcgi (a FastCGI server of Go's standing in
// for PHP-FPM), the split_path tricks that make FPM run an upload (`/uploads/evil.jpg/x.php`,
// `/evil.jpg/.php`, nginx's cgi.fix_pathinfo case) or cut the name at a NUL
// (`/index.php%00.jpg`) never make FPM run anything but an existing .php file, and neither
// FPM's REQUEST_URI (the path as sent, which PHP routers route by) nor its PATH_INFO (which
// some include files by) holds anything path_guard refuses.
func TestPathGuardBeforePHPFastCGI(t *testing.T) {
	root := t.TempDir()
	for name, content := range map[string]string{
		"index.php":            "<?php index",
		"app.php":              "<?php app",
		"uploads/evil.jpg":     "<?php system($_GET['c']);",
		"uploads/evil.php.jpg": "<?php system($_GET['c']);",
		"uploads/photo.jpg":    "jpeg",
	} {
		p := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var mu sync.Mutex
	type run struct{ script, pathInfo, uri string }
	var runs []run
	go fcgi.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		env := fcgi.ProcessEnv(r)
		mu.Lock()
		runs = append(runs, run{env["SCRIPT_FILENAME"], env["PATH_INFO"], r.URL.RequestURI()}) // parsed from REQUEST_URI
		mu.Unlock()
		fmt.Fprintf(w, "php %s", strings.TrimPrefix(env["SCRIPT_FILENAME"], root))
	}))
	addr, _ := guardCaddy(t, fmt.Sprintf("\troot * %s\n\tpath_guard\n\tphp_fastcgi %s\n\tfile_server\n", root, ln.Addr()))

	for _, p := range []string{
		"/uploads/evil.jpg/x.php",
		"/uploads/evil.jpg/.php",
		"/uploads/evil.jpg/x.PHP",
		"/uploads/evil.php.jpg",
		"/uploads/evil.php.jpg/x.php",
		"/uploads/evil.jpg%20.php",
		"/uploads/evil.jpg.php",
		"/uploads/evil.jpg%00.php",
		"/index.php%00.jpg",
		"/uploads/evil.jpg%0a.php",
		"/uploads/evil.jpg;.php",
		"/uploads/evil.jpg::$DATA.php",
		"/uploads/evil.jpg%5c.php",
		"/index.php/..%2f..%2fetc/passwd",
		"/index.php/%2e%2e/%2e%2e/etc/passwd",
		"/index.php/%EF%BC%8E%EF%BC%8E/etc/passwd",
		"/index.php/..%20/etc/passwd",
		"/app.php/x/..%3f/y",
		"/uploads/evil.jpg/..%2f..%2fapp.php",
	} {
		rawGet(t, addr, p)
	}
	mu.Lock()
	ran := slices.Clone(runs)
	mu.Unlock()
	if len(ran) == 0 {
		t.Fatal("FPM ran nothing")
	}
	for _, r := range ran {
		if r.script != filepath.Join(root, "index.php") && r.script != filepath.Join(root, "app.php") {
			t.Errorf("FPM ran %q (PATH_INFO %q) for %s", r.script, r.pathInfo, r.uri)
		}
		if reason := pathguard.Check((&url.URL{Path: r.pathInfo}).EscapedPath(), pathguard.Options{}); r.pathInfo != "" && reason != "" {
			t.Errorf("FPM got PATH_INFO %q (%s) for %s", r.pathInfo, reason, r.uri)
		}
		// PHP routers (Laravel, Symfony, WordPress) route by REQUEST_URI, the path as sent.
		if reason := pathguard.Check(strings.SplitN(r.uri, "?", 2)[0], pathguard.Options{}); reason != "" {
			t.Errorf("FPM got REQUEST_URI %q (%s)", r.uri, reason)
		}
	}
	for p, want := range map[string]string{"/": "php /index.php", "/app.php/users/1": "php /app.php", "/uploads/photo.jpg": "jpeg", "/no/such/page": "php /index.php"} {
		if status, _, body := rawGet(t, addr, p); status != http.StatusOK || body != want {
			t.Errorf("%s: %d %q, want 200 %q", p, status, body, want)
		}
	}
}
