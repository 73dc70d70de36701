package caddymodule

import (
	"fmt"
	"net/http"
	"strings"
	"sync"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap/zapcore"

	"github.com/swarmsec/caddy-hardening/ipclass"
	"github.com/swarmsec/caddy-hardening/pathguard"
)

func init() {
	caddy.RegisterModule(PathGuard{})
}

// PathGuard refuses, before any file_server or upstream sees them, request paths that climb
// out of a directory or could be read differently by the next component: `..` segments in any
// encoding (%2e%2e in any case, double encoding, overlong UTF-8, IIS %u escapes, Unicode
// look-alikes of dots and separators: ．．, 。。, ..／x), backslashes and %5c, NUL and control bytes,
// Windows drive roots (C:/), `..` padded with spaces (..%20), NTFS stream suffixes
// (index.asp::$DATA), and unless allowed, %2f inside a segment, `;` path parameters and
// other bytes that are not UTF-8 (raw or percent-encoded alike). It answers 400 with an
// application/problem+json body, logs a path_blocked security event and counts the refusal in
// caddy_hardening_path_blocked_total{reason}. Ordinary paths (names with dots such as a..b.txt,
// Unicode names, also with a look-alike slash between words such as AC／DC, a last segment
// such as A:, anything in the query) pass at the cost of one scan. With `windows on`, for an
// application served from Windows, it also refuses the names Windows reads as other files or
// devices: admin./, web.config%20, con, PROGRA~1 (Options.Windows).
//
// It also feeds the detector of the `hardening` app: a refused path (traversal; malformed_path
// for the reasons legacy links cause, pathguard.Reason.Malformed), a probe path
// (probe), and 401/403 answers to requests that carried credentials (auth_failure) and 404s
// of anything but static resources (not_found) of the rest of the route raise the client's
// score (responseSignal); the last two only past their burst allowance. With suspicious_action block, clients in the suspicious class are
// refused with 403. A request sent as TLS early data (HTTP/3 0-RTT), whose client address is not
// verified yet, scores nothing: a refused path or a probe path sent that way is answered 425
// Too Early, so that the client sends it again after the handshake, where it counts.
type PathGuard struct {
	// Allow loosens the check for applications that need it, one value for each malformed
	// form legacy links and some applications send: `encoded_slash` accepts %2f inside a
	// segment (APIs whose IDs hold slashes), `path_params` accepts `;` (matrix parameters;
	// `..;` is refused regardless), `invalid_utf8` accepts bytes that are not UTF-8 (legacy
	// Latin-1 links such as /fr/caf%E9; overlong UTF-8 such as %c0%ae is refused regardless).
	// The attack forms have no such switch.
	Allow []string `json:"allow,omitempty"`

	// SuspiciousAction is what to do with a client in the suspicious class: `none` (default:
	// they only get stricter rate limits) or `block` (403 problem+json).
	SuspiciousAction string `json:"suspicious_action,omitempty"`

	// Signals turns off feeding the detector from this route when false (e.g. a route whose
	// 404s are normal, such as an image resizer, or the published ranges of crawlers): neither
	// path_guard nor the handlers after it on the route (a policy_rate_limit's 429s, a
	// monitoring handler's wrong keys) report the request's client. Default: true.
	Signals *bool `json:"signals,omitempty"`

	// MergeSlashes merges the empty segments of a path it passes, for the rest of the route
	// (`//etc/passwd` is `/etc/passwd`, `/static//x` is `/static/x`), as nginx does by default:
	// an upstream that joins the path to its root naively opens an absolute path, and `//host`
	// is the open-redirect form. Encoded slashes (%2F, with `allow encoded_slash`) do not merge:
	// one next to a separator or to another (`/a/%2F/etc`, `/%2Fevil.example`), an empty segment
	// to an upstream that decodes it, is refused as encoded_slash. False forwards empty segments
	// as sent, literal and encoded, for applications that give them a meaning (a URL in the
	// path, object keys with `//`). Default: true.
	MergeSlashes *bool `json:"merge_slashes,omitempty"`

	// Windows also refuses what a Windows file system reads as another name than the one
	// written, for a route whose files or application are served from Windows (IIS, Kestrel,
	// Tomcat or a file server there): a segment ending in a dot or a space (`/admin./x`,
	// `/web.config%20`, which are `admin` and `web.config` there, past a rule written for those
	// names; trailing_dot_space, scored malformed_path: a pasted link keeps its sentence's full
	// stop), a DOS device name (`con`, `nul.txt`, `com1`; dos_device) and an 8.3 short name
	// (`PROGRA~1`, `WEB~1.CON`, IIS's `*~1*` enumeration; short_name), both scored traversal.
	// Elsewhere these are ordinary names, so it is off by default.
	Windows bool `json:"windows,omitempty"`

	app     *App
	ctx     caddy.Context // for events: eventContext, not Provision's ctx
	cfgCtx  caddy.Context // Provision's, to read the config's routes (stripsAfter)
	strips  func() *pathStrips
	on      bool
	opts    pathguard.Options
	block   bool
	signals bool
	merge   bool
	blocked map[pathguard.Reason]prometheus.Counter
}

