package caddymodule

import (
	"bufio"
	"errors"
	"io"
	"mime"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/swarmsec/caddy-hardening/csp"
)

// securityWriter settles the security headers when the response starts and, for HTML that
// gets the nonce, streams the body through an injector. It is allocated on every request, so
// what only a rewritten body needs is in page, allocated when start decides to rewrite: the
// writer stays within 256 bytes (garbage collection costs grow with the bytes allocated).
type securityWriter struct {
	caddyhttp.ResponseWriterWrapper
	h     *SecurityHeaders
	r     *http.Request
	nonce string
	// vals holds this response's values of names(), in order: the header map's value slices
	// are views of it, one element each.
	vals [maxManagedHeaders]string
	// in is where the body goes while rewritten: page.inj, or in placeholder mode the first of
	// the redactors of the placeholder's UTF-16 and UTF-32 forms (page.wide), which write
	// into page.inj.
	in      io.Writer
	page    *pageRewrite
	pending int // a status held until the first write types the body

	// A security_headers nested in this one's route (one site-wide, one in `handle`) takes the
	// response over: outer is the writer of the one around this one, if any; inner says one
	// inside this one runs on the request, innerInjects that one of those injects.
	outer *securityWriter

	https        bool // the client asked over HTTPS (see overHTTPS)
	started      bool
	discard      bool // the body cannot be sent safely (see failClosed)
	inner        bool
	innerInjects bool

	// redactOnly: the feature is off and the handler is in placeholder mode. No header is
	// set or settled and there is no nonce: the placeholder is redacted (csp.Redact) from
	// every body, pages included, and from the headers.
	redactOnly bool
}

// pageRewrite is the state of a body that is rewritten, or of a page whose policy or status
// waits (see takeOver and release).
type pageRewrite struct {
	inj  *csp.Injector
	out  *bufio.Writer // the injector's output: a few small pieces per tag become one write
	wide [csp.WideFormCount]*csp.Injector

	// Where this handler sends its policy instead of the one that replaced it (taken, see
	// takeOver), alias is the page's own nonce, which own turns into this response's.
	alias string
	taken string
	own   *csp.Injector

	// A page's status waits for its first bytes, which may show an encoding the injector
	// cannot read (a UTF-16 byte order mark): held is that status, heldMode the mode the
	// page is rewritten in, charset its Content-Type's, head the bytes seen so far.
	held     int
	heldMode csp.Mode
	charset  string
	head     [3]byte
	headN    int
}

// rewriting returns the page state, made on first use.
func (sw *securityWriter) rewriting() *pageRewrite {
	if sw.page == nil {
		sw.page = new(pageRewrite)
	}
	return sw.page
}

// holding reports whether a page's status waits for its first bytes (see release).
func (sw *securityWriter) holding() bool {
	return sw.page != nil && sw.page.held != 0
}

// names are the headers this response gets (the handler's, shared), in the order of vals.
func (sw *securityWriter) names() []string {
	switch {
	case sw.redactOnly:
		return nil
	case sw.https:
		return sw.h.namesTLS
	}
	return sw.h.namesHTTP
}

// ours are this response's values of names().
func (sw *securityWriter) ours() []string {
	return sw.vals[:len(sw.names())]
}

// maxManagedHeaders bounds the headers the handler sets: CSP, HSTS, Reporting-Endpoints and
// the seven others.
const maxManagedHeaders = 10

var injectorPool = sync.Pool{New: func() any { return new(csp.Injector) }}

// outPool holds the injector's output buffers. The buffer keeps writes downstream large
// enough for an outer `encode` to decide to compress (it looks at the first write).
var outPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 4<<10) }}

