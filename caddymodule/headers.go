package caddymodule

import (
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"golang.org/x/net/http/httpguts"

	"github.com/swarmsec/caddy-hardening/csp"
	"github.com/swarmsec/caddy-hardening/internal/eventbudget"
)

func init() {
	caddy.RegisterModule(&SecurityHeaders{})
}

// NonceVar is the name of the request variable that holds the response's CSP nonce:
// `{http.vars.csp_nonce}` in the `header`, `templates` and `respond` directives.
const NonceVar = "csp_nonce"

// SecurityHeaders sets a Content Security Policy with a fresh nonce per response, HSTS, and
// the headers that stop clickjacking, MIME sniffing and cross-origin leaks; optionally it puts
// the nonce into the HTML the rest of the route writes (reverse_proxy, file_server, templates).
//
// The nonce (128 bits from crypto/rand, base64) is published before the next handler runs as
// the placeholder `{http.vars.csp_nonce}`.
//
// Header rule: the values set here replace an upstream's header of the same name (the edge is
// the authority), except for the headers listed in keep_upstream, where the upstream's value
// wins. A `header` directive in the same site runs after this handler and replaces its value
// (a deferred one replaces the upstream's too). Remove is applied last, over everything.
//
// A policy set after this handler with a nonce of its own (file_server browse's, on every
// directory listing): on a page that InjectNonce rewrites, this handler's policy is sent
// instead when that policy replaced it and lists one nonce of at least 16 characters, and the
// page's nonce becomes the response's; otherwise, when the enforced policy sent lists nonces
// but not the response's, the page's nonce attributes are left to it. X-Frame-Options follows
// the frame-ancestors of an enforced policy sent that is not this handler's.
//
// Nested (one site-wide, another inside `handle`): the inner one takes the response over. It
// keeps the outer one's nonce (one per request), its headers replace the outer one's as a
// whole, and when it injects, its mode and cache control decide the page; an outer
// placeholder mode still replaces and redacts its placeholder.
type SecurityHeaders struct {
	// Preset is the policy to start from: `strict` (nonce-based scripts with 'strict-dynamic',
	// no plugins, no framing, no <base>), `development` (strict, report-only, plus ws: and
	// wss: for hot reload) or `none` (no policy unless CSP gives one). Default: strict in
	// production and staging, development in development.
	Preset string `json:"preset,omitempty"`

	// CSP sets directives over the preset's, in order: a directive given here replaces the
	// preset's. The value `'nonce'` stands for the response's nonce. A directive is listed
	// once, and not also in CSPRemove.
	CSP []csp.Directive `json:"csp,omitempty"`

	// CSPRemove drops directives of the preset (e.g. upgrade-insecure-requests), each once.
	CSPRemove []string `json:"csp_remove,omitempty"`

	// ReportOnly sends the policy as Content-Security-Policy-Report-Only, for rollouts: the
	// browser reports the policy's violations and blocks none of them. The other headers are
	// sent as without it: X-Frame-Options (from frame-ancestors) still refuses framing.
	// Default: false, true under the development preset.
	ReportOnly *bool `json:"report_only,omitempty"`

	// ReportURI adds `report-uri` to the policy: where browsers POST violation reports
	// (application/csp-report). Use with the csp_report handler. A `report-uri` given in CSP
	// too (or removed in CSPRemove) is refused: give the URLs in one place.
	ReportURI []string `json:"report_uri,omitempty"`

	// ReportTo is the Reporting API endpoint URL: it is sent as `Reporting-Endpoints:
	// csp-endpoint="<url>"` and the policy gets `report-to csp-endpoint`. Browsers send these
	// reports from HTTPS pages only; keep report_uri for the others. A `report-to` given in CSP
	// too (or removed in CSPRemove) is refused. An upstream's own Reporting-Endpoints is kept
	// beside it (ours last, so csp-endpoint is ours), unless KeepUpstream lists the header.
	ReportTo string `json:"report_to,omitempty"`

	// HSTS is the Strict-Transport-Security header, sent on HTTPS responses only, never in
	// development nor under the development preset (given beside that preset, it is refused). A response is HTTPS when its request came over TLS, or from a trusted proxy
	// (the server's trusted_proxies) whose last X-Forwarded-Proto is https: a load balancer
	// that terminates TLS in front of Caddy. Where it is not sent (plain HTTP, development, Off), an upstream's
	// Strict-Transport-Security is removed too, unless KeepUpstream lists it (then it passes
	// beside Off, on HTTPS responses outside development only). Default:
	// max-age=63072000; includeSubDomains (no preload: that is a commitment you make on
	// purpose).
	HSTS *HSTSConfig `json:"hsts,omitempty"`

	// FrameOptions is X-Frame-Options: DENY, SAMEORIGIN or off. Default: what the policy's
	// frame-ancestors says (DENY for 'none', SAMEORIGIN for 'self'), DENY without
	// frame-ancestors, none when frame-ancestors lists hosts. A value that contradicts
	// frame-ancestors is refused, unless ReportOnly is set to true (a rollout enforces this
	// X-Frame-Options and reports the frame-ancestors it tries). Where the enforced policy sent is another's (one that
	// replaced this handler's and stayed, or one kept by KeepUpstream), X-Frame-Options says
	// what that policy's frame-ancestors says. Where none is sent because frame-ancestors lists
	// hosts, one set by anyone else (the upstream, a header directive) is made to say what the
	// enforced policy sent says (removed beside a list of hosts), unless KeepUpstream lists it.
	FrameOptions string `json:"frame_options,omitempty"`

	// ReferrerPolicy is Referrer-Policy, or off: one of the standard policies, or a
	// comma-separated fallback list of them (browsers use the last one they know). Default:
	// strict-origin-when-cross-origin.
	ReferrerPolicy string `json:"referrer_policy,omitempty"`

	// PermissionsPolicy is Permissions-Policy, or off: a structured-field dictionary of
	// lower-case features and allowlists of *, self and quoted origins, such as
	// `camera=(), geolocation=(self "https://maps.example")`. A value browsers would ignore in
	// whole or in part is refused. Default: accelerometer, camera, geolocation, gyroscope,
	// magnetometer, microphone, payment and usb turned off.
	PermissionsPolicy string `json:"permissions_policy,omitempty"`

	// COOP is Cross-Origin-Opener-Policy, or off, with an optional report-to parameter naming
	// a Reporting-Endpoints member (`same-origin; report-to="coop"`). Default: same-origin.
	COOP string `json:"coop,omitempty"`

	// CORP is Cross-Origin-Resource-Policy, or off. Default: same-origin.
	CORP string `json:"corp,omitempty"`

	// COEP is Cross-Origin-Embedder-Policy (require-corp, credentialless), with an optional
	// report-to parameter as COOP. Default: not sent.
	COEP string `json:"coep,omitempty"`

	// NoSniff sends X-Content-Type-Options: nosniff. Default: true.
	NoSniff *bool `json:"nosniff,omitempty"`

	// Remove lists response headers to delete, whoever set them (a `header` directive too: it
	// is applied last). A header this handler decides in any environment (one it sets, either
	// policy name, Strict-Transport-Security) is refused, and so is a name that can be no
	// header's (placeholders are not replaced). Default: Server and X-Powered-By. An empty
	// list removes nothing.
	Remove *[]string `json:"remove,omitempty"`

	// KeepUpstream lists headers (among those this handler sets) whose upstream value wins
	// over this handler's; X-Frame-Options may be listed where frame-ancestors lists hosts
	// (none is set here then). Strict-Transport-Security may be listed with any hsts setting
	// (off included), but not beside the development preset: the upstream's then passes on
	// HTTPS responses outside development, never over plain HTTP. Content-Security-Policy
	// listed also keeps a policy that a later handler set with its own nonce (file_server
	// browse's), and the page's nonce attributes with it.
	KeepUpstream []string `json:"keep_upstream,omitempty"`

	// InjectNonce puts the nonce into text/html responses. Default: off (the nonce is only
	// available as {http.vars.csp_nonce}).
	InjectNonce *InjectNonceConfig `json:"inject_nonce,omitempty"`

	on     bool
	app    *App
	logger *zap.Logger
	// pageLogs bounds the per-response log lines (a page given up on, an unsecurable page
	// answered 502): a client can cause one with every request (an ESC byte in a reflected
	// query parameter), so they take a budget as the security log does.
	pageLogs   *eventbudget.Budget
	policy     csp.Template
	cspHeader  string
	static     []headerValue // set on every response
	hsts       string        // set on HTTPS responses
	hstsKept   bool          // an upstream's HSTS may pass on HTTPS responses (keep_upstream)
	xfo        string        // the X-Frame-Options in static, if any
	xfoHosts   bool          // none sent: frame-ancestors lists hosts (see matchFrameOptions)
	namesHTTP  []string      // the headers a plain-HTTP response gets, in value order
	namesTLS   []string      // the headers an HTTPS response gets
	remove     []string
	keep       map[string]bool
	injectMode csp.Mode
	ph         string
	wide       [csp.WideFormCount]string // ph in UTF-16 and UTF-32
	cacheCtl   string
	built      builtPolicy // what build settled, for the configuration findings
}

