package observatory

import (
	"errors"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
)

// Response is one HTTP response the scan saw.
type Response struct {
	URL    *url.URL
	Status int
	Header http.Header
}

// Scan is what the grader reads: the http:// request's redirect chain and the response it
// grades (the https:// one when the site answers on HTTPS, else the http:// one).
type Scan struct {
	// HTTPChain is every response from the http:// URL to the end of its redirects; empty
	// when nothing answered on HTTP.
	HTTPChain []Response
	// HTTPInvalidCert is set when the HTTP chain reached an https:// URL with an untrusted
	// certificate.
	HTTPInvalidCert bool
	// Final is the graded response; nil when the site answered neither way.
	Final *Response
	// HTTPS reports whether Final came over HTTPS with a trusted certificate.
	HTTPS bool
	// InvalidCert reports that HTTPS answered with an untrusted certificate.
	InvalidCert bool
	// RedirectErr is why the https:// URL the http:// chain redirected to could not be
	// fetched (a *CertError for an untrusted certificate), or the chain's *RedirectError when
	// its redirects loop or never end, for the report's reader; nil when the chain ended on a
	// response.
	RedirectErr error
	// Body is the start of Final's body (for SRI), bounded by the fetcher.
	Body []byte
	// Cookies are the raw Set-Cookie values of every response seen.
	Cookies []string
	// Origin is the Origin header the scan sent, to detect a reflected Access-Control-Allow-Origin.
	Origin string
}

// Result is one test's outcome.
type Result struct {
	Test     string `json:"test"`
	Result   string `json:"result"`
	Modifier int    `json:"modifier"`
	Pass     bool   `json:"pass"`
	Fix      string `json:"fix,omitempty"`
}

// Report is the grade of one scan.
type Report struct {
	URL     string   `json:"url"`
	Score   int      `json:"score"`
	Grade   string   `json:"grade"`
	Results []Result `json:"results"`
	// Status is the graded response's status code. The Observatory grades only a 2xx one (it
	// refuses the scan with "Site did not respond with a 2xx HTTP status code").
	Status int `json:"status"`
	// Note says why the redirect's https:// target was not graded (Scan.RedirectErr), or that
	// the Observatory would not grade a response that is not 2xx.
	Note string `json:"note,omitempty"`
}

// Graded2xx reports whether the Observatory would grade the response: a 2xx status.
func (r Report) Graded2xx() bool { return r.Status >= 200 && r.Status <= 299 }

// Analyze runs every test on the scan and totals the score.
func Analyze(s *Scan) Report {
	cspRes, policy := cspTest(s)
	hstsRes := hstsTest(s)
	results := []Result{
		cspRes,
		cookiesTest(s, hstsRes.Result == "hsts-implemented-max-age-at-least-six-months"),
		corsTest(s),
		corpTest(s),
		redirectionTest(s),
		referrerTest(s),
		hstsRes,
		sriTest(s),
		contentTypeTest(s),
		frameOptionsTest(s, policy),
	}
	rep := Report{Results: results, Score: Score(results)}
	rep.Grade = Grade(rep.Score)
	if s.Final != nil {
		rep.URL = s.Final.URL.String()
		rep.Status = s.Final.Status
	}
	if s.RedirectErr != nil {
		rep.Note = s.RedirectErr.Error()
	}
	return rep
}

// result looks the outcome up in the score table. Pass means no penalty.
func result(test, name string) Result {
	r, ok := scoreTable[name]
	if !ok {
		panic("observatory: no score for " + name)
	}
	return Result{Test: test, Result: name, Modifier: r.modifier, Pass: r.modifier >= 0, Fix: r.fix}
}

func (s *Scan) header(name string) []string {
	if s.Final == nil {
		return nil
	}
	return s.Final.Header.Values(name)
}

// lastValue is the header's effective value when it is sent once; "" when absent.
func (s *Scan) lastValue(name string) (string, bool) {
	v := s.header(name)
	if len(v) == 0 {
		return "", false
	}
	return strings.TrimSpace(strings.Join(v, ",")), true
}

func hstsTest(s *Scan) Result {
	const t = TestHSTS
	switch {
	case s.InvalidCert:
		return result(t, "hsts-invalid-cert")
	case !s.HTTPS:
		return result(t, "hsts-not-implemented-no-https")
	}
	v, ok := s.lastValue("Strict-Transport-Security")
	if !ok {
		return result(t, "hsts-not-implemented")
	}
	// The Observatory refuses a header sent twice (the values joined by a comma), although
	// browsers would honour the first.
	if strings.Contains(v, ",") {
		return result(t, "hsts-header-invalid")
	}
	age := int64(-1)
	for _, part := range strings.Split(v, ";") {
		k, val, _ := strings.Cut(strings.TrimSpace(part), "=")
		if strings.EqualFold(strings.TrimSpace(k), "max-age") {
			n, err := strconv.ParseInt(strings.Trim(strings.TrimSpace(val), `"`), 10, 64)
			if err != nil || n < 0 {
				return result(t, "hsts-header-invalid")
			}
			age = n
		}
	}
	switch {
	case age < 0:
		return result(t, "hsts-header-invalid")
	case age < hstsSixMonths:
		return result(t, "hsts-implemented-max-age-less-than-six-months")
	}
	return result(t, "hsts-implemented-max-age-at-least-six-months")
}

