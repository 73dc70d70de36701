package caddymodule

import (
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"hash/fnv"
	"hash/maphash"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"

	"github.com/swarmsec/caddy-hardening/ipclass"
	"github.com/swarmsec/caddy-hardening/ratelimit"
)

func init() {
	caddy.RegisterModule(&PolicyRateLimit{})
}

// PolicyRateLimit limits requests with one of the hardening app's named policies. The row of
// the policy that applies is the client's IP class (trusted, default or suspicious); the
// bucket is the policy's key (by default Caddy's client IP, which honours trusted_proxies).
// The algorithm is GCRA: a full bucket admits `burst` requests at once, then one every
// period/rate; it is exact in memory and in Redis, where every instance shares the buckets.
//
// An admitted request carries the RateLimit-Policy and RateLimit header fields of
// draft-ietf-httpapi-ratelimit-headers-10:
//
//	RateLimit-Policy: "<policy>";q=<requests>;w=<seconds>
//	RateLimit: "<policy>";r=<remaining>;t=<seconds until r grows (on a refusal: the retry time)>
//
// A route's own Key adds ;pk=:<digest>: (the draft's partition key) to both members, and so
// does a second bucket of one policy in a response: members are known by the policy's name. A
// request that meets one policy twice with the same key is decided once (see decidedBefore).
// Members an upstream adds (through reverse_proxy) are passed on; where one has the policy's
// name and neither it nor the handler's has a pk, the handler's get their pk (see
// upstreamFieldsWriter).
//
// A refused request gets 429 (or `status_code`), Retry-After (the later of the bucket's retry
// time and when policies that admitted the request before it admit again) and an
// application/problem+json body with the policy and retry_after members; the rest of the route is not run, and the
// client's detection score gets the rate_limited signal. Refusals are counted in metrics and
// logged as sampled `rate_limit_exceeded` security events (at most a few per second per policy,
// each with the count it stands for), so a flood of refusals writes no log line per request.
//
// A request sent as TLS early data (HTTP/3 0-RTT) whose bucket is named by the client's address
// is answered 425 Too Early and spends nothing: its address is not verified yet, and a client
// that claims another's would drain that client's bucket. The client sends it again after the
// handshake. Nor is an early request in the trusted class (see App.ClassOf).
//
// While Redis fails, decisions go to the in-memory store at once (see `rate_limit` in the
// hardening app); no request fails because Redis failed.
type PolicyRateLimit struct {
	// Policy names the hardening app's policy: one configured with `policy <name> {...}`, or a
	// built-in one (authentication, api_intensive, api, public, default). Required.
	Policy string `json:"policy"`

	// Key overrides the policy's key for this route (any placeholders): a set of buckets apart
	// from the policy's, whose RateLimit members carry a pk (partition key) parameter so that
	// clients tell them from the policy's own. Default: the policy's.
	Key string `json:"key,omitempty"`

	// StatusCode is the status of a refusal. Default: 429.
	StatusCode int `json:"status_code,omitempty"`

	// Message is the `detail` of the refusal's problem body; placeholders are replaced for
	// each refusal (JSON-escaped). Default: `The rate limit of policy "<name>" is exceeded;
	// retry after the number of seconds in Retry-After.`
	Message string `json:"message,omitempty"`

	// HideHeaders leaves out the RateLimit-Policy and RateLimit header fields (Retry-After on
	// a refusal is always sent). Default: false.
	HideHeaders bool `json:"hide_headers,omitempty"`

	on     bool
	app    *App
	ctx    caddy.Context // for events: eventContext, not Provision's ctx
	policy *resolvedPolicy
	key    string
	ipKey  bool // the key is the client IP: read it from the vars, no replacer
	// keyEmpty is what the key template gives when every placeholder in it is empty ("" for
	// one placeholder, ":" for "{a}:{b}"); such a request falls back to the client IP. Unset
	// for a template without placeholders (one global bucket, as configured).
	keyEmpty    string
	keyHasEmpty bool
	// keyClient is the key template's placeholders that name a client (what the client sends
	// or authentication sets), where the template also has placeholders that name only the
	// site or the route ({host}, {path}, {env.*}: see routePlaceholder): a request for which
	// all of keyClient is empty falls back to the client IP too, though the key is not
	// keyEmpty. "" otherwise.
	keyClient string
	// keyParts is a composite key template ("{client_ip}:{header.X-User}") split at its
	// client IP placeholders, where requestKey puts clientIPKey's name of the client (an IPv6
	// client as its network, as a key of {client_ip} alone); nil without one.
	keyParts []string
	// bucketSet names the set of buckets the handler decides in, as the stores see it: the
	// policy's name, or for a route whose key overrides the policy's its own set (see
	// routeBucketSet).
	bucketSet string
	// setHandlers counts this configuration's handlers that decide in bucketSet (all of them
	// provisioned before the first request). Where it is more than one, a request may pass two
	// of them (a site-wide line and the same policy in a handle block, a snippet imported
	// twice): the first records the request's key in decidedVar and the others let a request
	// with that key through, so a request spends one request of each bucket, once (see
	// decidedBefore).
	setHandlers *int
	decidedVar  string
	// proxied says whether a reverse_proxy may answer after the handler (proxiedYes, proxiedNo,
	// proxiedUnknown before validation): then an admitted request's response is watched for
	// the upstream's RateLimit members of the policy's name.
	proxied atomic.Int32
	limiter *limiterEntry
	store   ratelimit.Store // the limiter's store for this policy (storeFor)
	replies [3]rowReplies   // by ipclass.Class
	metrics rateLimitMetrics
	sampler refusalSampler
}