// copyBufPool holds ReadFrom's buffers for rewritten bodies.
var copyBufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// newSecurityWriter makes the nonce and sets this response's headers on w before the route
// runs, so that a response the route does not write itself (an error) carries them too. One
// allocation holds the writer and the values; the policy and its nonce are one more.
//
// Under the writer of another security_headers (outer: this one is nested in its route), the
// request keeps outer's nonce, so the policy, {http.vars.csp_nonce} and every injector agree;
// this one's headers replace outer's (an outer value this one does not set is removed), and
// outer leaves the headers to this one (see WriteHeader and mode).
func newSecurityWriter(h *SecurityHeaders, w http.ResponseWriter, r *http.Request, vars map[string]any, outer *securityWriter) *securityWriter {
	sw := &securityWriter{ResponseWriterWrapper: caddyhttp.ResponseWriterWrapper{ResponseWriter: w}, h: h, r: r, outer: outer}
	sw.https = overHTTPS(r, vars)
	hdr := w.Header()
	if outer != nil {
		sw.nonce = outer.nonce
		ours := outer.ours()
		for i, name := range outer.names() {
			if v := hdr[name]; len(v) == 1 && v[0] == ours[i] {
				delete(hdr, name)
			}
		}
		for o := outer; o != nil; o = o.outer {
			o.inner = true
			o.innerInjects = o.innerInjects || h.injectMode != 0
		}
	}
	vals := sw.vals[:0]
	switch {
	case h.cspHeader != "" && sw.nonce != "":
		vals = append(vals, h.policy.Render(sw.nonce))
	case h.cspHeader != "":
		var policy string
		policy, sw.nonce = h.policy.RenderNewNonce()
		vals = append(vals, policy)
	case sw.nonce == "":
		sw.nonce = csp.NewNonce()
	}
	if sw.https && h.hsts != "" {
		vals = append(vals, h.hsts)
	}
	for _, s := range h.static {
		vals = append(vals, s.value)
	}
	for i, name := range sw.names() {
		// Each header gets its own one-element slice (capacity 1): a later Add copies it
		// instead of writing into the neighbouring header's value.
		hdr[name] = vals[i : i+1 : i+1]
	}
	for _, name := range h.remove {
		delete(hdr, name)
	}
	return sw
}

// mode is how this writer treats the body: its handler's inject mode, except under a nested
// security_headers that injects, whose mode then decides the page (innermost wins): this one
// does not add tags-mode nonces over it. A placeholder-mode writer keeps rewriting (its
// placeholder must never leave the edge; the nonces the inner one wrote are this response's,
// so they stay).
func (sw *securityWriter) mode() csp.Mode {
	if sw.redactOnly {
		return csp.Redact
	}
	if sw.innerInjects && sw.h.injectMode == csp.Tags {
		return 0
	}
	return sw.h.injectMode
}

// settle applies the header rule once the route has set its own: a value appended after ours
// (reverse_proxy adds the upstream's) is dropped, or wins for keep_upstream headers; a value
// that replaced ours (a `header` directive) or a deletion stays. It runs at WriteHeader, or
// when the route returned an error without writing (ServeHTTP).
func (sw *securityWriter) settle() {
	if sw.inner || sw.redactOnly {
		return // a nested security_headers settled them: its rules decide (innermost wins)
	}
	hdr := sw.Header()
	for i, name := range sw.names() {
		vals := hdr[name]
		if len(vals) < 2 || vals[0] != sw.vals[i] {
			continue
		}
		switch {
		case sw.h.keep[name]:
			hdr[name] = vals[1:]
		case name == "Reporting-Endpoints":
			// A dictionary: the upstream's endpoints stay for its own reports (NEL,
			// deprecations), and ours goes last, where a recipient takes the last member of a
			// name, so csp-endpoint is ours whatever the upstream says.
			hdr[name] = append(vals[1:len(vals):len(vals)], vals[0])
		default:
			hdr[name] = vals[:1]
		}
	}
	if !sw.sendsHSTS() && !(sw.https && sw.h.hstsKept) {
		// No HSTS from us here (plain HTTP, development, hsts off): none from anyone else
		// either, unless the operator kept the upstream's, and then only over HTTPS outside
		// development (a browser ignores it over plain HTTP, and RFC 6797 forbids it there).
		delete(hdr, "Strict-Transport-Security")
	}
	for _, name := range sw.h.remove {
		delete(hdr, name)
	}
}

