package caddymodule

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/swarmsec/caddy-hardening/internal/testcaddy"
	"github.com/swarmsec/caddy-hardening/internal/testenv"
	"github.com/swarmsec/caddy-hardening/ipclass"
	"github.com/swarmsec/caddy-hardening/pathguard"
)

// rawGet sends a request line exactly as given (no client-side cleaning or escaping) and
// returns the status, the Content-Type and the body.
func rawGet(t *testing.T, addr, target string, headers ...string) (int, string, string) {
	t.Helper()
	status, ct, body, err := tryRawGet(addr, target, headers...)
	if err != nil {
		t.Fatalf("GET %q: %v", target, err)
	}
	return status, ct, body
}

// tryRawGet is rawGet that returns its error: for a wait across a reload, where the old
// server may close a connection unanswered.
func tryRawGet(addr, target string, headers ...string) (int, string, string, error) {
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return 0, "", "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	req := "GET " + target + " HTTP/1.1\r\nHost: " + addr + "\r\nConnection: close\r\n"
	for _, h := range headers {
		req += h + "\r\n"
	}
	if _, err := io.WriteString(conn, req+"\r\n"); err != nil {
		return 0, "", "", err
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return 0, "", "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Content-Type"), string(body), err
}

// waitAnswering waits until addr answers a request: right after a reload, the old server can
// still take one connection and close it unanswered while it shuts down (CI saw "unexpected
// EOF" on the first request after a reload).
func waitAnswering(t *testing.T, addr string) {
	t.Helper()
	testenv.WaitFor(t, 5*time.Second, "an answer after the reload", func() bool {
		resp, err := http.Get("http://" + addr + "/")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return true
	})
}

func randomToken(t *testing.T) string {
	var b [12]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b[:])
}

// TestPathGuardCorpusThroughFileServer: every attack form of the corpus, sent raw to a real
// Caddy with path_guard in front of file_server, is refused and never reads the secret file
// that sits next to the root; every benign path passes to file_server.
func TestPathGuardCorpusThroughFileServer(t *testing.T) {
	dir := t.TempDir()
	secret := "TOPSECRET-" + randomToken(t)
	root := filepath.Join(dir, "site")
	for name, content := range map[string]string{
		filepath.Join(dir, "secret.txt"):                 secret,
		filepath.Join(root, "index.html"):                "<p>home</p>",
		filepath.Join(root, "a..b.txt"):                  "dots inside a name",
		filepath.Join(root, "static", "app.min.js"):      "console.log(1)",
		filepath.Join(root, "caf\u00e9", "menu"):         "unicode",
		filepath.Join(root, "v1.2..3", "x"):              "version",
		filepath.Join(root, "static", "secret-link.txt"): "",
	} {
		if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(name, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	addr, _ := guardCaddy(t, fmt.Sprintf("\troot * %s\n\tpath_guard\n\tfile_server\n", root))

	before := pathBlockedTotal()
	attacks := testenv.Lines(t, "../pathguard/testdata/attacks.txt")
	fromGuard := 0
	for _, p := range attacks {
		status, ctype, body := rawGet(t, addr, p)
		if strings.Contains(body, secret) {
			t.Fatalf("%q read the secret file", p)
		}
		if status != http.StatusBadRequest {
			t.Errorf("%q: status %d, want 400", p, status)
		}
		// Go's HTTP server itself refuses request targets with invalid escapes (%zz, %u002e)
		// before Caddy; every other attack must be path_guard's refusal.
		if _, err := url.ParseRequestURI(p); err == nil && ctype != "application/problem+json" {
			t.Errorf("%q: not refused by path_guard (%s)", p, ctype)
		}
		if ctype == "application/problem+json" {
			fromGuard++
		}
	}
	if got := pathBlockedTotal() - before; int(got) != fromGuard {
		t.Errorf("path_blocked_total grew by %v, want %d", got, fromGuard)
	}
	t.Logf("%d attack forms refused (%d by path_guard)", len(attacks), fromGuard)

	for _, p := range testenv.Lines(t, "../pathguard/testdata/benign.txt") {
		status, _, body := rawGet(t, addr, p)
		if status == http.StatusBadRequest {
			t.Errorf("benign %q refused: %s", p, body)
		}
	}
	for p, want := range map[string]string{"/a..b.txt": "dots inside a name", "/caf%C3%A9/menu": "unicode", "/v1.2..3/x": "version", "/static/app.min.js?next=../../etc/passwd": "console.log(1)"} {
		if status, _, body := rawGet(t, addr, p); status != 200 || body != want {
			t.Errorf("%s: %d %q, want 200 %q", p, status, body, want)
		}
	}
}

func pathBlockedTotal() float64 {
	sum := 0.0
	for _, r := range pathguard.Reasons {
		sum += testutil.ToFloat64(pathBlocked.WithLabelValues(string(r)))
	}
	return sum
}

// eventRecorder is a test-only Caddy event handler module that records the events it gets.
type eventRecorder struct{}

var recorded struct {
	sync.Mutex
	events []caddy.Event
}

func (eventRecorder) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "events.handlers.hardening_test_recorder", New: func() caddy.Module { return new(eventRecorder) }}
}

func (eventRecorder) Handle(_ context.Context, e caddy.Event) error {
	recorded.Lock()
	defer recorded.Unlock()
	recorded.events = append(recorded.events, e)
	return nil
}

func init() { caddy.RegisterModule(eventRecorder{}) }

// recordedEvents returns the recorded events of that name.
func recordedEvents(name string) []caddy.Event {
	recorded.Lock()
	defer recorded.Unlock()
	var out []caddy.Event
	for _, e := range recorded.events {
		if e.Name() == name {
			out = append(out, e)
		}
	}
	return out
}

