package caddymodule

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/swarmsec/caddy-hardening/internal/testcaddy"
	"github.com/swarmsec/caddy-hardening/internal/testenv"
)

func postReport(t *testing.T, url, contentType, body string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Content-Type", contentType)
	return fetch(t, req)
}

func TestCSPReportBothFormats(t *testing.T) {
	port := testenv.FreePort(t)
	c := testcaddy.StartCaddy(t, fmt.Sprintf(`http://127.0.0.1:%d {
	bind 127.0.0.1
	csp_report /csp-report
	respond "page"
}
`, port))
	url := fmt.Sprintf("http://127.0.0.1:%d/csp-report", port)
	before := counterValue(t, cspViolations.WithLabelValues("script-src-elem", "enforce"))
	beforeOther := counterValue(t, cspViolations.WithLabelValues("other", "report"))

	resp, body := postReport(t, url, "application/csp-report", `{"csp-report": {
		"document-uri": "http://127.0.0.1/page?reset_token=s3cr3t#top", "violated-directive": "script-src-elem",
		"effective-directive": "script-src-elem", "blocked-uri": "inline", "source-file": "http://127.0.0.1/page",
		"line-number": 12, "column-number": 3, "disposition": "enforce", "status-code": 200}}`)
	if resp.StatusCode != http.StatusNoContent || body != "" {
		t.Fatalf("report-uri format: %d %q", resp.StatusCode, body)
	}
	resp, _ = postReport(t, url, "application/reports+json", `[
		{"type": "csp-violation", "url": "https://a.example/", "body": {"documentURL": "https://a.example/",
		 "blockedURL": "https://evil.example/x.js?session=s3cr3t", "effectiveDirective": "script-src-elem", "disposition": "enforce", "lineNumber": 4}},
		{"type": "deprecation", "body": {}},
		{"type": "csp-violation", "body": {"effectiveDirective": "made-up-directive", "disposition": "report"}}]`)
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("Reporting API format: %d", resp.StatusCode)
	}
	// An empty batch, or one without CSP reports, is accepted and logs nothing.
	for _, batch := range []string{`[]`, `[{"type": "coop", "body": {}}]`} {
		if resp, _ = postReport(t, url, "application/reports+json", batch); resp.StatusCode != http.StatusNoContent {
			t.Fatalf("batch %s: %d, want 204", batch, resp.StatusCode)
		}
	}
	if got := counterValue(t, cspViolations.WithLabelValues("script-src-elem", "enforce")) - before; got != 2 {
		t.Errorf("script-src-elem enforce count grew by %v, want 2", got)
	}
	if got := counterValue(t, cspViolations.WithLabelValues("other", "report")) - beforeOther; got != 1 {
		t.Errorf("an unknown directive is counted as other: grew by %v, want 1", got)
	}

	events := testenv.Filter(c.Logs(), func(e testenv.LogEntry) bool { return e.Logger() == securityLoggerName && e.Msg() == EventCSPViolation })
	if len(events) != 3 {
		t.Fatalf("%d csp_violation events, want 3: %v", len(events), events)
	}
	e := events[0]
	for k, v := range map[string]string{"directive": "script-src-elem", "blocked_uri": "inline", "document_uri": "http://127.0.0.1/page",
		"source_file": "http://127.0.0.1/page", "disposition": "enforce", "client_ip": "127.0.0.1", "ip_class": "default", "module": "http.handlers.csp_report"} {
		if got := e.Str(k); got != v {
			t.Errorf("event field %s = %q, want %q", k, got, v)
		}
	}
	if e["line"] != float64(12) || e.Level() != "warn" {
		t.Errorf("line %v level %v", e["line"], e.Level())
	}
	if events[1].Str("blocked_uri") != "https://evil.example/x.js" || events[2].Level() != "info" {
		t.Errorf("Reporting API events: %v", events[1:])
	}
	for _, e := range events {
		if fmt.Sprint(e) != strings.ReplaceAll(fmt.Sprint(e), "s3cr3t", "") {
			t.Errorf("a URL's query reached the log: %v", e)
		}
	}
}

