package caddymodule

import (
	"errors"
	"slices"
	"strings"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/swarmsec/caddy-hardening/csp"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("security_headers", parseSecurityHeaders)
	httpcaddyfile.RegisterDirectiveOrder("security_headers", httpcaddyfile.After, "log_level")
}

func parseSecurityHeaders(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	sh := new(SecurityHeaders)
	return sh, sh.UnmarshalCaddyfile(h.Dispenser)
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens:
//
//	security_headers [<matcher>] [strict|development|none] {
//		csp {
//			<directive> <value>...    # replaces the preset's; 'nonce' is the response's nonce
//			-<directive>              # drops the preset's
//		}
//		report_only [on|off]
//		report_uri <url>...
//		report_to <endpoint-url>
//		hsts max-age=<seconds> [includeSubDomains] [preload] | off
//		frame_options DENY|SAMEORIGIN|off
//		referrer_policy <policy>|off
//		permissions_policy <policy>|off
//		coop <policy>|off
//		corp <policy>|off
//		coep <policy>|off
//		nosniff on|off
//		remove <header>... | none
//		keep_upstream <header>...
//		inject_nonce placeholder <secret> | tags {
//			cache_control <value>|off
//		}
//	}
//
// Without a preset, the hardening app's environment picks it: strict in production and
// staging, development in development.
//
// A refusal names the line of the subdirective it is about, also for the rules checked once
// the whole block is read (frame_options against the policy's frame-ancestors, keep_upstream
// of a header not set here).
func (h *SecurityHeaders) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the directive name
	directive := d.Token()
	if d.NextArg() {
		h.Preset = d.Val()
		if _, ok := csp.Preset(h.Preset); !ok {
			return d.Errf("security_headers preset %q: expected strict, development or none", h.Preset)
		}
		if d.NextArg() {
			return d.Errf("security_headers takes one preset; got %q too", d.Val())
		}
	}
	seen := map[string]caddyfile.Token{} // each subdirective's first token, for the errors below
	for d.NextBlock(0) {
		if err := strayBlock(d); err != nil {
			return err
		}
		name := d.Val()
		parse, ok := securityHeadersSubdirectives[name]
		if !ok {
			return d.Errf("unknown security_headers subdirective %q; expected one of: %s", name, strings.Join(sortedKeys(securityHeadersSubdirectives), ", "))
		}
		if _, twice := seen[name]; !twice {
			seen[name] = d.Token()
		} else if name != "csp" {
			return d.Errf("%s given twice", name)
		}
		if err := parse(d, h); err != nil {
			return err
		}
	}
	// The rules that involve several subdirectives (frame_options against frame-ancestors,
	// HSTS preload): checked as Caddy will at load, with the environment's preset when none
	// is given.
	env := Production
	if h.Preset == csp.PresetDevelopment {
		env = Development
	}
	check := *h
	if err := check.build(env, true); err != nil {
		at := directive
		var oe *optionError
		if errors.As(err, &oe) {
			if tok, ok := seen[oe.option]; ok {
				at = tok
			}
		}
		return errorAt(at, err)
	}
	return nil
}

// errorAt is err with the file and line of tok (and its import chain), as Dispenser.Errf
// gives them for the current token.
func errorAt(tok caddyfile.Token, err error) error {
	d := caddyfile.NewDispenser([]caddyfile.Token{tok})
	d.Next()
	return d.WrapErr(err)
}