// sendsHSTS reports whether this response gets the handler's Strict-Transport-Security.
func (sw *securityWriter) sendsHSTS() bool {
	return sw.https && sw.h.hsts != ""
}

// overHTTPS reports whether the client asked over HTTPS: the request came over TLS, or from a
// trusted proxy (the server's trusted_proxies) whose X-Forwarded-Proto says https, the last
// value as reverse_proxy reads it (a load balancer or ingress that terminates TLS: Render,
// Kubernetes). Another client's X-Forwarded-Proto is not read. vars are the request's
// (caddyhttp.VarsCtxKey).
func overHTTPS(r *http.Request, vars map[string]any) bool {
	if r.TLS != nil {
		return true
	}
	if trusted, _ := vars[caddyhttp.TrustedProxyVarKey].(bool); !trusted {
		return false
	}
	v := r.Header.Values("X-Forwarded-Proto")
	if len(v) == 0 {
		return false
	}
	last := v[len(v)-1]
	if i := strings.LastIndexByte(last, ','); i >= 0 {
		last = last[i+1:]
	}
	return strings.EqualFold(strings.TrimSpace(last), "https")
}

// redactHeaders replaces the placeholder with the response's nonce in every header value
// (a preload Link's nonce is a legitimate use; anything else at least stops leaking the
// secret), or with as many '-' where there is no nonce (redactOnly). In placeholder mode it
// runs before any header block is written: 1xx, the final one, and the trailers.
func (sw *securityWriter) redactHeaders() {
	ph := sw.h.ph
	if ph == "" {
		return // not provisioned (cannot happen when serving)
	}
	with := sw.nonce
	if sw.redactOnly {
		with = strings.Repeat("-", len(ph))
	}
	for name, vals := range sw.Header() {
		for i, v := range vals {
			if !strings.Contains(v, ph) {
				continue
			}
			out := slices.Clone(vals) // the slice may be shared with another header map
			for j := i; j < len(out); j++ {
				out[j] = strings.ReplaceAll(out[j], ph, with)
			}
			sw.Header()[name] = out
			break
		}
	}
}

// nonceLinks gives the response's nonce to the preloads and stylesheets its Link headers
// announce (see addLinkNonces), in tags mode, where every such tag of the page gets it.
func (sw *securityWriter) nonceLinks() {
	if l := sw.Header()["Link"]; l != nil && sw.nonce != "" {
		sw.Header()["Link"] = addLinkNonces(l, sw.nonce)
	}
}

// WriteHeader settles the headers and decides whether the body is rewritten.
func (sw *securityWriter) WriteHeader(status int) {
	if sw.started {
		return
	}
	if status >= 100 && status < 200 && status != http.StatusSwitchingProtocols {
		// 103 Early Hints and the like: not the response, but their headers go out now.
		if sw.h.injectMode == csp.Placeholder {
			sw.redactHeaders()
		}
		if sw.h.injectMode == csp.Tags {
			sw.nonceLinks()
		}
		sw.ResponseWriter.WriteHeader(status)
		return
	}
	sw.started = true
	sw.settle()
	if sw.mode() != 0 && (sw.hasBody(status) || sw.untypedTunnel(status)) && !hasContentType(sw.Header()) {
		// No Content-Type: net/http would sniff the first write and might call it HTML.
		// Decide on the same sniff, at the first write. An untyped 2xx to an extended CONNECT
		// waits too: a flush before any byte makes it the tunnel (see FlushError).
		sw.pending = status
		return
	}
	sw.start(status)
}

