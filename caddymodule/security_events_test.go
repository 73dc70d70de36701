package caddymodule

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/swarmsec/caddy-hardening/internal/testcaddy"
	"github.com/swarmsec/caddy-hardening/internal/testenv"
	"github.com/swarmsec/caddy-hardening/pathguard"
)

// commonFields every security event carries; requestFields, every event a request caused.
var (
	commonFields  = []string{"event", "module"}
	requestFields = []string{"client_ip", "ip_class", "method", "host", "uri"}
)

// TestSecurityEventSchema triggers every security event a request or timer can cause without
// Redis (store_failover: breaker_shared_test.go) and checks each, in the log and as a Caddy
// event, carries the documented common fields (docs/security-events.md), and that each logged
// entry's own fields are those its row of the reference names (checkOwnFields).
func TestSecurityEventSchema(t *testing.T) {
	port, dead := testenv.FreePort(t), testenv.FreePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	names := []string{EventMonitoringDenied, EventCSPViolation, EventBreakerStateChanged, EventPathBlocked, EventIPReclassified, EventSuspiciousBlocked, EventRateLimited}
	c := startWithEvents(t, fmt.Sprintf(`{
	admin off
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
	csp_report /csp-report
	handle_path /api/monitoring/* {
		monitoring
	}
	handle /api/* {
		upstream_breaker api {
			consecutive_failures 1
			open_for 1h
		}
		reverse_proxy 127.0.0.1:%d
	}
	handle /auth/* {
		policy_rate_limit authentication
		respond "auth"
	}
	respond "ok"
}
`, addr, dead), names...)

	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/api/monitoring/health", nil)
	req.Header.Set("Authorization", "Bearer not-a-key")
	if resp, _ := fetch(t, req); resp.StatusCode != http.StatusOK {
		t.Fatalf("health with a wrong key: %d", resp.StatusCode)
	}
	if resp, _ := fetch(t, mustRequest(t, "http://"+addr+"/api/monitoring/health")); resp.StatusCode != http.StatusOK { // no key: a probe, no event
		t.Fatalf("health without a key: %d", resp.StatusCode)
	}
	if resp, _ := postReport(t, "http://"+addr+"/csp-report", "application/csp-report",
		`{"csp-report": {"document-uri": "http://127.0.0.1/", "effective-directive": "script-src-elem", "blocked-uri": "inline", "disposition": "enforce"}}`); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("csp report: %d", resp.StatusCode)
	}
	if status, _, _ := rawGet(t, addr, "/api/x"); status != http.StatusBadGateway {
		t.Fatalf("dead upstream: %d", status)
	}
	for i := 0; i < 6; i++ { // authentication: 5/1m burst 5
		rawGet(t, addr, "/auth/login")
	}
	if status, _, _ := rawGet(t, addr, "/a/../../etc/passwd"); status != http.StatusBadRequest { // traversal: 20, detected
		t.Fatalf("traversal: %d", status)
	}
	if status, _, _ := rawGet(t, addr, "/"); status != http.StatusForbidden {
		t.Fatalf("detected client: %d", status)
	}

	refBytes, err := os.ReadFile("../docs/security-events.md")
	if err != nil {
		t.Fatal(err)
	}
	ref := string(refBytes)
	for _, name := range names {
		var logged []testenv.LogEntry
		deadline := time.Now().Add(5 * time.Second) // the breaker's event comes from its own goroutine
		for len(logged) == 0 && time.Now().Before(deadline) {
			logged = securityLogs(c, name)
			if len(logged) == 0 {
				time.Sleep(20 * time.Millisecond)
			}
		}
		if len(logged) == 0 {
			t.Errorf("%s: not logged on %s", name, securityLoggerName)
			continue
		}
		want := commonFields
		if name != EventBreakerStateChanged {
			want = append(append([]string{}, commonFields...), requestFields...)
		}
		for _, f := range want {
			if _, ok := logged[0][f]; !ok {
				t.Errorf("%s log lacks %q: %v", name, f, logged[0])
			}
		}
		checkOwnFields(t, ref, name, logged[0], append(want, "level", "ts", "logger", "msg", "suppressed"))
		ev := recordedEvents(name)
		if len(ev) == 0 {
			t.Errorf("%s: no Caddy event", name)
			continue
		}
		for _, f := range want {
			if _, ok := ev[0].Data[f]; !ok {
				t.Errorf("%s Caddy event lacks %q: %v", name, f, ev[0].Data)
			}
		}
	}
	if l := securityLogs(c, EventMonitoringDenied); len(l) != 1 || l[0].Str("route") != "health" || l[0].Level() != "warn" {
		t.Errorf("monitoring_access_denied: want one warn entry for the wrong key only, got %v", l)
	}
	// Under handle_path the event carries the URI the client sent, not the stripped one.
	if l := securityLogs(c, EventMonitoringDenied); len(l) == 1 && l[0].Str("uri") != "/api/monitoring/health" {
		t.Errorf("monitoring_access_denied logged uri %q, want /api/monitoring/health", l[0].Str("uri"))
	}
	if ev := recordedEvents(EventMonitoringDenied); len(ev) == 0 || ev[0].Data["uri"] != "/api/monitoring/health" {
		t.Errorf("monitoring_access_denied Caddy event: %v", ev)
	}
	if l := securityLogs(c, EventPathBlocked); len(l) == 0 || l[0].Str("uri") != "/a/../../etc/passwd" {
		t.Errorf("path_blocked uri: %v", l)
	}
}

