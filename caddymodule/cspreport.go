package caddymodule

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap/zapcore"

	"github.com/swarmsec/caddy-hardening/csp"

	"github.com/swarmsec/caddy-hardening/internal/textcut"
)

func init() {
	caddy.RegisterModule(&CSPReport{})
}

// The metrics of csp_report, shared by every instance of the handler so counts survive reloads.
var (
	cspViolations = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "hardening", Name: "csp_violations_total",
		Help: "CSP violation reports received, by effective directive (known directives only, others as \"other\") and disposition (enforce, report).",
	}, []string{"directive", "disposition"})
	cspReportsRejected = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "hardening", Name: "csp_reports_rejected_total",
		Help: "CSP report requests refused, by reason (method, media_type, too_large, timeout, malformed), and Reporting API batches whose CSP reports past the first 100 were dropped (too_many).",
	}, []string{"reason"})
)

// DefaultMaxReportBody bounds a report request's body. Browsers send a few kilobytes at most.
const DefaultMaxReportBody = 64 << 10

// reportReadTimeout bounds the reading of a report body. Browsers send a report in one go;
// Caddy has no body timeout by default, and a client that stalls before the end of its body
// would hold the handler and its buffer (up to max_body_size) for as long as it likes: with
// HTTP/2, hundreds of them per connection.
var reportReadTimeout = 10 * time.Second

// maxReportsPerRequest bounds the reports read from one Reporting API batch.
const maxReportsPerRequest = 100

// maxReportField bounds each string copied from a report into the log.
const maxReportField = 512

// CSPReport receives Content Security Policy violation reports, in both formats browsers
// send: `application/csp-report` (the report-uri directive) and `application/reports+json`
// (the Reporting API, report-to); `application/json` is read as either (a JSON array is a
// Reporting API batch). Each report becomes one `csp_violation` security event
// (logger hardening.security) with normalized fields: directive, blocked_uri, document_uri,
// source_file, line, column, disposition, sample, plus the client's IP and class (the URLs
// without their query and fragment, which may hold tokens). Logging is
// limited per second, and one client's flood takes about half of that (floods are counted
// in `suppressed`); the metric
// caddy_hardening_csp_violations_total counts every report by directive.
//
// It answers 204 No Content (with Access-Control-Allow-Origin: *, so that pages of other
// origins may report here); an OPTIONS preflight gets 204 with the CORS headers that allow a
// POST of any report type; 405 for another method, 415 for another media type or a
// compressed body, 413 for a body over max_body_size, 400 for malformed JSON or JSON that is
// no report (all problem+json). An empty batch, or one of other report types only, gets 204
// and logs nothing.
type CSPReport struct {
	// MaxBodySize bounds a report request's body, in bytes. Default: 65536.
	MaxBodySize int64 `json:"max_body_size,omitempty"`

	on  bool
	app *App
	ctx caddy.Context // for events: eventContext, not Provision's ctx
}

// CaddyModule returns the Caddy module information.
func (*CSPReport) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.csp_report",
		New: func() caddy.Module { return new(CSPReport) },
	}
}

// Provision registers the metrics and reads the feature flag.
func (c *CSPReport) Provision(ctx caddy.Context) error {
	app, err := hardeningApp(ctx)
	if err != nil {
		return err
	}
	c.app, c.ctx = app, eventContext(ctx)
	c.on = app.FeatureEnabled("csp_report")
	if c.MaxBodySize == 0 {
		c.MaxBodySize = DefaultMaxReportBody
	}
	app.OnValidate(func() { c.checkCatchAll(ctx) })
	return registerCSPReportMetrics(ctx.GetMetricsRegistry())
}

// checkCatchAll reports a csp_report without a matcher that has handlers after it: it
// answers every request of its routes (a page gets 405), so they are never reached. A site
// of its own for the reports (nothing after it) is what a bare csp_report is for.
func (c *CSPReport) checkCatchAll(ctx caddy.Context) {
	for _, srv := range httpServers(ctx) {
		list := routeListWith(srv.Routes, c)
		for i, r := range list {
			j := slices.IndexFunc(r.Handlers, func(hh caddyhttp.MiddlewareHandler) bool { return hh == c })
			if j < 0 {
				continue
			}
			if len(r.MatcherSetsRaw) > 0 || len(r.MatcherSets) > 0 || j == len(r.Handlers)-1 && !slices.ContainsFunc(list[i+1:], func(next caddyhttp.Route) bool { return len(next.Handlers) > 0 }) {
				return
			}
			_ = c.app.Report(Finding{Code: "csp.report_catch_all", Severity: Warning, Module: "csp_report",
				Config:  handlerConfigPath(ctx, c),
				Message: "csp_report without a matcher answers every request of its routes (a page gets 405 Method Not Allowed): the handlers after it are never reached",
				Fix:     "give it the path of report_uri/report_to: csp_report /csp-report"})
			return
		}
	}
}

