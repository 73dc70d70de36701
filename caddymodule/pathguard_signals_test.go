package caddymodule

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/swarmsec/caddy-hardening/internal/testcaddy"
	"github.com/swarmsec/caddy-hardening/internal/testenv"
)

// readerSite runs, with the default detection (production, threshold 20, not_found 1,
// auth_failure 2) and path_guard blocking suspicious clients, a site as readers meet it:
// file_server over a root with a blog page and a JS chunk (everything else 404), a session
// check and a login that answer 401. Clients are told apart by X-Forwarded-For from the
// trusted loopback proxy. It returns the address and the Caddy.
func readerSite(t *testing.T) (string, *testcaddy.Caddy) {
	t.Helper()
	root := t.TempDir()
	for name, content := range map[string]string{
		"index.html":                         "<p>home</p>",
		"2019/05/holiday-gallery/index.html": "<p>gallery</p>",
		"_next/static/chunks/main.js":        "console.log(1)",
	} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(root, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return productionGuard(t, fmt.Sprintf("\trespond /api/me 401\n\trespond /login 401\n\troot * %s\n\tfile_server", root))
}

// productionGuard runs a production site with the default detection and a path_guard that
// blocks suspicious clients, in front of routes; clients are told apart by X-Forwarded-For
// from the trusted loopback proxy. It returns the address and the Caddy.
func productionGuard(t *testing.T, routes string) (string, *testcaddy.Caddy) {
	t.Helper()
	return productionGuardRoutes(t, "\tpath_guard {\n\t\tsuspicious_action block\n\t}\n"+routes)
}

// expectAnswers sends each target as client and fails on an answer other than the one listed:
// a 403 means path_guard refused the client.
func expectAnswers(t *testing.T, addr, client string, targets map[string]int, headers ...string) {
	t.Helper()
	for target, want := range targets {
		if status, _, _ := rawGet(t, addr, target, append(headers, "X-Forwarded-For: "+client)...); status != want {
			t.Fatalf("%s: %s answered %d, want %d", client, target, status, want)
		}
	}
}

// reclassifiedIPs maps each client with an ip_reclassified event to its signal.
func reclassifiedIPs(c *testcaddy.Caddy) map[string]string {
	out := map[string]string{}
	for _, e := range securityLogs(c, EventIPReclassified) {
		out[e.Str("ip")] = e.Str("signal")
	}
	return out
}

// TestReadersAreNotBanned: what ordinary readers cause bans nobody with the default scores
// (each once banned the client, and everyone behind its NAT, for 15 minutes):
//   - an old blog page whose gallery lost its 24 images, viewed 10 times (a reader every
//     minute for 10 minutes; sent back to back here, the harder case: no leak, no decay);
//   - 30 anonymous page views of an app whose session check answers 401, with iOS Safari's
//     apple-touch-icon guesses (404);
//   - a page polling its session check with an expired token: the same credentials, 30 times;
//   - a single-page app's tab left open across a deploy, prefetching on each of 10 views the 15
//     links of its page from the removed build (/_next/data/<old build>/*.json, 404, not
//     static): when 8 keys were remembered, the 15 were new again on every view (banned at the
//     third).
func TestReadersAreNotBanned(t *testing.T) {
	addr, c := readerSite(t)

	gallery := map[string]int{"/2019/05/holiday-gallery/": 200, "/favicon.ico": 404}
	for i := 1; i <= 24; i++ {
		gallery[fmt.Sprintf("/wp-content/uploads/2019/05/IMG_%d.jpg", i)] = 404
	}
	for range 10 {
		expectAnswers(t, addr, "198.51.100.1", gallery)
	}

	view := map[string]int{"/": 200, "/api/me": 401, "/apple-touch-icon-precomposed.png": 404,
		"/apple-touch-icon.png": 404, "/_next/static/chunks/main.js": 200}
	for range 30 {
		expectAnswers(t, addr, "198.51.100.2", view)
	}

	for range 30 {
		expectAnswers(t, addr, "198.51.100.3", map[string]int{"/api/me": 401}, "Authorization: Bearer expired-token")
	}

	prefetch := map[string]int{"/": 200}
	for i := range 15 {
		prefetch[fmt.Sprintf("/_next/data/old-build/page-%d.json", i)] = 404
	}
	for range 10 {
		expectAnswers(t, addr, "198.51.100.4", prefetch)
	}

	for _, client := range []string{"198.51.100.1", "198.51.100.2", "198.51.100.3", "198.51.100.4"} {
		expectAnswers(t, addr, client, map[string]int{"/": 200})
	}
	if got := reclassifiedIPs(c); len(got) != 0 {
		t.Fatalf("readers reclassified: %v", got)
	}
}

// TestScannersAndGuessersAreBanned: what the burst allowance lets through is a reader's share,
// not a scanner's: gobuster-like distinct missing paths ban the client at the 30th (10 free, 20
// points), within the first seconds of the scan; a password guesser is banned at its 15th
// failure (5 free, 10 × 2 points), whether its credentials go in an Authorization header or
// in a login form's body.
func TestScannersAndGuessersAreBanned(t *testing.T) {
	addr, c := readerSite(t)

	var words []string
	for _, w := range []string{"admin", "backup", "config", "db", "old", "test", "private", "api", "upload", "install"} {
		for _, ext := range []string{"", ".php", ".bak", ".zip", ".sql", ".txt", ".old", ".tar.gz", ".conf", ".inc", "_old", "1", "2", "-dev", ".aspx", ".jsp", ".cgi", ".xml", ".yml", ".log"} {
			words = append(words, "/"+w+ext)
		}
	}
	start := time.Now()
	refusedAt := 0
	for i, p := range words[:200] {
		status := sendAs(t, addr, "198.51.100.20", p)
		if status == http.StatusForbidden {
			refusedAt = i + 1
			break
		}
		if status != http.StatusNotFound {
			t.Fatalf("%s: %d, want 404", p, status)
		}
	}
	took := time.Since(start)
	if refusedAt != 31 || took > 5*time.Second {
		t.Fatalf("the scan was refused from its request %d after %v; want from the 31st (detected at the 30th), within seconds", refusedAt, took)
	}
	t.Logf("scan detected at its 30th 404, %v after it started", took)

	guess := func(i int) string {
		return "Authorization: Basic " + base64.StdEncoding.EncodeToString(fmt.Appendf(nil, "admin:password%d", i))
	}
	for i := 1; i <= 15; i++ {
		expectAnswers(t, addr, "198.51.100.21", map[string]int{"/login": 401}, guess(i))
	}
	expectAnswers(t, addr, "198.51.100.21", map[string]int{"/": 403})

	for i := 1; i <= 16; i++ {
		req, err := http.NewRequest(http.MethodPost, "http://"+addr+"/login", strings.NewReader(fmt.Sprintf("user=admin&password=guess%d", i)))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("X-Forwarded-For", "198.51.100.22")
		want := http.StatusUnauthorized
		if i == 16 {
			want = http.StatusForbidden
		}
		if resp, _ := fetch(t, req); resp.StatusCode != want {
			t.Fatalf("form login %d: %d, want %d", i, resp.StatusCode, want)
		}
	}

	want := map[string]string{"198.51.100.20": "not_found", "198.51.100.21": "auth_failure", "198.51.100.22": "auth_failure"}
	if got := reclassifiedIPs(c); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("reclassified %v, want %v", got, want)
	}
}