// HSTSConfig is a Strict-Transport-Security value.
type HSTSConfig struct {
	// MaxAge is how long, in seconds, browsers use HTTPS only. With preload it must be at
	// least 31536000 (one year). 0 tells browsers to forget the site's HSTS (written on
	// purpose: an omitted max_age is the default). Default: 63072000 (two years).
	MaxAge *int64 `json:"max_age,omitempty"`
	// IncludeSubDomains extends the rule to every subdomain. Required by preload. Default:
	// true, as without an hsts object (write false to leave it out; the Caddyfile writes
	// what its hsts line says).
	IncludeSubDomains *bool `json:"include_subdomains,omitempty"`
	// Preload asks to be in browsers' built-in HSTS list (submit at hstspreload.org).
	Preload bool `json:"preload,omitempty"`
	// Off sends no HSTS header; the other fields are refused beside it.
	Off bool `json:"off,omitempty"`
}

// InjectNonceConfig configures nonce injection into HTML.
type InjectNonceConfig struct {
	// Mode is `placeholder` (the application marks its own tags with the placeholder; every
	// other nonce attribute is removed) or `tags` (every script, style and stylesheet link gets
	// the nonce: only for HTML you fully control, such as a built single-page app). Default:
	// placeholder. Where the enforced policy sent lists nonces but not the response's (see
	// KeepUpstream), neither mode changes the page's nonce attributes; placeholder mode still
	// replaces the placeholder.
	Mode string `json:"mode,omitempty"`
	// Placeholder is the secret marker the application writes where the nonce goes, at least
	// 16 letters, digits, '-', '_', '.' or '~' (the same bytes in every charset whose ASCII is
	// ASCII, and written as they are by templating engines, which escape other punctuation:
	// an escaped placeholder is not found in the page). Whoever knows it can get a nonce onto their own tag: write it as a
	// runtime placeholder ({env.CSP_NONCE_PLACEHOLDER}, {file./run/secrets/csp_placeholder}).
	// A page in an encoding the injector cannot read as the browser will (UTF-16 by byte order
	// mark or charset, UTF-16/32 without one, a charset such as utf-32 or an EBCDIC code page)
	// is answered 502 in placeholder mode and passed as it is in tags mode; in other bodies,
	// the placeholder's UTF-16 and UTF-32 forms are overwritten as the placeholder is.
	Placeholder string `json:"placeholder,omitempty"`
	// CacheControl replaces Cache-Control on nonced HTML (a cached nonce is a reused nonce), or
	// `off` to keep the upstream's. The fields CDNs follow instead of it (CDN-Cache-Control,
	// Cloudflare-CDN-Cache-Control, Surrogate-Control, Edge-Control, X-Accel-Expires) are
	// removed with it.
	// Default: no-store.
	CacheControl string `json:"cache_control,omitempty"`
}

