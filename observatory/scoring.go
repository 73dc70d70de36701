// Package observatory grades a live HTTP response with the scoring rules the MDN HTTP
// Observatory publishes (github.com/mdn/mdn-http-observatory, src/grader/charts.js and
// src/analyzer/tests): every site starts at 100, penalties are deducted, bonuses are added
// only when the result is 90 or more, the score never falls below 0, and the letter grade is
// read from the score rounded down to a multiple of 5.
//
// Two results need the Chromium HSTS preload list, which this package does not carry:
// hsts-preloaded (+5) and redirection-all-redirects-preloaded are never reported; a preloaded
// site is graded on its headers like any other.
package observatory

// Test names, as the Observatory calls them.
const (
	TestCSP          = "content-security-policy"
	TestCookies      = "cookies"
	TestCORS         = "cross-origin-resource-sharing"
	TestCORP         = "cross-origin-resource-policy"
	TestRedirection  = "redirection"
	TestReferrer     = "referrer-policy"
	TestHSTS         = "strict-transport-security"
	TestSRI          = "subresource-integrity"
	TestContentType  = "x-content-type-options"
	TestFrameOptions = "x-frame-options"
)

// Tests lists the tests in the order the Observatory reports them.
var Tests = []string{TestCSP, TestCookies, TestCORS, TestCORP, TestRedirection, TestReferrer, TestHSTS, TestSRI, TestContentType, TestFrameOptions}

// rule is one row of the Observatory's score table: the modifier and the fix it recommends.
type rule struct {
	modifier int
	fix      string
}

