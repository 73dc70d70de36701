package caddymodule

import (
	"fmt"
	"net/http"
	"slices"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestPathGuardWindows: with `windows on`, in front of an upstream standing in for IIS, the
// names Windows reads as another file or as a device never reach it: a segment ending in a dot
// or a space (`/admin./secret` is `admin\secret` there, past the `@admin path /admin/*` rule
// in front of it), a DOS device name, an 8.3 short name and IIS's tilde enumeration. The
// aliases and devices ban their sender as traversal; a trailing dot, as a link pasted with its
// sentence's full stop has it, scores malformed_path and bans nobody at once. Without the
// option (the default), they are ordinary names and pass.
func TestPathGuardWindows(t *testing.T) {
	upstream, seen := recordingUpstream(t)
	// The site's path_guard runs before any route (it is ordered before header), so the
	// upstream that is not on Windows is left out of it by a matcher.
	addr, c := productionGuardRoutes(t, fmt.Sprintf(`	@linux path /linux/*
	@windows not path /linux/*
	route @linux {
		path_guard
		reverse_proxy %[1]s
	}
	@admin path /admin /admin/*
	respond @admin 403
	path_guard @windows {
		windows on
		suspicious_action block
	}
	reverse_proxy %[1]s`, upstream))
	from := func(ip string) string { return "X-Forwarded-For: " + ip }

	for i, tc := range []struct{ target, reason, signal string }{
		{"/admin./secret.txt", "trailing_dot_space", "malformed_path"},
		{"/admin%20/secret.txt", "trailing_dot_space", "malformed_path"},
		{"/admin%2e/secret.txt", "trailing_dot_space", "malformed_path"},
		{"/web.config.", "trailing_dot_space", "malformed_path"},
		{"/web.config%20", "trailing_dot_space", "malformed_path"},
		{"/con", "dos_device", "traversal"},
		{"/con/con", "dos_device", "traversal"},
		{"/files/NUL.txt", "dos_device", "traversal"},
		{"/com1", "dos_device", "traversal"},
		{"/lpt9.log", "dos_device", "traversal"},
		{"/ADMIN~1/secret.txt", "short_name", "traversal"},
		{"/PROGRA~1/x", "short_name", "traversal"},
		{"/WEB~1.CON", "short_name", "traversal"},
		{"/a*~1*/.aspx", "short_name", "traversal"},
		{"/a./..%2f..%2fwin.ini", "dot_segment", "traversal"}, // the attack form besides names it
	} {
		client := fmt.Sprintf("198.51.100.%d", 10+i)
		before := testutil.ToFloat64(pathBlocked.WithLabelValues(tc.reason))
		if status, ctype, body := rawGet(t, addr, tc.target, from(client)); status != http.StatusBadRequest || ctype != "application/problem+json" {
			t.Errorf("%q: %d %s %q, want 400 problem+json", tc.target, status, ctype, body)
			continue
		}
		if got := testutil.ToFloat64(pathBlocked.WithLabelValues(tc.reason)) - before; got != 1 {
			t.Errorf("%q: path_blocked_total{reason=%q} grew by %v, want 1", tc.target, tc.reason, got)
		}
		status, _, _ := rawGet(t, addr, "/", from(client))
		if banned := status == http.StatusForbidden; banned != (tc.signal == "traversal") {
			t.Errorf("after %q: / answered %d; want a ban only for traversal (%s)", tc.target, status, tc.signal)
		}
	}
	for ip, sig := range reclassifiedIPs(c) {
		if sig != "traversal" {
			t.Errorf("%s banned for %s", ip, sig)
		}
	}

	reader := "198.51.100.90"
	passed := []string{"/~user/page", "/docs/...", "/console", "/connect.php", "/release~rc1/notes", "/a%20b.txt",
		"/linux/admin./x", "/linux/web.config%20", "/linux/con", "/linux/PROGRA~1"}
	for _, p := range passed {
		if status, _, body := rawGet(t, addr, p, from(reader)); status != http.StatusOK {
			t.Errorf("%q: %d %q, want 200", p, status, body)
		}
	}
	if got := seen(); !slices.Equal(got, append([]string{"/", "/", "/", "/", "/"}, passed...)) {
		t.Errorf("the upstream received %q", got)
	}
}