// registerCSPReportMetrics registers the report counters on a configuration's registry. The
// package's counters stay as they are: a reload provisions while the running configuration's
// reports read them, so assigning them (even the same value) would be a data race.
func registerCSPReportMetrics(reg *prometheus.Registry) error {
	for _, c := range []prometheus.Collector{cspViolations, cspReportsRejected} {
		if _, err := registerCollector(reg, c); err != nil {
			return err
		}
	}
	return nil
}

// Validate refuses a useless bound.
func (c *CSPReport) Validate() error {
	if c.MaxBodySize < 1024 || c.MaxBodySize > 1<<20 {
		return errors.New("csp_report: max_body_size must be from 1KiB to 1MiB")
	}
	return nil
}

// violation is one report, normalized from either format.
type violation struct {
	Directive, BlockedURI, DocumentURI, SourceFile, Disposition, Sample string
	Line, Column                                                        int64
}

// ServeHTTP reads, logs and counts the reports, and answers 204; it answers CORS preflights.
func (c *CSPReport) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if !c.on {
		return next.ServeHTTP(w, r)
	}
	if r.Method == http.MethodOptions {
		// The CORS preflight of a Reporting API endpoint on another origin (report_to
		// https://collector.example/...): application/reports+json is not a simple type.
		h := w.Header()
		h.Set("Access-Control-Allow-Origin", "*")
		h.Set("Access-Control-Allow-Methods", "POST")
		h.Set("Access-Control-Allow-Headers", "Content-Type")
		h.Set("Access-Control-Max-Age", "86400")
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	if r.Method != http.MethodPost {
		cspReportsRejected.WithLabelValues("method").Inc()
		w.Header().Set("Allow", "POST")
		return writeProblem(w, http.StatusMethodNotAllowed, "Method Not Allowed", "CSP reports are POSTed", nil)
	}
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt != "application/csp-report" && mt != "application/reports+json" && mt != "application/json" {
		cspReportsRejected.WithLabelValues("media_type").Inc()
		return writeProblem(w, http.StatusUnsupportedMediaType, "Unsupported Media Type",
			"expected application/csp-report, application/reports+json or application/json", nil)
	}
	if enc, encoded := contentEncoding(r.Header); encoded {
		// Browsers send reports uncompressed; read as it is, a compressed one is no JSON.
		cspReportsRejected.WithLabelValues("media_type").Inc()
		return writeProblem(w, http.StatusUnsupportedMediaType, "Unsupported Media Type",
			"CSP reports are read uncompressed; got Content-Encoding: "+enc, nil)
	}
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Now().Add(reportReadTimeout)) // where it cannot be set, Caddy's own timeouts apply
	body, err := io.ReadAll(io.LimitReader(r.Body, c.MaxBodySize+1))
	_ = rc.SetReadDeadline(time.Time{})
	if errors.Is(err, os.ErrDeadlineExceeded) {
		cspReportsRejected.WithLabelValues("timeout").Inc()
		w.Header().Set("Connection", "close")
		return writeProblem(w, http.StatusRequestTimeout, "Request Timeout",
			fmt.Sprintf("a CSP report body must arrive within %v", reportReadTimeout), nil)
	}
	if err != nil {
		cspReportsRejected.WithLabelValues("malformed").Inc()
		return writeProblem(w, http.StatusBadRequest, "Bad Request", "the report body could not be read", nil)
	}
	if int64(len(body)) > c.MaxBodySize {
		cspReportsRejected.WithLabelValues("too_large").Inc()
		return writeProblem(w, http.StatusRequestEntityTooLarge, "Content Too Large", fmt.Sprintf("a CSP report body is at most %d bytes", c.MaxBodySize), nil)
	}
	reports, dropped, err := parseReports(mt, body)
	if err != nil {
		cspReportsRejected.WithLabelValues("malformed").Inc()
		return writeProblem(w, http.StatusBadRequest, "Bad Request", "malformed CSP report: "+err.Error(), nil)
	}
	if dropped {
		cspReportsRejected.WithLabelValues("too_many").Inc() // answered 204 all the same: the rest was read
	}
	for _, v := range reports {
		c.record(r, v)
	}
	w.Header().Set("Access-Control-Allow-Origin", "*")
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (c *CSPReport) record(r *http.Request, v violation) {
	directive := v.Directive
	if !csp.KnownDirective(directive) {
		directive = "other" // the label set stays bounded whatever clients send
	}
	disposition := v.Disposition
	if disposition != "report" {
		disposition = "enforce"
	}
	cspViolations.WithLabelValues(directive, disposition).Inc()
	level := zapcore.WarnLevel
	if disposition == "report" {
		level = zapcore.InfoLevel
	}
	c.app.SecurityEvent(c.ctx, r, level, EventCSPViolation, map[string]any{
		"directive":    textcut.Cut(v.Directive, 64),
		"blocked_uri":  textcut.Cut(withoutQuery(v.BlockedURI), maxReportField),
		"document_uri": textcut.Cut(withoutQuery(v.DocumentURI), maxReportField),
		"source_file":  textcut.Cut(withoutQuery(v.SourceFile), maxReportField),
		"line":         v.Line,
		"column":       v.Column,
		"disposition":  disposition,
		"sample":       textcut.Cut(v.Sample, 128),
	})
}

