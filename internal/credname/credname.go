// Package credname tells, by its name, whether a URL query parameter holds a credential: the
// one rule for what the security log redacts in request URIs and what Redis errors redact in
// the URLs they quote.
package credname

import (
	"net/url"
	"strings"
)

// words are parts of parameter names that hold credentials, compared with the name in lower
// case without separators (api_key, X-Amz-Signature, refresh-token, sessionId, db_pwd ...);
// names, whole names that would match too much as parts.
var (
	words = []string{"token", "secret", "password", "passwd", "passphrase", "pwd", "apikey",
		"accesskey", "privatekey", "signature", "credential", "session", "auth", "jwt", "assertion"}
	names = []string{"key", "code", "sig", "sid", "pass", "otp", "samlresponse"}
)

// Is reports whether a query parameter's name (as sent: it may be percent-encoded) says its
// value is a credential.
func Is(name string) bool {
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
	for _, w := range words {
		if strings.Contains(folded, w) {
			return true
		}
	}
	for _, n := range names {
		if folded == n {
			return true
		}
	}
	return false
}
