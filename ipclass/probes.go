package ipclass

import (
	"fmt"
	"path"
	"strings"
)

// DefaultProbePaths are requests no ordinary client of a modern web or API application
// makes: they come from scanners looking for secrets, version control, admin panels and old
// CGI. Replace the list (probe_paths_replace) for an application that serves one of them.
var DefaultProbePaths = []string{
	"/.env*", "/.git/*", "/.git", "/.svn/*", "/.hg/*", "/.aws/*", "/.ssh/*", "/.htaccess",
	"/.htpasswd", "/.DS_Store", "/.vscode/*", "/wp-admin*", "/wp-login.php", "/xmlrpc.php",
	"/phpmyadmin*", "/pma/*", "/cgi-bin/*", "/server-status*", "/vendor/phpunit/*", "/boaform/*",
	"/HNAP1*",
}

// ProbeMatcher matches request paths against probe patterns, ignoring ASCII case: `/x` exact,
// `/x*` prefix, `*x` suffix, `*x*` substring. Paths are cleaned first (`//.env`, `/a/../.env`).
type ProbeMatcher struct {
	exact    map[string]struct{}
	prefixes []string
	suffixes []string
	contains []string
	patterns []string
	// second holds, lowercased, the byte after the leading / of every exact and prefix
	// pattern: a path whose second byte is not in it matches none of them (most paths).
	second [256]bool
}

// maxProbePatterns bounds the configured list (each pattern is scanned per request).
const maxProbePatterns = 1000

// NewProbeMatcher compiles patterns.
func NewProbeMatcher(patterns []string) (*ProbeMatcher, error) {
	if len(patterns) > maxProbePatterns {
		return nil, fmt.Errorf("%d probe paths: at most %d", len(patterns), maxProbePatterns)
	}
	m := &ProbeMatcher{exact: make(map[string]struct{}), patterns: patterns}
	for _, p := range patterns {
		lp := strings.ToLower(p)
		lead, trail := strings.HasPrefix(lp, "*"), strings.HasSuffix(lp, "*")
		core := strings.Trim(lp, "*")
		switch {
		case core == "" || strings.Contains(core, "*"):
			return nil, fmt.Errorf("probe path %q: expected /exact, /prefix*, *suffix or *substring* (one * at either end)", p)
		case !lead && !strings.HasPrefix(core, "/"):
			return nil, fmt.Errorf("probe path %q: must start with / (or * for a suffix or substring)", p)
		case lead && trail:
			m.contains = append(m.contains, core)
		case lead:
			m.suffixes = append(m.suffixes, core)
		case trail:
			m.prefixes = append(m.prefixes, core)
			m.second[secondByte(core)] = true
		default:
			m.exact[core] = struct{}{}
			m.second[secondByte(core)] = true
		}
	}
	return m, nil
}

// Patterns returns the patterns the matcher was built from.
func (m *ProbeMatcher) Patterns() []string { return m.patterns }

// Match reports whether the decoded request path is a probe.
func (m *ProbeMatcher) Match(p string) bool {
	if m == nil || p == "" {
		return false
	}
	p = path.Clean(p) // allocates only when the path was not clean
	if m.second[secondByte(p)] {
		return m.matchAnchored(p) || m.matchUnanchored(p)
	}
	return m.matchUnanchored(p)
}

// secondByte is the lowercased byte after the leading /, or 0 for "/".
func secondByte(p string) byte {
	if len(p) < 2 {
		return 0
	}
	c := p[1]
	if 'A' <= c && c <= 'Z' {
		c += 'a' - 'A'
	}
	return c
}

// matchAnchored tries the exact and prefix patterns.
func (m *ProbeMatcher) matchAnchored(p string) bool {
	var buf [256]byte
	if len(p) <= len(buf) {
		b := buf[:len(p)]
		for i := 0; i < len(p); i++ {
			c := p[i]
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			b[i] = c
		}
		if _, ok := m.exact[string(b)]; ok { // no allocation for a map lookup
			return true
		}
	} else if _, ok := m.exact[strings.ToLower(p)]; ok {
		return true
	}
	for _, x := range m.prefixes {
		if len(p) >= len(x) && strings.EqualFold(p[:len(x)], x) {
			return true
		}
	}
	return false
}

// matchUnanchored tries the suffix and substring patterns.
func (m *ProbeMatcher) matchUnanchored(p string) bool {
	for _, x := range m.suffixes {
		if len(p) >= len(x) && strings.EqualFold(p[len(p)-len(x):], x) {
			return true
		}
	}
	for _, x := range m.contains {
		if containsFold(p, x) {
			return true
		}
	}
	return false
}

func containsFold(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if strings.EqualFold(s[i:i+len(sub)], sub) {
			return true
		}
	}
	return false
}