// startWithEvents runs the Caddyfile with the events app subscribing the recorder to names.
func startWithEvents(t *testing.T, caddyfile string, names ...string) *testcaddy.Caddy {
	t.Helper()
	raw := withEvents(t, caddyfile, names...)
	recorded.Lock()
	recorded.events = nil
	recorded.Unlock()
	c := testcaddy.StartCaddy(t, "")
	if err := c.LoadJSON(raw); err != nil {
		t.Fatal(err)
	}
	return c
}

// withEvents is the Caddyfile's JSON config with the events app subscribing the recorder to
// names (for a reload of a config startWithEvents started).
func withEvents(t *testing.T, caddyfile string, names ...string) string {
	t.Helper()
	cfg, err := testcaddy.Adapt(caddyfile)
	if err != nil {
		t.Fatal(err)
	}
	apps, _ := cfg["apps"].(map[string]any)
	apps["events"] = map[string]any{"subscriptions": []any{map[string]any{
		"events": names, "handlers": []any{map[string]any{"handler": "hardening_test_recorder"}},
	}}}
	raw, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return string(raw)
}

func securityLogs(c *testcaddy.Caddy, event string) []testenv.LogEntry {
	return testenv.Filter(c.Logs(), func(e testenv.LogEntry) bool {
		return e.Logger() == securityLoggerName && e.Str("event") == event
	})
}

func adminDo(t *testing.T, method, url, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestDetectionBlocksAndOperatorUnbans: probes make the client suspicious (event, log, metric),
// suspicious_action block refuses it with 403, the admin API lists and unbans it.
func TestDetectionBlocksAndOperatorUnbans(t *testing.T) {
	port, adminPort := testenv.FreePort(t), testenv.FreePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	admin := fmt.Sprintf("http://127.0.0.1:%d", adminPort)
	c := startWithEvents(t, fmt.Sprintf(`{
	admin 127.0.0.1:%d
	hardening {
		detection {
			threshold 20
			ban_for 1h
		}
	}
}
http://%s {
	bind 127.0.0.1
	path_guard {
		suspicious_action block
	}
	respond "class {http.vars.ip_class}"
}
`, adminPort, addr), EventIPReclassified, EventSuspiciousBlocked)
	before := testutil.ToFloat64(reclassified.WithLabelValues("probe", "false"))

	if _, _, body := rawGet(t, addr, "/"); body != "class default" {
		t.Fatalf("first request: %q", body)
	}
	if _, _, body := rawGet(t, addr, "/.env"); body != "class default" { // probe: 10
		t.Fatalf("a probe is served (only scored): %q", body)
	}
	if _, _, body := rawGet(t, addr, "/.git/config"); body != "class default" { // 20: detected
		t.Fatalf("the crossing request is still served with its class: %q", body)
	}
	status, ctype, body := rawGet(t, addr, "/")
	if status != http.StatusForbidden || ctype != "application/problem+json" || !strings.Contains(body, `"status":403`) {
		t.Fatalf("detected client: %d %s %s", status, ctype, body)
	}
	if got := testutil.ToFloat64(reclassified.WithLabelValues("probe", "false")) - before; got != 1 {
		t.Errorf("ip_reclassified_total{signal=probe} grew by %v, want 1", got)
	}
	logged := securityLogs(c, EventIPReclassified)
	if len(logged) != 1 || logged[0].Str("ip") != "127.0.0.1" || logged[0].Str("signal") != "probe" ||
		logged[0].Str("to") != "suspicious" || logged[0].Level() != "warn" || logged[0].Str("module") != "http.handlers.path_guard" {
		t.Fatalf("ip_reclassified log: %v", logged)
	}
	if ev := recordedEvents(EventIPReclassified); len(ev) != 1 || ev[0].Data["ip"] != "127.0.0.1" || ev[0].Data["signal"] != "probe" {
		t.Fatalf("Caddy events ip_reclassified: %v", ev)
	}
	if n := len(recordedEvents(EventSuspiciousBlocked)); n != 1 {
		t.Fatalf("%d suspicious_blocked Caddy events, want 1", n)
	}

	report := componentStatus(t, "ipclass:detection")
	if report.Status != HealthPass || report.Observed["suspicious"] != 1 {
		t.Fatalf("detection status for monitoring: %+v", report)
	}
	if tracked, detected := testutil.ToFloat64(trackedGauge), testutil.ToFloat64(detectedGauge); tracked != 1 || detected != 1 {
		t.Fatalf("gauges: %v tracked, %v suspicious; want 1 and 1", tracked, detected)
	}
	if got := testutil.ToFloat64(classifiedRequests[ipclass.Suspicious]); got < 1 {
		t.Fatalf("ip_class_requests_total{class=suspicious} = %v", got)
	}

	code, list := adminDo(t, "GET", admin+"/hardening/ipclass/", "")
	if code != 200 || !strings.Contains(list, `"ip":"127.0.0.1"`) || !strings.Contains(list, `"signal":"probe"`) {
		t.Fatalf("admin list: %d %s", code, list)
	}
	if code, body := adminDo(t, "GET", admin+"/hardening/ipclass/class/127.0.0.1", ""); code != 200 || !strings.Contains(body, `"class":"suspicious"`) {
		t.Fatalf("admin class: %d %s", code, body)
	}
	if code, body := adminDo(t, "DELETE", admin+"/hardening/ipclass/detected/127.0.0.1", ""); code != 200 || !strings.Contains(body, `"was_detected":true`) {
		t.Fatalf("admin unban: %d %s", code, body)
	}
	if _, _, body := rawGet(t, addr, "/"); body != "class default" {
		t.Fatalf("after unban: %q", body)
	}
	if code, body := adminDo(t, "POST", admin+"/hardening/ipclass/detected", `{"ip": "127.0.0.1", "ban_for": "10m"}`); code != 201 {
		t.Fatalf("admin ban: %d %s", code, body)
	}
	if status, _, _ := rawGet(t, addr, "/"); status != http.StatusForbidden {
		t.Fatalf("after an operator's ban: %d, want 403", status)
	}
	// The operator's unban and ban are events of the hardening app.
	var fromAdmin []testenv.LogEntry
	for _, e := range securityLogs(c, EventIPReclassified) {
		if e.Str("source") == "admin_api" {
			fromAdmin = append(fromAdmin, e)
		}
	}
	if len(fromAdmin) != 2 || fromAdmin[0].Str("module") != "hardening" || fromAdmin[1].Str("module") != "hardening" ||
		fromAdmin[0]["was_detected"] != true || fromAdmin[1].Str("signal") != "manual" {
		t.Errorf("ip_reclassified from the admin API: %v", fromAdmin)
	}
	for _, bad := range []string{`{"ip": "nope"}`, `{"ip": "127.0.0.1", "ban_for": "-1m"}`, `not json`,
		`{"ip": "127.0.0.1", "ban_for": "1ms"}`,     // the config's bounds: 1s ...
		`{"ip": "127.0.0.1", "ban_for": "100000d"}`, // ... to 10 years (past 2262 the end overflowed: banned nobody)
		`{"ip": "127.0.0.1", "banfor": "10s"}`,      // a misspelt field banned for the default 15m
		`{"ip": "127.0.0.1", "ban_for": "10s", "until": "2030-01-01T00:00:00Z"}`,
	} {
		if code, _ := adminDo(t, "POST", admin+"/hardening/ipclass/detected", bad); code != 400 {
			t.Errorf("admin ban %s: %d, want 400", bad, code)
		}
	}
	// An IPv6 client is its /64: banned by one address, listed as the network, in the
	// suspicious class for every address of it, and unbanned by the listed name.
	if code, body := adminDo(t, "POST", admin+"/hardening/ipclass/detected", `{"ip": "2001:db8:7:2::1", "ban_for": "10m"}`); code != 201 {
		t.Fatalf("admin ban of an IPv6 address: %d %s", code, body)
	}
	if _, list := adminDo(t, "GET", admin+"/hardening/ipclass/", ""); !strings.Contains(list, `"ip":"2001:db8:7:2::/64"`) {
		t.Fatalf("admin list does not name the /64: %s", list)
	}
	if _, body := adminDo(t, "GET", admin+"/hardening/ipclass/class/2001:db8:7:2:ffff::5", ""); !strings.Contains(body, `"class":"suspicious"`) {
		t.Fatalf("another address of the banned /64: %s", body)
	}
	if code, body := adminDo(t, "DELETE", admin+"/hardening/ipclass/detected/2001:db8:7:2::/64", ""); code != 200 || !strings.Contains(body, `"was_detected":true`) {
		t.Fatalf("admin unban of the /64: %d %s", code, body)
	}
	// A network of another length, or with host bits, would name some other /64: refused.
	for _, p := range []string{"2001:db8:5::/32", "::/0", "2001:db8:6:7:8::/80", "2001:db8:7:2::1/64"} {
		if code, body := adminDo(t, "POST", admin+"/hardening/ipclass/detected", `{"ip": "`+p+`", "ban_for": "10m"}`); code != 400 {
			t.Errorf("admin ban of %s: %d %s, want 400", p, code, body)
		}
		if code, body := adminDo(t, "DELETE", admin+"/hardening/ipclass/detected/"+p, ""); code != 400 {
			t.Errorf("admin unban of %s: %d %s, want 400", p, code, body)
		}
	}
}

// TestDetectionScoresBounded: a JSON score or threshold above 1000000 is refused (two scores
// near the float64 limit sum to +Inf, which no decay brings back).
func TestDetectionScoresBounded(t *testing.T) {
	c := testcaddy.StartCaddy(t, "")
	for detection, want := range map[string]string{
		`{"scores": {"traversal": 1e308}}`: "detection: score traversal 1e+308: expected 0 to 1000000",
		`{"threshold": 1e300}`:             "detection: threshold 1e+300: at most 1000000",
	} {
		if err := c.LoadJSON(`{"apps": {"hardening": {"detection": ` + detection + `}}}`); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", detection, err, want)
		}
	}
}