type headerValue struct {
	name, value string
}

// The default values of each header.
const (
	defaultHSTSMaxAge     = 63072000
	defaultReferrerPolicy = "strict-origin-when-cross-origin"
	reportToGroup         = "csp-endpoint"
	off                   = "off"
)

var defaultRemove = []string{"Server", "X-Powered-By"}

// CaddyModule returns the Caddy module information.
func (*SecurityHeaders) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.security_headers",
		New: func() caddy.Module { return new(SecurityHeaders) },
	}
}

// Provision reads the environment's defaults from the hardening app and builds the headers.
func (h *SecurityHeaders) Provision(ctx caddy.Context) error {
	app, err := hardeningApp(ctx)
	if err != nil {
		return err
	}
	h.app, h.logger = app, ctx.Logger()
	h.pageLogs = &eventbudget.Budget{Rate: pageLogRate, Burst: pageLogRate, PerClient: pageLogPerClient}
	h.on = app.FeatureEnabled("security_headers")
	if err := h.build(app.Env(), false); err != nil {
		return fmt.Errorf("security_headers: %w", err)
	}
	// The findings name the handler's place in the JSON config, known once every route is.
	app.OnValidate(func() {
		at := handlerConfigPath(ctx, h)
		if h.InjectNonce != nil && h.injectMode == csp.Placeholder && !isPlaceholder(h.InjectNonce.Placeholder) {
			_ = app.Report(Finding{Code: "csp.literal_placeholder", Severity: Warning, Module: "security_headers",
				Config:  optionPath(at, "inject_nonce.placeholder"),
				Message: "the nonce placeholder is written in the configuration: it is a secret (whoever knows it can get a nonce onto an injected tag) and it is kept in the JSON config, the admin API and autosave.json",
				Fix:     "use a runtime placeholder: inject_nonce placeholder {env.CSP_NONCE_PLACEHOLDER}"},
				Production, Staging)
		}
		h.reportFindings(app, at)
		h.reportUnknownPermissions(app, at)
		h.reportSandboxReportOnly(app, at)
		h.reportNoSample(app, at)
	})
	if h.injectMode != 0 {
		app.OnValidate(func() { h.checkErrorRoutes(ctx) })
	}
	if len(h.ReportURI) > 0 || h.ReportTo != "" {
		app.OnValidate(func() { h.checkReportsReceived(ctx) })
	}
	if h.injectMode == csp.Tags {
		app.OnValidate(func() { h.checkTagsBehindProxy(ctx) })
	}
	if h.injectMode != 0 {
		app.OnValidate(func() { h.checkInjectNeighbours(ctx) })
	} else {
		app.OnValidate(func() { h.checkBrowseWithoutInject(ctx) })
	}
	return nil
}

