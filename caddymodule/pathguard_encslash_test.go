package caddymodule

import (
	"fmt"
	"net/http"
	"slices"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestPathGuardEncodedSlashMakesNoEmptySegment: with allow encoded_slash, an encoded slash next
// to a separator or to another encoded slash (`/a/%2F/etc/passwd`, `/%2F%2Fetc`, `/%2Fevil`)
// is refused as encoded_slash: an upstream that decodes %2F (most frameworks route the decoded
// path) would get `//`, the absolute path a naive join opens and the host a redirect sends the
// browser to, and merge_slashes, which merges only literal slashes, leaves it. A slash inside a
// name (GitLab's group%2Fproject) still passes, a traversal built of encoded slashes is
// dot_segment, and with merge_slashes off, where literal empty segments reach the upstream as
// sent, encoded ones do too.
func TestPathGuardEncodedSlashMakesNoEmptySegment(t *testing.T) {
	upstream, seen := recordingUpstream(t)
	addr, _ := guardCaddy(t, fmt.Sprintf(`	@keep path /keep/*
	route @keep {
		path_guard {
			allow encoded_slash
			merge_slashes off
		}
		reverse_proxy %[1]s
	}
	route {
		path_guard {
			allow encoded_slash
		}
		reverse_proxy %[1]s
	}
`, upstream))
	for _, tc := range []struct{ target, reason string }{
		{"/a/%2F/etc/passwd", "encoded_slash"},
		{"/%2F%2Fetc/passwd", "encoded_slash"},
		{"/%2fevil.example", "encoded_slash"},
		{"/files/%2Fetc%2Fpasswd", "encoded_slash"},
		{"/a%2F%2Fb", "encoded_slash"},
		{"/group%2F/x", "encoded_slash"},
		{"/a//%2Fetc", "encoded_slash"},
		{"/a%2F..%2F..%2Fb", "dot_segment"},
		{"/%2F..%2Fetc/passwd", "dot_segment"}, // named, and scored, for the attack form
	} {
		before := testutil.ToFloat64(pathBlocked.WithLabelValues(tc.reason))
		if status, ctype, body := rawGet(t, addr, tc.target); status != http.StatusBadRequest || ctype != "application/problem+json" {
			t.Errorf("%q: %d %s %q, want 400 problem+json", tc.target, status, ctype, body)
		}
		if got := testutil.ToFloat64(pathBlocked.WithLabelValues(tc.reason)) - before; got != 1 {
			t.Errorf("%q: path_blocked_total{reason=%q} grew by %v, want 1", tc.target, tc.reason, got)
		}
	}
	passed := []string{"/api/v4/projects/group%2Fproject/files", "/npm/@types%2Fnode", "/group%2F", "/keep/a/%2F/b", "/keep/%2Fetc"}
	for _, p := range passed {
		if status, _, body := rawGet(t, addr, p); status != http.StatusOK || body != "upstream "+p {
			t.Errorf("%q: %d %q, want 200 %q", p, status, body, "upstream "+p)
		}
	}
	if got := seen(); !slices.Equal(got, passed) {
		t.Errorf("the upstream received %q, want %q", got, passed)
	}
}
