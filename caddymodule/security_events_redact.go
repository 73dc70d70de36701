package caddymodule

import (
	"net/url"
	"strings"
)

// redactedValue replaces the value of a credential parameter in a logged URI.
const redactedValue = "REDACTED"

// redactQuery replaces, in a request URI, the value of every query parameter whose name says
// it holds a credential (credentialParam) with REDACTED: a password-reset or sign-in link, an
// API key or token in a URL, an OAuth code, a presigned URL's signature must not reach the
// security log or the dashboard, whoever reads them. Other parameters stay as sent: an
// attack's payload is what an event is read for. (CSP reports drop their URLs' queries
// whole: withoutQuery.)
func redactQuery(uri string) string {
	path, query, ok := strings.Cut(uri, "?")
	if !ok || !strings.Contains(query, "=") {
		return uri
	}
	var b strings.Builder
	changed := false
	for i, part := range strings.Split(query, "&") {
		if i > 0 {
			b.WriteByte('&')
		}
		if name, _, hasValue := strings.Cut(part, "="); hasValue && credentialParam(name) {
			b.WriteString(name + "=" + redactedValue)
			changed = true
			continue
		}
		b.WriteString(part)
	}
	if !changed {
		return uri
	}
	return path + "?" + b.String()
}

// credentialWords are parts of parameter names that hold credentials, compared with the name
// in lower case without separators (api_key, X-Amz-Signature, refresh-token, sessionId ...);
// credentialNames, whole names that would match too much as parts.
var (
	credentialWords = []string{"token", "secret", "password", "passwd", "apikey", "accesskey",
		"signature", "credential", "session", "auth", "jwt", "assertion"}
	credentialNames = []string{"key", "code", "sig", "sid", "pass", "pwd", "otp", "samlresponse"}
)

// credentialParam reports whether a query parameter's name (as sent: it may be escaped) says
// its value is a credential.
func credentialParam(name string) bool {
	if n, err := url.QueryUnescape(name); err == nil {
		name = n
	}
	folded := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			return r
		case r >= 'A' && r <= 'Z':
			return r + 'a' - 'A'
		}
		return -1 // separators and anything else
	}, name)
	for _, w := range credentialWords {
		if strings.Contains(folded, w) {
			return true
		}
	}
	for _, n := range credentialNames {
		if folded == n {
			return true
		}
	}
	return false
}