// build turns the configuration into the values sent per response. It is also what the
// Caddyfile adapter runs, so refusals carry the Caddyfile line.
func (h *SecurityHeaders) build(env Environment, adapting bool) error {
	preset := h.Preset
	if preset == "" {
		preset = csp.PresetStrict
		if env == Development {
			preset = csp.PresetDevelopment
		}
	}
	policy, ok := csp.Preset(preset)
	if !ok {
		return fmt.Errorf("preset %q: expected strict, development or none", preset)
	}
	for _, d := range h.CSP {
		name := strings.ToLower(d.Name)
		if err := csp.ValidateDirective(name, d.Values); err != nil {
			return forOption("csp", fmt.Errorf("csp: %w", err))
		}
		policy.Set(name, d.Values...)
	}
	for _, name := range h.CSPRemove {
		if !csp.KnownDirective(strings.ToLower(name)) {
			return forOption("csp", fmt.Errorf("csp: cannot remove unknown directive %q", name))
		}
		policy.Remove(name)
	}
	if err := cspTwice(h.CSP, h.CSPRemove); err != nil {
		return forOption("csp", err)
	}
	if err := h.reportConflict(); err != nil {
		return err
	}
	if err := h.reportsWithoutPolicy(policy); err != nil {
		return err
	}
	if len(h.ReportURI) > 0 {
		policy.Set("report-uri", h.ReportURI...)
	}
	var static []headerValue
	if h.ReportTo != "" {
		if !validEndpointURL(h.ReportTo) {
			return forOption("report_to", fmt.Errorf("report_to %q: expected an https:// URL or an absolute path (/csp-report)", h.ReportTo))
		}
		policy.Set("report-to", reportToGroup)
		static = append(static, headerValue{"Reporting-Endpoints", reportToGroup + `="` + h.ReportTo + `"`})
	}
	if err := policy.Validate(); err != nil {
		return forOption("csp", fmt.Errorf("csp: %w", err))
	}
	reportOnly := preset == csp.PresetDevelopment
	if h.ReportOnly != nil {
		reportOnly = *h.ReportOnly
	}
	h.built = builtPolicy{policy: policy, reportOnly: reportOnly}
	h.cspHeader = ""
	if len(policy.Directives) > 0 {
		h.policy = policy.Compile()
		h.cspHeader = "Content-Security-Policy"
		if reportOnly {
			h.cspHeader = "Content-Security-Policy-Report-Only"
		}
	}

	// HSTS: never in development nor under the development preset; the preload rules are
	// refused everywhere.
	h.hsts = ""
	hsts := csp.HSTS{MaxAge: defaultHSTSMaxAge, IncludeSubDomains: true}
	if c := h.HSTS; c != nil {
		if c.Off && (c.MaxAge != nil || c.IncludeSubDomains != nil || c.Preload) {
			return forOption("hsts", fmt.Errorf("hsts: off sends no header, so max_age, include_subdomains and preload say nothing beside it; expected off alone, or the header's fields"))
		}
		if !c.Off && h.Preset == csp.PresetDevelopment {
			// Named on purpose beside an HSTS of its own: one of the two would be ignored.
			return forOption("hsts", fmt.Errorf("hsts: the development preset sends no HSTS (a development host must not pin browsers to HTTPS); expected no hsts line (or hsts off) with it, or the strict preset with report_only for a rollout"))
		}
		hsts = csp.HSTS{MaxAge: defaultHSTSMaxAge, IncludeSubDomains: true, Preload: c.Preload}
		if c.IncludeSubDomains != nil {
			hsts.IncludeSubDomains = *c.IncludeSubDomains
		}
		if c.MaxAge != nil {
			hsts.MaxAge = *c.MaxAge
		}
		if !c.Off {
			if err := hsts.Validate(); err != nil {
				return forOption("hsts", err)
			}
		}
	}
	h.built.hstsOff = h.HSTS != nil && h.HSTS.Off
	h.built.hsts = hsts
	h.built.devPreset = preset == csp.PresetDevelopment
	if !h.built.hstsOff && env != Development && !h.built.devPreset {
		h.hsts = hsts.String()
	}

	// X-Frame-Options must say what frame-ancestors says.
	derived := csp.FrameOptionsFor(policy)
	if _, has := policy.Get("frame-ancestors"); !has {
		derived = "DENY"
	}
	xfo := derived
	if h.FrameOptions != "" {
		if strings.EqualFold(h.FrameOptions, off) {
			xfo = ""
		} else {
			v, err := csp.OneOf("frame_options", h.FrameOptions, csp.FrameOptionsValues)
			if err != nil {
				return forOption("frame_options", err)
			}
			// Beside report_only written out, they may differ: X-Frame-Options is what a
			// rollout enforces, frame-ancestors what it tries (and reports).
			rollout := h.ReportOnly != nil && *h.ReportOnly
			if fa, has := policy.Get("frame-ancestors"); has && v != derived && !rollout {
				return forOption("frame_options", fmt.Errorf("frame_options %s contradicts the policy's frame-ancestors %s; set one to match the other (or, for a rollout that keeps this X-Frame-Options while it tries that frame-ancestors, add report_only)", v, strings.Join(fa, " ")))
			}
			xfo = v
		}
	}
	h.xfo = xfo
	// A list of hosts, which X-Frame-Options cannot say: this handler sends none, and one set
	// by anyone else is made to say what the enforced frame-ancestors says (matchFrameOptions).
	_, hasFA := policy.Get("frame-ancestors")
	h.xfoHosts = h.FrameOptions == "" && hasFA && derived == ""
	if xfo != "" {
		static = append(static, headerValue{"X-Frame-Options", xfo})
	}

	if h.NoSniff == nil || *h.NoSniff {
		static = append(static, headerValue{"X-Content-Type-Options", "nosniff"})
	}
	for _, o := range headerOptions {
		v := *o.value(h)
		if v == "" {
			v = o.def
		}
		if v == "" || strings.EqualFold(v, off) {
			continue
		}
		v, err := o.parse(v)
		if err != nil {
			return forOption(o.field, err)
		}
		static = append(static, headerValue{o.header, v})
	}
	h.static = static
	h.namesHTTP, h.namesTLS = nil, nil
	if h.cspHeader != "" {
		h.namesHTTP = append(h.namesHTTP, h.cspHeader)
		h.namesTLS = append(h.namesTLS, h.cspHeader)
	}
	if h.hsts != "" {
		h.namesTLS = append(h.namesTLS, "Strict-Transport-Security")
	}
	for _, s := range static {
		h.namesHTTP = append(h.namesHTTP, s.name)
		h.namesTLS = append(h.namesTLS, s.name)
	}
	if len(h.namesTLS) > maxManagedHeaders {
		return fmt.Errorf("too many headers: %d", len(h.namesTLS)) // cannot happen: a fixed set
	}

	h.remove = defaultRemove
	if h.Remove != nil {
		h.remove = nil
		for _, name := range *h.Remove {
			if !httpguts.ValidHeaderFieldName(name) {
				// A name that can be no header's would delete nothing, with nothing said.
				return forOption("remove", fmt.Errorf("remove %q: expected a header name such as Server or X-Powered-By (letters, digits, '-'; placeholders are not replaced here)", name))
			}
			name = http.CanonicalHeaderKey(name)
			if slices.Contains(h.remove, name) {
				return forOption("remove", fmt.Errorf("remove: %s is given twice (header names compare case-insensitively); give each header once", name))
			}
			if h.manages(name) {
				// remove runs last: it would delete our own value, with nothing said. manages,
				// not this environment's names: one verdict in every environment, and the
				// adapter's is load's.
				hint := ""
				if strings.HasPrefix(name, "Content-Security-Policy") {
					hint = "; to drop an upstream's " + name + " where this handler sends the other policy name, use `header -" + name + "`"
				}
				return forOption("remove", fmt.Errorf("remove %s: this handler decides that header itself, in every environment; turn it off with its own option (e.g. security_headers none, hsts off, or that header's subdirective with off) instead%s", name, hint))
			}
			h.remove = append(h.remove, name)
		}
	}
	h.keep = map[string]bool{}
	for _, name := range h.KeepUpstream {
		name = http.CanonicalHeaderKey(name)
		if h.keep[name] {
			return forOption("keep_upstream", fmt.Errorf("keep_upstream: %s is given twice (header names compare case-insensitively); give each header once", name))
		}
		if !h.manages(name) && !(name == "X-Frame-Options" && h.xfoHosts) {
			return forOption("keep_upstream", fmt.Errorf("keep_upstream %s: this handler does not set that header", name))
		}
		if name == "Strict-Transport-Security" && h.Preset == csp.PresetDevelopment {
			// Named on purpose beside a preset that never lets HSTS out: it would be ignored.
			return forOption("keep_upstream", fmt.Errorf("keep_upstream Strict-Transport-Security: the development preset lets no HSTS out, the upstream's included (a development host must not pin browsers to HTTPS); expected it without this header, or the strict preset"))
		}
		h.keep[name] = true
	}
	// An upstream's HSTS, kept, goes out where HSTS may: on HTTPS responses, outside
	// development and the development preset (RFC 6797 7.2: never over plain HTTP).
	h.hstsKept = h.keep["Strict-Transport-Security"] && env != Development && !h.built.devPreset
	if err := h.buildInject(adapting); err != nil {
		return forOption("inject_nonce", err)
	}
	return nil
}