// scoreTable is the Observatory's SCORE_TABLE (charts.js), with its recommendations reworded
// as the fix a caddy-hardening user applies.
var scoreTable = map[string]rule{
	// CSP
	"csp-implemented-with-no-unsafe-default-src-none":              {10, ""},
	"csp-implemented-with-no-unsafe":                               {5, "set default-src 'none' and allow each resource type explicitly"},
	"csp-implemented-with-unsafe-inline-in-style-src-only":         {0, "remove 'unsafe-inline', data: and broad sources from style-src (nonce your styles)"},
	"csp-implemented-with-insecure-scheme-in-passive-content-only": {-10, "load images and media over HTTPS and drop http: sources from img-src and media-src"},
	"csp-implemented-with-unsafe-eval":                             {-10, "remove eval() from the code, then 'unsafe-eval' from the policy"},
	"csp-implemented-with-unsafe-inline":                           {-20, "remove 'unsafe-inline' and data: from script-src, broad sources (https:, *) from script-src and object-src, and set both (security_headers' strict preset does)"},
	"csp-implemented-with-insecure-scheme":                         {-20, "load every resource over HTTPS and remove http: sources from the policy"},
	"csp-implemented-but-duplicate-directives":                     {0, "send report-uri and report-to once each in the policy"},
	"csp-header-invalid":                                           {-25, "fix the policy's syntax ('strict-dynamic' needs a nonce or hash beside it; a directive may appear once in a policy)"},
	"csp-not-implemented":                                          {-25, "send a Content-Security-Policy: add security_headers (strict preset) to the site"},
	"csp-not-implemented-but-reporting-enabled":                    {-25, "the policy is report-only: once reports are clean, remove report_only so it is enforced"},
	// Cookies
	"cookies-secure-with-httponly-sessions-and-samesite":        {5, ""},
	"cookies-secure-with-httponly-sessions":                     {0, "add SameSite=Lax (or Strict) to every cookie"},
	"cookies-not-found":                                         {0, ""},
	"cookies-without-secure-flag-but-protected-by-hsts":         {-5, "add Secure to every cookie"},
	"cookies-session-without-secure-flag-but-protected-by-hsts": {-10, "add Secure to the session cookie"},
	"cookies-without-secure-flag":                               {-20, "add Secure to every cookie and send HSTS"},
	"cookies-samesite-flag-invalid":                             {-20, "use SameSite=Strict or Lax (SameSite=None needs Secure)"},
	"cookies-anticsrf-without-samesite-flag":                    {-20, "add SameSite=Strict or Lax to the anti-CSRF cookie"},
	"cookies-session-without-httponly-flag":                     {-30, "add HttpOnly to the session cookie"},
	"cookies-session-without-secure-flag":                       {-40, "add Secure to the session cookie and send HSTS"},
	// CORS
	"cross-origin-resource-sharing-not-implemented":                    {0, ""},
	"cross-origin-resource-sharing-implemented-with-public-access":     {0, ""},
	"cross-origin-resource-sharing-implemented-with-restricted-access": {0, ""},
	"cross-origin-resource-sharing-implemented-with-universal-access":  {-50, "never reflect the Origin header with Access-Control-Allow-Credentials: true; list the allowed origins, or send * without credentials"},
	// CORP
	"cross-origin-resource-policy-not-implemented":               {0, ""},
	"cross-origin-resource-policy-implemented-with-same-origin":  {10, ""},
	"cross-origin-resource-policy-implemented-with-same-site":    {10, ""},
	"cross-origin-resource-policy-implemented-with-cross-origin": {0, ""},
	"cross-origin-resource-policy-header-invalid":                {-5, "set Cross-Origin-Resource-Policy to same-origin, same-site or cross-origin (security_headers corp)"},
	// Redirection
	"redirection-to-https":                            {0, ""},
	"redirection-not-needed-no-http":                  {0, ""},
	"redirection-off-host-from-http":                  {-5, "redirect http:// to https:// on the same host first (HSTS is only honoured there), then to the other host"},
	"redirection-not-to-https-on-initial-redirection": {-10, "make the first redirect go to https:// on the same host"},
	"redirection-missing":                             {-20, "redirect http:// to https:// (Caddy does it for every site address with a domain; do not disable automatic_https redirects)"},
	"redirection-not-to-https":                        {-20, "make the redirect chain end on an https:// URL"},
	"redirection-invalid-cert":                        {-20, "install a certificate browsers trust (Caddy's automatic HTTPS does)"},
	// Not in the Observatory's table: ours, for a redirect whose https:// target cannot be
	// fetched, with the penalty of a missing redirect (what a visitor gets).
	"redirection-target-unreachable": {-20, "make the https:// URL the redirect leads to answer (is the HTTPS port open and reachable?)"},
	// Ours too: redirects that loop or never end (the note gives the chain).
	"redirection-loop": {-20, "make the http:// URL redirect to an https:// page (the note gives the chain)"},
	// Referrer-Policy
	"referrer-policy-private":         {5, ""},
	"referrer-policy-not-implemented": {0, "send Referrer-Policy: strict-origin-when-cross-origin (the security_headers default)"},
	"referrer-policy-unsafe":          {-5, "use strict-origin-when-cross-origin or stricter"},
	"referrer-policy-header-invalid":  {-5, "use a valid Referrer-Policy value such as strict-origin-when-cross-origin"},
	// HSTS
	"hsts-implemented-max-age-at-least-six-months":  {0, ""},
	"hsts-implemented-max-age-less-than-six-months": {-10, "raise max-age to at least 15552000, 180 days (security_headers sends 63072000)"},
	"hsts-not-implemented":                          {-20, "send Strict-Transport-Security: add security_headers, and do not set `hsts off`"},
	"hsts-header-invalid":                           {-20, "send max-age=<seconds>[; includeSubDomains][; preload]"},
	"hsts-not-implemented-no-https":                 {-20, "serve the site over HTTPS"},
	"hsts-invalid-cert":                             {-20, "install a certificate browsers trust"},
	// SRI
	"sri-implemented-and-all-scripts-loaded-securely":               {5, ""},
	"sri-implemented-and-external-scripts-loaded-securely":          {5, ""},
	"sri-not-implemented-response-not-html":                         {0, ""},
	"sri-not-implemented-but-no-scripts-loaded":                     {0, ""},
	"sri-not-implemented-but-all-scripts-loaded-from-secure-origin": {0, ""},
	"sri-not-implemented-but-external-scripts-loaded-securely":      {-5, "add integrity=\"sha384-...\" crossorigin=\"anonymous\" to external scripts"},
	"sri-implemented-but-external-scripts-not-loaded-securely":      {-20, "load external scripts over https://"},
	"sri-not-implemented-and-external-scripts-not-loaded-securely":  {-50, "load external scripts over https:// and add integrity attributes"},
	"html-not-parsable": {-20, "serve well-formed HTML"},
	// X-Content-Type-Options
	"x-content-type-options-nosniff":         {0, ""},
	"x-content-type-options-not-implemented": {-5, "send X-Content-Type-Options: nosniff (security_headers does)"},
	"x-content-type-options-header-invalid":  {-5, "send exactly X-Content-Type-Options: nosniff"},
	// X-Frame-Options
	"x-frame-options-implemented-via-csp": {5, ""},
	"x-frame-options-sameorigin-or-deny":  {0, "add frame-ancestors to the policy (the strict preset has 'none')"},
	"x-frame-options-allow-from-origin":   {0, "use CSP frame-ancestors instead of ALLOW-FROM"},
	"x-frame-options-not-implemented":     {-20, "send CSP frame-ancestors and X-Frame-Options DENY or SAMEORIGIN (security_headers does)"},
	"x-frame-options-header-invalid":      {-20, "use X-Frame-Options DENY or SAMEORIGIN"},
}

// gradeChart maps a score rounded down to a multiple of 5 (at most 100) to its letter.
var gradeChart = map[int]string{100: "A+", 95: "A", 90: "A", 85: "A-", 80: "B+", 75: "B", 70: "B", 65: "B-",
	60: "C+", 55: "C", 50: "C", 45: "C-", 40: "D+", 35: "D", 30: "D", 25: "D-", 20: "F", 15: "F", 10: "F", 5: "F", 0: "F"}

// minScoreForBonus is where extra credit starts counting.
const minScoreForBonus = 90

// Grade is the letter for a final score.
func Grade(score int) string {
	score = max(score, 0)
	return gradeChart[min(score-score%5, 100)]
}

// Score totals the modifiers of the results: penalties first; bonuses only at 90 or more.
func Score(results []Result) int {
	score, bonus := 100, 0
	for _, r := range results {
		if r.Modifier < 0 {
			score += r.Modifier
		} else {
			bonus += r.Modifier
		}
	}
	if score >= minScoreForBonus {
		score += bonus
	}
	return max(score, 0)
}
