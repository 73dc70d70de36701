package observatory

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// goodHeaders earn every bonus of the score table.
func goodHeaders() http.Header {
	return http.Header{
		"Content-Security-Policy":      {"default-src 'none'; script-src 'nonce-r4nd0m' 'strict-dynamic'; frame-ancestors 'none'"},
		"Strict-Transport-Security":    {"max-age=63072000; includeSubDomains"},
		"X-Content-Type-Options":       {"nosniff"},
		"Referrer-Policy":              {"no-referrer"},
		"Cross-Origin-Resource-Policy": {"same-origin"},
		"Content-Type":                 {"text/html; charset=utf-8"},
	}
}

func scanOf(h http.Header, body string, cookies ...string) *Scan {
	u, _ := url.Parse("https://www.example.com/")
	hu, _ := url.Parse("http://www.example.com/")
	final := Response{URL: u, Status: 200, Header: h}
	return &Scan{HTTPChain: []Response{{URL: hu, Status: 308}, final}, Final: &final, HTTPS: true, Body: []byte(body), Cookies: cookies, Origin: ScanOrigin}
}

func find(rep Report, test string) Result {
	for _, r := range rep.Results {
		if r.Test == test {
			return r
		}
	}
	return Result{}
}

// TestScoreTableRows checks one published outcome per row: the header set, the test, the
// result name and its modifier in the Observatory's table.
func TestScoreTableRows(t *testing.T) {
	set := func(k, v string) func(http.Header) {
		return func(h http.Header) {
			if v == "" {
				h.Del(k)
			} else {
				h.Set(k, v)
			}
		}
	}
	rows := []struct {
		name, test, result string
		modifier           int
		edit               func(http.Header)
		body               string
		cookies            []string
	}{
		{"csp default-src none", TestCSP, "csp-implemented-with-no-unsafe-default-src-none", 10, nil, "", nil},
		{"csp without unsafe", TestCSP, "csp-implemented-with-no-unsafe", 5, set("Content-Security-Policy", "default-src 'self'; object-src 'none'"), "", nil},
		{"csp unsafe-inline script", TestCSP, "csp-implemented-with-unsafe-inline", -20, set("Content-Security-Policy", "default-src 'self'; script-src 'self' 'unsafe-inline'; object-src 'none'"), "", nil},
		{"csp unsafe-inline ignored beside nonce", TestCSP, "csp-implemented-with-no-unsafe", 5, set("Content-Security-Policy", "default-src 'self'; script-src 'nonce-abc' 'unsafe-inline'; object-src 'none'"), "", nil},
		{"csp no object-src", TestCSP, "csp-implemented-with-unsafe-inline", -20, set("Content-Security-Policy", "script-src 'self'"), "", nil},
		{"csp unsafe-eval", TestCSP, "csp-implemented-with-unsafe-eval", -10, set("Content-Security-Policy", "default-src 'self'; script-src 'self' 'unsafe-eval'; object-src 'none'"), "", nil},
		{"csp http: source", TestCSP, "csp-implemented-with-insecure-scheme", -20, set("Content-Security-Policy", "default-src 'self'; connect-src http://api.example.com; object-src 'none'"), "", nil},
		{"csp http: images", TestCSP, "csp-implemented-with-insecure-scheme-in-passive-content-only", -10, set("Content-Security-Policy", "default-src 'self'; img-src http://img.example.com; object-src 'none'"), "", nil},
		{"csp unsafe style", TestCSP, "csp-implemented-with-unsafe-inline-in-style-src-only", 0, set("Content-Security-Policy", "default-src 'self'; style-src 'self' 'unsafe-inline'; object-src 'none'"), "", nil},
		{"csp strict-dynamic without nonce", TestCSP, "csp-header-invalid", -25, set("Content-Security-Policy", "script-src 'strict-dynamic'"), "", nil},
		{"csp absent", TestCSP, "csp-not-implemented", -25, set("Content-Security-Policy", ""), "", nil},
		// cspParser.js: a repeated directive makes the policy invalid (browsers would keep the
		// first), except report-uri and report-to, whose repetition turns a passing outcome
		// into csp-implemented-but-duplicate-directives (0, not the +10 it would earn).
		{"csp repeated directive", TestCSP, "csp-header-invalid", -25, set("Content-Security-Policy", "default-src 'none'; script-src 'self'; SCRIPT-SRC https://cdn.example.com"), "", nil},
		{"csp repeated report-uri", TestCSP, "csp-implemented-but-duplicate-directives", 0, set("Content-Security-Policy", "default-src 'none'; report-uri /a; report-uri /b"), "", nil},
		{"csp repeated report-to on style-only", TestCSP, "csp-implemented-but-duplicate-directives", 0, set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; report-to a; report-to b"), "", nil},
		{"csp repeated report-uri, unsafe-eval", TestCSP, "csp-implemented-with-unsafe-eval", -10, set("Content-Security-Policy", "default-src 'self'; script-src 'self' 'unsafe-eval'; object-src 'none'; report-uri /a; report-uri /b"), "", nil},
		{"csp same directive in two policies", TestCSP, "csp-implemented-with-no-unsafe-default-src-none", 10, func(h http.Header) {
			h.Set("Content-Security-Policy", "default-src 'none'; report-uri /a")
			h.Add("Content-Security-Policy", "default-src 'none'; report-uri /b")
		}, "", nil},
		// cspParser.js: a -src directive without sources is 'none' (as in browsers).
		{"csp empty default-src", TestCSP, "csp-implemented-with-no-unsafe-default-src-none", 10, set("Content-Security-Policy", "default-src; frame-ancestors 'none'"), "", nil},
		// cspParser.js: a source counts only when the first policy allows it too, so a directive
		// that only a later policy sets allows nothing (browsers enforce every policy: the
		// first one's default-src 'self' still stops scripts from https: hosts).
		{"csp directive only in a later policy", TestCSP, "csp-implemented-with-no-unsafe", 5, func(h http.Header) {
			h.Set("Content-Security-Policy", "default-src 'self'; object-src 'none'")
			h.Add("Content-Security-Policy", "script-src https:")
		}, "", nil},
		{"csp directive only in a later policy, comma-joined", TestCSP, "csp-implemented-with-no-unsafe", 5,
			set("Content-Security-Policy", "default-src 'self'; object-src 'none', script-src https: 'unsafe-inline'"), "", nil},
		// cspParser.js takes any directive name (a browser ignores one it does not know), and
		// refuses a policy shorter than "img-src" less one character, an empty one after a
		// comma included.
		{"csp unknown directive name", TestCSP, "csp-implemented-with-no-unsafe-default-src-none", 10, set("Content-Security-Policy", "default-src 'none'; script-src: 'self'"), "", nil},
		{"csp policy too short", TestCSP, "csp-header-invalid", -25, set("Content-Security-Policy", "none"), "", nil},
		{"csp empty policy after a comma", TestCSP, "csp-header-invalid", -25, set("Content-Security-Policy", "default-src 'none',"), "", nil},
		{"csp report-only", TestCSP, "csp-not-implemented-but-reporting-enabled", -25, func(h http.Header) {
			h.Set("Content-Security-Policy-Report-Only", h.Get("Content-Security-Policy"))
			h.Del("Content-Security-Policy")
		}, "", nil},
		{"hsts short", TestHSTS, "hsts-implemented-max-age-less-than-six-months", -10, set("Strict-Transport-Security", "max-age=86400"), "", nil},
		{"hsts absent", TestHSTS, "hsts-not-implemented", -20, set("Strict-Transport-Security", ""), "", nil},
		{"hsts invalid", TestHSTS, "hsts-header-invalid", -20, set("Strict-Transport-Security", "max-age=forever"), "", nil},
		// The Observatory's six months are 15552000 s (180 days), the common value, not the
		// 15768000 its table names (strict-transport-security.js, SIX_MONTHS).
		{"hsts 180 days", TestHSTS, "hsts-implemented-max-age-at-least-six-months", 0, set("Strict-Transport-Security", "max-age=15552000"), "", nil},
		{"hsts a second short of 180 days", TestHSTS, "hsts-implemented-max-age-less-than-six-months", -10, set("Strict-Transport-Security", "max-age=15551999"), "", nil},
		// Sent twice: the values arrive joined by a comma, which the Observatory refuses.
		{"hsts sent twice", TestHSTS, "hsts-header-invalid", -20, func(h http.Header) { h.Add("Strict-Transport-Security", "max-age=63072000") }, "", nil},
		// Where strict-transport-security.js misreads a header, the grade follows RFC 6797 and
		// browsers (README): a quoted max-age is its number (parseInt gives NaN, which passes
		// there), spaces around "=" are allowed (invalid there), a negative or trailing-garbage
		// max-age is ignored by browsers (-10 or valid there).
		{"hsts quoted short max-age", TestHSTS, "hsts-implemented-max-age-less-than-six-months", -10, set("Strict-Transport-Security", `max-age="600"`), "", nil},
		{"hsts spaces around =", TestHSTS, "hsts-implemented-max-age-at-least-six-months", 0, set("Strict-Transport-Security", "max-age = 63072000; includeSubDomains"), "", nil},
		{"hsts negative max-age", TestHSTS, "hsts-header-invalid", -20, set("Strict-Transport-Security", "max-age=-1"), "", nil},
		{"hsts max-age with trailing garbage", TestHSTS, "hsts-header-invalid", -20, set("Strict-Transport-Security", "max-age=63072000x"), "", nil},
		{"xcto absent", TestContentType, "x-content-type-options-not-implemented", -5, set("X-Content-Type-Options", ""), "", nil},
		{"xcto invalid", TestContentType, "x-content-type-options-header-invalid", -5, set("X-Content-Type-Options", "sniff-away"), "", nil},
		{"xcto sent twice", TestContentType, "x-content-type-options-header-invalid", -5, func(h http.Header) { h.Add("X-Content-Type-Options", "nosniff") }, "", nil},
		{"xfo via csp", TestFrameOptions, "x-frame-options-implemented-via-csp", 5, nil, "", nil},
		{"xfo deny", TestFrameOptions, "x-frame-options-sameorigin-or-deny", 0, func(h http.Header) {
			h.Set("Content-Security-Policy", "default-src 'none'") // no frame-ancestors
			h.Set("X-Frame-Options", "DENY")
		}, "", nil},
		// The Observatory awards it for any frame-ancestors, even * (x-frame-options.js).
		{"xfo via csp frame-ancestors *", TestFrameOptions, "x-frame-options-implemented-via-csp", 5, set("Content-Security-Policy", "default-src 'none'; frame-ancestors *"), "", nil},
		{"xfo absent", TestFrameOptions, "x-frame-options-not-implemented", -20, set("Content-Security-Policy", "default-src 'none'"), "", nil},
		{"referrer private", TestReferrer, "referrer-policy-private", 5, nil, "", nil},
		{"referrer unsafe", TestReferrer, "referrer-policy-unsafe", -5, set("Referrer-Policy", "unsafe-url"), "", nil},
		{"referrer no-referrer-when-downgrade", TestReferrer, "referrer-policy-unsafe", -5, set("Referrer-Policy", "no-referrer-when-downgrade"), "", nil},
		{"referrer invalid", TestReferrer, "referrer-policy-header-invalid", -5, set("Referrer-Policy", "nobody"), "", nil},
		{"referrer absent", TestReferrer, "referrer-policy-not-implemented", 0, set("Referrer-Policy", ""), "", nil},
		{"corp same-site", TestCORP, "cross-origin-resource-policy-implemented-with-same-site", 10, set("Cross-Origin-Resource-Policy", "same-site"), "", nil},
		{"corp invalid", TestCORP, "cross-origin-resource-policy-header-invalid", -5, set("Cross-Origin-Resource-Policy", "everyone"), "", nil},
		{"cors public", TestCORS, "cross-origin-resource-sharing-implemented-with-public-access", 0, set("Access-Control-Allow-Origin", "*"), "", nil},
		{"cors reflected with credentials", TestCORS, "cross-origin-resource-sharing-implemented-with-universal-access", -50, func(h http.Header) {
			h.Set("Access-Control-Allow-Origin", ScanOrigin)
			h.Set("Access-Control-Allow-Credentials", "true")
		}, "", nil},
		{"cookies none", TestCookies, "cookies-not-found", 0, nil, "", nil},
		{"heroku affinity cookie ignored", TestCookies, "cookies-secure-with-httponly-sessions-and-samesite", 5, nil, "", []string{"sessionid=1; Secure; HttpOnly; SameSite=Lax", "heroku-session-affinity=abc; Path=/"}},
		{"only the heroku affinity cookie", TestCookies, "cookies-not-found", 0, nil, "", []string{"heroku-session-affinity=abc; Path=/"}},
		{"cookies all good", TestCookies, "cookies-secure-with-httponly-sessions-and-samesite", 5, nil, "", []string{"sessionid=1; Secure; HttpOnly; SameSite=Lax"}},
		{"cookies without samesite", TestCookies, "cookies-secure-with-httponly-sessions", 0, nil, "", []string{"sessionid=1; Secure; HttpOnly"}},
		{"cookie without secure under hsts", TestCookies, "cookies-without-secure-flag-but-protected-by-hsts", -5, nil, "", []string{"theme=dark; SameSite=Lax"}},
		{"session without httponly", TestCookies, "cookies-session-without-httponly-flag", -30, nil, "", []string{"sessionid=1; Secure; SameSite=Lax"}},
		{"csrf without samesite", TestCookies, "cookies-anticsrf-without-samesite-flag", -20, nil, "", []string{"csrftoken=1; Secure"}},
		{"samesite invalid", TestCookies, "cookies-samesite-flag-invalid", -20, nil, "", []string{"theme=1; Secure; SameSite=Sometimes"}},
		{"session without secure, no hsts", TestCookies, "cookies-session-without-secure-flag", -40, set("Strict-Transport-Security", ""), "", []string{"sessionid=1; HttpOnly; SameSite=Lax"}},
		{"sri no scripts", TestSRI, "sri-not-implemented-but-no-scripts-loaded", 0, nil, "<p>hi</p>", nil},
		{"sri local script with integrity", TestSRI, "sri-implemented-and-all-scripts-loaded-securely", 5, nil, `<script src="/app.js" integrity="sha384-x"></script>`, nil},
		{"sri local script", TestSRI, "sri-not-implemented-but-all-scripts-loaded-from-secure-origin", 0, nil, `<script src="/app.js"></script><script src="https://static.example.com/x.js"></script>`, nil},
		{"sri external with integrity", TestSRI, "sri-implemented-and-external-scripts-loaded-securely", 5, nil, `<script src="https://cdn.jsdelivr.net/x.js" integrity="sha384-x" crossorigin="anonymous"></script>`, nil},
		{"sri external https", TestSRI, "sri-not-implemented-but-external-scripts-loaded-securely", -5, nil, `<script src="https://cdn.jsdelivr.net/x.js"></script>`, nil},
		{"sri external http", TestSRI, "sri-not-implemented-and-external-scripts-not-loaded-securely", -50, nil, `<script src="http://cdn.jsdelivr.net/x.js"></script>`, nil},
		{"sri protocol-relative with integrity", TestSRI, "sri-implemented-but-external-scripts-not-loaded-securely", -20, nil, `<script src="//cdn.jsdelivr.net/x.js" integrity="sha384-x"></script>`, nil},
		// The Observatory counts inline scripts (querySelectorAll("script")).
		{"sri inline scripts only", TestSRI, "sri-not-implemented-but-all-scripts-loaded-from-secure-origin", 0, nil, `<script nonce="n">go()</script>`, nil},
		// Its order of outcomes ranks -5 after -20: the later one wins (subresource-integrity.js).
		{"sri http with integrity and https without", TestSRI, "sri-not-implemented-but-external-scripts-loaded-securely", -5, nil, `<script src="http://cdn.jsdelivr.net/a.js" integrity="sha384-x"></script><script src="https://cdn.jsdelivr.net/b.js"></script>`, nil},
		// subresource-integrity.js parses a response without Content-Type as HTML.
		{"sri no content-type", TestSRI, "sri-not-implemented-and-external-scripts-not-loaded-securely", -50, set("Content-Type", ""), `<script src="http://cdn.jsdelivr.net/x.js"></script>`, nil},
		{"sri not html", TestSRI, "sri-not-implemented-response-not-html", 0, set("Content-Type", "application/json"), `<script src="http://x/"></script>`, nil},
	}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			h := goodHeaders()
			if row.edit != nil {
				row.edit(h)
			}
			got := find(Analyze(scanOf(h, row.body, row.cookies...)), row.test)
			if got.Result != row.result || got.Modifier != row.modifier {
				t.Fatalf("%s = %s (%d), want %s (%d)", row.test, got.Result, got.Modifier, row.result, row.modifier)
			}
			if got.Modifier < 0 && got.Fix == "" {
				t.Fatalf("%s: a deduction without a fix", got.Result)
			}
		})
	}
}

