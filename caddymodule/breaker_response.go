package caddymodule

import (
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/swarmsec/caddy-hardening/breaker"
)

// writeOpen is the 503 problem; the breaker's name stays out of it (internal topology). The
// reply changes once a second at most, so it is rendered once per Retry-After value: an open
// breaker under a flood answers for less than a bare `respond`. A gRPC call gets gRPC's answer
// instead (writeOpenGRPC).
func (h *UpstreamBreaker) writeOpen(w http.ResponseWriter, r *http.Request, state breaker.State) error {
	secs := h.retryAfter(state)
	if ct := r.Header["Content-Type"]; len(ct) > 0 && strings.HasPrefix(ct[0], "application/grpc") {
		return writeOpenGRPC(w, ct[0], secs)
	}
	reply := h.openReply.Load()
	if reply == nil || reply.secs != secs {
		reply = &renderedReply{secs: secs, header: make(http.Header)}
		if err := writeProblem(reply, http.StatusServiceUnavailable, "Service Unavailable",
			"the upstream service is failing; requests are held back until it recovers",
			map[string]any{"retry_after": secs}); err != nil {
			return err
		}
		reply.header.Set("Retry-After", strconv.Itoa(secs))
		h.openReply.Store(reply)
	}
	closeForHeldBody(w, r) // the body is never read
	hdr := w.Header()
	vals := make([]string, 0, len(reply.header)) // this response's copy: handlers may edit values
	for k, v := range reply.header {
		vals = append(vals, v[0])
		hdr[k] = vals[len(vals)-1 : len(vals) : len(vals)]
	}
	w.WriteHeader(reply.status)
	_, err := w.Write(reply.body)
	return err
}

// openGRPCMessage is the grpc-message of an open breaker's answer to a gRPC call.
const openGRPCMessage = "the upstream service is failing; requests are held back until it recovers"

// writeOpenGRPC answers a gRPC call (grpc, grpc-web) as gRPC servers and Envoy do: HTTP 200 with
// grpc-status UNAVAILABLE (14) in a header-only ("trailers-only") response, so the client reads
// the breaker's message rather than "unexpected HTTP status code 503", and
// grpc-retry-pushback-ms, which a client with a retry policy waits before its next attempt.
func writeOpenGRPC(w http.ResponseWriter, contentType string, secs int) error {
	hdr := w.Header()
	hdr.Set("Content-Type", contentType)
	hdr.Set("Grpc-Status", "14")
	hdr.Set("Grpc-Message", openGRPCMessage)
	hdr.Set("Grpc-Retry-Pushback-Ms", strconv.Itoa(secs*1000))
	hdr.Set("Retry-After", strconv.Itoa(secs))
	hdr.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	return nil
}

// fallbackRun is one run of the fallback routes, for fallbackEnd to find in the request.
type fallbackRun struct {
	state      breaker.State
	unanswered bool          // no fallback route answered: fallbackEnd sent the 503 problem
	w          statusWatcher // the fallback's writer, for the status it wrote
}

// response is the short_circuited_total response the run counts as: what the client got. A
// fallback that failed (its handlers returned an error, as a fallback reverse_proxy whose
// upstream is down too does, or wrote a 5xx) did not serve the client: counted apart, or a
// broken fallback would look served. The status of an error written by nobody is the one
// Caddy's error handling is asked to answer (500 without one), whatever handle_errors makes
// of it.
func (fr *fallbackRun) response(err error) int {
	if fr.unanswered { // the client got the 503 problem
		return responseProblem
	}
	status := fr.w.status
	if status == 0 && err != nil {
		status = http.StatusInternalServerError
		var he caddyhttp.HandlerError
		if errors.As(err, &he) && he.StatusCode != 0 {
			status = he.StatusCode
		}
	}
	if status >= 500 {
		return responseFallback5xx
	}
	return responseFallback
}

// statusWatcher remembers the final status written through it.
type statusWatcher struct {
	caddyhttp.ResponseWriterWrapper
	status int
}

// finalStatus reports whether a status written to WriteHeader is the response's own: any but an
// informational one (103 Early Hints may come first), 101 included (a WebSocket's answer).
func finalStatus(status int) bool {
	return status >= 200 || status == http.StatusSwitchingProtocols
}

func (w *statusWatcher) WriteHeader(status int) {
	if w.status == 0 && finalStatus(status) {
		w.status = status
	}
	w.ResponseWriterWrapper.WriteHeader(status)
}

func (w *statusWatcher) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriterWrapper.Write(p)
}