// headerOption is one of the plain headers: its option's name, its field, its default, and
// the check that returns the value as sent.
type headerOption struct {
	field, header, def, want string
	value                    func(*SecurityHeaders) *string
	parse                    func(v string) (string, error)
}

// headerOptions are the plain headers, in the order they are sent. The Caddyfile reads the
// same options with the same checks.
var headerOptions = []headerOption{
	{"referrer_policy", "Referrer-Policy", defaultReferrerPolicy,
		"one of " + strings.Join(csp.ReferrerPolicyValues, ", ") + ", or a comma-separated list of them",
		func(h *SecurityHeaders) *string { return &h.ReferrerPolicy }, csp.ParseReferrerPolicy},
	{"permissions_policy", "Permissions-Policy", csp.DefaultPermissionsPolicy,
		`a policy such as "camera=(), geolocation=(self)"`,
		func(h *SecurityHeaders) *string { return &h.PermissionsPolicy },
		func(v string) (string, error) { return v, csp.ValidatePermissionsPolicy(v) }},
	{"coop", "Cross-Origin-Opener-Policy", "same-origin",
		"one of " + strings.Join(csp.COOPValues, ", ") + `, optionally followed by ; report-to="<endpoint>"`,
		func(h *SecurityHeaders) *string { return &h.COOP },
		func(v string) (string, error) { return csp.ParseCrossOriginPolicy("coop", v, csp.COOPValues) }},
	{"corp", "Cross-Origin-Resource-Policy", "same-origin",
		"one of " + strings.Join(csp.CORPValues, ", "),
		func(h *SecurityHeaders) *string { return &h.CORP },
		func(v string) (string, error) { return csp.OneOf("corp", v, csp.CORPValues) }},
	{"coep", "Cross-Origin-Embedder-Policy", "",
		"one of " + strings.Join(csp.COEPValues, ", ") + `, optionally followed by ; report-to="<endpoint>"`,
		func(h *SecurityHeaders) *string { return &h.COEP },
		func(v string) (string, error) { return csp.ParseCrossOriginPolicy("coep", v, csp.COEPValues) }},
}