// ownFields are the fields docs/security-events.md gives each event beyond the common ones
// that every entry this test causes carries (open_until: the breaker opens; key: the bucket is
// the client IP).
var ownFields = map[string][]string{
	EventMonitoringDenied:    {"route"},
	EventCSPViolation:        {"directive", "blocked_uri", "document_uri", "disposition"},
	EventBreakerStateChanged: {"breaker", "from", "to", "cause", "open_until"},
	EventPathBlocked:         {"reason"},
	EventIPReclassified:      {"ip", "from", "to", "signal", "score", "until", "shadow"},
	EventSuspiciousBlocked:   {},
	EventRateLimited:         {"policy", "limit", "retry_after", "store", "refusals", "key"},
}

// checkOwnFields compares a real log entry of event with its row of the reference, field by
// field: every field the entry has beyond common is named in the row, and the entry has every
// field of ownFields, each named in the row too.
func checkOwnFields(t *testing.T, ref, event string, entry testenv.LogEntry, common []string) {
	t.Helper()
	var row string
	for line := range strings.Lines(ref) {
		if strings.HasPrefix(line, "| `"+event+"` |") {
			row = line
		}
	}
	cells := strings.Split(row, "|")
	if len(cells) < 6 {
		t.Errorf("docs/security-events.md: no row with an own-fields column for %s", event)
		return
	}
	documented := cells[4]
	for f := range entry {
		if !slices.Contains(common, f) && !strings.Contains(documented, "`"+f+"`") {
			t.Errorf("%s logs field %q, which its row of docs/security-events.md does not name: %v", event, f, entry)
		}
	}
	for _, f := range ownFields[event] {
		if _, ok := entry[f]; !ok {
			t.Errorf("%s log lacks its field %q: %v", event, f, entry)
		}
		if !strings.Contains(documented, "`"+f+"`") {
			t.Errorf("docs/security-events.md: the %s row does not name %q", event, f)
		}
	}
}