// CaddyModule returns the Caddy module information.
func (*PolicyRateLimit) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.policy_rate_limit",
		New: func() caddy.Module { return new(PolicyRateLimit) },
	}
}

// Provision finds the policy, takes the shared limiter and renders the fixed parts of the
// responses.
func (h *PolicyRateLimit) Provision(ctx caddy.Context) error {
	app, err := hardeningApp(ctx)
	if err != nil {
		return err
	}
	h.app, h.ctx = app, eventContext(ctx)
	if h.on = app.FeatureEnabled("rate_limit"); !h.on {
		return nil
	}
	p, ok := app.policies[h.Policy]
	if !ok {
		return fmt.Errorf("policy_rate_limit: unknown policy %q; expected one of: %s", h.Policy, strings.Join(sortedKeys(app.policies), ", "))
	}
	h.policy = p
	h.key = p.key
	if h.Key != "" {
		if err := checkKeyTemplate(h.Key); err != nil {
			return fmt.Errorf("policy_rate_limit key %q: %v", h.Key, err)
		}
		h.key = h.Key
	}
	h.ipKey = h.key == defaultPolicyKey
	if parts := strings.Split(h.key, defaultPolicyKey); !h.ipKey && len(parts) > 1 {
		h.keyParts = parts
	}
	h.bucketSet = p.name
	if h.key != p.key {
		h.bucketSet = routeBucketSet(p.name, h.key)
	}
	if app.bucketSets == nil {
		app.bucketSets = make(map[string]*int)
	}
	if app.bucketSets[h.bucketSet] == nil {
		app.bucketSets[h.bucketSet] = new(int)
	}
	h.setHandlers = app.bucketSets[h.bucketSet]
	*h.setHandlers++
	h.decidedVar = decidedVarPrefix + h.bucketSet
	if empty := caddy.NewEmptyReplacer().ReplaceAll(h.key, ""); empty != h.key {
		h.keyEmpty, h.keyHasEmpty = empty, true
	}
	if h.keyParts == nil {
		h.keyClient = keyClientPart(h.key)
	}
	if h.StatusCode == 0 {
		h.StatusCode = http.StatusTooManyRequests
	}
	if h.StatusCode < 400 || h.StatusCode > 599 {
		return fmt.Errorf("policy_rate_limit status_code: expected 400 to 599, got %d", h.StatusCode)
	}
	if err := checkMessageTemplate(h.Message); err != nil {
		return fmt.Errorf("policy_rate_limit message %q: %v", h.Message, err)
	}
	if h.limiter, err = app.rateLimiter(); err != nil {
		return err
	}
	h.store = h.limiter.storeFor(h.bucketSet)
	if p.adaptive {
		h.limiter.logLoadSource(app.logger)
	}
	for c := range h.replies {
		if h.replies[c], err = newRowReplies(p, p.rows[c], h.StatusCode, h.Message); err != nil {
			return err
		}
	}
	h.metrics = newRateLimitMetrics(p.name)
	if h.Key == "" {
		h.reportKeyFindings("apps.hardening.policies." + p.name + ".key")
	}
	h.reportPolicyFindings()
	app.reportFailOpen()
	app.OnValidate(func() {
		if h.Key != "" {
			at := handlerConfigPath(ctx, h)
			if at == "" {
				at = "policy_rate_limit " + p.name
			}
			h.reportKeyFindings(at + ".key")
		}
		h.checkTrustedProxies(ctx)
		h.checkKeyAfterAuth(ctx)
		h.checkProxied(ctx)
		h.checkKeyHeaderSetLater(ctx)
		h.checkRefusalCaching(ctx)
		h.checkClientChosenKey(ctx)
	})
	return nil
}

