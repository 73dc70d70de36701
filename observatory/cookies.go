package observatory

import (
	"net/http"
	"slices"
	"strings"
)

// cookieBadness orders the cookie outcomes from least to most severe; the worst found wins.
var cookieBadness = []string{
	"cookies-without-secure-flag-but-protected-by-hsts",
	"cookies-without-secure-flag",
	"cookies-session-without-secure-flag-but-protected-by-hsts",
	"cookies-samesite-flag-invalid",
	"cookies-anticsrf-without-samesite-flag",
	"cookies-session-without-httponly-flag",
	"cookies-session-without-secure-flag",
}

// worseOf returns whichever of a and b comes later in order (outcomes listed best to worst).
func worseOf(order []string, a, b string) string {
	if slices.Index(order, b) > slices.Index(order, a) {
		return b
	}
	return a
}

// ignoredCookies are left out as the Observatory leaves them out (COOKIES_TO_DELETE in
// cookies.js): Heroku's router sets heroku-session-affinity, which the application cannot flag.
var ignoredCookies = map[string]bool{"heroku-session-affinity": true}

// cookiesTest applies the Observatory's cookie rules: names with "login" or "sess" are
// session cookies, names with "csrf" anti-CSRF tokens.
func cookiesTest(s *Scan, hsts bool) Result {
	const t = TestCookies
	outcome, missingSameSite, found := "", false, 0
	for _, raw := range s.Cookies {
		if invalidSameSite(raw) {
			outcome = worseOf(cookieBadness, outcome, "cookies-samesite-flag-invalid")
		}
		c, err := http.ParseSetCookie(raw)
		if err != nil || ignoredCookies[c.Name] {
			continue
		}
		found++
		name := strings.ToLower(c.Name)
		session := strings.Contains(name, "login") || strings.Contains(name, "sess")
		csrf := strings.Contains(name, "csrf")
		sameSiteSet := c.SameSite != 0 // 0: no SameSite attribute; an unknown value parses as SameSiteDefaultMode
		if !c.Secure && c.SameSite == http.SameSiteNoneMode {
			outcome = worseOf(cookieBadness, outcome, "cookies-samesite-flag-invalid")
		}
		if !c.Secure {
			if hsts {
				outcome = worseOf(cookieBadness, outcome, "cookies-without-secure-flag-but-protected-by-hsts")
			} else {
				outcome = worseOf(cookieBadness, outcome, "cookies-without-secure-flag")
			}
		}
		if csrf && !sameSiteSet {
			outcome = worseOf(cookieBadness, outcome, "cookies-anticsrf-without-samesite-flag")
		}
		if session && !c.Secure {
			if hsts {
				outcome = worseOf(cookieBadness, outcome, "cookies-session-without-secure-flag-but-protected-by-hsts")
			} else {
				outcome = worseOf(cookieBadness, outcome, "cookies-session-without-secure-flag")
			}
		}
		if session && !c.HttpOnly {
			outcome = worseOf(cookieBadness, outcome, "cookies-session-without-httponly-flag")
		}
		missingSameSite = missingSameSite || !sameSiteSet
	}
	switch {
	case found == 0: // none, or none a cookie jar keeps: the Observatory reads the jar
		return result(t, "cookies-not-found")
	case outcome != "":
		return result(t, outcome)
	case missingSameSite:
		return result(t, "cookies-secure-with-httponly-sessions")
	}
	return result(t, "cookies-secure-with-httponly-sessions-and-samesite")
}

// invalidSameSite reports a SameSite attribute without a value or with one other than Lax,
// Strict or None.
func invalidSameSite(raw string) bool {
	for _, part := range strings.Split(raw, ";")[1:] {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		if strings.EqualFold(strings.TrimSpace(k), "samesite") {
			switch strings.ToLower(strings.TrimSpace(v)) {
			case "lax", "strict", "none":
			default:
				return true
			}
		}
	}
	return false
}