func TestGradeChart(t *testing.T) {
	for score, grade := range map[int]string{140: "A+", 100: "A+", 99: "A", 90: "A", 89: "A-", 85: "A-", 84: "B+", 80: "B+",
		79: "B", 70: "B", 69: "B-", 65: "B-", 64: "C+", 60: "C+", 59: "C", 50: "C", 49: "C-", 45: "C-", 44: "D+", 40: "D+",
		39: "D", 30: "D", 29: "D-", 25: "D-", 24: "F", 0: "F", -30: "F"} {
		if g := Grade(score); g != grade {
			t.Errorf("Grade(%d) = %s, want %s", score, g, grade)
		}
	}
}

// TestBonusOnlyFrom90: extra credit counts only when the penalties leave 90 or more.
func TestBonusOnlyFrom90(t *testing.T) {
	r := func(m int) Result { return Result{Modifier: m} }
	if s := Score([]Result{r(-10), r(10), r(5)}); s != 105 {
		t.Fatalf("score %d, want 105", s)
	}
	if s := Score([]Result{r(-15), r(10), r(5)}); s != 85 {
		t.Fatalf("score %d, want 85 (no bonus under 90)", s)
	}
	if s := Score([]Result{r(-50), r(-50), r(-50)}); s != 0 {
		t.Fatalf("score %d, want 0", s)
	}
}