// ServeHTTP decides the request with the policy's row for the client's class.
func (h *PolicyRateLimit) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if !h.on {
		return next.ServeHTTP(w, r)
	}
	class := h.app.ClassOf(r)
	row := &h.policy.rows[class]
	if row.kind == rowUnlimited {
		if *h.setHandlers > 1 { // counted once per request too
			if key, _ := h.requestKey(r); h.decidedBefore(r, key) {
				return next.ServeHTTP(w, r)
			}
		}
		h.metrics.count(class, resultUnlimited)
		return next.ServeHTTP(w, r)
	}
	key, keyIP := h.requestKey(r)
	if h.decidedBefore(r, key) {
		return next.ServeHTTP(w, r)
	}
	if earlyData(r) && (keyIP || h.keyParts != nil) {
		// TLS early data: the address in the key is not verified, and a client that claims
		// another's would spend that client's bucket (whose own requests would then be refused,
		// and scored rate_limited). Ask for the request again after the handshake (RFC 8470).
		markRefused(w, r)
		return writeProblem(w, http.StatusTooEarly, "Too Early",
			"Send this request again once the TLS handshake is complete.", nil)
	}
	if row.kind == rowDeny {
		res := ratelimit.Result{RetryAfter: h.policy.rows[ipclass.Default].limit.Period}
		if !h.policy.shadow {
			return h.refuse(w, r, class, key, keyIP, res, row.limit)
		}
		h.metrics.count(class, resultShadowDenied) // a shadow policy refuses nothing
		h.sampler.report(h, r, class, key, keyIP, res, true)
		return h.serveNext(w, r, next)
	}
	limit := row.limit
	if h.policy.adaptive {
		limit = limit.Scale(h.limiter.adaptive.Factor())
	}
	res := h.limiter.decide(r.Context(), h.store, h.bucketSet, key, limit)
	if res.Abandoned {
		// The client left while its decision waited for Redis: nothing refused it, so nothing
		// is counted, logged or scored. 499, as reverse_proxy records a client that left.
		markRefused(w, r)
		w.WriteHeader(499)
		return nil
	}
	if res.Unmetered {
		return h.unmetered(w, r, next, class, res)
	}
	if res.Local {
		h.metrics.fallback.Inc()
	}
	if !res.Allowed {
		if !h.policy.shadow {
			return h.refuse(w, r, class, key, keyIP, res, limit)
		}
		h.metrics.count(class, resultShadowDenied)
		h.sampler.report(h, r, class, key, keyIP, res, true)
	} else {
		h.metrics.count(class, resultAllowed)
		if res.Remaining == 0 && !h.policy.shadow { // a dry run changes no real refusal
			h.holdLaterRefusals(r, res, limit)
		}
	}
	if !h.HideHeaders {
		pk := h.partitionKey(w.Header(), key)
		rp, rl := h.replies[class].setHeaders(w.Header(), res, limit, pk)
		if pk == "" && h.proxied.Load() != proxiedNo {
			w = &upstreamFieldsWriter{ResponseWriterWrapper: caddyhttp.ResponseWriterWrapper{ResponseWriter: w},
				rr: &h.replies[class], policy: rp, limit: rl, handler: h, key: key}
		}
	}
	return h.serveNext(w, r, next)
}

