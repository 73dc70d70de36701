package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/swarmsec/caddy-hardening/ipclass"
	"github.com/swarmsec/caddy-hardening/ratelimit"
)

// PolicyConfig is a named rate-limit policy of the hardening app. A policy gives one row per
// IP class: the `limit` row for default clients, and `trusted` and `suspicious` rows. A row
// that is not set takes the built-in policy's row of the same name (when the policy's name is a
// built-in one), else the limit row.
//
// Built-in policies, in production and staging (development multiplies every rate by 10):
//
//	policy          limit (default)   trusted        suspicious    key          adaptive
//	authentication  5/1m burst 5      50/1m          1/1m          {client_ip}  no
//	api_intensive   10/1m burst 5     100/1m         2/1m          {client_ip}  yes
//	api             120/1m burst 30   1200/1m        20/1m         {client_ip}  no
//	public          300/1m burst 60   unlimited      30/1m         {client_ip}  no
//	default         60/1m burst 20    600/1m         10/1m         {client_ip}  no
//
// A `policy` block with a built-in name changes only the fields it sets.
type PolicyConfig struct {
	// Limit is the row of default clients: a rate (not unlimited or deny). Required for a
	// policy that is not built in.
	Limit *LimitRow `json:"limit,omitempty"`

	// Trusted is the row of trusted clients. Default: the built-in row, else Limit.
	Trusted *LimitRow `json:"trusted,omitempty"`

	// Suspicious is the row of suspicious clients (static or detected). Default: the
	// built-in row, else Limit.
	Suspicious *LimitRow `json:"suspicious,omitempty"`

	// Key partitions the requests into buckets: any placeholders, such as `{client_ip}`
	// (Caddy's client IP, which honours trusted_proxies), `{http.request.header.X-API-Key}`
	// or `{http.auth.user.id}`. A key that resolves empty for a request falls back to the
	// client IP, so requests without the header do not share one bucket; placeholders that
	// name only the site or the route ({http.request.host}, {http.request.method},
	// {http.request.uri.path}, {env.*}, ...) do not count, so
	// `{http.request.host}:{http.request.header.X-API-Key}` without the header falls back too.
	// A key with no placeholder is one bucket for every client: a global limit. Default:
	// {client_ip}.
	Key string `json:"key,omitempty"`

	// Adaptive multiplies the policy's rates by the load factor of the `adaptive` settings
	// (1 when the edge is idle, down to min_factor under load). Default: false, except
	// api_intensive.
	Adaptive *bool `json:"adaptive,omitempty"`

	// Shadow counts and logs what the policy would refuse, and never refuses. Use it to roll
	// out a new limit. Default: false.
	Shadow *bool `json:"shadow,omitempty"`

	// IPv6Prefix is how many leading bits of an IPv6 client address name its bucket wherever
	// the client IP is the key: the default key `{client_ip}`, and the fallback of a template
	// that resolves empty. One subscriber, host or VM is given a whole /64 (or more) and may
	// send from any address in it, so a bucket per address would multiply its limit by
	// 2^64 and let it push other clients out of max_keys. 128 keys each address alone. IPv4
	// clients (and IPv4-mapped IPv6) are keyed by their address. `{client_ip}` inside a
	// longer template is the full address. Default: 64.
	IPv6Prefix int `json:"ipv6_prefix,omitempty"`
}

// LimitRow is one class's limit: Rate requests per Per, Burst at once; or unlimited; or deny.
type LimitRow struct {
	// Rate is how many requests Per admits once the burst is spent.
	Rate int64 `json:"rate,omitempty"`

	// Per is the period of Rate. Default: 1m.
	Per caddy.Duration `json:"per,omitempty"`

	// Burst is how many requests a client with a full bucket may send at once. Default: Rate.
	Burst int64 `json:"burst,omitempty"`

	// Unlimited lets this class through with no limit (and no RateLimit header fields). A
	// trusted or suspicious row only; it takes no rate, per or burst.
	Unlimited bool `json:"unlimited,omitempty"`

	// Deny refuses every request of this class with the policy's refusal. A trusted or
	// suspicious row only; it takes no rate, per or burst.
	Deny bool `json:"deny,omitempty"`
}