// TestCrossSiteRequestsDoNotBan: any page can make its visitors' browsers request any path
// of the site (one <img> with a traversal form, two probe paths, a scan's worth of 404s); such
// requests, which browsers mark Sec-Fetch-Site cross-site or same-site, are refused as before
// but score nobody, unless score_cross_site says otherwise. The visitor's own requests
// (same-origin, none) and requests without Fetch Metadata (curl, scanners) still score.
func TestCrossSiteRequestsDoNotBan(t *testing.T) {
	addr, c := readerSite(t)
	embedded := func(site string) []string {
		return []string{"Sec-Fetch-Site: " + site, "Sec-Fetch-Mode: no-cors", "Sec-Fetch-Dest: image"}
	}
	attack := map[string]int{"/cat/%252e%252e/cat.png": 400, "/.env": 404, "/wp-admin/": 404}
	for i := range 40 {
		attack[fmt.Sprintf("/missing-%d.html", i)] = 404
	}
	expectAnswers(t, addr, "198.51.100.40", attack, embedded("cross-site")...)
	expectAnswers(t, addr, "198.51.100.41", attack, embedded("same-site")...)
	for _, visitor := range []string{"198.51.100.40", "198.51.100.41"} {
		expectAnswers(t, addr, visitor, map[string]int{"/": 200})
	}

	traversal := map[string]int{"/cat/%252e%252e/cat.png": 400}
	expectAnswers(t, addr, "198.51.100.42", traversal)
	expectAnswers(t, addr, "198.51.100.43", traversal, embedded("same-origin")...)
	expectAnswers(t, addr, "198.51.100.44", traversal, embedded("none")...)
	for _, client := range []string{"198.51.100.42", "198.51.100.43", "198.51.100.44"} {
		expectAnswers(t, addr, client, map[string]int{"/": 403})
	}
	want := map[string]string{"198.51.100.42": "traversal", "198.51.100.43": "traversal", "198.51.100.44": "traversal"}
	if got := reclassifiedIPs(c); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("reclassified %v, want %v", got, want)
	}
}