// TestDetectionBanForLongest: a JSON ban_for beyond 10 years is refused (its end, in int64
// nanoseconds, overflowed: the client was "detected" and served); 10 years holds.
func TestDetectionBanForLongest(t *testing.T) {
	c := testcaddy.StartCaddy(t, "")
	err := c.LoadJSON(`{"apps": {"hardening": {"detection": {"ban_for": "100000d"}}}}`)
	if err == nil || !strings.Contains(err.Error(), "longer than 10 years") {
		t.Fatalf("ban_for 100000d: %v, want a refusal", err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	if err := c.LoadJSON(fmt.Sprintf(`{"apps": {"hardening": {"detection": {"ban_for": "3650d"}},
	"http": {"servers": {"s": {"listen": [%q], "routes": [{"handle": [{"handler": "path_guard", "suspicious_action": "block"},
		{"handler": "static_response", "body": "ok"}]}]}}}}}`, addr)); err != nil {
		t.Fatal(err)
	}
	if status, _, _ := rawGet(t, addr, "/a/%2e%2e/b"); status != http.StatusBadRequest { // traversal: detected
		t.Fatalf("traversal: %d", status)
	}
	if status, _, _ := rawGet(t, addr, "/"); status != http.StatusForbidden {
		t.Fatalf("after a detection with ban_for 3650d: %d, want 403", status)
	}
}

// TestDetectionFromResponsesAndShadow: 404s and failed authentications detect a client (here
// without a burst allowance: every one scores); in shadow mode the detection is logged and the
// client keeps its class.
func TestDetectionFromResponsesAndShadow(t *testing.T) {
	for _, shadow := range []bool{false, true} {
		t.Run(fmt.Sprintf("shadow=%v", shadow), func(t *testing.T) {
			port := testenv.FreePort(t)
			addr := fmt.Sprintf("127.0.0.1:%d", port)
			opt := ""
			if shadow {
				opt = "\n\t\t\tshadow"
			}
			c := testcaddy.StartCaddy(t, fmt.Sprintf(`{
	hardening {
		detection {
			score not_found 5 auth_failure 5
			burst not_found 0
			burst auth_failure 0%s
		}
	}
}
http://%s {
	bind 127.0.0.1
	path_guard
	respond /missing 404
	respond /private 401
	respond "class {http.vars.ip_class}"
}
`, opt, addr))
			login := "Authorization: Basic dXNlcjp3cm9uZw=="
			for _, p := range []string{"/missing", "/private", "/missing"} {
				rawGet(t, addr, p, login)
			}
			if _, _, body := rawGet(t, addr, "/"); body != "class default" {
				t.Fatalf("15 points: %q", body)
			}
			rawGet(t, addr, "/private", login) // 20
			want := "class suspicious"
			if shadow {
				want = "class default"
			}
			if _, _, body := rawGet(t, addr, "/"); body != want {
				t.Fatalf("after the burst: %q, want %q", body, want)
			}
			logged := securityLogs(c, EventIPReclassified)
			if len(logged) != 1 || logged[0].Str("signal") != "auth_failure" || logged[0]["shadow"] != shadow {
				t.Fatalf("ip_reclassified: %v", logged)
			}
		})
	}
}

// TestClassFollowsTrustedProxiesOnly: X-Forwarded-For from a peer that is not a trusted proxy
// changes nothing; from a configured trusted proxy it names the client.
func TestClassFollowsTrustedProxiesOnly(t *testing.T) {
	for _, tc := range []struct {
		name, servers, xff, want string
	}{
		{"untrusted peer spoofs a suspicious address", "", "203.0.113.9", "class trusted"},
		{"untrusted peer spoofs a trusted address", "", "10.1.2.3", "class trusted"},
		{"trusted proxy forwards a suspicious client", "\n\tservers {\n\t\ttrusted_proxies static 127.0.0.1/32\n\t}", "203.0.113.9", "matched suspicious"},
		{"trusted proxy forwards a default client", "\n\tservers {\n\t\ttrusted_proxies static 127.0.0.1/32\n\t}", "198.51.100.1", "class default"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			port := testenv.FreePort(t)
			addr := fmt.Sprintf("127.0.0.1:%d", port)
			testcaddy.StartCaddy(t, fmt.Sprintf(`{%s
	hardening {
		ip_classes {
			trusted 127.0.0.1 10.0.0.0/8
			suspicious 203.0.113.0/24
		}
	}
}
http://%s {
	bind 127.0.0.1
	@sus ip_class suspicious
	path_guard
	respond @sus "matched {http.vars.ip_class}"
	respond "class {http.vars.ip_class}"
}
`, tc.servers, addr))
			if _, _, body := rawGet(t, addr, "/", "X-Forwarded-For: "+tc.xff); body != tc.want {
				t.Fatalf("got %q, want %q", body, tc.want)
			}
		})
	}
}

// TestSuspiciousProbesPassTheExampleLayout: a suspicious client (here the load balancer's
// address, a static suspicious prefix) behind path_guard { suspicious_action block } at site
// level gets 403 on /api/monitoring/live and /ready: Kubernetes would restart the pod. With
// the matcher of Caddyfile.example in front of path_guard, it gets 200 on every probe route,
// and is still refused elsewhere; a traversal is still refused for everyone. The check of
// Caddyfile.example reports no monitoring.probes_blocked.
func TestSuspiciousProbesPassTheExampleLayout(t *testing.T) {
	example, err := os.ReadFile("../Caddyfile.example")
	if err != nil {
		t.Fatal(err)
	}
	var guarded string
	for line := range strings.Lines(string(example)) {
		if strings.HasPrefix(strings.TrimSpace(line), "@guarded ") {
			guarded = strings.TrimSpace(line)
		}
	}
	if guarded == "" {
		t.Fatal("Caddyfile.example has no @guarded matcher")
	}
	bare, fixed := testenv.FreePort(t), testenv.FreePort(t)
	testcaddy.StartCaddy(t, fmt.Sprintf(`{
	hardening {
		ip_classes {
			suspicious 127.0.0.1
		}
	}
}
http://127.0.0.1:%d {
	bind 127.0.0.1
	path_guard {
		suspicious_action block
	}
	handle_path /api/monitoring/* {
		monitoring
	}
	respond "app"
}
http://127.0.0.1:%d {
	bind 127.0.0.1
	%s
	path_guard @guarded {
		suspicious_action block
	}
	handle_path /api/monitoring/* {
		monitoring
	}
	respond "app"
}
`, bare, fixed, guarded))
	for _, route := range []string{"live", "ready"} {
		if status, _, _ := rawGet(t, fmt.Sprintf("127.0.0.1:%d", bare), "/api/monitoring/"+route); status != http.StatusForbidden {
			t.Errorf("site-level block: /%s answered %d, want the 403 that the check warns about", route, status)
		}
	}
	addr := fmt.Sprintf("127.0.0.1:%d", fixed)
	for _, route := range probeRoutes {
		if status, _, body := rawGet(t, addr, "/api/monitoring/"+route); status != http.StatusOK {
			t.Errorf("example layout: /%s answered %d %s to a suspicious client, want 200", route, status, body)
		}
	}
	for _, p := range []string{"/", "/api/monitoring/services", "/api/x"} {
		if status, _, _ := rawGet(t, addr, p); status != http.StatusForbidden {
			t.Errorf("example layout: %s answered %d to a suspicious client, want 403", p, status)
		}
	}
	if status, _, _ := rawGet(t, addr, "/static/..%2f..%2fsecret"); status != http.StatusBadRequest {
		t.Errorf("example layout: a traversal answered %d, want 400", status)
	}

	cfg, _, err := caddyconfig.GetAdapter("caddyfile").Adapt(example, map[string]any{"filename": "Caddyfile.example"})
	if err != nil {
		t.Fatal(err)
	}
	if f, ok := codes(CheckConfig(cfg))["monitoring.probes_blocked"]; ok {
		t.Errorf("the check reports Caddyfile.example: %+v", f)
	}
}

// recordingUpstream is an upstream that answers "upstream <request URI>" and records the
// request URIs it receives; it returns its host:port and the URIs so far.
func recordingUpstream(t *testing.T) (string, func() []string) {
	t.Helper()
	var mu sync.Mutex
	var seen []string
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.RequestURI)
		mu.Unlock()
		_, _ = io.WriteString(w, "upstream "+r.RequestURI)
	}))
	t.Cleanup(up.Close)
	return strings.TrimPrefix(up.URL, "http://"), func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(seen)
	}
}