// ReadFrom notes the implicit 200: the embedded one writes without WriteHeader.
func (w *statusWatcher) ReadFrom(r io.Reader) (int64, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriterWrapper.ReadFrom(r)
}

type fallbackRunKey struct{}

// fallbackEnd ends the fallback routes: if none of them answered, the 503 problem does.
func (h *UpstreamBreaker) fallbackEnd(w http.ResponseWriter, r *http.Request) error {
	fr, _ := r.Context().Value(fallbackRunKey{}).(*fallbackRun)
	if fr == nil { // not reached through refuse
		fr = &fallbackRun{state: breaker.StateOpen}
	}
	fr.unanswered = true
	return h.writeOpen(w, r, fr.state)
}

// renderedReply is a response written once and replayed.
type renderedReply struct {
	secs   int
	status int
	header http.Header
	body   []byte
}

func (r *renderedReply) Header() http.Header    { return r.header }
func (r *renderedReply) WriteHeader(status int) { r.status = status }
func (r *renderedReply) Write(p []byte) (int, error) {
	r.body = append(r.body, p...)
	return len(p), nil
}

// errRoutePanicked stands for a panic in the wrapped route.
var errRoutePanicked = errors.New("the route panicked")

// breakerRecorder reports the outcome as soon as the final response header is written: the
// status and its latency say how the upstream did, and a long body (a download, server-sent
// events, a WebSocket) does not hold a half-open probe slot. It never buffers.
// breakerHold says which breaker of a name holds a request (nesting: an inner one of the same
// name passes it on). It goes into the request's vars once, and is then changed only through
// its own field: reverse_proxy's dial function reads the vars map from the transport's dial
// goroutine, which can outlive the request (a dial that lost the race for an idle connection
// goes on), so writing the map after the route ran (deleting the key, as before) raced with
// that read: Go's fatal "concurrent map read and map write" outside -race.
type breakerHold struct{ entry atomic.Pointer[breakerEntry] }

type breakerRecorder struct {
	caddyhttp.ResponseWriterWrapper
	h        *UpstreamBreaker
	tk       breaker.Ticket
	start    time.Time
	wrote    bool // a final header went out
	reported bool
	body     watchedBody    // the request body, when it has one
	vars     map[string]any // the request's vars: a refusal of ours is marked there (refusedVar)
	hold     breakerHold    // put in vars when no breaker of this name held the request before

	// A gRPC call whose header has no grpc-status is settled at its first message, or at its
	// end by the grpc-status in its trailers (see judge).
	grpcPending bool
	headerAt    time.Duration // the header's latency, for a call settled later
}

func (rec *breakerRecorder) report(res breaker.Result) {
	rec.reported = true
	res.ClientFault = rec.body.failed.Load()
	if res.Status == 0 || res.Status >= 400 { // no refusal of ours is a 2xx or 3xx
		res.NotForwarded = refused(rec.vars)
	}
	o, _ := rec.h.classifier.Classify(res)
	rec.tk.Report(o)
	rec.h.metrics.outcomes[o].Inc()
}

// latency is the upstream's time to answer: from the request's start, or from the last read of
// its body when that came later, so a client that uploads slowly does not make a fast upstream
// slow (slow_threshold), which anyone could do to open the breaker.
func (rec *breakerRecorder) latency() time.Duration {
	now := time.Now()
	if last := rec.body.last.Load(); last != 0 {
		if d := now.Sub(time.Unix(0, last)); d < now.Sub(rec.start) {
			return d
		}
	}
	return now.Sub(rec.start)
}

func (rec *breakerRecorder) WriteHeader(status int) {
	if !rec.wrote && finalStatus(status) {
		rec.wrote = true
		if !rec.reported {
			judged, later := rec.judge(status)
			if rec.grpcPending = later; later {
				rec.headerAt = rec.latency()
			} else {
				rec.report(breaker.Result{Status: judged, Latency: rec.latency()})
			}
		}
	}
	rec.ResponseWriterWrapper.WriteHeader(status)
}