// start sends the status, after choosing how the body is handled. A HEAD response gets the
// headers its GET would have.
func (sw *securityWriter) start(status int) {
	if sw.h.injectMode == csp.Placeholder {
		sw.redactHeaders()
	}
	if sw.h.injectMode != 0 {
		// ServeHTTP removed the request's Range: no response of this route is partial,
		// whatever its type, so none may offer ranges (an upstream's or file_server's
		// Accept-Ranges would have a video seek, or a download resume, with requests that
		// each get the whole body). Caddy's encode drops it likewise from what it compresses.
		sw.Header().Del("Accept-Ranges")
	}
	mode := sw.mode()
	if mode == 0 || !bodyStatus(status) || sw.tunnels(status) {
		sw.matchFrameOptions()
		sw.ResponseWriter.WriteHeader(status)
		return
	}
	hdr := sw.Header()
	ce, encoded := contentEncoding(hdr)
	mt, charset := resolveContentType(hdr)
	page := mt == "text/html" || mt == "application/xhtml+xml"
	if page && !encoded && status != http.StatusPartialContent && mode != csp.Redact {
		mode = sw.pageMode(mode) // the page's nonces and the policy sent must agree
	}
	sw.matchFrameOptions()
	body := sw.r.Method != http.MethodHead
	switch {
	case page:
		if encoded || status == http.StatusPartialContent {
			if mode != csp.Tags {
				sw.failClosed("HTML response cannot get its nonce (compressed or partial although the request asked for neither); answered 502 so the placeholder stays secret",
					zap.String("content_encoding", ce))
				return
			}
			break // tags mode: nothing secret in it; pass it as it is
		}
		if mode == 0 {
			break // tags mode, and the page's nonces are those of the policy sent: as it is
		}
		if mode == csp.Tags {
			sw.nonceLinks()
		}
		rewritten(hdr)
		if mode != csp.Redact { // redaction keeps the length, and there is no nonce to cache
			// The body's length changes; cache_control, unless the inner one's decides.
			hdr.Del("Content-Length")
			if sw.h.cacheCtl != "" && !sw.innerInjects {
				hdr.Set("Cache-Control", sw.h.cacheCtl)
				for _, k := range targetedCacheFields {
					hdr.Del(k)
				}
			}
		}
		if body {
			// The status waits for the page's first bytes: a byte order mark may say an
			// encoding the injector cannot read (see release).
			p := sw.rewriting()
			p.held, p.heldMode, p.charset = status, mode, charset
			return
		}
	case mode != csp.Tags && !encoded && !isBinary(mt):
		// Every other body a client may read as text (JSON, JavaScript, CSS, SVG, event
		// streams, untyped): the placeholder must not leave the edge here either.
		// Overwritten with as many '-', the body keeps its length.
		if status == http.StatusPartialContent {
			// A part we did not ask for (Range is removed from the request) may end
			// inside the placeholder, where redaction cannot see it.
			sw.failClosed("partial response cannot be redacted (a range although the request asked for none); answered 502 so the placeholder stays secret",
				zap.String("content_encoding", ce))
			return
		}
		rewritten(hdr)
		if body {
			sw.rewrite(csp.Redact)
		}
	}
	sw.ResponseWriter.WriteHeader(status)
}

// targetedCacheFields are the fields a CDN follows instead of Cache-Control (RFC 9213's
// CDN-Cache-Control and Cloudflare's own; Surrogate-Control for Fastly and Varnish,
// Edge-Control for Akamai, X-Accel-Expires for an nginx proxy_cache). On a nonced page they go with the upstream's Cache-Control: with
// a max-age there, a CDN in front of Caddy would store the page and give its nonce to every
// visitor.
var targetedCacheFields = []string{"Cdn-Cache-Control", "Cloudflare-Cdn-Cache-Control", "Surrogate-Control", "Edge-Control", "X-Accel-Expires"}

// rewritten marks the headers of a body whose bytes change: a range of it cannot be had
// (Range is removed from the request), and its ETag becomes weak (same meaning, different
// bytes).
func rewritten(hdr http.Header) {
	hdr.Del("Accept-Ranges")
	if etag := hdr.Get("ETag"); etag != "" && !strings.HasPrefix(etag, "W/") {
		hdr.Set("ETag", "W/"+etag)
	}
}

// contentEncoding reports whether the body is encoded: any coding other than identity, in
// any of the Content-Encoding values or their comma-separated members. It returns the header
// as received, for the log.
func contentEncoding(hdr http.Header) (string, bool) {
	vals := hdr.Values("Content-Encoding")
	for _, v := range vals {
		for c := range strings.SplitSeq(v, ",") {
			if c = strings.TrimSpace(c); c != "" && !strings.EqualFold(c, "identity") {
				return strings.Join(vals, ", "), true
			}
		}
	}
	return "", false
}