// TestLiveScans grades real servers over real HTTP and TLS: the redirect from http:// is
// followed and the https:// response graded.
func TestLiveScans(t *testing.T) {
	cases := []struct {
		name    string
		headers http.Header
		body    string
		score   int
		grade   string
	}{
		// 100 + CSP 10 + cookies 0 (none) + CORP 10 + referrer 5 + SRI 5 + XFO 5.
		{"hardened", goodHeaders(), `<script src="/app.js" integrity="sha384-x"></script>`, 135, "A+"},
		// 100 - CSP 25 - XCTO 5 - XFO 20 - HSTS 20 = 30.
		{"bare https", http.Header{"Content-Type": {"text/html"}}, "<p>hi</p>", 30, "D"},
		// 100 - 10 (HSTS short) - 5 (referrer unsafe) = 85: bonuses do not count under 90.
		{"short hsts", func() http.Header {
			h := goodHeaders()
			h.Set("Strict-Transport-Security", "max-age=600")
			h.Set("Referrer-Policy", "unsafe-url")
			return h
		}(), "", 85, "A-"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tlsSrv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				for k, v := range c.headers {
					w.Header()[k] = v
				}
				_, _ = w.Write([]byte(c.body))
			}))
			defer tlsSrv.Close()
			plain := httptest.NewServer(http.RedirectHandler(tlsSrv.URL+"/", http.StatusPermanentRedirect))
			defer plain.Close()
			f := &Fetcher{Client: tlsSrv.Client()}
			scan, err := f.Fetch(context.Background(), plain.URL+"/", "")
			if err != nil {
				t.Fatal(err)
			}
			rep := Analyze(scan)
			if rep.Score != c.score || rep.Grade != c.grade {
				t.Fatalf("score %d %s, want %d %s; %+v", rep.Score, rep.Grade, c.score, c.grade, rep.Results)
			}
			if r := find(rep, TestRedirection); r.Result != "redirection-to-https" {
				t.Fatalf("redirection %s", r.Result)
			}
		})
	}
}

