package caddymodule

import (
	"slices"
	"strings"
)

// linkNonceRels are the link relations whose Link header entries tags mode gives the nonce,
// as it gives it to <link> tags with them: a preload or stylesheet the upstream (or a `header
// Link` directive) announces is the page's own, as its tags are. Without it, the strict
// preset's style-src refuses each preloaded stylesheet (measured in Chromium 156: one CSP
// report per page view, and the file fetched again by the page's nonced tag).
var linkNonceRels = []string{"preload", "modulepreload", "stylesheet"}

// addLinkNonces gives every Link header entry (RFC 8288) whose rel is one of linkNonceRels the
// nonce, in place of any nonce it had (the upstream cannot know this response's). Entries are
// found outside <URI>s and quoted strings, so a comma or ';' in either splits nothing.
func addLinkNonces(vals []string, nonce string) []string {
	var out []string
	for i, v := range vals {
		nv, changed := linkWithNonce(v, nonce)
		if !changed {
			continue
		}
		if out == nil {
			out = slices.Clone(vals) // the slice may be shared with another header map
		}
		out[i] = nv
	}
	if out == nil {
		return vals
	}
	return out
}

// linkWithNonce is addLinkNonces for one header value.
func linkWithNonce(v, nonce string) (string, bool) {
	if !strings.Contains(strings.ToLower(v), "rel") {
		return v, false
	}
	entries := splitLinkValue(v, ',')
	changed := false
	for i, e := range entries {
		params := splitLinkValue(e, ';')
		if len(params) < 2 || !linkRelWants(params[1:]) {
			continue
		}
		kept := params[:1]
		for _, p := range params[1:] {
			if name, _ := linkParam(p); name != "nonce" {
				kept = append(kept, p)
			}
		}
		entries[i] = strings.Join(kept, ";") + `; nonce="` + nonce + `"`
		changed = true
	}
	if !changed {
		return v, false
	}
	return strings.Join(entries, ","), true
}

// linkRelWants reports whether an entry's parameters hold a rel (the first, as RFC 8288
// says) that lists one of linkNonceRels.
func linkRelWants(params []string) bool {
	for _, p := range params {
		name, val := linkParam(p)
		if name != "rel" {
			continue
		}
		for _, rel := range strings.Fields(strings.ToLower(val)) {
			if slices.Contains(linkNonceRels, rel) {
				return true
			}
		}
		return false
	}
	return false
}

// linkParam is a link parameter's lower-case name and its value, unquoted.
func linkParam(p string) (name, val string) {
	name, val, _ = strings.Cut(p, "=")
	name = strings.ToLower(strings.TrimSpace(name))
	val = strings.TrimSpace(val)
	if len(val) >= 2 && val[0] == '"' && val[len(val)-1] == '"' {
		val = strings.NewReplacer(`\\`, `\`, `\"`, `"`).Replace(val[1 : len(val)-1])
	}
	return name, val
}

// splitLinkValue splits s at each sep outside a <URI> and a quoted string.
func splitLinkValue(s string, sep byte) []string {
	var parts []string
	start, inURI, inQuote := 0, false, false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case inQuote:
			if c == '\\' {
				i++
			} else if c == '"' {
				inQuote = false
			}
		case inURI:
			inURI = c != '>'
		case c == '"':
			inQuote = true
		case c == '<':
			inURI = true
		case c == sep:
			parts = append(parts, s[start:i])
			start = i + 1
		}
	}
	return append(parts, s[start:])
}