// reportConflict refuses a report destination given twice: report_uri (or report_to) beside
// the same directive written in the csp block, or removed there. The option would replace
// the csp block's directive with nothing said.
func (h *SecurityHeaders) reportConflict() *optionError {
	for _, c := range []struct {
		option, directive string
		set               bool
		expected          string
	}{
		{"report_uri", "report-uri", len(h.ReportURI) > 0,
			"give the report URLs in one place: report_uri <url>... or csp { report-uri <url>... }"},
		{"report_to", "report-to", h.ReportTo != "",
			"keep one: report_to <endpoint-url> (it sends Reporting-Endpoints and report-to " + reportToGroup + "), or csp { report-to <group> } with your own Reporting-Endpoints header"},
	} {
		if !c.set {
			continue
		}
		for _, d := range h.CSP {
			if strings.EqualFold(d.Name, c.directive) {
				return &optionError{option: c.option, err: fmt.Errorf("%s and the csp block's %s %s both set the policy's %s; %s",
					c.option, c.directive, strings.Join(d.Values, " "), c.directive, c.expected)}
			}
		}
		for _, name := range h.CSPRemove {
			if strings.EqualFold(name, c.directive) {
				return &optionError{option: c.option, err: fmt.Errorf("%s adds the %s that the csp block's -%s removes; expected one of them", c.option, c.directive, c.directive)}
			}
		}
	}
	return nil
}

// reportsWithoutPolicy refuses report_only, report_uri and report_to where the policy has no
// directive a page could violate (the none preset without csp lines, or with report-uri or
// report-to alone): a policy of report destinations only is sent, which restricts nothing
// and reports nothing.
func (h *SecurityHeaders) reportsWithoutPolicy(policy csp.Policy) error {
	for _, d := range policy.Directives {
		if d.Name != "report-uri" && d.Name != "report-to" {
			return nil
		}
	}
	for _, o := range []struct {
		option string
		set    bool
	}{
		{"report_only", h.ReportOnly != nil && *h.ReportOnly},
		{"report_uri", len(h.ReportURI) > 0},
		{"report_to", h.ReportTo != ""},
	} {
		if o.set {
			return forOption(o.option, fmt.Errorf("%s: the policy has no directive to report on (the none preset without csp directives), so it would restrict and report nothing; expected csp { <directive> <source>... } beside it, or the strict preset", o.option))
		}
	}
	return nil
}