// TestPathGuardRawInvalidUTF8NeverReachesUpstream: bytes that are not UTF-8, sent raw on the
// request line (the Go client would escape them), are refused with the reason of their
// percent-encoded form, since reverse_proxy sends the upstream exactly that form
// (/\xc0\xae\xc0\xae/etc/passwd arrives as /%C0%AE%C0%AE/etc/passwd). The upstream sees none of
// them, and still sees raw valid UTF-8, escaped.
func TestPathGuardRawInvalidUTF8NeverReachesUpstream(t *testing.T) {
	upstream, seen := recordingUpstream(t)
	addr, c := guardCaddy(t, "\tpath_guard\n\treverse_proxy "+upstream+"\n")

	for _, tc := range []struct{ raw, reason string }{
		{"/\xc0\xae\xc0\xae/etc/passwd", "overlong_utf8"}, // overlong '.'
		{"/\xe0\x80\xae\xe0\x80\xae/x", "overlong_utf8"},  // three-byte overlong '.'
		{"/\xf0\x80\x80\xae\xf0\x80\x80\xae/x", "overlong_utf8"},
		{"/\xc0\xaf", "overlong_utf8"},             // overlong '/'
		{"/a/\xc1\x9c/b", "overlong_utf8"},         // overlong '\'
		{"/\xc0\xae./x", "overlong_utf8"},          // overlong '.' next to '.'
		{"/\xf8\x80\x80\x80\xae", "overlong_utf8"}, // five-byte form: no such lead byte
		{"/a\x80b", "invalid_utf8"},                // lone continuation byte
		{"/caf\xe9", "invalid_utf8"},               // Latin-1 é
		{"/a\xe2\x80/b", "invalid_utf8"},           // truncated sequence
		{"/\xed\xa0\x80", "invalid_utf8"},          // UTF-16 surrogate half
		{"/\xf4\x90\x80\x80", "invalid_utf8"},      // above U+10FFFF
	} {
		encoded := (&url.URL{Path: tc.raw}).EscapedPath() // what reverse_proxy would send
		for _, target := range []string{tc.raw, encoded} {
			before := testutil.ToFloat64(pathBlocked.WithLabelValues(tc.reason))
			status, ctype, body := rawGet(t, addr, target)
			if status != http.StatusBadRequest || ctype != "application/problem+json" {
				t.Errorf("%q: %d %s %q, want 400 problem+json", target, status, ctype, body)
			}
			if got := testutil.ToFloat64(pathBlocked.WithLabelValues(tc.reason)) - before; got != 1 {
				t.Errorf("%q: path_blocked_total{reason=%q} grew by %v, want 1", target, tc.reason, got)
			}
		}
	}
	if got := seen(); len(got) != 0 {
		t.Errorf("the upstream received %q", got)
	}
	if n := len(securityLogs(c, EventPathBlocked)); n != 24 {
		t.Errorf("%d path_blocked events, want 24", n)
	}

	// Raw valid UTF-8 passes, and arrives escaped.
	if status, _, body := rawGet(t, addr, "/caf\xc3\xa9/\xe6\x97\xa5"); status != http.StatusOK || body != "upstream /caf%C3%A9/%E6%97%A5" {
		t.Errorf("raw UTF-8: %d %q", status, body)
	}
}