// TestCrossSiteScoredWhenConfigured: score_cross_site scores a cross-site request as any other.
func TestCrossSiteScoredWhenConfigured(t *testing.T) {
	scored := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	testcaddy.StartCaddy(t, fmt.Sprintf(`{
	admin off
	servers {
		trusted_proxies static 127.0.0.1/32
	}
	hardening {
		environment production
		detection {
			score_cross_site
		}
	}
}
http://%s {
	bind 127.0.0.1
	path_guard {
		suspicious_action block
	}
	respond "ok"
}
`, scored))
	expectAnswers(t, scored, "198.51.100.45", map[string]int{"/cat/%252e%252e/cat.png": 400},
		"Sec-Fetch-Site: cross-site", "Sec-Fetch-Mode: no-cors", "Sec-Fetch-Dest: image")
	expectAnswers(t, scored, "198.51.100.45", map[string]int{"/": 403})
}

// TestDetectionBurstJSONBounds: the JSON config is held to the Caddyfile's bounds.
func TestDetectionBurstJSONBounds(t *testing.T) {
	c := testcaddy.StartCaddy(t, "")
	for burst, want := range map[string]string{
		`"probe": {"allowance": 3}`:                   "burst probe: only not_found, auth_failure and rate_limited have a burst",
		`"not_found": {"allowance": -1}`:              "burst not_found: allowance -1: expected 0 to 10000",
		`"auth_failure": {"allowance": 5, "leak": 1}`: "burst auth_failure: leak 1ns: expected 100ms to 1h0m0s",
		`"nope": {"allowance": 5}`:                    `burst: unknown signal "nope"`,
	} {
		err := c.LoadJSON(`{"apps": {"hardening": {"detection": {"bursts": {` + burst + `}}}}}`)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("bursts {%s}: %v, want an error containing %q", burst, err, want)
		}
	}
}

