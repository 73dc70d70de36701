// Package textcut bounds strings an attacker controls for logs and displays.
package textcut

import "unicode/utf8"

// Cut returns s cut to at most n bytes, never inside a UTF-8 character: a character that
// would straddle n is left out whole (a JSON log would show half of it as U+FFFD). Bytes that
// are not UTF-8 are cut like any other, and the walk back is at most three bytes, so a run of
// stray continuation bytes does not shorten the result further.
func Cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	j := n
	for j > 0 && n-j < utf8.UTFMax-1 && !utf8.RuneStart(s[j]) {
		j--
	}
	if _, size := utf8.DecodeRuneInString(s[j:]); j < n && size > 1 && j+size > n {
		return s[:j]
	}
	return s[:n]
}