// proxied values: whether a reverse_proxy (php_fastcgi, ...) may answer after the handler on
// its route, and add RateLimit members of its upstream's (see upstreamFieldsWriter). Unknown
// until the configuration is validated (apps start in no set order), and then watched.
const (
	proxiedUnknown int32 = iota
	proxiedYes
	proxiedNo
)

// checkProxied sets h.proxied from the routes: a reverse_proxy among the handlers that may run
// after h on its way through any server's routes. A handler found in none (in handle_errors, or
// a named route that `invoke` runs) is watched, as before validation.
func (h *PolicyRateLimit) checkProxied(ctx caddy.Context) {
	isProxy := func(hh caddyhttp.MiddlewareHandler) bool { _, ok := hh.(*reverseproxy.Handler); return ok }
	found, proxied := false, false
	for _, srv := range httpServers(ctx) {
		chain := chainTo(srv.Routes, h)
		found = found || chain != nil
		for hh := range handlersAfter(chain) {
			proxied = proxied || findHandler(caddyhttp.RouteList{{Handlers: []caddyhttp.MiddlewareHandler{hh}}}, isProxy, nil)
		}
	}
	state := proxiedNo
	if proxied || !found {
		state = proxiedYes
	}
	h.proxied.Store(state)
}

// decidedVarPrefix begins the request variable that holds which buckets of a set the request
// was decided in.
const decidedVarPrefix = "hardening.ratelimit.decided."

// decidedSeed seeds the digests of keys that decidedBefore keeps in a request's vars: a key may
// be a credential, and vars are placeholders any handler or log format may print.
var decidedSeed = maphash.MakeSeed()

// decidedBefore reports whether another handler of the configuration already decided r in this
// handler's set of buckets under the same key, and records the key otherwise: one request
// spends one request of each bucket it meets, once (a site-wide line and the same policy in a
// handle block, a snippet imported twice), as an Envoy descriptor counts once per request. A
// key that a handler between the two changed (request_header, an authentication step that
// copies the user into the header the key names) is another bucket, decided as well: skipping
// it would let every client spend that bucket's requests under a header value of its own. A set
// with one handler has nothing to record.
func (h *PolicyRateLimit) decidedBefore(r *http.Request, key string) bool {
	if *h.setHandlers < 2 {
		return false
	}
	ctx := r.Context()
	sum := maphash.String(decidedSeed, key)
	switch seen := caddyhttp.GetVar(ctx, h.decidedVar).(type) {
	case uint64:
		if seen == sum {
			return true
		}
		caddyhttp.SetVar(ctx, h.decidedVar, []uint64{seen, sum})
	case []uint64:
		if slices.Contains(seen, sum) {
			return true
		}
		caddyhttp.SetVar(ctx, h.decidedVar, append(seen, sum))
	default:
		caddyhttp.SetVar(ctx, h.decidedVar, sum)
	}
	return false
}