// TestCrawlersOfStaleSitemapsAreBannedUnlessExempted: a search-engine crawler or a link
// checker walking a sitemap with many stale URLs sends distinct 404s of pages at a rate no
// reader does, as a slow dirbuster does: with the default detection it is banned at its 30th
// stale URL, and suspicious_action block then answers it 403 on live pages too.
// The README's recipe exempts the crawlers' published ranges from signals by client_ip (not
// by User-Agent, which a scanner writes itself): the same walk from such an address bans
// nobody, while everyone else's is still scored.
func TestCrawlersOfStaleSitemapsAreBannedUnlessExempted(t *testing.T) {
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "index.html"), []byte("<p>home</p>"), 0o644); err != nil {
		t.Fatal(err)
	}
	addr, c := productionGuardRoutes(t, fmt.Sprintf(`	@crawlers client_ip 66.249.64.0/19
	@others not client_ip 66.249.64.0/19
	path_guard @crawlers {
		suspicious_action block
		signals off
	}
	path_guard @others {
		suspicious_action block
	}
	root * %s
	file_server`, root))

	walk := func(client string) (refusedAt int) {
		for i := 1; i <= 60; i++ {
			target := fmt.Sprintf("/blog/2019/old-post-%d.html", i)
			if i%3 == 0 {
				target = "/"
			}
			switch status := sendAs(t, addr, client, target); status {
			case http.StatusForbidden:
				return i
			case http.StatusOK, http.StatusNotFound:
			default:
				t.Fatalf("%s: %s answered %d", client, target, status)
			}
		}
		return 0
	}
	if got := walk("198.51.100.30"); got == 0 {
		t.Fatal("a crawler walking 40 stale URLs was not banned: the README says it is")
	}
	if got := walk("66.249.66.1"); got != 0 {
		t.Fatalf("an exempted crawler was refused at its request %d", got)
	}
	if got := reclassifiedIPs(c); fmt.Sprint(got) != fmt.Sprint(map[string]string{"198.51.100.30": "not_found"}) {
		t.Fatalf("reclassified %v", got)
	}
}

// productionGuardRoutes runs a production site with the default detection in front of routes
// that hold their own path_guard; clients are told apart by X-Forwarded-For from the trusted
// loopback proxy.
func productionGuardRoutes(t *testing.T, routes string) (string, *testcaddy.Caddy) {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	c := testcaddy.StartCaddy(t, fmt.Sprintf(`{
	admin off
	servers {
		trusted_proxies static 127.0.0.1/32
		trusted_proxies_strict
	}
	hardening {
		environment production
	}
}
http://%s {
	bind 127.0.0.1
%s
}
`, addr, routes))
	return addr, c
}

// TestOfficeLoginRushIsNotBannedButHammeringIs: the built-in authentication policy (5/1m
// burst 5) refuses an office's login rush from its one address (20 users within a minute: 15
// refusals); when every refusal scored rate_limited 3, the 7th banned the office from the
// whole site (suspicious_action block). Refusals now count past an allowance (30, one back
// every 2 s): the rush costs the office the refused logins only, while a script that keeps
// sending at many times its limit is detected within its first 40 refusals.
func TestOfficeLoginRushIsNotBannedButHammeringIs(t *testing.T) {
	addr, c := productionGuard(t, "\thandle /login {\n\t\tpolicy_rate_limit authentication\n\t\trespond 200\n\t}\n\trespond 200")
	login := func(client string) int {
		req, err := http.NewRequest(http.MethodPost, "http://"+addr+"/login", strings.NewReader("user=alice&password=right"))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("X-Forwarded-For", client)
		resp, _ := fetch(t, req)
		return resp.StatusCode
	}
	refused := 0
	for range 20 {
		switch status := login("198.51.100.40"); status {
		case http.StatusTooManyRequests:
			refused++
		case http.StatusOK:
		default:
			t.Fatalf("office login: %d, want 200 or 429", status)
		}
	}
	if refused != 15 {
		t.Fatalf("the office got %d refusals of 20 logins, want 15", refused)
	}
	expectAnswers(t, addr, "198.51.100.40", map[string]int{"/": 200})

	refusedAt := 0
	for i := 1; i <= 100 && refusedAt == 0; i++ {
		if login("198.51.100.41") == http.StatusForbidden {
			refusedAt = i
		}
	}
	if refusedAt == 0 || refusedAt > 45 {
		t.Fatalf("a script hammering the login was blocked from its request %d, want within 45", refusedAt)
	}
	if got := reclassifiedIPs(c); fmt.Sprint(got) != fmt.Sprint(map[string]string{"198.51.100.41": "rate_limited"}) {
		t.Fatalf("reclassified %v", got)
	}
}