// cspTwice refuses a directive named twice among those set and removed: set twice (the second
// would replace the first), or set and removed (the removal would win, whatever the order).
func cspTwice(set []csp.Directive, removed []string) error {
	seen := map[string]string{} // directive -> how it was named first
	for _, d := range set {
		name := strings.ToLower(d.Name)
		if _, twice := seen[name]; twice {
			return fmt.Errorf("CSP directive %s given twice; put all its sources on one line", name)
		}
		seen[name] = name
	}
	for _, r := range removed {
		name := strings.ToLower(r)
		switch seen[name] {
		case name:
			return fmt.Errorf("CSP directive %s is both set and removed (-%s); expected one of them: %s <source>... to set it, or -%s to drop the preset's", name, name, name, name)
		case "-" + name:
			return fmt.Errorf("CSP directive -%s given twice", name)
		}
		seen[name] = "-" + name
	}
	return nil
}

// optionError is a refusal that belongs to one option (the Caddyfile subdirective of that
// name), so the Caddyfile adapter can point at its line.
type optionError struct {
	option string
	err    error
}

func (e *optionError) Error() string { return e.err.Error() }
func (e *optionError) Unwrap() error { return e.err }

func forOption(option string, err error) error { return &optionError{option: option, err: err} }

func (h *SecurityHeaders) buildInject(adapting bool) error {
	h.injectMode = 0
	c := h.InjectNonce
	if c == nil {
		return nil
	}
	switch c.Mode {
	case "", "placeholder":
		h.injectMode = csp.Placeholder
		if isPlaceholder(c.Placeholder) && adapting {
			break // resolved when Caddy loads the config
		}
		h.ph = caddy.NewReplacer().ReplaceKnown(c.Placeholder, "")
		if h.ph == "" && isPlaceholder(c.Placeholder) {
			// The value is never shown (a secret), its source is: usually an unset variable.
			return fmt.Errorf("inject_nonce placeholder %s is empty: set it to a secret of at least %d random characters (e.g. from `openssl rand -hex 16`)",
				c.Placeholder, csp.MinPlaceholderLen)
		}
		if len(h.ph) < csp.MinPlaceholderLen {
			return fmt.Errorf("inject_nonce placeholder is %d characters; it is a secret: use at least %d random characters (e.g. from `openssl rand -hex 16`)",
				len(h.ph), csp.MinPlaceholderLen)
		}
		if err := csp.ValidatePlaceholder(h.ph); err != nil {
			return err
		}
		h.wide = csp.WideForms(h.ph)
	case "tags":
		h.injectMode = csp.Tags
		if c.Placeholder != "" {
			return fmt.Errorf("inject_nonce tags takes no placeholder")
		}
	default:
		return fmt.Errorf("inject_nonce mode %q: expected placeholder or tags", c.Mode)
	}
	h.cacheCtl = "no-store"
	if c.CacheControl != "" {
		if err := checkCacheControl(c.CacheControl); err != nil {
			return err
		}
		h.cacheCtl = c.CacheControl
		if strings.EqualFold(c.CacheControl, off) {
			h.cacheCtl = ""
		}
	}
	return nil
}

// checkCacheControl refuses a cache_control value that is no header value, or a placeholder,
// which would be sent as written.
func checkCacheControl(v string) error {
	if strings.ContainsAny(v, "{}") || !httpguts.ValidHeaderFieldValue(v) {
		return fmt.Errorf("inject_nonce cache_control %q: expected a Cache-Control value such as no-store or \"private, no-store\" (placeholders are not replaced here)", v)
	}
	return nil
}

// manages reports whether the handler decides the header, in some environment (so that one
// configuration loads in development, where HSTS is never sent and the policy is report-only,
// as in production). Strict-Transport-Security is always decided here: sent, or removed where
// the handler sends none (plain HTTP, development, hsts off).
func (h *SecurityHeaders) manages(name string) bool {
	switch name {
	case "Content-Security-Policy", "Content-Security-Policy-Report-Only":
		return h.cspHeader != ""
	case "Strict-Transport-Security":
		return true
	}
	for _, s := range h.static {
		if s.name == name {
			return true
		}
	}
	return false
}