// judge is the status the breaker judges a response by, and whether that waits for later. A
// gRPC response (Content-Type application/grpc..., gRPC-Web too) is judged by its grpc-status
// when that comes in the header (a "trailers-only" response: a call that failed before its
// header, UNAVAILABLE is 503, see breaker.GRPCStatus); any other response by its HTTP status.
// Every response but a 200 is judged by its status without a header lookup, and a 200 that is
// not gRPC's with one (Content-Type), read from the map directly (the canonical key, as Get
// would canonicalize it): this runs for every proxied response.
//
// later reports a gRPC call (over HTTP/2, not gRPC-Web, whose status is in its body) whose
// header has no grpc-status: its status comes in the trailers. It is settled at its first
// message, as a success (the upstream answered: a stream that fails later is like an HTTP body
// cut short), or, without one, at its end by the grpc-status of its trailers (a unary call that
// failed after its server sent metadata, a stream that failed before its first message):
// grpcSettle. Only while the breaker is closed: a half-open probe is settled at its header as
// before, or a stream that sent its metadata and then waits (a watch with nothing to report
// yet) would hold the probe slot, and every other request would be refused, for as long as it
// lasts. (Half-open now and the request was admitted closed, or open now: the ticket is of an
// earlier generation, which gobreaker ignores, so settling it early changes nothing.)
func (rec *breakerRecorder) judge(status int) (judged int, later bool) {
	if status != http.StatusOK {
		return status, false
	}
	hdr := rec.Header()
	cts := hdr["Content-Type"]
	if len(cts) == 0 || !strings.HasPrefix(cts[0], "application/grpc") {
		return status, false
	}
	if gs := hdr["Grpc-Status"]; len(gs) > 0 {
		return breaker.GRPCStatus(gs[0]), false
	}
	ct := cts[0]
	if ct != "application/grpc" && !strings.HasPrefix(ct, "application/grpc+") && !strings.HasPrefix(ct, "application/grpc;") {
		return status, false // gRPC-Web: judged by its HTTP status
	}
	return status, rec.h.entry.b.State() == breaker.StateClosed
}

// grpcSettle settles a pending gRPC call at its end (the route returned err, or panicked): by
// the grpc-status reverse_proxy copied from the upstream's trailers into the header map (as
// declared trailers, or under http.TrailerPrefix); a call that ended without one is INTERNAL, as
// gRPC clients read it.
func (rec *breakerRecorder) grpcSettle(err error, clientGone bool) {
	hdr := rec.Header()
	gs := hdr["Grpc-Status"]
	if len(gs) == 0 {
		gs = hdr[http.TrailerPrefix+"Grpc-Status"]
	}
	res := breaker.Result{Status: breaker.GRPCStatus(""), Err: err, Latency: rec.headerAt, ClientGone: clientGone}
	if len(gs) > 0 {
		res.Status = breaker.GRPCStatus(gs[0])
	}
	if err != nil {
		var he caddyhttp.HandlerError
		if errors.As(err, &he) {
			res.ErrStatus = he.StatusCode
		}
	}
	rec.report(res)
}

func (rec *breakerRecorder) Write(p []byte) (int, error) {
	if !rec.wrote {
		rec.WriteHeader(http.StatusOK)
	}
	if rec.grpcPending && len(p) > 0 && !rec.reported { // a gRPC call's first message
		rec.report(breaker.Result{Status: http.StatusOK, Latency: rec.headerAt})
	}
	return rec.ResponseWriterWrapper.Write(p)
}

// ReadFrom goes through WriteHeader: the embedded one would skip it (file_server bodies).
func (rec *breakerRecorder) ReadFrom(r io.Reader) (int64, error) {
	if !rec.wrote {
		rec.WriteHeader(http.StatusOK)
	}
	if rec.grpcPending && !rec.reported {
		rec.report(breaker.Result{Status: http.StatusOK, Latency: rec.headerAt})
	}
	return rec.ResponseWriterWrapper.ReadFrom(r)
}

// watchedBody is the request body as the rest of the route reads it. It remembers when it was
// last read (see latency) and a failed read (malformed chunked encoding, a body cut short, one over request_body's max_size): the
// upstream never got a whole request, and reverse_proxy answers that with a 502 like a dead
// upstream, which any client could send to open the breaker for everyone. The transport reads
// it on its own goroutine, hence the atomic.
type watchedBody struct {
	io.ReadCloser
	failed atomic.Bool
	closed atomic.Bool  // closed by the route (the transport, when the upstream failed)
	last   atomic.Int64 // unix nanoseconds of the last read: the upload's end, once read whole
}

func (b *watchedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.last.Store(time.Now().UnixNano())
	// A read that fails because the route closed the body (the transport does when the
	// upstream fails mid-upload) is not the client's fault.
	if err != nil && err != io.EOF && !b.closed.Load() {
		b.failed.Store(true)
	}
	return n, err
}

func (b *watchedBody) Close() error {
	b.closed.Store(true)
	return b.ReadCloser.Close()
}