var securityHeadersSubdirectives = map[string]func(d *caddyfile.Dispenser, h *SecurityHeaders) error{
	"csp": parseCSPBlock,
	"report_only": func(d *caddyfile.Dispenser, h *SecurityHeaders) error {
		return optionalOnOff(d, "security_headers report_only", &h.ReportOnly)
	},
	"report_uri": func(d *caddyfile.Dispenser, h *SecurityHeaders) error {
		h.ReportURI = d.RemainingArgs()
		if len(h.ReportURI) == 0 {
			return d.Err("report_uri: expected one or more URLs (/csp-report, https://...)")
		}
		if err := csp.ValidateDirective("report-uri", h.ReportURI); err != nil {
			return d.Errf("%v", err)
		}
		if err := h.reportConflict(); err != nil {
			return d.Errf("%v", err)
		}
		return nil
	},
	"report_to": func(d *caddyfile.Dispenser, h *SecurityHeaders) error {
		v, err := wantArg(d, "report_to", "an https:// URL or an absolute path (/csp-report)")
		if err != nil {
			return err
		}
		if !validEndpointURL(v) {
			return d.Errf("report_to %q: expected an https:// URL or an absolute path (/csp-report)", v)
		}
		h.ReportTo = v
		if err := h.reportConflict(); err != nil {
			return d.Errf("%v", err)
		}
		return nil
	},
	"hsts": func(d *caddyfile.Dispenser, h *SecurityHeaders) error {
		args := d.RemainingArgs()
		if len(args) == 0 {
			return d.Err("hsts: expected max-age=<seconds> [includeSubDomains] [preload], or off")
		}
		if len(args) == 1 && args[0] == off {
			h.HSTS = &HSTSConfig{Off: true}
			return nil
		}
		v, err := csp.ParseHSTS(args)
		if err != nil {
			return d.Errf("%v", err)
		}
		// Both are written, as the line says: max-age= is required (0 too), and a line
		// without includeSubDomains leaves it out (JSON's default is to send it).
		h.HSTS = &HSTSConfig{MaxAge: &v.MaxAge, IncludeSubDomains: &v.IncludeSubDomains, Preload: v.Preload}
		return nil
	},
	"frame_options":      headerArg(func(h *SecurityHeaders) *string { return &h.FrameOptions }, csp.FrameOptionsValues),
	"referrer_policy":    headerOptionArgs("referrer_policy"),
	"permissions_policy": headerOptionArgs("permissions_policy"),
	"coop":               headerOptionArgs("coop"),
	"corp":               headerOptionArgs("corp"),
	"coep":               headerOptionArgs("coep"),
	"nosniff": func(d *caddyfile.Dispenser, h *SecurityHeaders) error {
		on, err := onOff(d, "nosniff")
		if err != nil {
			return err
		}
		h.NoSniff = &on
		return nil
	},
	"remove": func(d *caddyfile.Dispenser, h *SecurityHeaders) error {
		args := d.RemainingArgs()
		if len(args) == 0 {
			return d.Err("remove: expected one or more header names, or none")
		}
		list := []string{}
		if len(args) == 1 && args[0] == "none" {
			h.Remove = &list
			return nil
		}
		for _, a := range args {
			if strings.EqualFold(a, "none") {
				return d.Errf("remove: none stands alone (remove none keeps every header); expected remove <header>... or remove none, got remove %s", strings.Join(args, " "))
			}
		}
		list = args
		h.Remove = &list
		return nil
	},
	"keep_upstream": func(d *caddyfile.Dispenser, h *SecurityHeaders) error {
		h.KeepUpstream = d.RemainingArgs()
		if len(h.KeepUpstream) == 0 {
			return d.Err("keep_upstream: expected one or more header names that this handler sets")
		}
		return nil
	},
	"inject_nonce": parseInjectNonce,
}

// headerOptionArgs parses the value of one of the plain headers, or off. The arguments are
// joined with spaces, so a value with a list or parameters may be written unquoted
// (`referrer_policy no-referrer, strict-origin-when-cross-origin`, `coop same-origin;
// report-to="coop"`).
func headerOptionArgs(field string) func(*caddyfile.Dispenser, *SecurityHeaders) error {
	i := slices.IndexFunc(headerOptions, func(o headerOption) bool { return o.field == field })
	if i < 0 {
		panic("security_headers: no header option " + field)
	}
	o := headerOptions[i]
	return func(d *caddyfile.Dispenser, h *SecurityHeaders) error {
		var args []string
		quoted := false // a word that started with a double quote, which the Caddyfile took as its own
		for d.NextArg() {
			args = append(args, d.Val())
			quoted = quoted || d.Token().Quoted()
		}
		if len(args) == 0 {
			return d.Errf("%s: expected %s, or off", o.field, o.want)
		}
		v := strings.Join(args, " ")
		if v != off {
			var err error
			if v, err = o.parse(v); err != nil {
				if len(args) > 1 && quoted {
					return d.Errf("%v; written in several words, the value lost the double quotes around a word: put it whole in backticks (%s `...`)", err, o.field)
				}
				return d.Errf("%v", err)
			}
		}
		*o.value(h) = v
		return nil
	}
}

