package breaker

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Outcome is what one admitted request tells the breaker.
type Outcome uint8

// The outcomes.
const (
	// Success counts towards closing a half-open breaker and resets the consecutive failures.
	Success Outcome = iota
	// Failure counts towards opening the breaker.
	Failure
	// Excluded counts as neither (a client that went away, a request refused for its own
	// fault): it says nothing about the upstream's health.
	Excluded
)

func (o Outcome) String() string {
	switch o {
	case Success:
		return "success"
	case Failure:
		return "failure"
	}
	return "excluded"
}

// Result is what the adapter observed about one request.
type Result struct {
	// Status is the final status written to the client, 0 when none was written.
	Status int
	// Err is the error the wrapped handler returned, if any.
	Err error
	// ErrStatus is the HTTP status the error carries (502 for a refused dial, 504 for a
	// timeout); 0 means unknown, taken as 500.
	ErrStatus int
	// Latency is the time until the response header was written (or the handler returned).
	Latency time.Duration
	// ClientGone is true when the client cancelled the request: excluded, unless Latency is over
	// the SlowThreshold (the client waited that long for the upstream).
	ClientGone bool
	// ClientFault is true when reading the client's request body failed (malformed chunked
	// encoding, a body cut short, one over a size limit): the upstream never got a whole
	// request, so what followed (reverse_proxy's 502) says nothing about it.
	ClientFault bool
	// NotForwarded is true when a handler before the upstream answered the request itself,
	// refusing it (a rate limit, a blocked path): the upstream never got it, so its answer says
	// nothing about the upstream, whatever its status.
	NotForwarded bool
}

// Classifier turns a Result into an Outcome.
type Classifier struct {
	// Statuses are the response statuses that count as failures. Default: 5xx.
	Statuses StatusSet
	// SlowThreshold makes a response whose header took longer a failure. 0: off.
	SlowThreshold time.Duration
}

// Reason names why a result is a failure ("error", "status", "slow"); empty otherwise.
type Reason string

// Classify returns the outcome and, for a failure, its reason. Order: a request that was not
// forwarded, a client whose request body could not be read, or whose request the proxy's
// transport refused (an Upgrade header to an HTTP/2 upstream), is excluded whatever else
// happened; a cancelled client is excluded too,
// unless it had waited longer than SlowThreshold (slow); a handler error with a 5xx status or none (a refused dial
// 502, a timeout 504, no upstream 503, a handler's own failure 500) is a failure; a handler
// error with another status (file_server's 404, a 413) is judged by that status like a written
// one, a failure when Statuses has it and otherwise excluded (the request's own fault); then the
// written status; then the latency.
func (c *Classifier) Classify(res Result) (Outcome, Reason) {
	if res.NotForwarded || res.ClientFault || requestRefused(res.Err) {
		return Excluded, ""
	}
	if res.ClientGone || res.Status == 499 {
		// A client that gave up (reverse_proxy writes 499 for it) after slow_threshold waited
		// longer than that for the upstream: a slow response, whether or not one came.
		// Otherwise a hung upstream never opened the breaker when clients give up before
		// reverse_proxy's response_header_timeout.
		if c.slow(res.Latency) {
			return Failure, "slow"
		}
		return Excluded, ""
	}
	if res.Err != nil {
		switch {
		case res.ErrStatus == 0 || res.ErrStatus >= 500:
			return Failure, "error"
		case c.Statuses.Has(res.ErrStatus):
			return Failure, "status"
		}
		return Excluded, ""
	}
	if c.Statuses.Has(res.Status) {
		return Failure, "status"
	}
	if c.slow(res.Latency) {
		return Failure, "slow"
	}
	return Success, ""
}

// slow reports whether a response header that took this long is slow (slow_threshold).
func (c *Classifier) slow(latency time.Duration) bool {
	return c.SlowThreshold > 0 && latency > c.SlowThreshold
}

// grpcHTTPStatus is the HTTP status each gRPC status code stands for, as grpc-gateway and
// Envoy map them: UNAVAILABLE is 503, DEADLINE_EXCEEDED 504, INTERNAL, UNKNOWN and DATA_LOSS
// 500, UNIMPLEMENTED 501 (a method the server does not know, which any client can call, as
// HTTP's 501), RESOURCE_EXHAUSTED 429, CANCELLED 499 (the client's), the request's own faults
// 4xx.
var grpcHTTPStatus = [...]int{
	0:  http.StatusOK,                  // OK
	1:  499,                            // CANCELLED
	2:  http.StatusInternalServerError, // UNKNOWN
	3:  http.StatusBadRequest,          // INVALID_ARGUMENT
	4:  http.StatusGatewayTimeout,      // DEADLINE_EXCEEDED
	5:  http.StatusNotFound,            // NOT_FOUND
	6:  http.StatusConflict,            // ALREADY_EXISTS
	7:  http.StatusForbidden,           // PERMISSION_DENIED
	8:  http.StatusTooManyRequests,     // RESOURCE_EXHAUSTED
	9:  http.StatusBadRequest,          // FAILED_PRECONDITION
	10: http.StatusConflict,            // ABORTED
	11: http.StatusBadRequest,          // OUT_OF_RANGE
	12: http.StatusNotImplemented,      // UNIMPLEMENTED
	13: http.StatusInternalServerError, // INTERNAL
	14: http.StatusServiceUnavailable,  // UNAVAILABLE
	15: http.StatusInternalServerError, // DATA_LOSS
	16: http.StatusUnauthorized,        // UNAUTHENTICATED
}