func TestCSPReportRefusals(t *testing.T) {
	port := testenv.FreePort(t)
	testcaddy.StartCaddy(t, fmt.Sprintf(`http://127.0.0.1:%d {
	bind 127.0.0.1
	csp_report /csp-report
}
`, port))
	url := fmt.Sprintf("http://127.0.0.1:%d/csp-report", port)
	big := `{"csp-report": {"blocked-uri": "` + strings.Repeat("a", 64<<10) + `"}}`
	cases := []struct {
		name, method, ctype, body string
		status                    int
	}{
		{"too large", http.MethodPost, "application/csp-report", big, http.StatusRequestEntityTooLarge},
		{"malformed JSON", http.MethodPost, "application/csp-report", `{"csp-report": {`, http.StatusBadRequest},
		{"not a report", http.MethodPost, "application/csp-report", `{"other": 1}`, http.StatusBadRequest},
		{"malformed batch", http.MethodPost, "application/reports+json", `{"type": "csp-violation"}`, http.StatusBadRequest},
		{"null batch", http.MethodPost, "application/reports+json", `null`, http.StatusBadRequest},
		{"null in a batch", http.MethodPost, "application/reports+json", `[null]`, http.StatusBadRequest},
		{"trailing comma in a batch", http.MethodPost, "application/reports+json", `[{"type": "x"},]`, http.StatusBadRequest},
		{"text after a batch", http.MethodPost, "application/reports+json", `[{"type": "x"}] []`, http.StatusBadRequest},
		{"number in a batch", http.MethodPost, "application/reports+json", `[{"type": "x"}, 1]`, http.StatusBadRequest},
		{"csp-violation without a body", http.MethodPost, "application/reports+json", `[{"type": "csp-violation", "body": null}]`, http.StatusBadRequest},
		{"null report", http.MethodPost, "application/json", `{"csp-report": null}`, http.StatusBadRequest},
		// application/csp-report is report-uri's format alone: a batch sent under that type
		// is no report of it (only application/json may be either).
		{"batch as csp-report", http.MethodPost, "application/csp-report", `[{"type": "csp-violation", "body": {"effectiveDirective": "script-src-elem"}}]`, http.StatusBadRequest},
		{"empty batch as csp-report", http.MethodPost, "application/csp-report", ` []`, http.StatusBadRequest},
		{"media type", http.MethodPost, "text/plain", `{}`, http.StatusUnsupportedMediaType},
		{"compressed", http.MethodPost, "application/csp-report", "\x1f\x8b\x08\x00", http.StatusUnsupportedMediaType},
		{"method", http.MethodGet, "", "", http.StatusMethodNotAllowed},
	}
	for _, c := range cases {
		req, _ := http.NewRequest(c.method, url, strings.NewReader(c.body))
		req.Header.Set("Content-Type", c.ctype)
		if c.name == "compressed" {
			req.Header.Set("Content-Encoding", "gzip")
		}
		resp, body := fetch(t, req)
		if resp.StatusCode != c.status || resp.Header.Get("Content-Type") != "application/problem+json" {
			t.Errorf("%s: %d %s %q, want %d problem+json", c.name, resp.StatusCode, resp.Header.Get("Content-Type"), body, c.status)
		}
	}
}

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// csp_report runs before handle: a site whose pages are all under a catch-all `handle {}`
// still receives its reports (ordered before respond, the handle block answered them).
func TestCSPReportRunsBeforeACatchAllHandle(t *testing.T) {
	port := testenv.FreePort(t)
	testcaddy.StartCaddy(t, fmt.Sprintf(`http://127.0.0.1:%d {
	bind 127.0.0.1
	handle {
		respond "page"
	}
	csp_report /csp-report
}
`, port))
	url := fmt.Sprintf("http://127.0.0.1:%d/csp-report", port)
	for _, ct := range []string{"application/csp-report", "application/json"} {
		resp, body := postReport(t, url, ct, `{"csp-report": {"effective-directive": "script-src-elem", "disposition": "enforce"}}`)
		if resp.StatusCode != http.StatusNoContent || body != "" {
			t.Fatalf("%s report under a catch-all handle: %d %q; want 204 from csp_report", ct, resp.StatusCode, body)
		}
	}
	if resp, body := getBody(t, fmt.Sprintf("http://127.0.0.1:%d/other", port)); resp.StatusCode != http.StatusOK || body != "page" {
		t.Fatalf("the handle block: %d %q", resp.StatusCode, body)
	}
}