// TestPathGuardAllowInvalidUTF8: a path_guard with allow invalid_utf8 hands legacy Latin-1 links
// (percent-encoded or raw) to the upstream, where they were refused with no switch but
// `signals off`; overlong UTF-8 is still refused there, and paths without it refuse both.
func TestPathGuardAllowInvalidUTF8(t *testing.T) {
	upstream, seen := recordingUpstream(t)
	// The layout the README shows: two path_guards with disjoint matchers.
	addr, _ := guardCaddy(t, fmt.Sprintf(`	@legacy path /fr/*
	@rest not path /fr/*
	path_guard @legacy {
		allow invalid_utf8
	}
	path_guard @rest
	reverse_proxy %s
`, upstream))
	for _, tc := range []struct {
		target string
		status int
		reason string
	}{
		{"/fr/caf%E9", http.StatusOK, ""},
		{"/fr/caf\xe9", http.StatusOK, ""},
		{"/fr/gar%E7on", http.StatusOK, ""},
		{"/fr/%C0-la-une", http.StatusOK, ""},
		{"/fr/%c0%ae%c0%ae/etc/passwd", http.StatusBadRequest, "overlong_utf8"},
		{"/fr/\xc0\xae\xc0\xae/etc/passwd", http.StatusBadRequest, "overlong_utf8"},
		{"/de/m%FCnchen", http.StatusBadRequest, "invalid_utf8"},
	} {
		before := testutil.ToFloat64(pathBlocked.WithLabelValues(tc.reason))
		if status, _, body := rawGet(t, addr, tc.target); status != tc.status {
			t.Errorf("%q: %d %q, want %d", tc.target, status, body, tc.status)
		}
		if tc.reason != "" {
			if got := testutil.ToFloat64(pathBlocked.WithLabelValues(tc.reason)) - before; got != 1 {
				t.Errorf("%q: path_blocked_total{reason=%q} grew by %v, want 1", tc.target, tc.reason, got)
			}
		}
	}
	if want := []string{"/fr/caf%E9", "/fr/caf%E9", "/fr/gar%E7on", "/fr/%C0-la-une"}; !slices.Equal(seen(), want) {
		t.Errorf("the upstream received %q, want %q", seen(), want)
	}
}