// GRPCStatus is the HTTP status a gRPC response with this grpc-status value stands for (see
// grpcHTTPStatus); a value that is no status code is UNKNOWN's, 500, as gRPC clients read it.
// A gRPC server answers HTTP 200 whatever happened and says how the call went in grpc-status:
// in the response header when it sends no message (a "trailers-only" response, how a unary
// call's error comes), in the trailers otherwise.
func GRPCStatus(value string) int {
	code, err := strconv.Atoi(value)
	if err != nil || code < 0 || code >= len(grpcHTTPStatus) {
		return http.StatusInternalServerError
	}
	return grpcHTTPStatus[code]
}

// refusedRequest are the messages of Go's HTTP/2 client (golang.org/x/net/http2 and the copy in
// net/http) refusing a request before it is sent, for what the client wrote: reverse_proxy
// answers them 502, like a dead upstream, so a client could open the breaker of an h2c or h2
// upstream at will, with `Upgrade: websocket` (HTTP/2 has no Upgrade) or a header list over the
// upstream's limit. Go has no error types for them.
var refusedRequest = []string{
	"invalid Upgrade request header", // golang.org/x/net/internal/httpcommon
	"invalid Connection request header",
	"invalid Transfer-Encoding request header",
	"request header list larger than peer's advertised limit",
	"invalid HTTP header ", // name or value; a response's are "invalid header field ..."
	"invalid HTTP trailer ",
	"invalid request :path",
	"net/http: invalid header ", // the HTTP/1 transport's
}

// requestRefused reports whether err is the client's request refused by the proxy's transport.
func requestRefused(err error) bool {
	if err == nil {
		return false
	}
	msg := err.Error()
	for _, m := range refusedRequest {
		if strings.Contains(msg, m) {
			return true
		}
	}
	return false
}

// StatusSet is a set of HTTP status codes 100-599, as a bitmap.
type StatusSet [10]uint64

// Has reports whether code is in the set.
func (s *StatusSet) Has(code int) bool {
	if code < 0 || code >= 640 {
		return false
	}
	return s[code/64]&(1<<(code%64)) != 0
}

func (s *StatusSet) add(code int) { s[code/64] |= 1 << (code % 64) }

// Empty reports whether no code is in the set.
func (s *StatusSet) Empty() bool { return *s == StatusSet{} }

// inClass reports whether a class token ("5xx") covers code. It leaves out 501 Not
// Implemented, an upstream's answer to a method it does not know (Apache, Python's
// http.server): any client can send `PURGE /` three times, and counting those would let it open
// the breaker for everyone. Written as a code, 501 counts.
func inClass(code int) bool { return code != http.StatusNotImplemented }

// String lists the set as ParseStatuses reads it: full classes as "5xx", other codes one by
// one, in order ("404 5xx", "501 5xx"), so equal sets print alike however they were written.
func (s *StatusSet) String() string {
	var parts []string
	for class := 1; class <= 5; class++ {
		full := true
		for c := class * 100; c < class*100+100; c++ {
			full = full && (s.Has(c) || !inClass(c))
		}
		for c := class * 100; c < class*100+100; c++ {
			if s.Has(c) && (!full || !inClass(c)) {
				parts = append(parts, strconv.Itoa(c))
			}
		}
		if full {
			parts = append(parts, strconv.Itoa(class)+"xx")
		}
	}
	return strings.Join(parts, " ")
}

// ParseStatuses reads status codes ("503") and classes ("5xx"). No token gives 5xx.
func ParseStatuses(tokens []string) (StatusSet, error) {
	var s StatusSet
	if len(tokens) == 0 {
		tokens = []string{"5xx"}
	}
	for _, tok := range tokens {
		if err := s.parse(tok); err != nil {
			return StatusSet{}, err
		}
	}
	return s, nil
}

func (s *StatusSet) parse(tok string) error {
	// 1xx to 3xx are answers, not failures: counting them would trip a breaker on a healthy
	// upstream.
	if len(tok) == 3 && strings.HasSuffix(strings.ToLower(tok), "xx") && tok[0] >= '4' && tok[0] <= '5' {
		base := int(tok[0]-'0') * 100
		for c := base; c < base+100; c++ {
			if inClass(c) {
				s.add(c)
			}
		}
		return nil
	}
	code, err := strconv.Atoi(tok)
	if err != nil || code < 400 || code > 599 {
		return fmt.Errorf("%q: expected a code from 400 to 599 or a class 4xx or 5xx (1xx to 3xx are answers, not failures)", tok)
	}
	s.add(code)
	return nil
}
