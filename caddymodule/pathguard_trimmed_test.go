package caddymodule

import (
	"fmt"
	"net/http"
	"slices"
	"testing"
)

// TestPathGuardRefusesTrimmedDotsAndStreams: with the default detection in production, a `..`
// segment padded with spaces or dots (`..%20`, `%20..`, `..%20.`, encoded twice), which an
// upstream that trims segments (Java's trim, Python's strip) reads as `..`, and an NTFS stream
// suffix (`index.asp::$DATA`, IIS's source disclosure; `dir::$INDEX_ALLOCATION`) are refused
// with 400 before the upstream sees them, and ban their sender as traversal does. Readers'
// names with dots, `...`, spaces and a colon then a dollar (`/wiki/Price:$5`), and paths with
// empty segments from sloppy base URLs, pass and ban nobody.
func TestPathGuardRefusesTrimmedDotsAndStreams(t *testing.T) {
	upstream, seen := recordingUpstream(t)
	addr, c := productionGuard(t, "\treverse_proxy "+upstream)
	from := func(ip string) string { return "X-Forwarded-For: " + ip }

	attacks := []string{
		"/static/..%20/..%20/etc/passwd",
		"/static/%20../secret.txt",
		"/static/..%20%20/secret.txt",
		"/static/..%20./secret.txt",
		"/static/%2e%2e%20/secret.txt",
		"/static/..%2520/secret.txt",
		"/index.asp::$DATA",
		"/index.asp%3A%3A%24data",
		"/web.config::%24DATA",
		"/admin::$INDEX_ALLOCATION/secret.txt",
	}
	for i, p := range attacks {
		attacker := fmt.Sprintf("198.51.100.%d", 60+i)
		if status, ctype, body := rawGet(t, addr, p, from(attacker)); status != http.StatusBadRequest || ctype != "application/problem+json" {
			t.Errorf("%q: %d %s %q, want 400 problem+json", p, status, ctype, body)
			continue
		}
		if status, _, _ := rawGet(t, addr, "/", from(attacker)); status != http.StatusForbidden {
			t.Errorf("after %q: %d, want 403 (banned as traversal)", p, status)
		}
	}
	if got := reclassifiedIPs(c); len(got) != len(attacks) {
		t.Errorf("%d clients banned, want %d: %v", len(got), len(attacks), got)
	} else {
		for ip, sig := range got {
			if sig != "traversal" {
				t.Errorf("%s banned for %s, want traversal", ip, sig)
			}
		}
	}

	reader := "198.51.100.90"
	benign := []string{"/docs/...", "/.../x", "/a...b", "/notes/a%20..b", "/file%20name.txt", "/wiki/Price:$5",
		"/wiki/X:$Database", "/v1/projects/p:batchGet", "//v1/users", "/api//v1/users"}
	for _, p := range benign {
		if status, _, body := rawGet(t, addr, p, from(reader)); status != http.StatusOK {
			t.Errorf("%q: %d %q, want 200", p, status, body)
		}
	}
	for _, p := range seen() {
		if !slices.Contains(benign, p) && p != "/" && p != "/v1/users" && p != "/api/v1/users" {
			t.Errorf("the upstream received %q", p)
		}
	}
	if _, banned := reclassifiedIPs(c)[reader]; banned {
		t.Errorf("the reader was banned")
	}
}