// withoutQuery cuts a reported URL's query and fragment: browsers report the page's whole
// URL, and a query often holds a secret (a password reset or sign-in token, a session id)
// that must not reach the logs.
func withoutQuery(u string) string {
	if i := strings.IndexAny(u, "?#"); i >= 0 {
		return u[:i]
	}
	return u
}

// parseReports reads the report-uri format ({"csp-report": {...}}) or a Reporting API batch
// ([{"type": "csp-violation", "body": {...}}, ...]); other report types are skipped. Each
// media type has its format (application/csp-report the report-uri one, reports+json the
// batch); application/json is read as a batch when it is a JSON array. dropped says that a
// batch held more CSP reports than maxReportsPerRequest (those past it are not read).
func parseReports(mediaType string, body []byte) (_ []violation, dropped bool, err error) {
	batch := mediaType == "application/reports+json" ||
		mediaType == "application/json" && strings.HasPrefix(strings.TrimSpace(string(body)), "[")
	if batch {
		return parseBatch(body)
	}
	var rep struct {
		Report *struct {
			DocumentURI        string `json:"document-uri"`
			BlockedURI         string `json:"blocked-uri"`
			ViolatedDirective  string `json:"violated-directive"`
			EffectiveDirective string `json:"effective-directive"`
			SourceFile         string `json:"source-file"`
			LineNumber         int64  `json:"line-number"`
			ColumnNumber       int64  `json:"column-number"`
			Disposition        string `json:"disposition"`
			ScriptSample       string `json:"script-sample"`
		} `json:"csp-report"`
	}
	if err := json.Unmarshal(body, &rep); err != nil || rep.Report == nil {
		return nil, false, errors.New(`expected {"csp-report": {...}}`)
	}
	b := rep.Report
	d := b.EffectiveDirective
	if d == "" {
		d = b.ViolatedDirective
	}
	return []violation{{Directive: directiveName(d), BlockedURI: b.BlockedURI, DocumentURI: b.DocumentURI, SourceFile: b.SourceFile,
		Line: b.LineNumber, Column: b.ColumnNumber, Disposition: b.Disposition, Sample: b.ScriptSample}}, false, nil
}

// parseBatch reads a Reporting API batch one entry at a time, into one reused struct: a
// body of many tiny entries (`[{},{},...]`) costs no more memory than the body itself (held
// as a []json.RawMessage, 64 KiB of them took 5.8 MB and 65,000 allocations).
func parseBatch(body []byte) (_ []violation, dropped bool, err error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('[') {
		return nil, false, errors.New("expected a JSON array of reports")
	}
	var rep struct {
		Type string `json:"type"`
		URL  string `json:"url"`
		Body *struct {
			DocumentURL        string `json:"documentURL"`
			BlockedURL         string `json:"blockedURL"`
			EffectiveDirective string `json:"effectiveDirective"`
			SourceFile         string `json:"sourceFile"`
			LineNumber         int64  `json:"lineNumber"`
			ColumnNumber       int64  `json:"columnNumber"`
			Disposition        string `json:"disposition"`
			Sample             string `json:"sample"`
		} `json:"body"`
	}
	var out []violation
	for dec.More() {
		rep.Type, rep.URL, rep.Body = "", "", nil
		// The next value starts after the separators the decoder has not consumed yet.
		rest := bytes.TrimLeft(body[dec.InputOffset():], ", \t\r\n")
		if len(rest) == 0 || rest[0] != '{' || dec.Decode(&rep) != nil {
			return nil, false, errors.New("expected a JSON array of report objects ({\"type\": ..., \"body\": {...}})")
		}
		if rep.Type != "csp-violation" {
			continue
		}
		if len(out) == maxReportsPerRequest {
			dropped = true
			continue
		}
		if rep.Body == nil {
			return nil, false, errors.New("a csp-violation report has no body object")
		}
		b := rep.Body
		doc := b.DocumentURL
		if doc == "" {
			doc = rep.URL
		}
		out = append(out, violation{Directive: directiveName(b.EffectiveDirective), BlockedURI: b.BlockedURL, DocumentURI: doc,
			SourceFile: b.SourceFile, Line: b.LineNumber, Column: b.ColumnNumber, Disposition: b.Disposition, Sample: b.Sample})
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim(']') {
		return nil, false, errors.New("expected a JSON array of reports")
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, false, errors.New("expected one JSON array of reports")
	}
	return out, dropped, nil
}

// directiveName is the directive of a report's directive field ("script-src-elem 'self'"
// from old browsers carries the sources too).
func directiveName(s string) string {
	name, _, _ := strings.Cut(strings.TrimSpace(s), " ")
	return strings.ToLower(name)
}

// Interface guards.
var (
	_ caddy.Provisioner           = (*CSPReport)(nil)
	_ caddy.Validator             = (*CSPReport)(nil)
	_ caddyhttp.MiddlewareHandler = (*CSPReport)(nil)
)