// CaddyModule returns the Caddy module information.
func (PathGuard) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.path_guard",
		New: func() caddy.Module { return new(PathGuard) },
	}
}

// Provision reads the options and the app's feature flags.
func (h *PathGuard) Provision(ctx caddy.Context) error {
	app, err := hardeningApp(ctx)
	if err != nil {
		return err
	}
	h.app, h.ctx, h.cfgCtx = app, eventContext(ctx), ctx
	// The handlers after this one are provisioned after it: read them at the first request.
	h.strips = sync.OnceValue(h.stripsAfter)
	h.on = app.FeatureEnabled("path_guard")
	for _, a := range h.Allow {
		set, ok := pathGuardAllows[a]
		if !ok {
			return fmt.Errorf("path_guard: allow %q: expected one of: %s", a, strings.Join(sortedKeys(pathGuardAllows), ", "))
		}
		set(&h.opts)
	}
	switch h.SuspiciousAction {
	case "", "none":
	case "block":
		h.block = true
	default:
		return fmt.Errorf("path_guard: suspicious_action %q: expected none or block", h.SuspiciousAction)
	}
	h.merge = h.MergeSlashes == nil || *h.MergeSlashes
	// An encoded slash next to a separator is an empty segment once decoded: refused with
	// merge_slashes on, forwarded as sent with it off, like the literal ones beside it.
	h.opts.AllowEncodedEmptySegment = !h.merge
	h.opts.Windows = h.Windows
	h.signals = (h.Signals == nil || *h.Signals) && app.classifier != nil && app.classifier.Detector != nil
	if h.on {
		app.OnValidate(func() {
			h.checkRewriteAfter(ctx)
			h.checkMatcherEscape(ctx)
		})
	}
	h.blocked = make(map[pathguard.Reason]prometheus.Counter, len(pathguard.Reasons))
	for _, r := range pathguard.Reasons {
		h.blocked[r] = pathBlocked.WithLabelValues(string(r))
	}
	return nil
}

// pathGuardAllows are the values of `allow`, each with the pathguard.Options field it sets.
// bad_encoding has none: Go's HTTP server refuses a stray % before any handler runs.
var pathGuardAllows = map[string]func(*pathguard.Options){
	"encoded_slash": func(o *pathguard.Options) { o.AllowEncodedSlash = true },
	"path_params":   func(o *pathguard.Options) { o.AllowPathParams = true },
	"invalid_utf8":  func(o *pathguard.Options) { o.AllowInvalidUTF8 = true },
}