// resolveContentType returns the body's media type (lower case, no parameters) as browsers
// read it, and its charset parameter. Several Content-Type values, or one with a comma, are
// resolved as Fetch's "extract a MIME type" does: every value split on commas (outside
// quotes), the last one that parses wins; the header is then set to that one value, so that
// the client reads the type we decided on. When none parses the body is taken as HTML (the
// client may sniff it as HTML; the injector's rewrite keeps the placeholder in either case),
// with no charset, and the header is left as it came.
func resolveContentType(hdr http.Header) (mediaType, charset string) {
	vals := hdr.Values("Content-Type")
	if len(vals) <= 1 && (len(vals) == 0 || !strings.Contains(vals[0], ",")) {
		mt, params, _ := mime.ParseMediaType(hdr.Get("Content-Type"))
		return mt, params["charset"]
	}
	last, lastMT, lastCharset := "", "", ""
	for _, v := range vals {
		for _, m := range splitOutsideQuotes(v) {
			m = strings.TrimSpace(m)
			mt, params, err := mime.ParseMediaType(m)
			if !strings.Contains(mt, "/") || mt == "*/*" || err != nil && !errors.Is(err, mime.ErrInvalidMediaParameter) {
				continue
			}
			last, lastMT, lastCharset = m, mt, params["charset"]
		}
	}
	if last == "" {
		return "text/html", ""
	}
	hdr.Set("Content-Type", last)
	return lastMT, lastCharset
}

// splitOutsideQuotes splits s on the commas that are not inside a quoted string.
func splitOutsideQuotes(s string) []string {
	var out []string
	quoted, start := false, 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			if quoted {
				i++
			}
		case '"':
			quoted = !quoted
		case ',':
			if !quoted {
				out = append(out, s[start:i])
				start = i + 1
			}
		}
	}
	return append(out, s[start:])
}

// rewrite puts an injector on the body. Where this handler took the page's policy over
// (alias, see takeOver), a stage that turns the page's own nonce into the response's comes
// before it. In placeholder mode (Placeholder, Substitute, Redact), redactors of the
// placeholder's UTF-16 and UTF-32 forms come first: a body in one of those encodings holds it
// in bytes the injector's byte search does not find.
func (sw *securityWriter) rewrite(mode csp.Mode) {
	pg := sw.rewriting()
	pg.out = outPool.Get().(*bufio.Writer)
	pg.out.Reset(sw.ResponseWriter)
	inj := injectorPool.Get().(*csp.Injector)
	_ = inj.Reset(pg.out, mode, sw.nonce, sw.h.ph) // checked in Provision
	pg.inj, sw.in = inj, inj
	if pg.alias != "" {
		a := injectorPool.Get().(*csp.Injector)
		_ = a.Reset(sw.in, csp.Substitute, sw.nonce, pg.alias) // its length is checked in takeOver
		pg.own, sw.in = a, a
	}
	if mode == csp.Tags {
		return
	}
	for i, form := range sw.h.wide {
		r := injectorPool.Get().(*csp.Injector)
		_ = r.Reset(sw.in, csp.Redact, "", form)
		pg.wide[i], sw.in = r, r
	}
}

// release sends a held page's status once its first bytes show its encoding, and p (the
// current write, whose first bytes are already in head) after the bytes held before it. A
// page in an encoding the injector cannot read is refused in placeholder mode (the
// placeholder in it would reach the client) and passed as it is in tags mode (nothing secret
// in it; its tags get no nonce). more is false at the end of the body.
func (sw *securityWriter) release(p []byte, more bool) (int, error) {
	pg := sw.page // held: start made it
	prev := pg.headN
	pg.headN += copy(pg.head[pg.headN:], p)
	enc, decided := csp.UnreadableEncoding(pg.head[:pg.headN], pg.charset, more)
	if !decided {
		return len(p), nil // all of p is in head
	}
	status, mode := pg.held, pg.heldMode
	pg.held = 0
	switch {
	case enc == "":
		sw.ResponseWriter.WriteHeader(status)
		sw.rewrite(mode)
	case mode != csp.Tags:
		sw.failClosed("HTML response in an encoding the injector cannot read as the browser will; answered 502 so the placeholder stays secret",
			zap.String("encoding", enc))
		return len(p), nil
	default:
		sw.giveBack() // its tags keep the nonces they have
		sw.ResponseWriter.WriteHeader(status)
	}
	if prev > 0 {
		if _, err := sw.writeOn(pg.head[:prev]); err != nil {
			return 0, err
		}
	}
	return sw.writeOn(p)
}