// setPath is a test-only handler standing in for a plugin that rewrites r.URL without
// RequestURI (Caddy's own rewrites update both): `hardening_test_set_path * <escaped path>`
// sets r.URL.Path to the decoded path.
type setPath struct {
	Path string `json:"path"` // escaped: JSON would turn bytes that are not UTF-8 into U+FFFD
}

func (setPath) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "http.handlers.hardening_test_set_path", New: func() caddy.Module { return new(setPath) }}
}

func (h setPath) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	p, err := url.PathUnescape(h.Path)
	if err != nil {
		return err
	}
	r.URL.Path, r.URL.RawPath = p, ""
	return next.ServeHTTP(w, r)
}

func init() {
	caddy.RegisterModule(setPath{})
	httpcaddyfile.RegisterHandlerDirective("hardening_test_set_path", func(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
		h.Next()
		if !h.NextArg() {
			return nil, h.ArgErr()
		}
		if _, err := url.PathUnescape(h.Val()); err != nil {
			return nil, h.Err(err.Error())
		}
		return setPath{Path: h.Val()}, nil
	})
}

// guardCaddy starts a Caddy with detection off (a test's refusals must not ban the loopback
// client) serving site, the body of a site block, on a free loopback port; it returns the
// address and the Caddy.
func guardCaddy(t *testing.T, site string) (string, *testcaddy.Caddy) {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	c := testcaddy.StartCaddy(t, fmt.Sprintf("{\n\thardening {\n\t\tfeatures {\n\t\t\tdetection off\n\t\t}\n\t}\n}\nhttp://%s {\n\tbind 127.0.0.1\n%s}\n", addr, site))
	return addr, c
}

// TestPathGuardJudgesTheURLTheRouteUses: when a handler before path_guard changed r.URL but not
// RequestURI, path_guard judges the path the rest of the route uses as well as the one the
// client sent.
func TestPathGuardJudgesTheURLTheRouteUses(t *testing.T) {
	addr, _ := guardCaddy(t, `	route /dots {
		hardening_test_set_path * /a/../../secret
		path_guard
		respond "reached {http.request.uri.path}"
	}

	route /overlong {
		hardening_test_set_path * /%c0%ae%c0%ae/x
		path_guard
		respond "reached"
	}

	route /plain {
		hardening_test_set_path * /caf%c3%a9/menu
		path_guard
		respond "reached {http.request.uri.path}"
	}
`)
	for _, p := range []string{"/dots", "/overlong"} {
		if status, ctype, body := rawGet(t, addr, p); status != http.StatusBadRequest || ctype != "application/problem+json" {
			t.Errorf("%s: %d %s %q, want 400 problem+json", p, status, ctype, body)
		}
	}
	if status, _, body := rawGet(t, addr, "/plain"); status != http.StatusOK || body != "reached /caf\u00e9/menu" {
		t.Errorf("/plain: %d %q, want 200", status, body)
	}
}

// TestPathGuardMalformedPathScoresLow: a refusal legacy links cause (a Latin-1 name, also
// encoded twice, ;jsessionid=, %2f, a stray %) sends malformed_path (2), so one does not ban
// the client, as traversal (20 = the threshold) did; a UTF-8 name encoded twice or three times
// (as some proxies send it) passes and bans nobody; an attack form, also behind such a flaw,
// is traversal. malformed_path's score is configurable like the others.
func TestPathGuardMalformedPathScoresLow(t *testing.T) {
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	site := func(scores string) string {
		return fmt.Sprintf(`{
	admin off
	servers {
		trusted_proxies static 127.0.0.1/32
	}
	hardening {
		detection {
			%s
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
`, scores, addr)
	}
	c := testcaddy.StartCaddy(t, site("threshold 20"))
	from := func(ip string) string { return "X-Forwarded-For: " + ip }
	x := "198.51.100.91"
	for _, p := range []string{"/docs/caf%e9.html", "/docs/caf\xe9.html", "/docs/caf%25e9.html", "/shop/item;jsessionid=ABC123", "/a%2fb", "/100%"} {
		if status, _, _ := rawGet(t, addr, p, from(x)); status != http.StatusBadRequest {
			t.Fatalf("%q: %d, want 400", p, status)
		}
		if status, _, _ := rawGet(t, addr, "/", from(x)); status != http.StatusOK {
			t.Fatalf("after %q the client is refused (%d): one legacy link banned it", p, status)
		}
	}
	for _, p := range []string{"/docs/caf%25C3%25A9.html", "/docs/caf%2525C3%2525A9.html"} {
		if status, _, _ := rawGet(t, addr, p, from(x)); status != http.StatusOK {
			t.Fatalf("%q, é encoded more than once: %d, want 200", p, status)
		}
	}
	if l := securityLogs(c, EventIPReclassified); len(l) != 0 {
		t.Fatalf("legacy links and twice-encoded names banned the client: %v", l)
	}
	if status, _, _ := rawGet(t, addr, "/caf%e9/%2e%2e/x", from(x)); status != http.StatusBadRequest { // traversal behind a Latin-1 byte
		t.Fatalf("traversal: %d", status)
	}
	if status, _, _ := rawGet(t, addr, "/", from(x)); status != http.StatusForbidden {
		t.Fatalf("after a traversal: %d, want 403", status)
	}
	if l := securityLogs(c, EventIPReclassified); len(l) != 1 || l[0].Str("signal") != "traversal" {
		t.Fatalf("ip_reclassified: %v", l)
	}

	if err := c.Load(site("score malformed_path 20")); err != nil {
		t.Fatal(err)
	}
	waitAnswering(t, addr)
	y := "198.51.100.92"
	rawGet(t, addr, "/docs/caf%e9.html", from(y))
	if status, _, _ := rawGet(t, addr, "/", from(y)); status != http.StatusForbidden {
		t.Fatalf("with score malformed_path 20, one Latin-1 link: %d, want 403", status)
	}
	if l := securityLogs(c, EventIPReclassified); len(l) != 2 || l[1].Str("signal") != "malformed_path" || l[1].Str("ip") != y {
		t.Fatalf("ip_reclassified: %v", l)
	}
}