func mustRequest(t *testing.T, url string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// TestSecurityEventDocsNameWhatIsEmitted: README's events table and docs/security-events.md have
// a row for every event; the path_blocked row of the reference, and README's path_guard table,
// name every reason path_guard gives (a SIEM rule is written from them); the reference's example
// entry uses a real reason.
func TestSecurityEventDocsNameWhatIsEmitted(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	ref, err := os.ReadFile("../docs/security-events.md")
	if err != nil {
		t.Fatal(err)
	}
	row := func(doc []byte, name string) string {
		for line := range strings.Lines(string(doc)) {
			if strings.HasPrefix(line, "| `"+name+"` |") {
				return line
			}
		}
		return ""
	}
	events := []string{EventIPReclassified, EventPathBlocked, EventSuspiciousBlocked, EventRateLimited,
		EventStoreFailover, EventCSPViolation, EventBreakerStateChanged, EventMonitoringDenied}
	for _, name := range events {
		if row(readme, name) == "" {
			t.Errorf("README's security events table has no %s row", name)
		}
		if row(ref, name) == "" {
			t.Errorf("docs/security-events.md has no %s row", name)
		}
	}
	blocked := row(ref, EventPathBlocked)
	guard := string(readme[strings.Index(string(readme), "### `path_guard`"):])
	guard = guard[:strings.Index(guard, "\n### ")]
	for _, r := range pathguard.Reasons {
		if !strings.Contains(blocked, "`"+string(r)+"`") {
			t.Errorf("docs/security-events.md: the path_blocked row does not name reason %s", r)
		}
		if !strings.Contains(guard, "| `"+string(r)+"`") && !strings.Contains(guard, ", `"+string(r)+"` |") {
			t.Errorf("README: the path_guard table has no row for reason %s", r)
		}
	}
	m := regexp.MustCompile(`"reason":"([a-z_0-9]+)"`).FindSubmatch(ref)
	if m == nil || !slices.Contains(pathguard.Reasons, pathguard.Reason(m[1])) {
		t.Errorf("docs/security-events.md: the example entry's reason is not one path_guard gives: %q", m)
	}
}

// TestSecurityEventsReachTheirOwnLog: the README's `log security { include hardening.security }`
// gets every security event (path_blocked and the detection it causes), whichever module
// reports it, and the default log, which the Caddyfile adapter makes exclude them, gets none;
// in JSON, where the default log excludes nothing, the custom log gets them as well.
func TestSecurityEventsReachTheirOwnLog(t *testing.T) {
	dir := t.TempDir()
	defLog, secLog := filepath.Join(dir, "default.log"), filepath.Join(dir, "security.log")
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	c := testcaddy.StartCaddy(t, fmt.Sprintf(`{
	admin off
	log {
		output file %s
		format json
		level DEBUG
	}
	log security {
		include hardening.security
		output file %s
		format json
	}
}
http://%s {
	bind 127.0.0.1
	path_guard
	respond "ok"
}
`, defLog, secLog, addr))
	if status, _, _ := rawGet(t, addr, "/a/%2e%2e/b"); status != http.StatusBadRequest { // traversal: 20, detected
		t.Fatalf("traversal: %d", status)
	}
	events := func(path, name string) []testenv.LogEntry {
		return testenv.Filter(testenv.ReadLogFile(path), func(e testenv.LogEntry) bool {
			return e.Logger() == securityLoggerName && e.Str("event") == name
		})
	}
	for _, name := range []string{EventPathBlocked, EventIPReclassified} {
		if len(events(secLog, name)) != 1 {
			t.Errorf("security log: want one %s, got %v", name, testenv.ReadLogFile(secLog))
		}
	}
	if l := testenv.Filter(testenv.ReadLogFile(defLog), func(e testenv.LogEntry) bool { return e.Logger() == securityLoggerName }); len(l) != 0 {
		t.Errorf("the default log excludes hardening.security, yet has %v", l)
	}
	if len(testenv.ReadLogFile(defLog)) == 0 {
		t.Error("the default log is empty: the test reads the wrong file")
	}

	jsonLog := filepath.Join(dir, "json-security.log")
	if err := c.LoadJSON(fmt.Sprintf(`{"logging": {"logs": {"security": {"writer": {"output": "file", "filename": %q},
		"encoder": {"format": "json"}, "include": ["hardening.security"]}}},
	"apps": {"http": {"servers": {"s": {"listen": [%q], "routes": [{"handle": [{"handler": "path_guard"},
		{"handler": "static_response", "body": "ok"}]}]}}}}}`, jsonLog, addr)); err != nil {
		t.Fatal(err)
	}
	waitAnswering(t, addr) // the old server may take the next connection and close it unanswered
	if status, _, _ := rawGet(t, addr, "/c/%2e%2e/d"); status != http.StatusBadRequest {
		t.Fatalf("traversal after the JSON load: %d", status)
	}
	if len(events(jsonLog, EventPathBlocked)) != 1 {
		t.Errorf("JSON config's security log: want one path_blocked, got %v", testenv.ReadLogFile(jsonLog))
	}
}

// TestSecurityEventURIEscapesInvalidBytes: a uri with bytes that are not UTF-8 is logged with
// them as %XX (what an upstream receives), not as U+FFFD, which hid what was sent.
func TestSecurityEventURIEscapesInvalidBytes(t *testing.T) {
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	c := startWithEvents(t, fmt.Sprintf(`{
	admin off
	hardening {
		features {
			detection off
		}
	}
}
http://%s {
	bind 127.0.0.1
	path_guard
	respond "ok"
}
`, addr), EventPathBlocked)
	want := map[string]string{
		"/\xc0\xae\xc0\xae/etc/passwd": "/%C0%AE%C0%AE/etc/passwd",
		"/caf\xe9.html":                "/caf%E9.html",
		"/caf%e9/\xe9t\xc3\xa9":        "/caf%e9/%E9t\xc3\xa9", // escapes as sent, valid UTF-8 as is
		// Escaped, then cut to 512 bytes, never inside an escape: 170 escapes are 510 bytes,
		// and the 171st would end past 512.
		"/" + strings.Repeat("\xe9", 400): "/" + strings.Repeat("%E9", 170),
	}
	for sent := range want {
		if status, _, _ := rawGet(t, addr, sent); status != http.StatusBadRequest {
			t.Fatalf("%q: %d", sent, status)
		}
	}
	var logged []string
	for _, e := range securityLogs(c, EventPathBlocked) {
		logged = append(logged, e.Str("uri"))
	}
	var emitted []string
	for _, ev := range recordedEvents(EventPathBlocked) {
		emitted = append(emitted, fmt.Sprint(ev.Data["uri"]))
	}
	for _, w := range want {
		if !slices.Contains(logged, w) {
			t.Errorf("logged uris %q lack %q", logged, w)
		}
		if !slices.Contains(emitted, w) {
			t.Errorf("Caddy event uris %q lack %q", emitted, w)
		}
	}
}

// TestSecurityEventHostIsBounded: a site without a host matcher takes any Host, and only the
// server's header limit bounded the one copied into each event (kilobytes per log line, and
// in every Caddy event); it is cut to maxLoggedHost bytes, as the uri is to maxLoggedURI.
func TestSecurityEventHostIsBounded(t *testing.T) {
	port := testenv.FreePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	c := startWithEvents(t, fmt.Sprintf(`{
	admin off
	hardening {
		features {
			detection off
		}
	}
}
http://:%d {
	bind 127.0.0.1
	path_guard
	respond "ok"
}
`, port), EventPathBlocked)
	host := strings.Repeat("a", 8000)
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(conn, "GET /a/../../etc/passwd HTTP/1.1\r\nHost: "+host+"\r\nConnection: close\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("traversal with a long Host: %d", resp.StatusCode)
	}
	logs := securityLogs(c, EventPathBlocked)
	if len(logs) != 1 {
		t.Fatalf("want one path_blocked, got %d", len(logs))
	}
	if got := logs[0].Str("host"); got != host[:maxLoggedHost] {
		t.Errorf("logged host: %d bytes, want the first %d", len(got), maxLoggedHost)
	}
	evs := recordedEvents(EventPathBlocked)
	if len(evs) != 1 {
		t.Fatalf("want one path_blocked Caddy event, got %d", len(evs))
	}
	if got := fmt.Sprint(evs[0].Data["host"]); got != host[:maxLoggedHost] {
		t.Errorf("Caddy event host: %d bytes, want the first %d", len(got), maxLoggedHost)
	}
}
