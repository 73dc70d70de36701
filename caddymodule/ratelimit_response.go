package caddymodule

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap/zapcore"

	"github.com/swarmsec/caddy-hardening/ipclass"
	"github.com/swarmsec/caddy-hardening/ratelimit"
)

// The header fields of draft-ietf-httpapi-ratelimit-headers-10, in Go's canonical form.
const (
	headerRateLimitPolicy = "Ratelimit-Policy"
	headerRateLimit       = "Ratelimit"
)

// retryAfterMark stands for the retry_after number while the refusal body is rendered once.
const retryAfterMark = 987654321987

// rowReplies is what one class's row answers, rendered at provision: the RateLimit-Policy value
// of the unscaled limit and the refusal body around its retry_after number.
type rowReplies struct {
	quotedName string // `"<policy>"`: a structured-field string (names need no escaping)
	base       ratelimit.Limit
	policy     string // RateLimit-Policy for base
	status     int
	bodyHead   []byte // the problem body up to retry_after's value
	bodyTail   []byte // and after it
	// detail is a message with placeholders, expanded for each refusal and put in bodyHead at
	// detailAt; "" when the message is fixed (it is then in bodyHead).
	detail   string
	detailAt int
}

// detailMark stands for a message with placeholders while the refusal body is rendered once.
const detailMark = "detail-expanded-per-refusal"

func newRowReplies(p *resolvedPolicy, row policyRow, status int, message string) (rowReplies, error) {
	rr := rowReplies{quotedName: `"` + p.name + `"`, base: row.limit, status: status}
	if row.kind == rowLimit {
		rr.policy = rr.policyValue(row.limit)
	}
	if message == "" {
		message = "The rate limit of policy " + strconv.Quote(p.name) + " is exceeded; retry after the number of seconds in Retry-After."
	}
	title := http.StatusText(status)
	if title == "" {
		title = "Request refused"
	}
	detail := message
	if strings.Contains(message, "{") {
		rr.detail, detail = message, detailMark
	}
	body, err := json.Marshal(map[string]any{
		"type": "about:blank", "title": title, "status": status, "detail": detail,
		"policy": p.name, "retry_after": retryAfterMark,
	})
	if err != nil {
		return rr, err
	}
	head, tail, ok := bytes.Cut(body, []byte(strconv.FormatInt(retryAfterMark, 10)))
	if rr.detail != "" && ok {
		mark := []byte(`"` + detailMark + `"`)
		rr.detailAt = bytes.Index(head, mark)
		ok = rr.detailAt >= 0
		if ok {
			head = append(head[:rr.detailAt:rr.detailAt], head[rr.detailAt+len(mark):]...)
		}
	}
	if !ok {
		return rr, fmt.Errorf("policy_rate_limit: cannot render the refusal body")
	}
	rr.bodyHead, rr.bodyTail = head, append(tail, '\n')
	return rr, nil
}

// policyValue renders RateLimit-Policy for l: the quota q per window w, in whole seconds
// (10/500ms reads q=20;w=1). The window is the configured period's: an adaptive factor that
// stretched l's period shrinks q and leaves w alone, so clients see one window (8/1h at a
// factor of 0.25 reads q=2;w=3600). Only where that would round q to 0 does w stretch instead
// (1/1h at 0.25 reads q=1;w=14400).
func (rr *rowReplies) policyValue(l ratelimit.Limit) string {
	w := max(1, math.Round(rr.base.Period.Seconds()))
	q := int64(float64(l.Rate) * w / l.Period.Seconds())
	if q < 1 {
		w = max(1, math.Round(l.Period.Seconds()))
		q = int64(float64(l.Rate) * w / l.Period.Seconds())
	}
	b := make([]byte, 0, len(rr.quotedName)+32)
	b = append(b, rr.quotedName...)
	b = append(b, ";q="...)
	b = strconv.AppendInt(b, q, 10)
	b = append(b, ";w="...)
	b = strconv.AppendInt(b, int64(w), 10)
	return string(b)
}