// hstsSixMonths is the Observatory's threshold: 180 days, below the 15768000 its table names,
// because so many sites send 15552000.
const hstsSixMonths = 15552000

func redirectionTest(s *Scan) Result {
	const t = TestRedirection
	route := s.HTTPChain
	switch {
	case len(route) == 0:
		return result(t, "redirection-not-needed-no-http")
	case s.HTTPInvalidCert:
		return result(t, "redirection-invalid-cert")
	case errors.As(s.RedirectErr, new(*RedirectError)):
		return result(t, "redirection-loop")
	case s.RedirectErr != nil: // a browser following the redirect gets an error page
		return result(t, "redirection-target-unreachable")
	case len(route) == 1:
		return result(t, "redirection-missing")
	case route[len(route)-1].URL.Scheme != "https":
		return result(t, "redirection-not-to-https")
	case route[1].URL.Scheme == "http":
		return result(t, "redirection-not-to-https-on-initial-redirection")
	case route[0].URL.Scheme == "http" && route[1].URL.Scheme == "https" && route[0].URL.Hostname() != route[1].URL.Hostname():
		return result(t, "redirection-off-host-from-http")
	}
	return result(t, "redirection-to-https")
}

var privateReferrer = map[string]bool{"no-referrer": true, "same-origin": true, "strict-origin": true, "strict-origin-when-cross-origin": true}
var unsafeReferrer = map[string]bool{"origin": true, "origin-when-cross-origin": true, "unsafe-url": true, "no-referrer-when-downgrade": true}

// referrerTest reads the last recognised token, as browsers do with a comma list.
func referrerTest(s *Scan) Result {
	const t = TestReferrer
	v, ok := s.lastValue("Referrer-Policy")
	if !ok {
		return result(t, "referrer-policy-not-implemented")
	}
	effective := ""
	for _, tok := range strings.Split(strings.ToLower(v), ",") {
		tok = strings.TrimSpace(tok)
		if privateReferrer[tok] || unsafeReferrer[tok] {
			effective = tok
		}
	}
	switch {
	case privateReferrer[effective]:
		return result(t, "referrer-policy-private")
	case unsafeReferrer[effective]:
		return result(t, "referrer-policy-unsafe")
	}
	return result(t, "referrer-policy-header-invalid")
}

func contentTypeTest(s *Scan) Result {
	const t = TestContentType
	v, ok := s.lastValue("X-Content-Type-Options")
	switch {
	case !ok:
		return result(t, "x-content-type-options-not-implemented")
	case strings.EqualFold(v, "nosniff"): // sent twice ("nosniff, nosniff") is invalid, as in the Observatory
		return result(t, "x-content-type-options-nosniff")
	}
	return result(t, "x-content-type-options-header-invalid")
}

func frameOptionsTest(s *Scan, policy map[string][]string) Result {
	const t = TestFrameOptions
	// Any frame-ancestors counts, even * (the Observatory checks only that it is set).
	if _, ok := policy["frame-ancestors"]; ok {
		return result(t, "x-frame-options-implemented-via-csp")
	}
	v, ok := s.lastValue("X-Frame-Options")
	if !ok {
		return result(t, "x-frame-options-not-implemented")
	}
	lv := strings.ToLower(v)
	switch {
	case lv == "deny" || lv == "sameorigin":
		return result(t, "x-frame-options-sameorigin-or-deny")
	case strings.HasPrefix(lv, "allow-from "):
		return result(t, "x-frame-options-allow-from-origin")
	}
	return result(t, "x-frame-options-header-invalid")
}

func corpTest(s *Scan) Result {
	const t = TestCORP
	v, ok := s.lastValue("Cross-Origin-Resource-Policy")
	if !ok {
		return result(t, "cross-origin-resource-policy-not-implemented")
	}
	switch strings.ToLower(v) {
	case "same-origin":
		return result(t, "cross-origin-resource-policy-implemented-with-same-origin")
	case "same-site":
		return result(t, "cross-origin-resource-policy-implemented-with-same-site")
	case "cross-origin":
		return result(t, "cross-origin-resource-policy-implemented-with-cross-origin")
	}
	return result(t, "cross-origin-resource-policy-header-invalid")
}

// corsTest: the scan sends an Origin; reflecting it with credentials allowed is universal
// access (any site reads the user's responses).
func corsTest(s *Scan) Result {
	const t = TestCORS
	acao, ok := s.lastValue("Access-Control-Allow-Origin")
	if !ok {
		return result(t, "cross-origin-resource-sharing-not-implemented")
	}
	creds, _ := s.lastValue("Access-Control-Allow-Credentials")
	switch {
	case acao == "*":
		return result(t, "cross-origin-resource-sharing-implemented-with-public-access")
	case s.Origin != "" && acao == s.Origin && strings.EqualFold(creds, "true"):
		return result(t, "cross-origin-resource-sharing-implemented-with-universal-access")
	}
	return result(t, "cross-origin-resource-sharing-implemented-with-restricted-access")
}

func anyIn(list []string, set map[string]bool) bool {
	for _, v := range list {
		if set[v] {
			return true
		}
	}
	return false
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