// A Reporting API endpoint on another origin gets the browser's CORS preflight (reports+json
// is not a simple type): it is answered 204 with the CORS headers, and the report's 204
// allows any origin too.
func TestCSPReportAnswersCORSPreflight(t *testing.T) {
	port := testenv.FreePort(t)
	testcaddy.StartCaddy(t, fmt.Sprintf(`http://127.0.0.1:%d {
	bind 127.0.0.1
	csp_report /csp-report
	respond "page"
}
`, port))
	url := fmt.Sprintf("http://127.0.0.1:%d/csp-report", port)
	req, _ := http.NewRequest(http.MethodOptions, url, nil)
	req.Header.Set("Origin", "https://app.example")
	req.Header.Set("Access-Control-Request-Method", "POST")
	req.Header.Set("Access-Control-Request-Headers", "content-type")
	resp, body := fetch(t, req)
	if resp.StatusCode != http.StatusNoContent || body != "" {
		t.Fatalf("preflight: %d %q, want 204", resp.StatusCode, body)
	}
	for k, v := range map[string]string{"Access-Control-Allow-Origin": "*", "Access-Control-Allow-Methods": "POST",
		"Access-Control-Allow-Headers": "Content-Type", "Access-Control-Max-Age": "86400"} {
		if got := resp.Header.Get(k); got != v {
			t.Errorf("preflight %s = %q, want %q", k, got, v)
		}
	}
	resp, _ = postReport(t, url, "application/reports+json", `[{"type": "csp-violation", "body": {"effectiveDirective": "script-src-elem", "disposition": "enforce"}}]`)
	if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Access-Control-Allow-Origin") != "*" {
		t.Fatalf("report: %d, Access-Control-Allow-Origin %q; want 204 with *", resp.StatusCode, resp.Header.Get("Access-Control-Allow-Origin"))
	}
}

// TestCSPReportStalledBody: a client that sends part of a report body and stalls gets 408
// once the read deadline passes, over HTTP/1.1 and HTTP/2 alike; it no longer holds the
// handler and its buffer for as long as it likes (Caddy sets no body timeout by default, and
// one HTTP/2 connection carries hundreds of such streams).
func TestCSPReportStalledBody(t *testing.T) {
	old := reportReadTimeout
	reportReadTimeout = 300 * time.Millisecond
	t.Cleanup(func() { reportReadTimeout = old })
	port := testenv.FreePort(t)
	testcaddy.StartCaddy(t, fmt.Sprintf(`{
	admin off
	servers {
		protocols h1 h2c
	}
}
http://127.0.0.1:%d {
	bind 127.0.0.1
	csp_report /csp-report
}
`, port))
	addr := fmt.Sprintf("127.0.0.1:%d", port)

	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /csp-report HTTP/1.1\r\nHost: %s\r\nContent-Type: application/csp-report\r\nContent-Length: 1000\r\n\r\n{\"csp-report\": {", addr)
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("HTTP/1.1: no answer to a stalled report body: %v", err)
	}
	if resp.StatusCode != http.StatusRequestTimeout {
		t.Fatalf("HTTP/1.1: stalled report body answered %d, want 408", resp.StatusCode)
	}

	protocols := new(http.Protocols)
	protocols.SetUnencryptedHTTP2(true) // h2c with prior knowledge
	tr := &http.Transport{Protocols: protocols}
	defer tr.CloseIdleConnections()
	pr, pw := io.Pipe()
	defer pw.Close()
	go func() { _, _ = pw.Write([]byte(`{"csp-report": {`)) }()
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/csp-report", pr)
	req.Header.Set("Content-Type", "application/csp-report")
	req.ContentLength = 1000
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err = tr.RoundTrip(req.WithContext(ctx))
	if err != nil {
		t.Fatalf("HTTP/2: no answer to a stalled report body: %v", err)
	}
	resp.Body.Close()
	if resp.ProtoMajor != 2 || resp.StatusCode != http.StatusRequestTimeout {
		t.Fatalf("HTTP/%d: stalled report body answered %d, want 408 over HTTP/2", resp.ProtoMajor, resp.StatusCode)
	}
}