// setHeaders writes RateLimit-Policy and RateLimit for a decision under l; pk is the members'
// partition key parameter (see PolicyRateLimit.partitionKey), "" for none. It returns the two
// members it wrote.
func (rr *rowReplies) setHeaders(h http.Header, res ratelimit.Result, l ratelimit.Limit, pk string) (policy, limit string) {
	vals := new([2]string) // one allocation for both fields' value slices
	rr.rateLimitValues(vals[:], res, l, pk)
	addListMember(h, headerRateLimitPolicy, vals[0:1:1])
	addListMember(h, headerRateLimit, vals[1:2:2])
	return vals[0], vals[1]
}

// upstreamFieldsWriter watches the response of an admitted request for RateLimit members that
// the rest of the route (an upstream, through reverse_proxy) adds with the name of the policy
// whose members the handler wrote without a pk. Both stay: draft-ietf-httpapi-ratelimit-headers-10
// (section 7.2) asks an intermediary not to remove the origin's fields, which would read as a
// more permissive policy. But two members of one name, neither with a pk, cannot be told apart
// (a client keying members by name keeps one of them, either limit), so the handler's own get
// their pk, in both fields, as a second bucket of one policy does (see partitionKey).
type upstreamFieldsWriter struct {
	caddyhttp.ResponseWriterWrapper
	rr            *rowReplies
	policy, limit string // the members the handler wrote
	handler       *PolicyRateLimit
	key           string // the request's bucket, for its pk
	done          bool
}

// mark gives the handler's members their pk when the response lists another member of the
// policy's name without one, once, before the header is written.
func (w *upstreamFieldsWriter) mark() {
	if w.done {
		return
	}
	w.done = true
	h := w.Header()
	if len(h[headerRateLimit]) < 2 && len(h[headerRateLimitPolicy]) < 2 {
		return // the handler's lines alone: an upstream's come as lines of their own
	}
	if w.rr.unmarkedMembers(h[headerRateLimit]) < 2 && w.rr.unmarkedMembers(h[headerRateLimitPolicy]) < 2 {
		return
	}
	pk := w.handler.bucketPK(w.key)
	replaceMember(h, headerRateLimitPolicy, w.policy, w.policy+pk)
	replaceMember(h, headerRateLimit, w.limit, w.limit+pk)
}

// replaceMember replaces the first field line of name that is old with new, in a copy of the
// lines (their backing array may be shared with another writer's).
func replaceMember(h http.Header, name, old, new string) {
	lines := h[name]
	if i := slices.Index(lines, old); i >= 0 {
		lines = slices.Clone(lines)
		lines[i] = new
		h[name] = lines
	}
}

func (w *upstreamFieldsWriter) WriteHeader(status int) {
	if finalStatus(status) { // not 103 Early Hints: reverse_proxy sends the upstream's, then takes its fields back
		w.mark()
	}
	w.ResponseWriterWrapper.WriteHeader(status)
}

func (w *upstreamFieldsWriter) Write(p []byte) (int, error) {
	w.mark()
	return w.ResponseWriterWrapper.Write(p)
}

// ReadFrom marks first: the embedded one writes the header without WriteHeader.
func (w *upstreamFieldsWriter) ReadFrom(r io.Reader) (int64, error) {
	w.mark()
	return w.ResponseWriterWrapper.ReadFrom(r)
}

// FlushError marks first: a flush writes the header.
func (w *upstreamFieldsWriter) FlushError() error {
	w.mark()
	return http.NewResponseController(w.ResponseWriter).Flush()
}

// unmarkedMembers counts the members of the field lines vals with this policy's name and no pk
// parameter.
func (rr *rowReplies) unmarkedMembers(vals []string) int {
	n := 0
	for _, v := range vals {
		for m := range strings.SplitSeq(v, ",") {
			m = strings.TrimLeft(m, " \t")
			if params, ok := strings.CutPrefix(m, rr.quotedName); ok && (params == "" || params[0] == ';') && !strings.Contains(params, ";pk=") {
				n++
			}
		}
	}
	return n
}