// partitionKey is the pk parameter (draft-ietf-httpapi-ratelimit-headers-10) of this
// decision's RateLimit members, ";pk=:<base64>:", or "" for none. Members are known by their
// policy's name, so a response that lists one policy twice, for two buckets, must tell them
// apart: a route whose own key names a set of buckets apart from the policy's always sends pk,
// and a member of the policy's own set sends it when the response already lists the policy (a
// key that changed between two lines of one request, see decidedBefore). pk is the first 8
// bytes of the SHA-256 of the set and the key: stable for one client's bucket across requests
// and instances, and no credential readable in it.
func (h *PolicyRateLimit) partitionKey(hdr http.Header, key string) string {
	if h.bucketSet == h.policy.name && (*h.setHandlers < 2 || !h.replies[0].listed(hdr[headerRateLimit])) {
		return "" // one line of the set cannot list it twice: no header lookup on the hot path
	}
	return h.bucketPK(key)
}

// bucketPK is the pk parameter of the bucket of key in the handler's set (see partitionKey).
func (h *PolicyRateLimit) bucketPK(key string) string {
	d := sha256.New()
	d.Write([]byte(h.bucketSet))
	d.Write([]byte{0})
	d.Write([]byte(key))
	var sum [sha256.Size]byte
	return ";pk=:" + base64.StdEncoding.EncodeToString(d.Sum(sum[:0])[:8]) + ":"
}

// waitVar is the request variable that holds, as a time.Duration, how long the policies that
// admitted the request with their last unit give nothing back: a later policy_rate_limit that
// refuses it says Retry-After no sooner (a client that waited less would be refused by them).
const waitVar = "hardening.ratelimit.wait"

// holdLaterRefusals records in r that this policy, which admitted it with its last unit,
// admits nothing more for the time until its bucket's next unit.
func (h *PolicyRateLimit) holdLaterRefusals(r *http.Request, res ratelimit.Result, l ratelimit.Limit) {
	d := nextUnitAfter(res, l)
	if old, _ := caddyhttp.GetVar(r.Context(), waitVar).(time.Duration); old >= d {
		return
	}
	caddyhttp.SetVar(r.Context(), waitVar, d)
}

// serveNext runs the rest of the route for an admitted request, counted in flight when that
// is a load signal.
func (h *PolicyRateLimit) serveNext(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if h.limiter.trackInFlight {
		h.limiter.adaptive.Enter()
		defer h.limiter.adaptive.Exit()
	}
	return next.ServeHTTP(w, r)
}

// unmetered answers a decision no store made: Redis failing under on_store_failure allow or
// deny. No bucket stands behind it, so no RateLimit fields are sent; the client did nothing,
// so its detection score is left alone and no rate_limit_exceeded event is written (the
// outage is the store_failover event and the store_failed_* counts); and a refusal is 503,
// not 429, since the edge, not the client, is the cause. A shadow policy still never refuses.
func (h *PolicyRateLimit) unmetered(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler, class ipclass.Class, res ratelimit.Result) error {
	if res.Allowed || h.policy.shadow {
		h.metrics.count(class, resultStoreFailedOpen)
		return h.serveNext(w, r, next)
	}
	h.metrics.count(class, resultStoreFailedClosed)
	markRefused(w, r)
	retry := max(1, ceilSeconds(res.RetryAfter))
	w.Header().Set("Retry-After", strconv.FormatInt(retry, 10))
	return writeProblem(w, http.StatusServiceUnavailable, "Service Unavailable",
		"The rate limiter cannot decide right now; retry after the number of seconds in Retry-After.",
		map[string]any{"policy": h.policy.name, "retry_after": retry})
}

