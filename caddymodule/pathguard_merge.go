package caddymodule

import (
	"net/http"
	"net/url"
	"strings"
)

// mergeSlashes merges the empty segments of the request's path (`//etc/passwd` is
// `/etc/passwd`, `/static//x` is `/static/x`) for the rest of the route, as nginx's
// merge_slashes does: reverse_proxy forwards r.URL (its RawPath when set), file_server and the
// matchers after path_guard read r.URL.Path. An upstream that joins the path to its root
// naively (os.path.join(root, path[1:])) would open an absolute path, and one that redirects
// to the path it was given would send `Location: //evil.example`. Only literal slashes merge:
// an encoded slash (%2F, with allow encoded_slash) is part of a name, not a separator. The
// query is left as sent; RequestURI follows, as Caddy's rewrites keep it. A path without `//`
// costs one scan.
func mergeSlashes(r *http.Request) {
	if !strings.Contains(r.URL.Path, "//") {
		return // a literal // of the escaped path is one of the decoded path too
	}
	escaped := r.URL.EscapedPath()
	merged := mergeRuns(escaped)
	if merged == escaped {
		return // the decoded // came from encoded slashes
	}
	p, err := url.PathUnescape(merged)
	if err != nil {
		return // cannot be: only whole '/' bytes left a valid escaped path
	}
	r.URL.Path, r.URL.RawPath = p, ""
	if r.URL.EscapedPath() != merged { // an encoded slash, or an escape Go would not write
		r.URL.RawPath = merged
	}
	r.RequestURI = r.URL.RequestURI()
}

// mergeRuns replaces every run of slashes in p with one.
func mergeRuns(p string) string {
	var b strings.Builder
	b.Grow(len(p))
	for i := 0; i < len(p); i++ {
		if p[i] == '/' && i > 0 && p[i-1] == '/' {
			continue
		}
		b.WriteByte(p[i])
	}
	return b.String()
}