// addListMember sets a RateLimit field to v, or adds v to it when an earlier policy_rate_limit
// of the route set it: the fields are lists with one member per policy, and several field
// lines are one list.
func addListMember(h http.Header, name string, v []string) {
	if old := h[name]; len(old) > 0 {
		h[name] = append(old[:len(old):len(old)], v...)
		return
	}
	h[name] = v
}

// rateLimitValues renders the RateLimit-Policy and RateLimit values into dst[0] and dst[1],
// each with the parameter pk appended ("" for none).
func (rr *rowReplies) rateLimitValues(dst []string, res ratelimit.Result, l ratelimit.Limit, pk string) {
	dst[0] = rr.policy
	if l != rr.base {
		dst[0] = rr.policyValue(l) // an adaptive factor stretched the period
	}
	if pk != "" {
		dst[0] += pk
	}
	var buf [128]byte
	b := append(buf[:0], rr.quotedName...)
	b = append(b, ";r="...)
	b = strconv.AppendInt(b, res.Remaining, 10)
	b = append(b, ";t="...)
	b = strconv.AppendInt(b, moreQuotaSeconds(res, l), 10)
	b = append(b, pk...)
	dst[1] = string(b)
}

// listed reports whether the RateLimit field lines vals already hold a member of this policy
// (a member begins with the quoted name and a ';', lines may hold several, comma-separated).
func (rr *rowReplies) listed(vals []string) bool {
	for _, v := range vals {
		for m := range strings.SplitSeq(v, ",") {
			m = strings.TrimLeft(m, " \t")
			if strings.HasPrefix(m, rr.quotedName) && strings.HasPrefix(m[len(rr.quotedName):], ";") {
				return true
			}
		}
	}
	return false
}

// moreQuotaSeconds is RateLimit's t: the seconds until additional quota is made available
// (draft-ietf-httpapi-ratelimit-headers-10, 4.1.2), not until the bucket is full again. A
// refusal's is its Retry-After, which the draft says must not come before t. An admitted
// request's is when r next grows by one: GCRA gives a unit back every interval, so that is
// the time to a full bucket modulo the interval (12 s for 5/1m however many are spent; a
// client that waits t finds r+1).
func moreQuotaSeconds(res ratelimit.Result, l ratelimit.Limit) int64 {
	if !res.Allowed {
		return max(1, ceilSeconds(res.RetryAfter))
	}
	return ceilSeconds(nextUnitAfter(res, l))
}

// nextUnitAfter is the time until an admitted decision's bucket gives its next unit back:
// the time to a full bucket modulo the interval.
func nextUnitAfter(res ratelimit.Result, l ratelimit.Limit) time.Duration {
	d := res.ResetAfter
	if i := l.Interval(); i > 0 && d > 0 {
		d = (d-1)%i + 1
	}
	return d
}