// validEndpointURL accepts an https URL or an absolute path (same origin).
func validEndpointURL(s string) bool {
	// The value goes into a structured-field string (Reporting-Endpoints): a backslash, a
	// control or a non-ASCII byte there makes browsers drop the whole header.
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c > '~' || strings.IndexByte("\"\\,;", c) >= 0 {
			return false
		}
	}
	if rest, ok := strings.CutPrefix(s, "https://"); ok {
		host, _, _ := strings.Cut(rest, "/")
		return host != "" && host[0] != ':' && host[0] != '?' && host[0] != '#'
	}
	return strings.HasPrefix(s, "/") && !strings.HasPrefix(s, "//")
}

// ServeHTTP makes the nonce, sets the headers before the rest of the route runs (so its
// errors carry them too), and wraps the response to settle them and rewrite HTML.
//
// Disabled (features { security_headers off }), it passes requests through, except in
// placeholder mode: there it sets no header and makes no nonce, but still redacts its
// placeholder from bodies and headers as it does for the bodies it cannot nonce. Published
// once, the secret would get the real nonce onto an injected tag when the feature is back on.
func (h *SecurityHeaders) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	var sw *securityWriter
	switch {
	case h.on:
		// One walk up Caddy's context chain for the request's vars (this runs on every
		// request): the trusted-proxy flag, the nonce of a security_headers around this one,
		// and this one's.
		vars, _ := r.Context().Value(caddyhttp.VarsCtxKey).(map[string]any)
		var outer *securityWriter
		if _, published := vars[NonceVar]; published || vars == nil {
			// Only a security_headers around this one (or a `vars` directive) has published a
			// nonce: no other request needs the search through the writer's wrappers.
			outer = findSecurityWriter(w)
		}
		sw = newSecurityWriter(h, w, r, vars, outer)
		if vars != nil {
			vars[NonceVar] = sw.nonce // caddyhttp.SetVar, without its second walk
		}
	case h.injectMode == csp.Placeholder:
		sw = &securityWriter{ResponseWriterWrapper: caddyhttp.ResponseWriterWrapper{ResponseWriter: w}, h: h, r: r, redactOnly: true}
	default:
		return next.ServeHTTP(w, r)
	}
	head := false
	if h.injectMode != 0 {
		if r.Method == http.MethodHead && !sw.redactOnly {
			// What the headers of a rewritten response say (its type, sniffed from the body
			// when it has none; its length; no-store) depends on its body: the rest of the
			// route answers a GET, and net/http drops the body of a HEAD response.
			head = true
			r.Method = http.MethodGet
		}
		// The body must reach us whole and uncompressed: no partial content, no encoding from
		// upstream or an inner `encode` (an `encode` placed before this handler still
		// compresses what we write).
		r.Header.Del("Accept-Encoding")
		r.Header.Del("Range")
		r.Header.Del("If-Range")
		if asksForPage(r) && !sw.redactOnly {
			// A 304 would have the browser reuse the page it holds, with the nonce of an
			// earlier response: a page is always sent whole. Assets keep their 304s.
			r.Header.Del("If-None-Match")
			r.Header.Del("If-Modified-Since")
		}
	}
	err := next.ServeHTTP(sw, r)
	if err != nil && !sw.started {
		// Caddy writes the error response (or runs handle_errors) with its own writer, past
		// WriteHeader: the header rules (remove, no HSTS where none is sent) apply to it too.
		sw.settle()
		sw.matchFrameOptions()
	}
	if cerr := sw.close(); err == nil {
		err = cerr
	}
	if head {
		r.Method = http.MethodHead // for the access log and the handlers before this one
	}
	return err
}

// asksForPage reports whether a request asks for HTML: its Accept names text/html,
// application/xhtml+xml or text/* (with a q above 0; */* alone does not count, every asset
// request sends it), or Sec-Fetch-Dest is document, iframe or frame.
func asksForPage(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Dest") {
	case "document", "iframe", "frame":
		return true
	}
	for _, accept := range r.Header.Values("Accept") {
		for rng := range strings.SplitSeq(accept, ",") {
			mt, params, _ := strings.Cut(rng, ";")
			switch strings.ToLower(strings.TrimSpace(mt)) {
			case "text/html", "application/xhtml+xml", "text/*":
				if !zeroQ(params) {
					return true
				}
			}
		}
	}
	return false
}

// zeroQ reports whether media-range parameters give q=0 (not acceptable).
func zeroQ(params string) bool {
	for p := range strings.SplitSeq(params, ";") {
		k, v, _ := strings.Cut(p, "=")
		if strings.EqualFold(strings.TrimSpace(k), "q") {
			v = strings.TrimSpace(v)
			return strings.Trim(v, "0.") == "" && v != ""
		}
	}
	return false
}

// Interface guards.
var (
	_ caddy.Provisioner           = (*SecurityHeaders)(nil)
	_ caddyhttp.MiddlewareHandler = (*SecurityHeaders)(nil)
)