// TestSignalsOffCoversTheRestOfTheRoute: the README's crawler recipe (`path_guard @crawlers {
// signals off }`) exempted the crawlers' 404s, but a policy_rate_limit on the same route still
// reported its 429s: a crawler faster than the `public` policy (300/1m burst 60) was banned at
// about its 100th request, and then refused 403 on every page for ban_for. `signals off` now
// covers the whole route: the exempted crawler is only rate-limited, another client sending the
// same is banned.
func TestSignalsOffCoversTheRestOfTheRoute(t *testing.T) {
	addr, c := productionGuardRoutes(t, `	@crawlers client_ip 66.249.64.0/19
	@others not client_ip 66.249.64.0/19
	path_guard @crawlers {
		suspicious_action block
		signals off
	}
	path_guard @others {
		suspicious_action block
	}
	policy_rate_limit public
	respond "page"`)
	crawl := func(client string) map[int]int {
		got := map[int]int{}
		for i := 0; i < 200; i++ {
			got[sendAs(t, addr, client, fmt.Sprintf("/page/%d", i))]++
		}
		return got
	}
	if got := crawl("66.249.66.1"); got[http.StatusForbidden] != 0 || got[http.StatusTooManyRequests] == 0 {
		t.Fatalf("exempted crawler: %v, want 429s and no 403", got)
	}
	if got := crawl("198.51.100.31"); got[http.StatusForbidden] == 0 {
		t.Fatalf("a client that is not exempted: %v, want it banned (403)", got)
	}
	if got := reclassifiedIPs(c); fmt.Sprint(got) != fmt.Sprint(map[string]string{"198.51.100.31": "rate_limited"}) {
		t.Fatalf("reclassified %v", got)
	}
}

// TestRoutine404sDoNotCount: what clients ask for by convention (a crawler's /robots.txt and
// /sitemap.xml, browsers' and password managers' /.well-known/* probes) is missing on most
// sites; each of those 404s took a slot of the client's not_found allowance, so an office
// whose browsers made the usual probes was banned by the 19 distinct broken links its users
// then met (12 + 19: detected at the 30th). They count for nothing now: only the links do.
func TestRoutine404sDoNotCount(t *testing.T) {
	addr, c := readerSite(t)
	routine := map[string]int{"/robots.txt": 404, "/sitemap.xml": 404, "/ads.txt": 404,
		"/app-ads.txt": 404, "/browserconfig.xml": 404, "/.well-known/change-password": 404,
		"/.well-known/traffic-advice": 404, "/.well-known/security.txt": 404,
		"/.well-known/assetlinks.json": 404, "/.well-known/apple-app-site-association": 404,
		"/.well-known/appspecific/com.chrome.devtools.json": 404,
		"/.well-known/passkey-endpoints":                    404}
	expectAnswers(t, addr, "198.51.100.30", routine)
	for i := range 19 {
		expectAnswers(t, addr, "198.51.100.30", map[string]int{fmt.Sprintf("/blog/old-post-%d/", i): 404})
	}
	expectAnswers(t, addr, "198.51.100.30", map[string]int{"/": 200})
	if got := reclassifiedIPs(c); len(got) != 0 {
		t.Fatalf("an office's routine probes and broken links reclassified: %v", got)
	}
}
