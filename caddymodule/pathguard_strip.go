package caddymodule

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/rewrite"

	"github.com/swarmsec/caddy-hardening/pathguard"
)

// pathStrips are the static path strips of the rewrites that run after a path_guard in its
// server (`uri strip_prefix`, `uri strip_suffix`, the strip of `handle_path`), each as Caddy
// applies it: with a leading `/` for a prefix, compared without regard to case.
type pathStrips struct {
	prefixes, suffixes []string
}

// stripsAfter collects the strips of the rewrites that follow h in the server that holds it, in
// the order Caddy runs the handlers, matchers ignored. A strip whose text holds a placeholder is
// left out: its value is known only per request.
func (h *PathGuard) stripsAfter() *pathStrips {
	s := new(pathStrips)
	for _, srv := range httpServers(h.cfgCtx) {
		after := false
		walkHandlers(srv.Routes, "", func(hh caddyhttp.MiddlewareHandler, _ string) {
			switch hh := hh.(type) {
			case *PathGuard:
				after = after || hh == h
			case *rewrite.Rewrite:
				if !after {
					return
				}
				if p := decodedStrip(hh.StripPathPrefix); p != "" {
					if !strings.HasPrefix(p, "/") {
						p = "/" + p
					}
					s.prefixes = append(s.prefixes, p)
				}
				if p := decodedStrip(hh.StripPathSuffix); p != "" {
					s.suffixes = append(s.suffixes, p)
				}
			}
		})
	}
	return s
}

// decodedStrip is a strip's text decoded, as checkStripped compares it with the decoded path
// (Caddy matches an escape the text writes with that escape only, so the decoded comparison
// finds every path Caddy strips, and maybe more); "" when it holds a placeholder or no text.
func decodedStrip(s string) string {
	if strings.Contains(s, "{") {
		return ""
	}
	if d, err := url.PathUnescape(s); err == nil {
		return d
	}
	return s
}

// checkStripped judges the paths the strips after this path_guard would leave of r's path, when
// one cuts inside a segment: `uri strip_prefix /app` makes `/appC:/windows` `/C:/windows`, and
// `uri strip_suffix .php` makes `/x/..%20.php` `/x/..%20`, forms path_guard refuses, out of
// segments (`appC:`, `.. .php`) it passes. A strip at a segment's edge leaves segments already
// judged. A strip is judged whether or not its matcher takes the request (a route may not
// apply it): the paths this refuses start with its prefix or end with its suffix and hold an
// attack form once cut, which no ordinary link does. Caddy cleans the path it strips, and
// cleans the result (so `/app../x` reaches the upstream as `/x`; judged here as `/../x`, it is
// refused, which only costs a link no one writes).
func (h *PathGuard) checkStripped(r *http.Request) pathguard.Reason {
	if h.strips == nil { // not provisioned (a benchmark's handler)
		return ""
	}
	s := h.strips()
	if len(s.prefixes) == 0 && len(s.suffixes) == 0 {
		return ""
	}
	// Caddy cleans the path as each strip's text asks (merging slashes unless it holds
	// `//`): two forms at most, each made once per request.
	var cleaned [2]string
	clean := func(strip string) string {
		i := 0
		if strings.Contains(strip, "//") {
			i = 1
		}
		if cleaned[i] == "" {
			cleaned[i] = caddyhttp.CleanPath(r.URL.Path, i == 0)
		}
		return cleaned[i]
	}
	for _, prefix := range s.prefixes {
		p := clean(prefix)
		if len(p) <= len(prefix) || !strings.EqualFold(p[:len(prefix)], prefix) || p[len(prefix)] == '/' || strings.HasSuffix(prefix, "/") {
			continue
		}
		if reason := h.checkDecoded("/" + p[len(prefix):]); reason != "" {
			return reason
		}
	}
	for _, suffix := range s.suffixes {
		p := clean(suffix)
		rest := len(p) - len(suffix)
		if rest <= 0 || !strings.EqualFold(p[rest:], suffix) || p[rest-1] == '/' || strings.HasPrefix(suffix, "/") {
			continue
		}
		if reason := h.checkDecoded(p[:rest]); reason != "" {
			return reason
		}
	}
	return ""
}

// checkDecoded judges a decoded path in the escaped form Go sends it upstream.
func (h *PathGuard) checkDecoded(p string) pathguard.Reason {
	return pathguard.Check((&url.URL{Path: p}).EscapedPath(), h.opts)
}
