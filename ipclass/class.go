// Package ipclass classifies client IPs as trusted, default or suspicious: static CIDR lists,
// and clients detected from what they send (probe paths, blocked traversal, bursts of errors).
// It imports nothing from Caddy.
package ipclass

import "fmt"

// Class is what the edge thinks of a client IP. Modules pick their limits and actions by it.
type Class uint8

// The classes, in increasing order of suspicion. Precedence when several apply: a trusted
// prefix wins over everything, then a static suspicious prefix, then a detection; any other
// address is Default.
const (
	Default Class = iota
	Trusted
	Suspicious
)

var classNames = [...]string{Default: "default", Trusted: "trusted", Suspicious: "suspicious"}

// String is the class name used in configuration, placeholders, logs and metrics.
func (c Class) String() string {
	if int(c) < len(classNames) {
		return classNames[c]
	}
	return fmt.Sprintf("class(%d)", uint8(c))
}

// ParseClass reads a class name: trusted, default or suspicious.
func ParseClass(s string) (Class, error) {
	for i, name := range classNames {
		if s == name {
			return Class(i), nil
		}
	}
	return Default, fmt.Errorf("unknown IP class %q: expected trusted, default or suspicious", s)
}