// TestPathGuardOrdinaryURLsNeverBan: in production with the default detection, a reader who
// follows links with a look-alike slash in a title (Japanese ／, ∕, ＼) or a title ending in a
// letter and a colon (/wiki/A:) gets the pages and keeps its class; one such link was refused
// as traversal, 20 points, and banned the reader and everyone behind its NAT for 15 minutes.
// The same look-alikes making a `..` segment, and a drive root, still ban at once.
func TestPathGuardOrdinaryURLsNeverBan(t *testing.T) {
	addr, c := productionGuard(t, "\trespond \"ok\"")
	from := func(ip string) string { return "X-Forwarded-For: " + ip }
	reader := "198.51.100.31"
	for range 3 {
		for _, p := range []string{
			"/ja/%E3%83%A9%E3%83%BC%E3%83%A1%E3%83%B3%EF%BC%8F%E3%81%A4%E3%81%91%E9%BA%BA", // ラーメン／つけ麺
			"/ja/\u30e9\u30fc\u30e1\u30f3\uff0f\u3064\u3051\u9eba",                         // the same, raw
			"/ja/AC%EF%BC%8FDC",         // AC／DC
			"/math/a%E2%88%95b",         // a∕b
			"/ja/%E5%86%86%EF%BC%BC100", // 円＼100
			"/wiki/A:",
			"/docs/C:",
			"/wiki/Special%253ASearch", // a title whose colon a proxy escaped twice
			"/wiki/C%253A_The_Contra_Adventure",
		} {
			if status, _, body := rawGet(t, addr, p, from(reader)); status != http.StatusOK || body != "ok" {
				t.Fatalf("%q: %d %q, want 200", p, status, body)
			}
		}
	}
	if status, _, _ := rawGet(t, addr, "/", from(reader)); status != http.StatusOK {
		t.Fatalf("the reader is refused (%d)", status)
	}
	if l := securityLogs(c, EventIPReclassified); len(l) != 0 {
		t.Fatalf("ip_reclassified: %v", l)
	}
	if l := securityLogs(c, EventPathBlocked); len(l) != 0 {
		t.Fatalf("path_blocked: %v", l)
	}

	for i, p := range []string{"/ja/..%EF%BC%8F..%EF%BC%8Fetc/passwd", "/static/C:/Windows/win.ini"} {
		attacker := fmt.Sprintf("198.51.100.%d", 41+i)
		if status, _, _ := rawGet(t, addr, p, from(attacker)); status != http.StatusBadRequest {
			t.Fatalf("%q: %d, want 400", p, status)
		}
		if status, _, _ := rawGet(t, addr, "/", from(attacker)); status != http.StatusForbidden {
			t.Fatalf("after %q: %d, want 403", p, status)
		}
	}
	if l := securityLogs(c, EventIPReclassified); len(l) != 2 || l[0].Str("signal") != "traversal" || l[1].Str("signal") != "traversal" {
		t.Fatalf("ip_reclassified: %v", l)
	}
}

// TestAdminBanInShadowModeIsInfo: an operator's ban made while detection is in shadow mode is
// kept but refuses nothing yet, so its event is info, as a detection's in shadow mode.
func TestAdminBanInShadowModeIsInfo(t *testing.T) {
	adminPort := testenv.FreePort(t)
	c := testcaddy.StartCaddy(t, fmt.Sprintf("{\n\tadmin 127.0.0.1:%d\n\thardening {\n\t\tdetection {\n\t\t\tshadow\n\t\t}\n\t}\n}\n", adminPort))
	admin := fmt.Sprintf("http://127.0.0.1:%d", adminPort)
	if code, body := adminDo(t, "POST", admin+"/hardening/ipclass/detected", `{"ip": "192.0.2.44", "ban_for": "10m"}`); code != 201 || !strings.Contains(body, `"shadow":true`) {
		t.Fatalf("admin ban in shadow mode: %d %s", code, body)
	}
	logged := securityLogs(c, EventIPReclassified)
	if len(logged) != 1 || logged[0].Level() != "info" || logged[0]["shadow"] != true {
		t.Fatalf("ip_reclassified of the ban: %v, want one at info with shadow true", logged)
	}
}

