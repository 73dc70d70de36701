package csp

import (
	"slices"
	"strings"
)

// Reading a policy as a response carries it, whoever wrote it (another handler, an upstream):
// leniently, as a browser does, with no validation.

// Nonces returns the distinct nonces a serialized policy lists (its 'nonce-<value>' sources,
// the keyword in any case), in order.
func Nonces(policy string) []string {
	var out []string
	for f := range strings.FieldsFuncSeq(policy, isPolicySeparator) {
		if len(f) > len("'nonce-'") && strings.EqualFold(f[:len("'nonce-")], "'nonce-") && f[len(f)-1] == '\'' {
			if v := f[len("'nonce-") : len(f)-1]; !slices.Contains(out, v) {
				out = append(out, v)
			}
		}
	}
	return out
}

// FrameOptionsOf returns the X-Frame-Options value that says what the frame-ancestors of the
// policies say together (a response's policies all apply: the strictest wins), and whether
// any of them has frame-ancestors. The value is DENY for 'none' (or no source), SAMEORIGIN
// for 'self' alone, and "" for a list of hosts, which X-Frame-Options cannot express. Each
// policy's first frame-ancestors counts (browsers ignore a repeated directive).
func FrameOptionsOf(policies []string) (string, bool) {
	best, found := "", false
	for _, p := range policies {
		values, ok := directiveOf(p, "frame-ancestors")
		if !ok {
			continue
		}
		v := "DENY" // no source matches no ancestor
		if len(values) > 0 {
			v = FrameOptionsFor(Policy{Directives: []Directive{{Name: "frame-ancestors", Values: values}}})
		}
		if !found || strictness(v) > strictness(best) {
			best, found = v, true
		}
	}
	return best, found
}

// strictness orders X-Frame-Options values: none (a list of hosts), SAMEORIGIN, DENY.
func strictness(xfo string) int {
	switch xfo {
	case "DENY":
		return 2
	case "SAMEORIGIN":
		return 1
	}
	return 0
}

// directiveOf returns the values of the policy's first directive of that name.
func directiveOf(policy, name string) ([]string, bool) {
	for part := range strings.SplitSeq(policy, ";") {
		fields := strings.Fields(part)
		if len(fields) > 0 && strings.EqualFold(fields[0], name) {
			return fields[1:], true
		}
	}
	return nil, false
}

func isPolicySeparator(r rune) bool {
	return r == ';' || r == ' ' || r == '\t' || r == '\n' || r == '\r' || r == '\f'
}
