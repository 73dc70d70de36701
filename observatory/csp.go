package observatory

import "strings"

var dangerouslyBroad = map[string]bool{"ftp:": true, "http:": true, "https:": true, "*": true,
	"http://*": true, "http://*.*": true, "https://*": true, "https://*.*": true}

var unsafeInlineSources = map[string]bool{"'unsafe-inline'": true, "data:": true}

// parsePolicies reads Content-Security-Policy values: policies separated by commas (also
// across headers), directives by semicolons. As the Observatory's cspParser.js: a directive set
// by several policies keeps only the sources every policy allows (browsers enforce them all);
// one that only a policy after the first sets allows nothing ('none': a source counts only
// when the first policy has it too); a -src directive without sources is 'none', as in
// browsers; a directive name it does not know is kept (browsers ignore it). ok is false on a
// policy shorter than minPolicy (an empty one after a comma included), and, as the Observatory
// rules, on a directive repeated in one policy, although browsers keep its first value: only
// report-uri and report-to may repeat (their first value is kept, and dupReport says so).
func parsePolicies(values []string) (merged map[string][]string, dupReport, ok bool) {
	merged = map[string][]string{}
	index := 0 // of the policy, from 1
	for _, v := range values {
		for _, pol := range strings.Split(v, ",") {
			if len(strings.TrimSpace(strings.NewReplacer("\r", "", "\n", "").Replace(pol))) < minPolicy {
				return nil, false, false
			}
			index++
			seen := map[string]bool{}
			for _, d := range strings.Split(pol, ";") {
				f := strings.Fields(strings.ToLower(d))
				if len(f) == 0 {
					continue
				}
				name := f[0]
				if seen[name] {
					if name != "report-uri" && name != "report-to" {
						return nil, false, false
					}
					dupReport = true
					continue
				}
				seen[name] = true
				sources := f[1:]
				if len(sources) == 0 && strings.HasSuffix(name, "-src") {
					sources = []string{"'none'"}
				}
				switch prev, ok := merged[name]; {
				case ok:
					merged[name] = intersect(prev, sources)
				case index > 1:
					merged[name] = []string{"'none'"}
				default:
					merged[name] = append([]string{}, sources...)
				}
			}
		}
	}
	return merged, dupReport, true
}

// minPolicy is the shortest policy cspParser.js accepts: len("img-src") - 1.
const minPolicy = 6

func intersect(a, b []string) []string {
	in := map[string]bool{}
	for _, v := range b {
		in[v] = true
	}
	var out []string
	for _, v := range a {
		if in[v] {
			out = append(out, v)
		}
	}
	if len(out) == 0 {
		out = []string{"'none'"}
	}
	return out
}

func hasNonceOrHash(list []string) bool {
	for _, s := range list {
		for _, p := range []string{"'sha256-", "'sha384-", "'sha512-", "'nonce-"} {
			if strings.HasPrefix(s, p) {
				return true
			}
		}
	}
	return false
}

func without(list []string, drop func(string) bool) []string {
	var out []string
	for _, s := range list {
		if !drop(s) {
			out = append(out, s)
		}
	}
	return out
}

func sourcesOf(p map[string][]string, names ...string) []string {
	for _, n := range names {
		if v, ok := p[n]; ok {
			return append([]string{}, v...)
		}
	}
	return []string{"*"}
}