// builtinPolicies are the production defaults of the built-in policies.
var builtinPolicies = map[string]PolicyConfig{
	"authentication": {Limit: row(5, time.Minute, 5), Trusted: row(50, time.Minute, 0), Suspicious: row(1, time.Minute, 1)},
	"api_intensive":  {Limit: row(10, time.Minute, 5), Trusted: row(100, time.Minute, 0), Suspicious: row(2, time.Minute, 1), Adaptive: boolPtr(true)},
	"api":            {Limit: row(120, time.Minute, 30), Trusted: row(1200, time.Minute, 0), Suspicious: row(20, time.Minute, 5)},
	"public":         {Limit: row(300, time.Minute, 60), Trusted: &LimitRow{Unlimited: true}, Suspicious: row(30, time.Minute, 10)},
	"default":        {Limit: row(60, time.Minute, 20), Trusted: row(600, time.Minute, 0), Suspicious: row(10, time.Minute, 5)},
}

// developmentRateFactor multiplies the built-in rates in development, where one developer's
// browser and hot reload make many requests.
const developmentRateFactor = 10

func row(rate int64, per time.Duration, burst int64) *LimitRow {
	return &LimitRow{Rate: rate, Per: caddy.Duration(per), Burst: burst}
}

func boolPtr(b bool) *bool { return &b }