// TestPathGuardRewriteAfter: a rewrite after path_guard that builds the path from the query
// (rewrite /dl /files/{query.f}) hands the upstream the client's `..`, which path_guard never
// judged; the configuration is path_guard.rewrite_after at the rewrite. Written in a route after
// the rewrite, path_guard judges the rewritten path and the upstream sees no traversal.
func TestPathGuardRewriteAfter(t *testing.T) {
	upstream, seen := recordingUpstream(t)
	bad := "\tpath_guard\n\trewrite /dl /files/{query.f}\n\treverse_proxy " + upstream + "\n"
	t.Run("after", func(t *testing.T) {
		addr, _ := guardCaddy(t, bad)
		if status, _, body := rawGet(t, addr, "/dl?f=..%2f..%2fetc%2fpasswd"); status != http.StatusOK || !strings.HasPrefix(body, "upstream /files/../../etc/passwd") {
			t.Fatalf("the layout the finding reports: %d %q (the upstream should see the traversal)", status, body)
		}
	})
	f, ok := codes(checkCaddyfile(t, checkSite("", bad)))["path_guard.rewrite_after"]
	if !ok || f.Severity != Warning || !strings.HasSuffix(f.Config, ".handle.0") || !strings.Contains(f.Message, "{http.request.uri.query.f}") {
		t.Fatalf("path_guard.rewrite_after: %+v (reported: %v)", f, ok)
	}

	fixed := "\troute {\n\t\trewrite /dl /files/{query.f}\n\t\tpath_guard\n\t\treverse_proxy " + upstream + "\n\t}\n"
	t.Run("before", func(t *testing.T) {
		addr, _ := guardCaddy(t, fixed)
		n := len(seen())
		for _, q := range []string{"..%2f..%2fetc%2fpasswd", "%2e%2e/x", "..%5cx"} {
			if status, _, body := rawGet(t, addr, "/dl?f="+q); status != http.StatusBadRequest {
				t.Errorf("?f=%s: %d %q, want 400", q, status, body)
			}
		}
		if got := seen()[n:]; len(got) != 0 {
			t.Errorf("the upstream received %q", got)
		}
		if status, _, body := rawGet(t, addr, "/dl?f=report.pdf"); status != http.StatusOK || body != "upstream /files/report.pdf?f=report.pdf" {
			t.Errorf("an ordinary file: %d %q", status, body)
		}
	})
	if f, ok := codes(checkCaddyfile(t, checkSite("", fixed)))["path_guard.rewrite_after"]; ok {
		t.Errorf("reported on the fixed layout: %+v", f)
	}
	// Nor one that only a file_server follows, which keeps the path under its root.
	toFiles := "\tpath_guard\n\trewrite /dl /files/{query.f}\n\tfile_server\n"
	if f, ok := codes(checkCaddyfile(t, checkSite("", toFiles)))["path_guard.rewrite_after"]; ok {
		t.Errorf("reported before a file_server: %+v", f)
	}
	// A rewrite from the path only is not reported.
	fromPath := "\tpath_guard\n\trewrite /old/* /new{path}?{query}\n\treverse_proxy " + upstream + "\n"
	if f, ok := codes(checkCaddyfile(t, checkSite("", fromPath)))["path_guard.rewrite_after"]; ok {
		t.Errorf("reported on a rewrite from the path: %+v", f)
	}
}

// TestPathGuardMatcherEscape: `path_guard /static/*` in front of a reverse_proxy for every
// path lets a traversal out of /static/ through to the upstream (Caddy's path matcher cleans
// /static/../../etc/passwd to /etc/passwd, so path_guard does not run); the configuration is
// path_guard.matcher_escape. Layouts where the escaping request meets a path_guard first, or
// no proxy, are not reported.
func TestPathGuardMatcherEscape(t *testing.T) {
	upstream, _ := recordingUpstream(t)
	bad := "\tpath_guard /static/*\n\treverse_proxy " + upstream + "\n"
	t.Run("escape", func(t *testing.T) {
		addr, _ := guardCaddy(t, bad)
		if status, _, body := rawGet(t, addr, "/static/../../etc/passwd"); status != http.StatusOK || body != "upstream /static/../../etc/passwd" {
			t.Fatalf("the layout the finding reports: %d %q (the upstream should see the traversal)", status, body)
		}
	})
	f, ok := codes(checkCaddyfile(t, checkSite("", bad)))["path_guard.matcher_escape"]
	if !ok || f.Severity != Warning || !strings.HasSuffix(f.Config, ".handle.0") || !strings.Contains(f.Message, "/static/*") {
		t.Fatalf("path_guard.matcher_escape: %+v (reported: %v)", f, ok)
	}
	// A traversal out of the prefix into another route's: /static/../api/x is /api/x to Caddy.
	toAPI := "\tpath_guard /static/*\n\thandle /api/* {\n\t\treverse_proxy " + upstream + "\n\t}\n\tfile_server"
	if _, ok := codes(checkCaddyfile(t, checkSite("", toAPI)))["path_guard.matcher_escape"]; !ok {
		t.Errorf("path_guard.matcher_escape not reported for a traversal into /api/:\n%s", toAPI)
	}
	for name, site := range map[string]string{
		"no matcher":  "\tpath_guard\n\treverse_proxy " + upstream,
		"one handle":  "\thandle /static/* {\n\t\tpath_guard\n\t\treverse_proxy " + upstream + "\n\t}\n\trespond other",
		"proxy too":   "\tpath_guard /static/*\n\treverse_proxy /static/* " + upstream + "\n\trespond other",
		"file_server": "\tpath_guard /static/*\n\tfile_server",
		"disjoint": "\t@legacy path /fr/* /de/*\n\t@rest not path /fr/* /de/*\n\tpath_guard @legacy {\n\t\tallow invalid_utf8\n\t}\n" +
			"\tpath_guard @rest\n\treverse_proxy " + upstream,
	} {
		if f, ok := codes(checkCaddyfile(t, checkSite("", site)))["path_guard.matcher_escape"]; ok {
			t.Errorf("%s: reported: %+v", name, f)
		}
	}
}