// refuse writes the refusal: status, Retry-After, the RateLimit fields unless hidden, and the
// problem body. It calls no further handler. The header values share one backing array, each
// slice capped at its own element so an append by a later writer cannot reach a neighbour.
// Retry-After (and the body's retry_after) is the later of this bucket's retry time and wait,
// the time until the policies that admitted r before this one admit again; the refused
// policy's own RateLimit member keeps its bucket's t.
func (rr *rowReplies) refuse(w http.ResponseWriter, r *http.Request, res ratelimit.Result, l ratelimit.Limit, hideHeaders bool, wait time.Duration, pk string) error {
	retry := max(1, ceilSeconds(max(res.RetryAfter, wait)))
	size := len(rr.bodyHead) + len(rr.bodyTail)
	body := make([]byte, 0, size+20)
	if rr.detail != "" {
		body = append(body, rr.bodyHead[:rr.detailAt]...)
		body = append(body, rr.expandDetail(r)...)
		body = append(body, rr.bodyHead[rr.detailAt:]...)
	} else {
		body = append(body, rr.bodyHead...)
	}
	mark := len(body)
	body = strconv.AppendInt(body, retry, 10)
	retryText := string(body[mark:])
	body = append(body, rr.bodyTail...)

	// No Content-Length: net/http computes it for a body this small, one header less to write.
	vals := new([6]string)
	vals[0], vals[1], vals[2], vals[3] = "application/problem+json", "no-store", "nosniff", retryText
	h := w.Header()
	h["Content-Type"] = vals[0:1:1]
	h["Cache-Control"] = vals[1:2:2]
	h["X-Content-Type-Options"] = vals[2:3:3]
	h["Retry-After"] = vals[3:4:4]
	if !hideHeaders && rr.policy != "" {
		rr.rateLimitValues(vals[4:6], res, l, pk)
		addListMember(h, headerRateLimitPolicy, vals[4:5:5])
		addListMember(h, headerRateLimit, vals[5:6:6])
	}
	w.WriteHeader(rr.status)
	_, err := w.Write(body)
	return err
}

// expandDetail is the message with the request's placeholders filled in, as a JSON string
// (escaped, so a request value cannot break out of it).
func (rr *rowReplies) expandDetail(r *http.Request) []byte {
	detail := rr.detail
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		detail = repl.ReplaceAll(detail, "")
	}
	b, _ := json.Marshal(detail)
	return b
}

// ceilSeconds rounds d up to whole seconds.
func ceilSeconds(d time.Duration) int64 {
	return int64((d + time.Second - 1) / time.Second)
}

// refusalEventGap is the least time between two rate_limit_exceeded events of one handler:
// a flood of refusals costs one atomic counter per request, and the event that is written
// carries how many refusals it stands for.
const refusalEventGap = 200 * time.Millisecond

// refusalSampler turns refusals into sampled security events.
type refusalSampler struct {
	last    atomic.Int64 // unix nanoseconds of the last event
	skipped atomic.Int64 // refusals since then
}

func (s *refusalSampler) report(h *PolicyRateLimit, r *http.Request, class ipclass.Class, key string, keyIP bool, res ratelimit.Result, shadow bool) {
	now := time.Now().UnixNano()
	last := s.last.Load()
	if now-last < int64(refusalEventGap) || !s.last.CompareAndSwap(last, now) {
		s.skipped.Add(1)
		return
	}
	data := map[string]any{
		"policy":      h.policy.name,
		"limit":       h.policy.rows[class].String(),
		"retry_after": max(1, ceilSeconds(res.RetryAfter)),
		"store":       h.limiter.mode(),
		"refusals":    s.skipped.Swap(0) + 1,
	}
	if shadow {
		data["shadow"] = true
	}
	if keyIP { // the client's address (or the @<ip> fallback): no secret in it
		data["key"] = key
	} else {
		// A key may be a credential (an API key): log a digest an operator can match, not it.
		sum := sha256.Sum256([]byte(key))
		data["key_sha256"] = hex.EncodeToString(sum[:8])
	}
	level := zapcore.WarnLevel
	if shadow {
		level = zapcore.InfoLevel
	}
	h.app.SecurityEvent(h.ctx, r, level, EventRateLimited, data)
}

// checkMessageTemplate refuses a refusal message whose braces do not pair up ("slow down
// {client_ip"): Caddy's replacer would send such a placeholder as it is written, so the client
// would read the template instead of its value. A literal brace is written \{ or \}.
func checkMessageTemplate(message string) error {
	if _, err := keyPlaceholders(message); err != nil {
		return fmt.Errorf("%v; expected each placeholder closed, as {client_ip}, and a literal brace written \\{ or \\}", err)
	}
	return nil
}