// cspTest follows the Observatory's order of checks: the first (worst) outcome found wins.
// It returns the enforced policy for the frame-ancestors check.
func cspTest(s *Scan) (Result, map[string][]string) {
	const t = TestCSP
	values := s.header("Content-Security-Policy")
	if len(values) == 0 || strings.TrimSpace(strings.Join(values, "")) == "" {
		if v, ok := s.lastValue("Content-Security-Policy-Report-Only"); ok && v != "" {
			return result(t, "csp-not-implemented-but-reporting-enabled"), nil
		}
		return result(t, "csp-not-implemented"), nil
	}
	p, dupReport, ok := parsePolicies(values)
	if !ok {
		return result(t, "csp-header-invalid"), nil
	}
	if len(p) == 0 {
		return result(t, "csp-not-implemented"), nil
	}
	objectSrc := sourcesOf(p, "object-src", "default-src")
	scriptSrc := sourcesOf(p, "script-src", "default-src")
	styleSrc := sourcesOf(p, "style-src", "default-src")
	// Browsers ignore 'unsafe-inline' next to a nonce or hash.
	if hasNonceOrHash(scriptSrc) {
		scriptSrc = without(scriptSrc, func(s string) bool { return s == "'unsafe-inline'" })
	}
	if hasNonceOrHash(styleSrc) {
		styleSrc = without(styleSrc, func(s string) bool { return s == "'unsafe-inline'" })
	}
	strictDynamic := false
	for _, v := range scriptSrc {
		strictDynamic = strictDynamic || v == "'strict-dynamic'"
	}
	if strictDynamic {
		if !hasNonceOrHash(scriptSrc) {
			return result(t, "csp-header-invalid"), p
		}
		// With 'strict-dynamic', browsers ignore host and scheme sources and 'self'.
		scriptSrc = without(scriptSrc, func(s string) bool {
			return s == "'self'" || s == "'unsafe-inline'" || dangerouslyBroad[s] ||
				strings.HasPrefix(s, "http:") || strings.HasPrefix(s, "https:") || strings.HasPrefix(s, "ftp:")
		})
	}
	https := s.Final != nil && s.Final.URL.Scheme == "https"
	var active, passive []string
	for _, name := range sortedKeys(p) {
		if name != "img-src" && name != "media-src" && name != "script-src" {
			active = append(active, p[name]...)
		}
	}
	active = append(active, scriptSrc...)
	for _, d := range []string{"img-src", "media-src"} {
		if v, ok := p[d]; ok {
			passive = append(passive, v...)
		} else {
			passive = append(passive, p["default-src"]...)
		}
	}
	insecure := func(list []string) bool {
		for _, s := range list {
			if strings.HasPrefix(s, "http:") || strings.HasPrefix(s, "ftp:") {
				return true
			}
		}
		return false
	}
	res := cspOutcome(p, scriptSrc, objectSrc, styleSrc, active, passive, https, insecure)
	switch res {
	case "csp-implemented-with-no-unsafe", "csp-implemented-with-no-unsafe-default-src-none",
		"csp-implemented-with-unsafe-inline-in-style-src-only", "csp-implemented-with-insecure-scheme-in-passive-content-only":
		// The outcomes the Observatory counts as passed give way to this one (modifier 0).
		if dupReport {
			res = "csp-implemented-but-duplicate-directives"
		}
	}
	return result(t, res), p
}

// cspOutcome is the first (worst) CSP outcome found, in the Observatory's order.
func cspOutcome(p map[string][]string, scriptSrc, objectSrc, styleSrc, active, passive []string, https bool, insecure func([]string) bool) string {
	switch {
	case anyIn(scriptSrc, dangerouslyBroad) || anyIn(scriptSrc, unsafeInlineSources) || anyIn(objectSrc, dangerouslyBroad):
		return "csp-implemented-with-unsafe-inline"
	case https && insecure(active):
		return "csp-implemented-with-insecure-scheme"
	case contains(scriptSrc, "'unsafe-eval'") || contains(styleSrc, "'unsafe-eval'"):
		return "csp-implemented-with-unsafe-eval"
	case https && insecure(passive):
		return "csp-implemented-with-insecure-scheme-in-passive-content-only"
	case anyIn(styleSrc, dangerouslyBroad) || anyIn(styleSrc, unsafeInlineSources):
		return "csp-implemented-with-unsafe-inline-in-style-src-only"
	}
	if d := p["default-src"]; len(d) == 1 && d[0] == "'none'" {
		return "csp-implemented-with-no-unsafe-default-src-none"
	}
	return "csp-implemented-with-no-unsafe"
}

func contains(list []string, v string) bool {
	for _, s := range list {
		if s == v {
			return true
		}
	}
	return false
}
