package csp

import (
	"fmt"
	"net/url"
	"strings"
)

// ValidatePermissionsPolicy checks a Permissions-Policy value as browsers read it: a
// structured-field dictionary (RFC 8941) of `feature=(allowlist)` members. A value that is not
// one (a capital letter in a feature name, `;` between members) makes Chromium ignore the whole
// header, every feature it names included; an allowlist member other than `*`, `self` or a
// quoted origin is dropped from the allowlist. Both are refused here, as is a feature
// named twice (the last one silently wins).
func ValidatePermissionsPolicy(v string) error {
	p := ppParser{s: strings.Trim(v, " ")}
	seen := map[string]bool{}
	if p.s == "" {
		return fmt.Errorf("permissions_policy is empty; expected feature=(allowlist), e.g. camera=() or geolocation=(self \"https://maps.example\")")
	}
	for {
		start := p.i
		name, err := p.key()
		if err != nil {
			return p.itemErr(start, err)
		}
		if seen[name] {
			return fmt.Errorf("permissions_policy: %s is given twice (browsers keep the last one only); give each feature once", name)
		}
		seen[name] = true
		if !p.eat('=') {
			return p.itemErr(start, fmt.Errorf("expected feature=(allowlist)"))
		}
		if err := p.allowlist(name); err != nil {
			return p.itemErr(start, err)
		}
		if err := p.params(); err != nil {
			return p.itemErr(start, err)
		}
		p.ows()
		if p.done() {
			return nil
		}
		if !p.eat(',') {
			return p.itemErr(start, fmt.Errorf("expected \",\" between features, found %q (Chromium then ignores the whole header)", p.s[p.i]))
		}
		p.ows()
		if p.done() {
			return fmt.Errorf("permissions_policy ends with \",\"; Chromium then ignores the whole header")
		}
	}
}

// ppParser reads an RFC 8941 dictionary, keeping what Permissions-Policy needs.
type ppParser struct {
	s string
	i int
}

func (p *ppParser) done() bool { return p.i >= len(p.s) }

func (p *ppParser) eat(c byte) bool {
	if !p.done() && p.s[p.i] == c {
		p.i++
		return true
	}
	return false
}

func (p *ppParser) ows() {
	for !p.done() && (p.s[p.i] == ' ' || p.s[p.i] == '\t') {
		p.i++
	}
}

// itemErr names the member the error is in, from its first byte to the next comma.
func (p *ppParser) itemErr(start int, err error) error {
	item, _, _ := strings.Cut(p.s[start:], ",")
	return fmt.Errorf("permissions_policy item %q: %v; e.g. camera=() or geolocation=(self \"https://maps.example\")", strings.TrimSpace(item), err)
}

// key reads an RFC 8941 key: a lower-case letter or *, then lower-case letters, digits, _ - . *.
func (p *ppParser) key() (string, error) {
	start := p.i
	for !p.done() {
		c := p.s[p.i]
		if c >= 'a' && c <= 'z' || c == '*' || p.i > start && (c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			p.i++
			continue
		}
		if c >= 'A' && c <= 'Z' {
			return "", fmt.Errorf("feature names are lower case (browsers ignore the whole header otherwise)")
		}
		break
	}
	if p.i == start {
		return "", fmt.Errorf("expected a feature name")
	}
	return p.s[start:p.i], nil
}

// allowlist reads `*`, `self`, a quoted origin, or an inner list of them.
func (p *ppParser) allowlist(feature string) error {
	if !p.eat('(') {
		return p.member(feature)
	}
	members := map[string]bool{} // bounded by the configured value
	for {
		for p.eat(' ') {
		}
		if p.eat(')') {
			return nil
		}
		if p.done() {
			return fmt.Errorf("the allowlist has no closing \")\"")
		}
		start := p.i
		if err := p.member(feature); err != nil {
			return err
		}
		// Origins compare as browsers parse them (scheme and host in any case); a repeat
		// changes nothing and is a slip.
		if m := strings.ToLower(p.s[start:p.i]); members[m] {
			return fmt.Errorf("%s is given twice in the allowlist; give each member once", p.s[start:p.i])
		} else {
			members[m] = true
		}
		if err := p.params(); err != nil {
			return err
		}
		if !p.done() && p.s[p.i] != ' ' && p.s[p.i] != ')' {
			return fmt.Errorf("expected a space or \")\" after an allowlist member, found %q", p.s[p.i])
		}
	}
}

// member reads one allowlist member.
func (p *ppParser) member(feature string) error {
	if p.eat('"') {
		start := p.i
		for !p.done() && p.s[p.i] != '"' {
			c := p.s[p.i]
			if c == '\\' || c < 0x20 || c > 0x7e {
				return fmt.Errorf("an origin in quotes is printable ASCII without escapes")
			}
			p.i++
		}
		if !p.eat('"') {
			return fmt.Errorf("a quoted origin has no closing quote")
		}
		return validPermissionsOrigin(p.s[start : p.i-1])
	}
	start := p.i
	for !p.done() && !strings.ContainsRune(" ),;\t(\"", rune(p.s[p.i])) {
		p.i++
	}
	switch tok := p.s[start:p.i]; tok {
	case "*", "self":
		return nil
	case "src":
		return fmt.Errorf("src belongs in an <iframe allow> attribute; the header takes *, self or quoted origins")
	case "":
		return fmt.Errorf("expected an allowlist: (), (self), (self \"https://origin\"), * or self")
	case "none", "'none'":
		return fmt.Errorf("%s is not an allowlist member: write %s=() to allow no one", tok, feature)
	case "'self'", "'src'":
		return fmt.Errorf("write %s without quotes", strings.Trim(tok, "'"))
	default:
		if strings.Contains(tok, "://") {
			return fmt.Errorf("origin %s must be in double quotes (\"%s\"); browsers drop it otherwise", tok, tok)
		}
		return fmt.Errorf("%q is not an allowlist member: expected *, self or a quoted origin (\"https://example.com\")", tok)
	}
}

// params reads RFC 8941 parameters (`;report-to=endpoint`), which Permissions-Policy allows.
func (p *ppParser) params() error {
	for p.eat(';') {
		for p.eat(' ') {
		}
		if _, err := p.key(); err != nil {
			return fmt.Errorf("bad parameter after \";\" (%v); features are separated by \",\"", err)
		}
		if !p.eat('=') {
			continue
		}
		if p.eat('"') {
			for !p.done() && p.s[p.i] != '"' {
				p.i++
			}
			if !p.eat('"') {
				return fmt.Errorf("a quoted parameter value has no closing quote")
			}
			continue
		}
		start := p.i
		for !p.done() && !strings.ContainsRune(" ),;\t(\"", rune(p.s[p.i])) {
			p.i++
		}
		if p.i == start {
			return fmt.Errorf("a parameter's value is a token or a quoted string; features are separated by \",\"")
		}
	}
	return nil
}

// validPermissionsOrigin accepts what browsers take as an allowlist origin: scheme://host[:port]
// (a leading *. in the host is a wildcard), with nothing after it but an optional "/".
func validPermissionsOrigin(o string) error {
	u, err := url.Parse(strings.Replace(o, "://*.", "://wildcard.", 1))
	if o == "*" {
		return fmt.Errorf("write * without quotes")
	}
	if err != nil || u.Scheme == "" || u.Host == "" || u.Opaque != "" || u.User != nil {
		return fmt.Errorf("%q is not an origin: expected \"https://example.com\" (scheme, host, optional port)", o)
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("%q: an allowlist names origins; browsers ignore what follows the host and port", o)
	}
	return nil
}
