package caddymodule

import (
	"strings"

	"github.com/swarmsec/caddy-hardening/internal/credname"
)

// redactedValue replaces the value of a credential parameter in a logged URI.
const redactedValue = "REDACTED"

// redactQuery replaces, in a request URI, the value of every query parameter whose name says
// it holds a credential (credname.Is) with REDACTED: a password-reset or sign-in link, an
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
		if name, _, hasValue := strings.Cut(part, "="); hasValue && credname.Is(name) {
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
