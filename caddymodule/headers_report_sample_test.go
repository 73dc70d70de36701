package caddymodule

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/swarmsec/caddy-hardening/internal/testcaddy"
	"github.com/swarmsec/caddy-hardening/internal/testenv"
)

// sampledPolicy is a csp block that gives the strict preset's script-src and style-src
// 'report-sample', as the csp.no_report_sample fix says.
const sampledPolicy = "\t\tcsp {\n\t\t\tscript-src 'nonce' 'strict-dynamic' 'report-sample'\n\t\t\tstyle-src 'self' 'nonce' 'report-sample'\n\t\t}\n"

// TestCheckSuggestsReportSample: a policy that sends reports (report_uri, report_to, or a
// report-uri in the csp block) without 'report-sample' in its script-src or style-src gets an
// info, csp.no_report_sample, naming the directives that lack it; it fails nothing (not even
// with --strict). A policy without reports, or with 'report-sample' where it applies, is silent.
func TestCheckSuggestsReportSample(t *testing.T) {
	for _, tc := range []struct {
		name, headers, lacking string
	}{
		{"report_uri", "\t\treport_uri /csp-report\n", "script-src, style-src"},
		{"report_to", "\t\treport_to https://reports.example/csp\n", "script-src, style-src"},
		{"report-uri in the csp block", "\t\tcsp {\n\t\t\treport-uri /csp-report\n\t\t}\n", "script-src, style-src"},
		{"one directive sampled", "\t\treport_uri /csp-report\n\t\tcsp {\n\t\t\tstyle-src 'self' 'nonce' 'report-sample'\n\t\t}\n", "script-src"},
		{"both sampled", "\t\treport_uri /csp-report\n" + sampledPolicy, ""},
		{"no reports", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep := checkCaddyfile(t, checkSite("", "\tsecurity_headers {\n"+tc.headers+"\t}\n\tcsp_report /csp-report"))
			f, ok := codes(rep)["csp.no_report_sample"]
			if tc.lacking == "" {
				if ok {
					t.Fatalf("reported: %+v", f)
				}
				return
			}
			if !ok || f.Severity != Info || !strings.Contains(f.Message, "without 'report-sample' in "+tc.lacking+":") ||
				!strings.HasSuffix(f.Config, ".csp."+strings.Split(tc.lacking, ",")[0]) || f.Fix == "" || rep.Failed(true) {
				t.Fatalf("want one info naming %s, failing nothing; got %+v", tc.lacking, rep)
			}
		})
	}
}

// TestBrowserReportSampleFillsTheSample: what csp.no_report_sample says, with Chromium as the
// judge: an injected inline script blocked by the strict preset is reported with an empty
// sample; with the fix's csp lines, the csp_violation event carries the script's first
// characters.
func TestBrowserReportSampleFillsTheSample(t *testing.T) {
	page := `<!doctype html><html><body><p>comment: <script>window.injectedByAnAttacker = 1;</script></p></body></html>`
	port := testenv.FreePort(t)
	site := func(path, extra string) string {
		return fmt.Sprintf("\thandle /%s {\n\t\tsecurity_headers {\n\t\t\treport_uri /csp-report\n%s\t\t}\n\t\theader Content-Type \"text/html; charset=utf-8\"\n\t\trespond `%s`\n\t}\n",
			path, strings.ReplaceAll(extra, "\n\t\t", "\n\t\t\t"), page)
	}
	c := testcaddy.StartCaddy(t, fmt.Sprintf("http://127.0.0.1:%d {\n\tbind 127.0.0.1\n\tcsp_report /csp-report\n", port)+
		site("preset", "")+site("sampled", "\t"+sampledPolicy)+"}\n")
	samples := map[string]string{}
	for _, path := range []string{"preset", "sampled"} {
		chromiumDOM(t, fmt.Sprintf("http://127.0.0.1:%d/%s", port, path))
		testenv.WaitFor(t, 15*time.Second, "the violation report of /"+path, func() bool {
			for _, e := range testenv.Filter(c.Logs(), func(e testenv.LogEntry) bool { return e.Msg() == EventCSPViolation }) {
				if strings.HasSuffix(e.Str("document_uri"), "/"+path) && e.Str("directive") == "script-src-elem" {
					samples[path] = e.Str("sample")
					return true
				}
			}
			return false
		})
	}
	if samples["preset"] != "" || !strings.Contains(samples["sampled"], "window.injectedByAnAttacker") {
		t.Fatalf("samples %q: want none without 'report-sample', the script's start with it", samples)
	}
}

// TestCheckReportsOneFindingPerCause: a site block with an HTTPS and an http:// address (as in
// Caddyfile.example) becomes two servers, each with its own copy of the site's handlers; the
// check listed csp.no_report_sample (and every other finding of a handler) once per copy, at
// two JSON paths for one line to change. It is listed once, at the first. Two sites that each
// lack it are still two findings only when their handlers differ; identical handlers (one
// snippet imported twice) are one cause.
func TestCheckReportsOneFindingPerCause(t *testing.T) {
	twoPorts := "{\n\tadmin localhost:2999\n\tlocal_certs\n\tskip_install_trust\n\tauto_https disable_redirects\n\thardening {\n\t\tenvironment production\n\t}\n}\n" +
		"localhost:9443, http://localhost:9080 {\n\tbind 127.0.0.1\n\tsecurity_headers {\n\t\treport_uri /csp-report\n\t}\n\tcsp_report /csp-report\n\trespond ok\n}\n"
	rep := checkCaddyfile(t, twoPorts)
	var got []Finding
	for _, f := range rep.Findings {
		if f.Code == "csp.no_report_sample" {
			got = append(got, f)
		}
	}
	if len(got) != 1 {
		t.Fatalf("want csp.no_report_sample once, got %d: %+v", len(got), got)
	}
	// Different handlers are different causes, each reported.
	rep = checkCaddyfile(t, twoSites("\tsecurity_headers {\n\t\treport_uri /a\n\t}", "\tsecurity_headers {\n\t\treport_uri /b\n\t}"))
	n := 0
	for _, f := range rep.Findings {
		if f.Code == "csp.no_report_sample" {
			n++
		}
	}
	if n != 2 {
		t.Fatalf("two sites with different policies: want 2 findings, got %d: %+v", n, rep.Findings)
	}
}
