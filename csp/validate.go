package csp

import (
	"encoding/base64"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

type directiveKind uint8

const (
	kindSources   directiveKind = iota + 1 // a source list
	kindAncestors                          // frame-ancestors: 'self', 'none', hosts and schemes only
	kindNoValue                            // upgrade-insecure-requests
	kindSandbox
	kindReportURI
	kindReportTo
	kindRequireTT
	kindTrustedTypes
	kindWebRTC
)

// directives lists every CSP Level 3 directive browsers enforce, by value grammar.
var directives = map[string]directiveKind{
	"default-src": kindSources, "script-src": kindSources, "script-src-elem": kindSources,
	"script-src-attr": kindSources, "style-src": kindSources, "style-src-elem": kindSources,
	"style-src-attr": kindSources, "img-src": kindSources, "font-src": kindSources,
	"connect-src": kindSources, "media-src": kindSources, "object-src": kindSources,
	"frame-src": kindSources, "child-src": kindSources, "worker-src": kindSources,
	"manifest-src": kindSources, "fenced-frame-src": kindSources, "base-uri": kindSources,
	"form-action": kindSources, "frame-ancestors": kindAncestors,
	"upgrade-insecure-requests": kindNoValue, "sandbox": kindSandbox,
	"report-uri": kindReportURI, "report-to": kindReportTo,
	"require-trusted-types-for": kindRequireTT, "trusted-types": kindTrustedTypes,
	"webrtc": kindWebRTC,
}

// nonceDirectives may carry 'nonce' and 'strict-dynamic'.
var nonceDirectives = map[string]bool{
	"default-src": true, "script-src": true, "script-src-elem": true, "script-src-attr": true,
	"style-src": true, "style-src-elem": true, "style-src-attr": true,
}

var keywords = map[string]bool{
	"'self'": true, "'none'": true, "'unsafe-inline'": true, "'unsafe-eval'": true,
	"'strict-dynamic'": true, "'unsafe-hashes'": true, "'report-sample'": true,
	"'wasm-unsafe-eval'": true, "'inline-speculation-rules'": true, "'trusted-types-eval'": true,
	"'report-sha256'": true, "'report-sha384'": true, "'report-sha512'": true, // hashes of scripts in reports
}

var sandboxTokens = map[string]bool{
	"allow-downloads": true, "allow-forms": true, "allow-modals": true, "allow-orientation-lock": true,
	"allow-pointer-lock": true, "allow-popups": true, "allow-popups-to-escape-sandbox": true,
	"allow-presentation": true, "allow-same-origin": true, "allow-scripts": true,
	"allow-top-navigation": true, "allow-top-navigation-by-user-activation": true,
	"allow-top-navigation-to-custom-protocols": true, "allow-storage-access-by-user-activation": true,
}

// obsoleteDirectives are directives that older drafts or browsers had and today's browsers
// ignore (or never shipped), with what does their job now: refused with that hint rather than
// as unknown, since they are still found in copied policies.
var obsoleteDirectives = map[string]string{
	"block-all-mixed-content": "it is deprecated and browsers now block or upgrade mixed content by themselves; use upgrade-insecure-requests (in the strict preset) to load http: subresources over https:",
	"plugin-types":            "browsers removed it along with plugins; use object-src 'none' (in the strict preset)",
	"referrer":                "it was removed from CSP; use the Referrer-Policy header (the referrer_policy option)",
	"reflected-xss":           "it was removed from CSP (browsers dropped their XSS auditors); the nonce-based script-src of the strict preset is what stops injected scripts",
	"prefetch-src":            "it was removed from CSP and browsers ignore it; prefetches follow default-src",
	"navigate-to":             "it was removed from the CSP draft and never shipped in a browser; use form-action for form targets",
	"require-sri-for":         "it was never shipped by browsers; give scripts and stylesheets integrity attributes, or use require-trusted-types-for 'script' against DOM XSS",
	"disown-opener":           "it was never shipped by browsers; use the Cross-Origin-Opener-Policy header (the coop option, same-origin by default)",
}

// KnownDirective reports whether name is a directive browsers enforce.
func KnownDirective(name string) bool {
	_, ok := directives[name]
	return ok
}

// KnownDirectives lists the directive names, for error messages.
func KnownDirectives() []string { return sortedKeys(directives) }

// UnknownDirective is the refusal of a directive name that browsers do not enforce: what an
// obsolete one became, or the list of the known ones.
func UnknownDirective(name string) error {
	if hint, ok := obsoleteDirectives[name]; ok {
		return fmt.Errorf("CSP directive %q is obsolete: %s", name, hint)
	}
	return fmt.Errorf("unknown CSP directive %q; expected one of: %s", name, strings.Join(KnownDirectives(), ", "))
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// Validate checks every directive name and value, and the rules that make a policy mean what
// it says ('none' alone, 'strict-dynamic' with a nonce or hash, no fixed nonce).
func (p Policy) Validate() error {
	seen := map[string]bool{}
	for _, d := range p.Directives {
		if seen[d.Name] {
			return fmt.Errorf("directive %s given twice (browsers ignore the second)", d.Name)
		}
		seen[d.Name] = true
		if err := ValidateDirective(d.Name, d.Values); err != nil {
			return err
		}
	}
	return nil
}

// ValidateDirective checks one directive's name and values.
func ValidateDirective(name string, values []string) error {
	kind, ok := directives[name]
	if !ok {
		return UnknownDirective(name)
	}
	for _, v := range values {
		if i := strings.IndexFunc(v, notVisibleASCII); i >= 0 {
			return fmt.Errorf("%s: value %q has %q at byte %d: CSP values are visible ASCII without ; or , (write hosts in punycode)", name, v, v[i:i+1], i)
		}
	}
	if err := repeatedValue(name, kind, values); err != nil {
		return err
	}
	switch kind {
	case kindSources, kindAncestors:
		return validateSources(name, kind, values)
	case kindNoValue:
		if len(values) > 0 {
			return fmt.Errorf("%s takes no value; got %q", name, strings.Join(values, " "))
		}
	case kindSandbox:
		for _, v := range values {
			if !sandboxTokens[strings.ToLower(v)] {
				return fmt.Errorf("sandbox: unknown flag %q; expected one of %s", v, strings.Join(sortedKeys(sandboxTokens), ", "))
			}
		}
	case kindReportURI:
		if len(values) == 0 {
			return fmt.Errorf("report-uri needs at least one URL")
		}
		for _, v := range values {
			if !validReportURL(v) {
				return fmt.Errorf("report-uri %q: expected an absolute path (/csp-report) or an http(s) URL", v)
			}
		}
	case kindReportTo:
		if len(values) != 1 || !validToken(values[0]) {
			return fmt.Errorf("report-to takes one endpoint name (letters, digits, - and _); got %q", strings.Join(values, " "))
		}
	case kindRequireTT:
		if len(values) != 1 || values[0] != "'script'" {
			return fmt.Errorf("require-trusted-types-for takes exactly 'script'; got %q", strings.Join(values, " "))
		}
	case kindTrustedTypes:
		for _, v := range values {
			if v == "'none'" && len(values) > 1 {
				// Chromium ignores it beside anything else: the names would be allowed.
				return fmt.Errorf("trusted-types: 'none' must be the only value (browsers ignore it beside policy names); got %q", strings.Join(values, " "))
			}
			if v != "'none'" && v != "'allow-duplicates'" && v != "*" && !validPolicyName(v) {
				return fmt.Errorf("trusted-types: %q is not a policy name (letters, digits and - # = _ / @ . %%), 'none', 'allow-duplicates' or *", v)
			}
		}
	case kindWebRTC:
		if len(values) != 1 || (values[0] != "'allow'" && values[0] != "'block'") {
			return fmt.Errorf("webrtc takes 'allow' or 'block'; got %q", strings.Join(values, " "))
		}
	}
	return nil
}

// repeatedValue refuses a value given twice in one directive, as browsers compare it: keywords
// ('self', 'SELF'), scheme sources and sandbox flags case-insensitively, nonces, hashes, hosts
// with paths, URLs and policy names exactly. A repeat is a copy-paste slip at best; the
// policy says the same without it.
func repeatedValue(name string, kind directiveKind, values []string) error {
	fold := func(v string) string {
		lv := strings.ToLower(v)
		if kind == kindSandbox || strings.HasSuffix(v, ":") ||
			strings.HasPrefix(v, "'") && !strings.HasPrefix(lv, "'nonce-") && !strings.HasPrefix(lv, "'sha") {
			return lv
		}
		return v
	}
	for i, v := range values {
		for _, prev := range values[:i] {
			if fold(prev) == fold(v) {
				what := "value"
				if kind == kindSources || kind == kindAncestors {
					what = "source"
				}
				return fmt.Errorf("%s: %s %s is given twice; give each value once", name, what, v)
			}
		}
	}
	return nil
}

// notVisibleASCII reports a rune a CSP value may not hold: the grammar's VCHAR minus the
// separators ";" and ",". A control byte would also reach the response header as is.
func notVisibleASCII(r rune) bool { return r < 0x21 || r > 0x7e || r == ';' || r == ',' }

func validateSources(name string, kind directiveKind, values []string) error {
	if len(values) == 0 {
		return fmt.Errorf("%s needs at least one source ('none' to allow nothing)", name)
	}
	hasNonceOrHash, strictDynamic := false, false
	for _, v := range values {
		lv := strings.ToLower(v)
		switch {
		case lv == "'none'":
			if len(values) > 1 {
				return fmt.Errorf("%s: 'none' must be the only source; got %q", name, strings.Join(values, " "))
			}
		case v == NonceToken:
			if !nonceDirectives[name] {
				return fmt.Errorf("%s: 'nonce' only applies to script-src, style-src (and their -elem/-attr forms) and default-src", name)
			}
			hasNonceOrHash = true
		case strings.HasPrefix(lv, "'nonce-"):
			return fmt.Errorf("%s: fixed nonce %s: every response would reuse it; write 'nonce' and the edge sends a fresh one per response", name, v)
		case strings.HasPrefix(lv, "'sha256-"), strings.HasPrefix(lv, "'sha384-"), strings.HasPrefix(lv, "'sha512-"):
			if !validHash(v) {
				return fmt.Errorf("%s: bad hash source %s: expected 'sha256-<base64 digest>' (or sha384, sha512)", name, v)
			}
			hasNonceOrHash = true
		case keywords[lv]:
			if kind == kindAncestors && lv != "'self'" {
				return fmt.Errorf("frame-ancestors accepts only 'self', 'none', hosts and schemes; got %s", v)
			}
			if lv == "'trusted-types-eval'" && name != "script-src" && name != "default-src" {
				// eval is checked against script-src (or default-src) only.
				return fmt.Errorf("%s: 'trusted-types-eval' only applies to script-src and default-src", name)
			}
			if lv == "'strict-dynamic'" {
				if !nonceDirectives[name] {
					return fmt.Errorf("%s: 'strict-dynamic' only applies to script-src and default-src", name)
				}
				strictDynamic = true
			}
		case keywords["'"+lv+"'"], "'"+lv+"'" == NonceToken:
			return fmt.Errorf("%s: %s without quotes is a host name; write '%s'", name, v, lv)
		case strings.HasPrefix(v, "'"):
			return fmt.Errorf("%s: unknown keyword %s; expected 'nonce', 'sha256-…', 'sha384-…', 'sha512-…' or one of %s", name, v, strings.Join(sortedKeys(keywords), " "))
		default:
			if err := validHostOrScheme(v); err != nil {
				return fmt.Errorf("%s: bad source expression %q: %v", name, v, err)
			}
		}
	}
	if strictDynamic && !hasNonceOrHash {
		return fmt.Errorf("%s: 'strict-dynamic' without 'nonce' or a hash blocks every script; add 'nonce'", name)
	}
	return nil
}

// validHostOrScheme accepts `*`, a scheme source (`https:`) or a host source
// (`[scheme://]host[:port][/path]`, host `*`, `*.example.com` or `example.com`).
func validHostOrScheme(v string) error {
	if v == "*" {
		return nil
	}
	if strings.HasSuffix(v, ":") && validScheme(v[:len(v)-1]) {
		return nil
	}
	rest := v
	if i := strings.Index(rest, "://"); i >= 0 {
		if !validScheme(rest[:i]) {
			return fmt.Errorf("bad scheme %q", rest[:i])
		}
		rest = rest[i+3:]
	}
	if strings.ContainsAny(rest, ",;'\"") {
		return fmt.Errorf("expected a host (example.com, *.example.com), a scheme (https:) or a keyword ('self')")
	}
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		if strings.ContainsAny(rest[i:], "?#") {
			// Chromium drops them with a console warning: the source matches any query.
			return fmt.Errorf("browsers ignore the query and fragment of a source (it would allow every query); expected [scheme://]host[:port][/path]")
		}
		rest = rest[:i] // a path is matched by prefix; any characters but the ones refused above
	}
	host := rest
	if i := strings.LastIndexByte(rest, ':'); i >= 0 {
		host = rest[:i]
		port := rest[i+1:]
		if n, err := strconv.Atoi(port); port != "*" && (err != nil || n < 1 || n > 65535) {
			return fmt.Errorf("bad port %q", port)
		}
	}
	if host == "*" {
		return nil
	}
	host = strings.TrimPrefix(host, "*.")
	if host == "" {
		return fmt.Errorf("empty host")
	}
	for _, label := range strings.Split(host, ".") {
		if label == "" || strings.Trim(strings.ToLower(label), "abcdefghijklmnopqrstuvwxyz0123456789-") != "" {
			return fmt.Errorf("expected a host (example.com, *.example.com), a scheme (https:) or a keyword ('self')")
		}
	}
	return nil
}

func validScheme(s string) bool {
	if s == "" || !isAlpha(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !isAlpha(c) && !(c >= '0' && c <= '9') && c != '+' && c != '-' && c != '.' {
			return false
		}
	}
	return true
}

func validHash(v string) bool {
	inner := strings.Trim(v, "'")
	alg, digest, ok := strings.Cut(inner, "-")
	if !ok {
		return false
	}
	want := map[string]int{"sha256": 32, "sha384": 48, "sha512": 64}[strings.ToLower(alg)]
	raw, err := base64.StdEncoding.DecodeString(digest)
	if err != nil {
		raw, err = base64.RawURLEncoding.DecodeString(strings.TrimRight(digest, "="))
	}
	return err == nil && len(raw) == want
}

func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !isAlpha(c) && !(c >= '0' && c <= '9') && c != '-' && c != '_' && c != '.' {
			return false
		}
	}
	return true
}

// validPolicyName accepts a Trusted Types policy name: letters, digits and - # = _ / @ . %
// (Angular's angular#bundler, Closure's goog#html).
func validPolicyName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isAlpha(c) && !(c >= '0' && c <= '9') && !strings.ContainsRune("-#=_/@.%", rune(c)) {
			return false
		}
	}
	return true
}

// validReportURL accepts an absolute path or an http(s) URL without spaces, quotes or ';'.
func validReportURL(s string) bool {
	if strings.ContainsAny(s, " \t;,'\"") {
		return false
	}
	if strings.HasPrefix(s, "/") && !strings.HasPrefix(s, "//") {
		return true
	}
	rest, ok := strings.CutPrefix(s, "https://")
	if !ok {
		rest, ok = strings.CutPrefix(s, "http://")
	}
	// A URL without a host (https://, http:///r) is no URL to a browser: it drops the
	// report-uri with a console message only.
	return ok && rest != "" && strings.IndexByte("/:?#", rest[0]) < 0
}

func isAlpha(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