// TestLiveNoRedirect: a plain-HTTP site without HTTPS loses the redirection and HSTS points.
func TestLiveNoRedirect(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Set-Cookie", "sessionid=1; Path=/")
		_, _ = w.Write([]byte("plain"))
	}))
	defer srv.Close()
	scan, err := (&Fetcher{}).Fetch(context.Background(), srv.URL+"/", "")
	if err != nil {
		t.Fatal(err)
	}
	rep := Analyze(scan)
	want := map[string]string{TestRedirection: "redirection-missing", TestHSTS: "hsts-not-implemented-no-https",
		TestCookies: "cookies-session-without-secure-flag"}
	for test, res := range want {
		if r := find(rep, test); r.Result != res {
			t.Errorf("%s = %s, want %s", test, r.Result, res)
		}
	}
	// 100 - CSP 25 - cookies 40 - redirection 20 - HSTS 20 - XCTO 5 - XFO 20 = -30 -> 0.
	if rep.Score != 0 || rep.Grade != "F" {
		t.Fatalf("score %d %s, want 0 F", rep.Score, rep.Grade)
	}
}

// TestFetchUntrustedHTTPSIsAnError: an https:// target whose certificate the client does not
// trust is a *CertError naming it, even when the http:// side answers with a redirect (whose
// response used to be graded in its place); from the http:// side, the chain's certificate
// failure is kept for the report.
func TestFetchUntrustedHTTPSIsAnError(t *testing.T) {
	tlsSrv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer tlsSrv.Close()
	plain := httptest.NewServer(http.RedirectHandler(tlsSrv.URL+"/", http.StatusPermanentRedirect))
	defer plain.Close()

	_, err := (&Fetcher{}).Fetch(context.Background(), tlsSrv.URL+"/", plain.URL+"/")
	var ce *CertError
	if !errors.As(err, &ce) || ce.URL != tlsSrv.URL+"/" || !strings.Contains(err.Error(), "not trusted") {
		t.Fatalf("https:// target with an untrusted certificate: %v", err)
	}

	scan, err := (&Fetcher{}).Fetch(context.Background(), plain.URL+"/", "")
	if err != nil || !errors.As(scan.RedirectErr, &ce) || ce.URL != tlsSrv.URL+"/" || scan.Final.URL.String() != plain.URL+"/" {
		t.Fatalf("http:// target redirecting to it: %v %+v", err, scan)
	}
	if r := find(Analyze(scan), TestRedirection); r.Result != "redirection-invalid-cert" {
		t.Fatalf("redirection %s", r.Result)
	}
}