// policyNamePattern keeps policy names usable as a structured-field string, a metric label and
// a Redis key part without escaping.
var policyNamePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,63}$`)

// defaultIPv6Prefix is the IPv6 prefix length of a client's bucket when a policy sets none: a
// /64, the smallest network a subscriber is given (RFC 6177).
const defaultIPv6Prefix = 64

// defaultPolicyKey is the key of a policy that sets none.
const defaultPolicyKey = "{http.vars.client_ip}"

// rowKind is what a class's row does.
type rowKind uint8

const (
	rowLimit rowKind = iota
	rowUnlimited
	rowDeny
)

// policyRow is a class's row, ready for requests.
type policyRow struct {
	kind  rowKind
	limit ratelimit.Limit
}

// resolvedPolicy is a policy merged with its built-in defaults and checked.
type resolvedPolicy struct {
	name     string
	rows     [3]policyRow // by ipclass.Class
	key      string
	adaptive bool
	shadow   bool
	// ipv6Bits is the prefix length that names an IPv6 client's bucket (IPv6Prefix).
	ipv6Bits int
}

// resolvePolicies merges the built-in policies, scaled for the environment, with the
// configured ones, and checks every row. Errors name the JSON path.
func resolvePolicies(cfg map[string]*PolicyConfig, env Environment) (map[string]*resolvedPolicy, error) {
	out := make(map[string]*resolvedPolicy, len(builtinPolicies)+len(cfg))
	for name, b := range builtinPolicies {
		b := b
		if env == Development {
			b = scaledPolicy(b, developmentRateFactor)
		}
		var user *PolicyConfig
		if cfg != nil {
			user = cfg[name]
		}
		p, err := resolvePolicy(name, &b, user)
		if err != nil {
			return nil, err
		}
		out[name] = p
	}
	for name, user := range cfg {
		if _, ok := out[name]; ok {
			continue
		}
		if !policyNamePattern.MatchString(name) {
			return nil, fmt.Errorf("rate limit policy %q: a name is lowercase letters, digits, '_', '.' and '-', starting with a letter or digit, at most 64 bytes", name)
		}
		p, err := resolvePolicy(name, nil, user)
		if err != nil {
			return nil, err
		}
		out[name] = p
	}
	return out, nil
}

// scaledPolicy multiplies every finite rate and burst by f.
func scaledPolicy(p PolicyConfig, f int64) PolicyConfig {
	scale := func(r *LimitRow) *LimitRow {
		if r == nil || r.Unlimited || r.Deny {
			return r
		}
		c := *r
		c.Rate *= f
		c.Burst *= f
		return &c
	}
	p.Limit, p.Trusted, p.Suspicious = scale(p.Limit), scale(p.Trusted), scale(p.Suspicious)
	return p
}

func resolvePolicy(name string, builtin, user *PolicyConfig) (*resolvedPolicy, error) {
	pick := func(get func(*PolicyConfig) *LimitRow) *LimitRow {
		if user != nil && get(user) != nil {
			return get(user)
		}
		if builtin != nil {
			return get(builtin)
		}
		return nil
	}
	limit := pick(func(c *PolicyConfig) *LimitRow { return c.Limit })
	if limit == nil {
		return nil, fmt.Errorf("rate limit policy %q: a limit is required (e.g. limit 100/1m)", name)
	}
	p := &resolvedPolicy{name: name, key: defaultPolicyKey, ipv6Bits: defaultIPv6Prefix}
	rows := [...]*LimitRow{
		ipclass.Default:    limit,
		ipclass.Trusted:    pick(func(c *PolicyConfig) *LimitRow { return c.Trusted }),
		ipclass.Suspicious: pick(func(c *PolicyConfig) *LimitRow { return c.Suspicious }),
	}
	for class, r := range rows {
		if r == nil {
			r = limit
		}
		pr, err := r.resolve()
		if err == nil && class == int(ipclass.Default) && pr.kind != rowLimit {
			// As in the Caddyfile: the default clients' row is what the others are measured
			// against (an inherited row, a deny row's Retry-After), so it is a rate.
			err = errors.New("expected a rate; unlimited and deny are for the trusted and suspicious rows")
		}
		if err != nil {
			return nil, fmt.Errorf("rate limit policy %q, %s row: %v", name, classRowName(ipclass.Class(class)), err)
		}
		p.rows[class] = pr
	}
	// A built-in class row kept under the user's own limit must not turn the classes round:
	// `policy api { limit 2/1m }` would leave suspicious clients api's built-in 20/1m. An
	// inherited suspicious row admits at most what the default row does, an inherited trusted
	// row at least; rows the user wrote stay as written (a finding reports an inversion).
	if user != nil && user.Limit != nil && builtin != nil {
		def := p.rows[ipclass.Default]
		if user.Suspicious == nil && p.rows[ipclass.Suspicious].looser(def) {
			p.rows[ipclass.Suspicious] = p.rows[ipclass.Suspicious].bounded(def, false)
		}
		if user.Trusted == nil && def.looser(p.rows[ipclass.Trusted]) {
			p.rows[ipclass.Trusted] = p.rows[ipclass.Trusted].bounded(def, true)
		}
	}
	for _, c := range []*PolicyConfig{builtin, user} {
		if c == nil {
			continue
		}
		if c.Key != "" {
			p.key = c.Key
		}
		if c.Adaptive != nil {
			p.adaptive = *c.Adaptive
		}
		if c.Shadow != nil {
			p.shadow = *c.Shadow
		}
		if c.IPv6Prefix != 0 {
			p.ipv6Bits = c.IPv6Prefix
		}
	}
	if p.ipv6Bits < 1 || p.ipv6Bits > 128 {
		return nil, fmt.Errorf("rate limit policy %q: ipv6_prefix: expected 1 to 128 bits, got %d", name, p.ipv6Bits)
	}
	if err := checkKeyTemplate(p.key); err != nil {
		return nil, fmt.Errorf("rate limit policy %q: key %q: %v", name, p.key, err)
	}
	return p, nil
}

// classRowName is the Caddyfile name of a class's row.
func classRowName(c ipclass.Class) string {
	if c == ipclass.Default {
		return "limit"
	}
	return c.String()
}

func (r *LimitRow) resolve() (policyRow, error) {
	switch {
	case r.Unlimited && r.Deny:
		return policyRow{}, fmt.Errorf("unlimited and deny exclude each other")
	case (r.Unlimited || r.Deny) && (r.Rate != 0 || r.Per != 0 || r.Burst != 0):
		word := "unlimited"
		if r.Deny {
			word = "deny"
		}
		return policyRow{}, fmt.Errorf("%s takes no rate, per or burst", word)
	case r.Unlimited:
		return policyRow{kind: rowUnlimited}, nil
	case r.Deny:
		return policyRow{kind: rowDeny}, nil
	}
	l := ratelimit.Limit{Rate: r.Rate, Period: time.Duration(r.Per), Burst: r.Burst}
	if l.Period == 0 {
		l.Period = time.Minute
	}
	if l.Burst == 0 {
		l.Burst = l.Rate
	}
	if err := l.Validate(); err != nil {
		return policyRow{}, err
	}
	return policyRow{kind: rowLimit, limit: l}, nil
}

// looser reports whether r admits more than o in some window: deny < any limit < unlimited,
// and between limits a higher rate or a larger burst (a suspicious row of 30/1m burst 30 under
// a limit of 60/1m burst 10 admits 30 at once where a default client gets 10).
func (r policyRow) looser(o policyRow) bool {
	if r.kind != rowLimit || o.kind != rowLimit {
		return rowRank(r.kind) > rowRank(o.kind)
	}
	return r.fasterThan(o) || r.limit.Burst > o.limit.Burst
}

// bounded is r brought to o's side, part by part: at most o's rate and burst (atLeast false),
// or at least them (atLeast true). Another kind of row on the wrong side becomes o.
func (r policyRow) bounded(o policyRow, atLeast bool) policyRow {
	if r.kind != rowLimit || o.kind != rowLimit {
		return o
	}
	out := r
	if r.fasterThan(o) != atLeast {
		out.limit.Rate, out.limit.Period = o.limit.Rate, o.limit.Period
	}
	if (r.limit.Burst > o.limit.Burst) != atLeast {
		out.limit.Burst = o.limit.Burst
	}
	return out
}

// fasterThan compares the rates of two limit rows without division: r.Rate*o.Period against
// o.Rate*r.Period.
func (r policyRow) fasterThan(o policyRow) bool {
	return float64(r.limit.Rate)*float64(o.limit.Period) > float64(o.limit.Rate)*float64(r.limit.Period)
}

func rowRank(k rowKind) int {
	switch k {
	case rowDeny:
		return 0
	case rowUnlimited:
		return 2
	}
	return 1
}

// String renders a row in the Caddyfile's words, for logs and errors.
func (r policyRow) String() string {
	switch r.kind {
	case rowUnlimited:
		return "unlimited"
	case rowDeny:
		return "deny"
	}
	return formatRate(r.limit.Rate, r.limit.Period) + " burst " + strconv.FormatInt(r.limit.Burst, 10)
}

// formatRate writes a rate as the Caddyfile takes it: 5/1m.
func formatRate(n int64, per time.Duration) string {
	return strconv.FormatInt(n, 10) + "/" + shortDuration(per)
}

// shortDuration writes whole hours, minutes or seconds as 1h, 1m, 30s; anything else as Go does.
func shortDuration(d time.Duration) string {
	for _, u := range []struct {
		unit   time.Duration
		suffix string
	}{{time.Hour, "h"}, {time.Minute, "m"}, {time.Second, "s"}} {
		if d%u.unit == 0 {
			return strconv.FormatInt(int64(d/u.unit), 10) + u.suffix
		}
	}
	return d.String()
}

// parseRate reads "<n>/<duration>" ("5/1m", "100/1s", "1000/1h"); the duration's number may be
// left out ("5/m" is "5/1m").
func parseRate(s string) (int64, time.Duration, error) {
	num, per, ok := strings.Cut(s, "/")
	if !ok {
		return 0, 0, fmt.Errorf("expected <requests>/<period>, such as 5/1m or 100/1s; got %q", s)
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if errors.Is(err, strconv.ErrRange) {
		return 0, 0, fmt.Errorf("the request count of %q is too large", s)
	}
	if err != nil || n <= 0 {
		return 0, 0, fmt.Errorf("the request count of %q must be a positive integer", s)
	}
	if per != "" && (per[0] < '0' || per[0] > '9') {
		per = "1" + per
	}
	d, err := caddy.ParseDuration(per)
	if err != nil && durationOverflows(per) {
		return 0, 0, fmt.Errorf("the period of %q is too long: %s, and a limit admits at least one request per 366 days (8784h)", s, durationLimit)
	}
	if err != nil || d <= 0 {
		return 0, 0, fmt.Errorf("the period of %q must be a positive duration such as 1s, 1m or 1h", s)
	}
	return n, d, nil
}

// knownPlaceholderRoots are the placeholder namespaces a key may use; anything else is a typo
// that would resolve empty for every request.
var knownPlaceholderRoots = []string{"http.", "env.", "file.", "system."}

// perRequestPlaceholders change with every request: a key made of one is a new bucket each
// time, and nothing is limited.
var perRequestPlaceholders = []string{"http.request.uuid", "http.request.duration", "http.request.duration_ms", "http.time_until_shutdown"}

// perConnectionPlaceholders change with every connection (the client's source port): a client
// that opens a new connection has a new bucket.
var perConnectionPlaceholders = []string{"http.request.remote", "http.request.remote.port"}

// checkKeyTemplate refuses unbalanced braces, placeholders outside Caddy's namespaces, names in
// Caddy's own request namespace ({http.request.*}) that Caddy does not know (a typo, always
// empty), and placeholders that change with every request.
func checkKeyTemplate(key string) error {
	names, err := keyPlaceholders(key)
	if err != nil {
		return err
	}
	for _, name := range names {
		if strings.HasPrefix(name, "time.") || slices.Contains(perRequestPlaceholders, name) {
			return fmt.Errorf("{%s} changes with every request: each request would have a bucket of its own, and nothing would be limited", name)
		}
		if slices.Contains(perConnectionPlaceholders, name) {
			return fmt.Errorf("{%s} holds the client's source port, which changes with every connection: a client would have a new bucket for each connection it opens; expected {client_ip} (or {http.request.remote.host} without a proxy)", name)
		}
		if name == "client_ip" {
			return fmt.Errorf("unknown placeholder {client_ip}: {client_ip} is the Caddyfile's shorthand; in JSON write {http.vars.client_ip}")
		}
		if !hasRootPrefix(name, knownPlaceholderRoots) {
			return fmt.Errorf("unknown placeholder {%s}: expected {client_ip}, {http.request.header.<name>}, {http.auth.user.id} or another {http.*} placeholder", name)
		}
		if strings.HasPrefix(name, "http.request.") && !requestPlaceholderKnown(name) {
			return fmt.Errorf("unknown placeholder {%s}: Caddy has no such request placeholder (it would be empty for every request); expected e.g. {http.request.header.<name>}, {http.request.cookie.<name>}, {http.request.uri.query.<name>} or {http.request.remote.host}", name)
		}
	}
	return nil
}

// keyPlaceholders lists the names of a key template's placeholders, refusing unbalanced braces.
// A brace escaped with a backslash is a literal, as Caddy's replacer reads it.
func keyPlaceholders(key string) ([]string, error) {
	var names []string
	open := -1
	for i := 0; i < len(key); i++ {
		switch key[i] {
		case '\\':
			if i+1 < len(key) && (key[i+1] == '{' || key[i+1] == '}') {
				i++
			}
		case '{':
			if open >= 0 {
				return nil, fmt.Errorf("a '{' is not closed before %q", key[open:i+1])
			}
			open = i
		case '}':
			if open < 0 {
				return nil, fmt.Errorf("a '}' closes no placeholder")
			}
			names = append(names, key[open+1:i])
			open = -1
		}
	}
	if open >= 0 {
		return nil, fmt.Errorf("a '{' is not closed")
	}
	return names, nil
}

// hasRootPrefix reports whether name lies in one of the namespaces roots (and is longer).
func hasRootPrefix(name string, roots []string) bool {
	for _, root := range roots {
		if strings.HasPrefix(name, root) && len(name) > len(root) {
			return true
		}
	}
	return false
}

// requestPlaceholderKnown asks Caddy's own request replacer whether it knows name. The request
// carries what a server puts in every request (a local and a remote address), since some of
// Caddy's providers read it without a check; one that still panics needs more than a bare
// request, so Caddy knows the name.
func requestPlaceholderKnown(name string) (known bool) {
	req, err := http.NewRequest(http.MethodGet, "http://example.com/", nil)
	if err != nil {
		return true
	}
	req.RemoteAddr = "192.0.2.1:1234"
	req = req.WithContext(context.WithValue(req.Context(), http.LocalAddrContextKey, &net.TCPAddr{IP: net.IPv4(192, 0, 2, 2), Port: 443}))
	defer func() {
		if recover() != nil {
			known = true
		}
	}()
	_, known = caddyhttp.NewTestReplacer(req).Get(name)
	return known
}

// routePlaceholderRoots name, in a key template, only the server, the site or the route: the
// same for every client that sends the request, so they tell no client from another.
var routePlaceholderRoots = []string{"env.", "file.", "system.", "http.request.host", "http.request.port",
	"http.request.method", "http.request.scheme", "http.request.proto", "http.request.uri.path",
	"http.request.orig_method", "http.request.orig_uri.path", "http.request.local", "http.request.tls.server_name"}

// routePlaceholder reports whether a key placeholder names only the server, the site or the
// route ({host}, {method}, {path}, {env.REGION}, ...) rather than a client.
func routePlaceholder(name string) bool {
	for _, root := range routePlaceholderRoots {
		if strings.HasPrefix(name, root) {
			return true
		}
	}
	return false
}

// keyNamesClient reports whether a key template has a placeholder that names a client (one
// that is not routePlaceholder's): such a key falls back to the client IP where it comes out
// empty.
func keyNamesClient(key string) bool {
	names, _ := keyPlaceholders(key)
	for _, name := range names {
		if !routePlaceholder(name) {
			return true
		}
	}
	return false
}

// keyClientPart is the key template's placeholders that name a client, one after the
// other ("{http.request.header.X-API-Key}" of "{http.request.host}:{http.request.header.X-API-Key}"),
// when the template mixes them with placeholders that name only the site or the route; ""
// when it does not (a template of client placeholders alone falls back when it comes out as
// keyEmpty, and one without any is meant as one bucket per site or route).
func keyClientPart(key string) string {
	names, _ := keyPlaceholders(key) // a key that reaches here passed checkKeyTemplate
	var client strings.Builder
	route := false
	for _, name := range names {
		if routePlaceholder(name) {
			route = true
			continue
		}
		client.WriteString("{" + name + "}")
	}
	if !route {
		return ""
	}
	return client.String()
}

// runtimePlaceholderRoots are {http.*} namespaces that handlers fill while a request runs
// (authentication, reverse_proxy, matchers, errors, response): unknown before a request.
var runtimePlaceholderRoots = []string{"http.auth.", "http.reverse_proxy.", "http.error.", "http.regexp.", "http.matchers.", "http.response.", "http.vars."}

// unknownKeyPlaceholders lists the {http.*} placeholders of a key that neither Caddy's request
// replacer nor a runtime namespace knows: another plugin may set them, or they are typos that
// are always empty.
func unknownKeyPlaceholders(key string) []string {
	names, _ := keyPlaceholders(key) // a key that reaches here passed checkKeyTemplate
	var out []string
	for _, name := range names {
		if strings.HasPrefix(name, "http.") && !requestPlaceholderKnown(name) && !hasRootPrefix(name, runtimePlaceholderRoots) {
			out = append(out, "{"+name+"}")
		}
	}
	return out
}
