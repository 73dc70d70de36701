package caddymodule

import (
	"fmt"
	"net/http"
	"slices"
	"testing"
)

// TestPathGuardMergesEmptySegments: a path with empty segments (`//etc/passwd`,
// `/static//etc/passwd`) reaches the upstream with them merged, as nginx's merge_slashes does,
// so that an upstream that joins the path to its root naively (Python's os.path.join(root,
// path[1:]), Node's path.resolve) does not open an absolute path, and `//evil.example` is no
// protocol-relative redirect target; the query is left as sent. Encoded slashes inside a name
// stay as they are (with allow encoded_slash), and `merge_slashes off` forwards the path
// unchanged.
func TestPathGuardMergesEmptySegments(t *testing.T) {
	upstream, seen := recordingUpstream(t)
	addr, _ := guardCaddy(t, fmt.Sprintf(`	@keep path /keep/*
	route @keep {
		path_guard {
			merge_slashes off
		}
		reverse_proxy %[1]s
	}
	@enc path /enc/*
	route @enc {
		path_guard {
			allow encoded_slash
		}
		reverse_proxy %[1]s
	}
	route {
		path_guard
		reverse_proxy %[1]s
	}
`, upstream))
	for _, tc := range []struct{ target, want string }{
		{"//etc/passwd", "/etc/passwd"},
		{"/static//etc/passwd", "/static/etc/passwd"},
		{"//evil.example", "/evil.example"},
		{"///a////b//?next=//x&q=a//b", "/a/b/?next=//x&q=a//b"},
		{"//", "/"},
		{"//caf\xc3\xa9//menu", "/caf%C3%A9/menu"},
		{"//caf%C3%A9//menu", "/caf%C3%A9/menu"},
		{"/plain/path", "/plain/path"},
		{"/enc//group%2Fproject//files", "/enc/group%2Fproject/files"},
		{"/enc/a%2Fb//c", "/enc/a%2Fb/c"}, // an encoded slash next to another or to a `/` is refused (TestPathGuardEncodedSlashMakesNoEmptySegment)
		{"/keep//etc/passwd", "/keep//etc/passwd"},
		{"http://" + addr + "//etc/passwd", "/etc/passwd"}, // absolute form
	} {
		status, _, body := rawGet(t, addr, tc.target)
		if status != http.StatusOK || body != "upstream "+tc.want {
			t.Errorf("%q: %d %q, want 200 %q", tc.target, status, body, "upstream "+tc.want)
		}
	}
	if got := seen(); slices.ContainsFunc(got, func(u string) bool { return len(u) > 1 && u[:2] == "//" }) {
		t.Errorf("the upstream received a path with a leading //: %q", got)
	}
}