// writeOn passes body bytes on: through the rewriting, if any.
func (sw *securityWriter) writeOn(p []byte) (int, error) {
	if sw.in != nil {
		return sw.in.Write(p)
	}
	return sw.ResponseWriter.Write(p)
}

// isBinary reports whether a media type is clearly binary, so is passed as it is in
// placeholder mode (overwriting bytes would corrupt it): image/* other than SVG, audio/*,
// video/*, font/*, and a few application types. Every other body, an unknown or missing type
// included, is redacted.
func isBinary(mt string) bool {
	top, _, _ := strings.Cut(mt, "/")
	switch top {
	case "image":
		return mt != "image/svg+xml"
	case "audio", "video", "font":
		return true
	}
	switch mt {
	case "application/octet-stream", "application/zip", "application/gzip", "application/x-gzip",
		"application/pdf", "application/wasm":
		return true
	}
	return false
}

// bodyStatus reports whether a response with this status carries a body (to a GET).
func bodyStatus(status int) bool {
	return status >= 200 && status != http.StatusNoContent && status != http.StatusNotModified
}

// hasBody reports whether a response with this status to this request carries a body.
func (sw *securityWriter) hasBody(status int) bool {
	return sw.r.Method != http.MethodHead && bodyStatus(status) && !sw.tunnels(status)
}

// tunnels reports whether the response opens a tunnel instead of carrying a body: a 2xx to
// CONNECT (RFC 9110 9.3.6), a WebSocket over HTTP/2 or HTTP/3 (RFC 8441, RFC 9220) as the
// 101 is over HTTP/1.1. Its bytes are another protocol's, and its status goes out at once:
// the client waits for it before it sends anything.
//
// Any client may send CONNECT, and a route may answer it with a page (respond, an upstream
// whose catch-all route takes any method). In placeholder mode such a page passed untouched
// would hand the client the secret placeholder, so there only the answer reverse_proxy gives
// a WebSocket's extended CONNECT is a tunnel: the request names a protocol, and the 200 has
// no Content-Type (an upstream's page has one). Every other answer is a response, rewritten
// or redacted as any other.
func (sw *securityWriter) tunnels(status int) bool {
	if sw.r.Method != http.MethodConnect || status < 200 || status > 299 {
		return false
	}
	if sw.h.injectMode != csp.Placeholder {
		return true // tags mode: no secret in any body
	}
	return extendedConnect(sw.r) && !hasContentType(sw.Header())
}

// untypedTunnel reports whether, in placeholder mode, the response is the untyped 2xx to an
// extended CONNECT that tunnels accepts as a tunnel. reverse_proxy opens a WebSocket's tunnel
// so, but also passes on so an upstream's page sent without Content-Type (the Upgrade ignored),
// and that page would go out as a tunnel's bytes, placeholder included. The two differ in
// their first act: reverse_proxy flushes the tunnel's 200 before any byte (the client waits
// for it), a page writes its body. So the status waits for that act: a flush opens the tunnel,
// a write is a body, typed by its first bytes as net/http would (sniff) and rewritten.
func (sw *securityWriter) untypedTunnel(status int) bool {
	return sw.h.injectMode == csp.Placeholder && sw.tunnels(status) && !hasContentType(sw.Header())
}