// A batch is read one entry at a time: a body of tiny entries, which anyone may POST, costs
// a few allocations, not one per entry (a 64 KiB `[{},{},...]` held as raw entries took 5.8 MB
// and 65,000 allocations, about 90 times its size).
func TestCSPReportBatchCostsNoMoreThanItsBody(t *testing.T) {
	body := []byte("[" + strings.Repeat(`{"type":"x"},`, DefaultMaxReportBody/13-10) + `{"type":"csp-violation","body":{"effectiveDirective":"script-src"}}]`)
	var got []violation
	allocs := testing.AllocsPerRun(5, func() {
		var err error
		if got, _, err = parseReports("application/reports+json", body); err != nil {
			t.Fatal(err)
		}
	})
	if len(got) != 1 || got[0].Directive != "script-src" {
		t.Fatalf("parsed %+v, want the one csp-violation", got)
	}
	if allocs > 100 {
		t.Fatalf("a %d-byte batch took %.0f allocations; want a bound that does not grow with its entries", len(body), allocs)
	}
}

// TestCSPReportBatchOverTheLimit: of a Reporting API batch, the first 100 CSP reports are read
// (reports of other types, mixed in, neither count nor take a place); the CSP reports past
// them are dropped, and the request is counted as rejected (reason too_many), so a browser's
// reports lost to the limit show.
func TestCSPReportBatchOverTheLimit(t *testing.T) {
	port := testenv.FreePort(t)
	testcaddy.StartCaddy(t, fmt.Sprintf(`http://127.0.0.1:%d {
	bind 127.0.0.1
	csp_report /csp-report
}
`, port))
	url := fmt.Sprintf("http://127.0.0.1:%d/csp-report", port)
	var b strings.Builder
	b.WriteString("[")
	for i := range 150 {
		if i > 0 {
			b.WriteString(",")
		}
		if i%3 == 0 {
			b.WriteString(`{"type": "deprecation", "body": {"id": "x"}},`)
		}
		fmt.Fprintf(&b, `{"type": "csp-violation", "body": {"effectiveDirective": "img-src", "disposition": "report", "lineNumber": %d}}`, i)
	}
	b.WriteString("]")
	count := func() (float64, float64) {
		return counterValue(t, cspViolations.WithLabelValues("img-src", "report")), counterValue(t, cspReportsRejected.WithLabelValues("too_many"))
	}
	read0, rej0 := count()
	if resp, body := postReport(t, url, "application/reports+json", b.String()); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	read, rej := count()
	if read-read0 != 100 || rej-rej0 != 1 {
		t.Errorf("counted %v reports and %v rejected requests, want 100 and 1", read-read0, rej-rej0)
	}
	// Within the limit, nothing is rejected.
	if resp, _ := postReport(t, url, "application/reports+json", `[{"type": "csp-violation", "body": {"effectiveDirective": "img-src", "disposition": "report"}}]`); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("%d", resp.StatusCode)
	}
	if read2, rej2 := count(); read2-read != 1 || rej2 != rej {
		t.Errorf("one report: counted %v and %v rejected, want 1 and 0", read2-read, rej2-rej)
	}
}
