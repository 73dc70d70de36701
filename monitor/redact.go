package monitor

import (
	"regexp"
	"strings"
	"unicode/utf8"
)

// maxOutput bounds an output message: error texts can quote whatever a dependency answered.
const maxOutput = 300

// userinfo matches the password of scheme://user:password@ anywhere in a text.
var userinfo = regexp.MustCompile(`([a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)[^@\s]*@`)

// keyword matches password=... in a libpq keyword/value connection string.
var keyword = regexp.MustCompile(`(?i)(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)`)

// Redact removes credentials from a message: URL passwords, password=... pairs and every
// given secret, then bounds its length. Every output a check records goes through it.
func Redact(msg string, secrets ...string) string {
	for _, s := range secrets {
		if s != "" {
			msg = strings.ReplaceAll(msg, s, "xxxxx")
		}
	}
	msg = userinfo.ReplaceAllString(msg, "${1}xxxxx@")
	msg = keyword.ReplaceAllString(msg, "${1}xxxxx")
	if len(msg) > maxOutput {
		cut := maxOutput
		for cut > 0 && !utf8.RuneStart(msg[cut]) { // not inside a character: JSON and logs would show U+FFFD
			cut--
		}
		msg = msg[:cut] + "..."
	}
	return msg
}