// extendedConnect reports whether r is an extended CONNECT (RFC 8441, RFC 9220), as Caddy's
// reverse_proxy reads it: HTTP/2 carries the protocol in the :protocol pseudo-header, quic-go's
// HTTP/3 in r.Proto.
func extendedConnect(r *http.Request) bool {
	switch r.ProtoMajor {
	case 2:
		return r.Header.Get(":protocol") != ""
	case 3:
		return r.Proto != "" && !strings.HasPrefix(r.Proto, "HTTP/")
	}
	return false
}

func hasContentType(h http.Header) bool {
	_, set := h["Content-Type"] // present but empty means "do not sniff"
	return set
}

// sniff settles a status held for want of a Content-Type, typing the body as net/http would.
func (sw *securityWriter) sniff(p []byte) {
	if sw.pending == 0 {
		return
	}
	status := sw.pending
	sw.pending = 0
	if len(p) > 0 {
		sw.Header().Set("Content-Type", http.DetectContentType(p))
	}
	sw.start(status)
}

// pageLogRate and pageLogPerClient are the budget of each security_headers handler's
// per-response log lines (of each message): pageLogRate a second, one client's share bounded
// as in the security log (eventbudget).
const (
	pageLogRate      = 10
	pageLogPerClient = 2
)

// logPage writes a log line about this response, within the handler's budget; a written line
// carries how many of its kind were suppressed since the last one, and the request's uri.
func (sw *securityWriter) logPage(level zapcore.Level, msg string, fields ...zap.Field) {
	ce := sw.h.logger.Check(level, msg)
	if ce == nil {
		return
	}
	n, ok := sw.h.pageLogs.Admit(msg, eventClient(sw.r), time.Now())
	if !ok {
		return
	}
	fields = append(fields, zap.String("uri", loggedURI(sw.r)))
	if n > 0 {
		fields = append(fields, zap.Int("suppressed", n))
	}
	ce.Write(fields...)
}

// failClosed answers 502 instead of a body that would still hold the secret placeholder: an
// HTML page the upstream compressed or sent a part of although we asked for neither, one in an
// encoding the injector cannot read, or a part of a body that would be redacted (msg says
// which, for the log, with the encoding in field).
func (sw *securityWriter) failClosed(msg string, field zap.Field) {
	sw.discard = true
	sw.logPage(zapcore.ErrorLevel, msg, field)
	hdr := sw.Header()
	for _, k := range []string{"Content-Encoding", "Content-Length", "Content-Range", "ETag", "Last-Modified", "Accept-Ranges"} {
		hdr.Del(k)
	}
	_ = writeProblem(sw.ResponseWriter, http.StatusBadGateway, "Bad Gateway", "the upstream's HTML could not be secured", nil)
}

func (sw *securityWriter) Write(p []byte) (int, error) {
	if !sw.started {
		sw.WriteHeader(http.StatusOK)
	}
	sw.sniff(p)
	switch {
	case sw.discard:
		return len(p), nil
	case sw.holding():
		return sw.release(p, true)
	}
	return sw.writeOn(p)
}

// ReadFrom keeps file_server's bodies on the rewriting path: the embedded wrapper's ReadFrom
// would hand the file to the connection and bypass Write.
func (sw *securityWriter) ReadFrom(r io.Reader) (int64, error) {
	if !sw.started {
		sw.WriteHeader(http.StatusOK)
	}
	var n0 int64
	if sw.pending != 0 {
		// Type the body by its first bytes, as net/http does.
		var head [512]byte
		n, err := io.ReadFull(r, head[:])
		if n > 0 {
			if _, werr := sw.Write(head[:n]); werr != nil {
				return int64(n), werr
			}
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return int64(n), nil
		} else if err != nil {
			return int64(n), err
		}
		n0 = int64(n)
	}
	n, err := sw.readFrom(r)
	return n0 + n, err
}

func (sw *securityWriter) readFrom(r io.Reader) (int64, error) {
	switch {
	case sw.discard:
		return io.Copy(io.Discard, r)
	case sw.in != nil || sw.holding():
		buf := copyBufPool.Get().(*[]byte)
		defer copyBufPool.Put(buf)
		return io.CopyBuffer(writerOnly{sw}, r, *buf)
	}
	return sw.ResponseWriterWrapper.ReadFrom(r)
}