// requestKey resolves the policy's key for r. A template whose placeholders are all empty
// (the header was not sent) falls back to the client IP, marked with fallbackKeyMark so that
// no template value can name that bucket: a client sending the header "X-API-Key: 192.0.2.7"
// must not drain the bucket of 192.0.2.7's requests without it. A value that begins with the
// mark gets another one before it, so the two sets of names never meet. clientIP says whether
// the key is the client IP (the `{client_ip}` key or the fallback), which the dashboard shows
// as it is: a template's value may be a credential.
func (h *PolicyRateLimit) requestKey(r *http.Request) (key string, clientIP bool) {
	if h.ipKey {
		return clientIPKey(r, h.policy.ipv6Bits), true
	}
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		k := h.expandKey(r, repl)
		switch {
		case h.keyHasEmpty && k == h.keyEmpty:
		case h.keyClient != "" && repl.ReplaceAll(h.keyClient, "") == "":
		case strings.HasPrefix(k, fallbackKeyMark):
			return fallbackKeyMark + k, false
		default:
			return k, false
		}
	}
	return fallbackKeyMark + clientIPKey(r, h.policy.ipv6Bits), true
}

// clientIPKey is Caddy's client IP as a bucket name: the client as ipclass.ClientName
// writes it (an IPv4 address unmapped, an IPv6 address as its network of ipv6Bits bits).
func clientIPKey(r *http.Request, ipv6Bits int) string {
	ip, _ := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string)
	if strings.IndexByte(ip, ':') < 0 {
		return ip // IPv4, the common case: no parse
	}
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return ip
	}
	return ipclass.ClientName(a, ipv6Bits)
}

// expandKey resolves the key template for r, writing the client IP as clientIPKey does.
func (h *PolicyRateLimit) expandKey(r *http.Request, repl *caddy.Replacer) string {
	if h.keyParts == nil {
		return repl.ReplaceAll(h.key, "")
	}
	var b strings.Builder
	for i, part := range h.keyParts {
		if i > 0 {
			b.WriteString(clientIPKey(r, h.policy.ipv6Bits))
		}
		b.WriteString(repl.ReplaceAll(part, ""))
	}
	return b.String()
}

// fallbackKeyMark begins the key of a request whose key template came out empty: the client
// IP follows. No IP address begins with it.
const fallbackKeyMark = "@"

// routeBucketSet names the buckets of a route whose key template overrides its policy's:
// "<policy>~<fnv64 of the template>". They are apart from the policy's (a header value sent on
// that route can never name, and drain, a client-IP bucket the policy keeps on its other
// routes), and in memory they have a store of their own, bounded by max_keys on its own (a
// flood of header values there evicts none of them). Routes with the same template share one
// set. No policy name holds a '~'.
func routeBucketSet(policy, template string) string {
	h := fnv.New64a()
	h.Write([]byte(template))
	return fmt.Sprintf("%s~%016x", policy, h.Sum64())
}

// refuse answers a refused request and reports it: metrics, the detector, a sampled event.
// The detector hears of it only when the bucket is the client's own (its address, alone or in
// the template): a bucket others share (a global key, a header value anyone may send, a
// tenant) is drained by whoever sends most, and scoring everyone it then refuses would get
// every other client of it classified suspicious by one.
func (h *PolicyRateLimit) refuse(w http.ResponseWriter, r *http.Request, class ipclass.Class, key string, keyIP bool, res ratelimit.Result, limit ratelimit.Limit) error {
	h.metrics.count(class, resultDenied)
	markRefused(w, r)
	if class != ipclass.Suspicious && (keyIP || h.keyParts != nil) { // already suspicious: a flood's refusals cost no detector work
		h.app.Signal(h.ctx, r, ipclass.SignalRateLimited)
	}
	h.sampler.report(h, r, class, key, keyIP, res, false)
	recordRefusal(h.policy.name, key, keyIP) // the dashboard's top limited keys: one atomic load when off
	wait, _ := caddyhttp.GetVar(r.Context(), waitVar).(time.Duration)
	pk := ""
	if !h.HideHeaders {
		pk = h.partitionKey(w.Header(), key)
	}
	return h.replies[class].refuse(w, r, res, limit, h.HideHeaders, wait, pk)
}

// Interface guards.
var (
	_ caddy.Provisioner           = (*PolicyRateLimit)(nil)
	_ caddyhttp.MiddlewareHandler = (*PolicyRateLimit)(nil)
)