// parseCSPBlock reads `csp { <directive> <values>... }`, checking each line as it goes.
func parseCSPBlock(d *caddyfile.Dispenser, h *SecurityHeaders) error {
	if d.NextArg() {
		return d.Errf("csp takes a block of directives, one per line; got %q", d.Val())
	}
	at, lines := d.Token(), 0
	for nesting := d.Nesting(); d.NextBlock(nesting); lines++ {
		if err := strayBlock(d); err != nil {
			return err
		}
		name := strings.ToLower(d.Val())
		values := d.RemainingArgs()
		if rest, ok := strings.CutPrefix(name, "-"); ok {
			if len(values) > 0 {
				return d.Errf("-%s removes the directive and takes no value", rest)
			}
			if !csp.KnownDirective(rest) {
				return d.Errf("cannot remove unknown CSP directive %q; expected one of: %s", rest, strings.Join(csp.KnownDirectives(), ", "))
			}
			h.CSPRemove = append(h.CSPRemove, rest)
			if err := cspTwice(h.CSP, h.CSPRemove); err != nil {
				return d.WrapErr(err)
			}
			if err := h.reportConflict(); err != nil {
				return d.Errf("%v", err)
			}
			continue
		}
		if err := csp.ValidateDirective(name, values); err != nil {
			return d.Errf("%v", err)
		}
		h.CSP = append(h.CSP, csp.Directive{Name: name, Values: values})
		if err := cspTwice(h.CSP, h.CSPRemove); err != nil {
			return d.WrapErr(err)
		}
		if err := h.reportConflict(); err != nil {
			return d.Errf("%v", err)
		}
	}
	if lines == 0 {
		return errorAt(at, errors.New("csp: expected a block of directives, one per line (script-src 'nonce' 'strict-dynamic', -upgrade-insecure-requests); an empty one changes nothing"))
	}
	return nil
}

// parseInjectNonce reads `inject_nonce placeholder <secret> | tags [{ cache_control ... }]`.
func parseInjectNonce(d *caddyfile.Dispenser, h *SecurityHeaders) error {
	c := &InjectNonceConfig{}
	if !d.NextArg() {
		return d.Errf("inject_nonce: expected placeholder <secret> or tags")
	}
	switch c.Mode = d.Val(); c.Mode {
	case "placeholder":
		if !d.NextArg() {
			return d.Errf("inject_nonce placeholder needs the placeholder: inject_nonce placeholder {env.CSP_NONCE_PLACEHOLDER}")
		}
		c.Placeholder = d.Val()
		if !isPlaceholder(c.Placeholder) && len(c.Placeholder) < csp.MinPlaceholderLen {
			return d.Errf("inject_nonce placeholder is %d characters; it is a secret: use at least %d random characters", len(c.Placeholder), csp.MinPlaceholderLen)
		}
		if !isPlaceholder(c.Placeholder) {
			if err := csp.ValidatePlaceholder(c.Placeholder); err != nil {
				return d.Errf("%v", err)
			}
		}
	case "tags":
	default:
		return d.Errf("inject_nonce mode %q: expected placeholder or tags", c.Mode)
	}
	if d.NextArg() {
		return d.Errf("inject_nonce: unexpected %q", d.Val())
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		if err := strayBlock(d); err != nil {
			return err
		}
		if c.CacheControl != "" && d.Val() == "cache_control" {
			return d.Err("inject_nonce: cache_control is given twice")
		}
		switch d.Val() {
		case "cache_control":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.Err("cache_control: expected a Cache-Control value (no-store, \"private, no-store\"), or off")
			}
			c.CacheControl = strings.Join(args, " ")
			if err := checkCacheControl(c.CacheControl); err != nil {
				return d.WrapErr(err)
			}
		default:
			return d.Errf("unknown inject_nonce subdirective %q; expected cache_control", d.Val())
		}
	}
	h.InjectNonce = c
	return nil
}

// headerArg parses one value from allowed, or off.
func headerArg(field func(*SecurityHeaders) *string, allowed []string) func(*caddyfile.Dispenser, *SecurityHeaders) error {
	return func(d *caddyfile.Dispenser, h *SecurityHeaders) error {
		name := d.Val()
		v, err := wantArg(d, name, "one of "+strings.Join(allowed, ", ")+", or off")
		if err != nil {
			return err
		}
		if v != off {
			if v, err = csp.OneOf(name, v, allowed); err != nil {
				return d.Errf("%v, or off", err)
			}
		}
		*field(h) = v
		return nil
	}
}

// optionalOnOff reads an optional on|off argument of the subdirective name (as errors call
// it); the bare subdirective means on.
func optionalOnOff(d *caddyfile.Dispenser, name string, dst **bool) error {
	on := true
	if d.CountRemainingArgs() > 0 {
		var err error
		if on, err = onOff(d, name); err != nil {
			return err
		}
	}
	*dst = &on
	return nil
}
