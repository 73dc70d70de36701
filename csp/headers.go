package csp

import (
	"fmt"
	"strconv"
	"strings"
)

// HSTSPreloadMinAge is the shortest max-age hstspreload.org accepts: one year.
const HSTSPreloadMinAge = 31536000

// HSTS is a Strict-Transport-Security value.
type HSTS struct {
	MaxAge            int64
	IncludeSubDomains bool
	Preload           bool
}

// ParseHSTS reads the tokens of an HSTS value: `max-age=<seconds>`, `includeSubDomains`,
// `preload` (case-insensitive, in any order), and validates them.
func ParseHSTS(tokens []string) (HSTS, error) {
	var h HSTS
	haveAge := false
	seen := map[string]bool{}
	for _, t := range tokens {
		lt := strings.ToLower(strings.TrimSuffix(t, ";"))
		name, _, _ := strings.Cut(lt, "=")
		if seen[name] {
			// RFC 6797 6.1: a browser ignores a header with a directive twice.
			return HSTS{}, fmt.Errorf("hsts: %s is given twice; expected each of max-age=<seconds>, includeSubDomains, preload at most once", t)
		}
		seen[name] = true
		switch {
		case strings.HasPrefix(lt, "max-age="):
			n, err := strconv.ParseInt(lt[len("max-age="):], 10, 64)
			if err != nil || n < 0 {
				return HSTS{}, fmt.Errorf("hsts %s: max-age must be a number of seconds", t)
			}
			h.MaxAge, haveAge = n, true
		case lt == "includesubdomains":
			h.IncludeSubDomains = true
		case lt == "preload":
			h.Preload = true
		default:
			return HSTS{}, fmt.Errorf("hsts: unknown token %q; expected max-age=<seconds>, includeSubDomains, preload", t)
		}
	}
	if !haveAge {
		return HSTS{}, fmt.Errorf("hsts needs max-age=<seconds>")
	}
	return h, h.Validate()
}

// Validate applies the preload list's rules: preload needs includeSubDomains and a max-age of
// at least a year; without them hstspreload.org refuses the domain and the header promises
// what will not happen.
func (h HSTS) Validate() error {
	if h.MaxAge < 0 {
		return fmt.Errorf("hsts max-age must not be negative")
	}
	if h.Preload && !h.IncludeSubDomains {
		return fmt.Errorf("hsts preload requires includeSubDomains (the preload list covers every subdomain)")
	}
	if h.Preload && h.MaxAge < HSTSPreloadMinAge {
		return fmt.Errorf("hsts preload requires max-age of at least %d (one year); got %d", HSTSPreloadMinAge, h.MaxAge)
	}
	return nil
}

// String is the header value.
func (h HSTS) String() string {
	s := "max-age=" + strconv.FormatInt(h.MaxAge, 10)
	if h.IncludeSubDomains {
		s += "; includeSubDomains"
	}
	if h.Preload {
		s += "; preload"
	}
	return s
}

// The values each header accepts (lower case; compared case-insensitively).
var (
	FrameOptionsValues   = []string{"DENY", "SAMEORIGIN"}
	ReferrerPolicyValues = []string{"no-referrer", "no-referrer-when-downgrade", "origin", "origin-when-cross-origin",
		"same-origin", "strict-origin", "strict-origin-when-cross-origin", "unsafe-url"}
	COOPValues = []string{"same-origin", "same-origin-allow-popups", "noopener-allow-popups", "unsafe-none"}
	CORPValues = []string{"same-origin", "same-site", "cross-origin"}
	COEPValues = []string{"require-corp", "credentialless", "unsafe-none"}
)

// OneOf returns the canonical spelling of v from allowed (case-insensitive) or an error that
// lists them.
func OneOf(header, v string, allowed []string) (string, error) {
	for _, a := range allowed {
		if strings.EqualFold(a, v) {
			return a, nil
		}
	}
	return "", fmt.Errorf("%s %q: expected one of %s", header, v, strings.Join(allowed, ", "))
}

// FrameOptionsFor returns the X-Frame-Options value that says what the policy's frame-ancestors
// says (DENY for 'none', SAMEORIGIN for 'self' alone), or "" when it says something X-Frame-
// Options cannot express (other hosts) or nothing at all.
func FrameOptionsFor(p Policy) string {
	v, ok := p.Get("frame-ancestors")
	if !ok || len(v) != 1 {
		return ""
	}
	switch strings.ToLower(v[0]) {
	case "'none'":
		return "DENY"
	case "'self'":
		return "SAMEORIGIN"
	}
	return ""
}

// DefaultPermissionsPolicy turns off the powerful features an application rarely needs.
const DefaultPermissionsPolicy = "accelerometer=(), camera=(), geolocation=(), gyroscope=(), magnetometer=(), microphone=(), payment=(), usb=()"