// ServeHTTP refuses hostile paths and suspicious clients (when configured), then serves the
// rest of the route and reports its 401/403/404 answers to the detector.
func (h *PathGuard) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if !h.on {
		return next.ServeHTTP(w, r)
	}
	class := h.app.ClassOf(r)
	reason := h.check(r)
	if h.signals && earlyData(r) && (reason != "" || h.app.IsProbe(r.URL.Path)) {
		// TLS early data: the address is not verified, so the refusal or probe could not
		// count against its sender (a spoofed address would get its owner banned). Ask for
		// the request again after the handshake (RFC 8470), where it counts: a scanner
		// cannot evade detection by sending its attacks as 0-RTT data.
		markRefused(w, r)
		return writeProblem(w, http.StatusTooEarly, "Too Early",
			"Send this request again once the TLS handshake is complete.", nil)
	}
	if reason != "" {
		h.blocked[reason].Inc()
		h.app.SecurityEvent(h.ctx, r, zapcore.WarnLevel, EventPathBlocked, map[string]any{"reason": string(reason)})
		if h.signals {
			sig := ipclass.SignalTraversal
			if reason.Malformed() { // a legacy link is no attack: one must not ban the client
				sig = ipclass.SignalMalformedPath
			}
			h.app.Signal(h.ctx, r, sig)
		}
		markRefused(w, r)
		return writeProblem(w, http.StatusBadRequest, "Bad Request", "The request path is not allowed.", nil)
	}
	if h.merge {
		mergeSlashes(r)
	}
	if h.block && class == ipclass.Suspicious {
		suspiciousBlocked.Inc()
		h.app.SecurityEvent(h.ctx, r, zapcore.InfoLevel, EventSuspiciousBlocked, nil)
		markRefused(w, r)
		return writeProblem(w, http.StatusForbidden, "Forbidden", "Requests from this client are refused for now.", nil)
	}
	if !h.signals {
		// The rest of the route feeds the detector nothing either: a policy_rate_limit's
		// refusals, a monitoring handler's wrong keys (App.Signal reads the mark).
		return next.ServeHTTP(w, withSignalsOff(r))
	}
	if h.app.IsProbe(r.URL.Path) {
		h.app.Signal(h.ctx, r, ipclass.SignalProbe)
	}
	sw := statusWriters.Get().(*statusWriter)
	sw.ResponseWriter, sw.status = w, 0
	err := next.ServeHTTP(sw, r)
	status := sw.status
	// A ResponseWriter may not be used after ServeHTTP returns (net/http's contract, which
	// Caddy's handler chain keeps), so the wrapper can serve the next request.
	sw.ResponseWriter = nil
	statusWriters.Put(sw)
	if err != nil {
		if he, ok := err.(caddyhttp.HandlerError); ok && status == 0 {
			status = he.StatusCode
		}
	}
	if sig, ok := responseSignal(r, status); ok {
		h.app.Signal(h.ctx, r, sig)
	}
	return err
}

// check judges the path as the client sent it (raw bytes count as their %XX form: Check reads
// both alike) and, when a handler before path_guard changed r.URL without RequestURI (Caddy's
// rewrites keep both in step; a plugin may not), the path the rest of the route uses:
// r.URL.EscapedPath, what reverse_proxy sends upstream and what file_server reads decoded.
// An ordinary request costs one comparison: EscapedPath allocates only when it escapes.
func (h *PathGuard) check(r *http.Request) pathguard.Reason {
	sent := rawPath(r)
	if reason := pathguard.Check(sent, h.opts); reason != "" {
		return reason
	}
	if used := r.URL.EscapedPath(); used != sent {
		if reason := pathguard.Check(used, h.opts); reason != "" {
			return reason
		}
	}
	return h.checkStripped(r)
}

// rawPath is the path as the client sent it, still escaped, without the query.
func rawPath(r *http.Request) string {
	u := r.RequestURI
	if u == "" || u[0] != '/' { // absolute-form, or OPTIONS *
		return r.URL.EscapedPath()
	}
	if i := strings.IndexByte(u, '?'); i >= 0 {
		u = u[:i]
	}
	return u
}

// statusWriters recycles the status recorders: path_guard runs on every request.
var statusWriters = sync.Pool{New: func() any { return new(statusWriter) }}

// statusWriter records the final status of the response (informational 1xx excluded).
type statusWriter struct {
	caddyhttp.ResponseWriterWrapper
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
	}
	w.ResponseWriterWrapper.WriteHeader(code)
}

// Interface guards.
var (
	_ caddyhttp.MiddlewareHandler = (*PathGuard)(nil)
	_ caddy.Provisioner           = (*PathGuard)(nil)
)