// writerOnly hides ReadFrom so io.CopyBuffer uses the buffer.
type writerOnly struct{ io.Writer }

// FlushError sends what the injector has passed on (its output buffer included); bytes it holds (part of a tag or of a
// placeholder) wait for the rest.
func (sw *securityWriter) FlushError() error {
	if !sw.started {
		sw.WriteHeader(http.StatusOK)
	}
	if sw.pending != 0 && sw.untypedTunnel(sw.pending) {
		// reverse_proxy's tunnel: the 200 flushed before any byte, the client waiting for it.
		status := sw.pending
		sw.pending = 0
		sw.start(status)
	} else if sw.pending != 0 || sw.holding() {
		// The status waits for the page's first bytes: they give an untyped body its type
		// (sniffed), and a page its encoding. A flush before them has nothing to send.
		return nil
	}
	if sw.page != nil && sw.page.out != nil {
		if err := sw.page.out.Flush(); err != nil {
			return err
		}
	}
	return http.NewResponseController(sw.ResponseWriter).Flush()
}

// Flush implements http.Flusher (server-sent events, streaming upstreams).
func (sw *securityWriter) Flush() { _ = sw.FlushError() }

// Hijack passes the connection through (websockets via reverse_proxy).
func (sw *securityWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return http.NewResponseController(sw.ResponseWriter).Hijack()
}

// placeholderInSwallowingTag is the WARN of a page where a placeholder became dashes inside a
// tag holding a '<' in an attribute (csp.Injector.Dashed).
const placeholderInSwallowingTag = "placeholder mode found its placeholder inside a tag that holds a '<' in an attribute name or value (markup swallowed into an attribute, such as an injected `<iframe srcdoc='<script ... x=`; or an unescaped srcdoc of the application's): it became '-', not the nonce, so what that value holds gets no nonce"

// close passes on what the injector holds at the end of the body.
func (sw *securityWriter) close() error {
	sw.sniff(nil) // a held status whose body never came
	var err error
	if sw.holding() {
		_, err = sw.release(nil, false) // a page shorter than the bytes that decide
	}
	if sw.h.injectMode == csp.Placeholder {
		// Trailers (reverse_proxy adds the upstream's to the header map after the body), and
		// the headers of a response the route never started.
		sw.redactHeaders()
	}
	pg := sw.page
	if pg == nil || pg.inj == nil {
		return err
	}
	if pg.inj.Dashed() {
		sw.logPage(zapcore.WarnLevel, placeholderInSwallowingTag)
	}
	if pg.inj.GaveUp() {
		sw.logPage(zapcore.WarnLevel, "placeholder mode lost track of this page's HTML (SVG or MathML it cannot follow, a <style> in a <select>, an ESC byte; see the README's limits of the injector): its later placeholders became '-' and its later tags kept no nonce, so their scripts and styles are blocked")
	}
	// The first writer of the chain first: the wide forms' redactors (the last one made
	// first), the page's own nonce, the injector.
	var chain [csp.WideFormCount + 2]*csp.Injector
	for i, r := range pg.wide {
		chain[len(pg.wide)-1-i] = r
	}
	chain[len(pg.wide)], chain[len(pg.wide)+1] = pg.own, pg.inj
	for _, r := range chain {
		if r == nil {
			continue
		}
		if cerr := r.Close(); err == nil {
			err = cerr
		}
		injectorPool.Put(r)
	}
	pg.wide, pg.own = [csp.WideFormCount]*csp.Injector{}, nil
	if ferr := pg.out.Flush(); err == nil {
		err = ferr
	}
	pg.out.Reset(nil)
	outPool.Put(pg.out)
	pg.inj, pg.out, sw.in = nil, nil, nil
	return err
}

// Interface guards.
var (
	_ http.Flusher  = (*securityWriter)(nil)
	_ http.Hijacker = (*securityWriter)(nil)
	_ io.ReaderFrom = (*securityWriter)(nil)
)
