package caddymodule

import (
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/swarmsec/caddy-hardening/ratelimit"
)

func init() {
	appSubdirectives["policy"] = parsePolicy
	appSubdirectives["adaptive"] = parseAdaptive
	appSubdirectives["rate_limit"] = parseRateLimitStore
	repeatableSubdirectives["policy"] = true
	httpcaddyfile.RegisterHandlerDirective("policy_rate_limit", parsePolicyRateLimitCaddyfile)
	httpcaddyfile.RegisterDirectiveOrder("policy_rate_limit", httpcaddyfile.After, "header")
}

// parsePolicy reads one named policy of the hardening global option:
//
//	policy <name> {
//		limit <n>/<period> [burst <n>]
//		trusted <n>/<period> [burst <n>] | unlimited | deny
//		suspicious <n>/<period> [burst <n>] | unlimited | deny
//		key <placeholders>
//		adaptive [on|off]
//		shadow [on|off]
//	}
//
// Placeholder shorthands work in key as in a site block ({client_ip}, {header.X-API-Key}).
func parsePolicy(d *caddyfile.Dispenser, a *App) error {
	if !d.NextArg() {
		return d.Err("policy: expected a name, e.g. policy authentication { limit 5/1m }")
	}
	name := d.Val()
	if !policyNamePattern.MatchString(name) {
		return d.Errf("policy %q: a name is lowercase letters, digits, '_', '.' and '-', starting with a letter or digit, at most 64 bytes", name)
	}
	if _, dup := a.Policies[name]; dup {
		return d.Errf("policy %s is defined twice", name)
	}
	if d.NextArg() {
		return d.Errf("policy %s takes a block; unexpected %q", name, d.Val())
	}
	p := new(PolicyConfig)
	line := *d // the policy's name, for what the whole block lacks
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		if err := strayBlock(d); err != nil {
			return err
		}
		sub := d.Val()
		if seen[sub] {
			return d.Errf("policy %s: %s is given twice", name, sub)
		}
		seen[sub] = true
		var err error
		switch sub {
		case "limit":
			p.Limit, err = parseLimitRow(d, name, sub, false)
		case "trusted":
			p.Trusted, err = parseLimitRow(d, name, sub, true)
		case "suspicious":
			p.Suspicious, err = parseLimitRow(d, name, sub, true)
		case "key":
			p.Key, err = parseKeyArg(d, "policy "+name+" key")
		case "adaptive":
			err = optionalOnOff(d, "policy "+name+" adaptive", &p.Adaptive)
		case "shadow":
			err = optionalOnOff(d, "policy "+name+" shadow", &p.Shadow)
		case "ipv6_prefix":
			p.IPv6Prefix, err = intArg(d, "policy "+name+" ipv6_prefix", 1, 128)
		default:
			return d.Errf("policy %s: unknown subdirective %q; expected limit, trusted, suspicious, key, adaptive, shadow or ipv6_prefix", name, sub)
		}
		if err != nil {
			return err
		}
	}
	if p.Limit == nil {
		if _, builtin := builtinPolicies[name]; !builtin {
			return line.Errf("policy %s: a limit is required (e.g. limit 100/1m), since %s is not a built-in policy", name, name)
		}
	}
	if a.Policies == nil {
		a.Policies = make(map[string]*PolicyConfig)
	}
	a.Policies[name] = p
	return nil
}

// parseLimitRow reads `<n>/<period> [burst <n>]`, or for a class row `unlimited` or `deny`.
func parseLimitRow(d *caddyfile.Dispenser, policy, sub string, classRow bool) (*LimitRow, error) {
	if !d.NextArg() {
		if classRow {
			return nil, d.Errf("policy %s %s: expected <n>/<period> [burst <n>], unlimited or deny", policy, sub)
		}
		return nil, d.Errf("policy %s %s: expected <n>/<period> [burst <n>], e.g. 5/1m burst 5", policy, sub)
	}
	r := new(LimitRow)
	switch v := d.Val(); {
	case classRow && v == "unlimited":
		r.Unlimited = true
	case classRow && v == "deny":
		r.Deny = true
	case classRow && !strings.Contains(v, "/"):
		// parseRate would say only "expected <requests>/<period>" of a row that also takes
		// unlimited and deny (`suspicious block` for `suspicious deny`).
		return nil, d.Errf("policy %s %s: expected <n>/<period> [burst <n>], unlimited or deny; got %q", policy, sub, v)
	default:
		n, per, err := parseRate(v)
		if err != nil {
			return nil, d.Errf("policy %s %s: %v", policy, sub, err)
		}
		r.Rate, r.Per = n, caddy.Duration(per)
		if d.NextArg() {
			if d.Val() != "burst" || !d.NextArg() {
				return nil, d.Errf("policy %s %s: after the rate, expected burst <n>", policy, sub)
			}
			b, err := strconv.ParseInt(d.Val(), 10, 64)
			if errors.Is(err, strconv.ErrRange) {
				// Name the bound, as a burst that fits an int64 but not 366 days is told.
				if max := (ratelimit.Limit{Rate: n, Period: per}).MaxBurst(); max > 0 {
					return nil, d.Errf("policy %s %s: burst %q is too large: at %d per %v a full burst replenishes within 366 days only up to %d", policy, sub, d.Val(), n, per, max)
				}
				return nil, d.Errf("policy %s %s: burst %q is too large", policy, sub, d.Val())
			}
			if err != nil || b <= 0 {
				return nil, d.Errf("policy %s %s: burst must be a positive integer, got %q", policy, sub, d.Val())
			}
			r.Burst = b
		}
		if _, err := r.resolve(); err != nil {
			return nil, d.Errf("policy %s %s: %v", policy, sub, err)
		}
	}
	if d.NextArg() {
		if r.Unlimited || r.Deny {
			word := "unlimited"
			if r.Deny {
				word = "deny"
			}
			return nil, d.Errf("policy %s %s: %s takes no rate or burst; unexpected %q", policy, sub, word, d.Val())
		}
		return nil, d.Errf("policy %s %s: expected nothing after <n>/<period> burst <n>; unexpected %q", policy, sub, d.Val())
	}
	return r, nil
}

// parseKeyArg reads one key template, expanding Caddyfile placeholder shorthands (global
// options are read before Caddy expands them in site blocks) and checking it.
func parseKeyArg(d *caddyfile.Dispenser, what string) (string, error) {
	v, err := wantArg(d, what, "a key template such as {client_ip} or {header.X-API-Key}")
	if err != nil {
		return "", err
	}
	if v == "" {
		return "", d.Errf("%s: expected a key template such as {client_ip} or {header.X-API-Key}, got an empty string", what)
	}
	seg := caddyfile.Segment{{Text: v}}
	httpcaddyfile.NewShorthandReplacer().ApplyToSegment(&seg)
	v = seg[0].Text
	if err := checkKeyTemplate(v); err != nil {
		return "", d.Errf("%s %q: %v", what, v, err)
	}
	return v, nil
}

// parseAdaptive reads the load-adaptive settings:
//
//	adaptive {
//		cpu_target <0..1>
//		min_factor <0..1>
//		inflight_target <n>
//		interval <duration>
//	}
func parseAdaptive(d *caddyfile.Dispenser, a *App) error {
	if d.NextArg() {
		return d.Errf("adaptive takes a block; unexpected %q", d.Val())
	}
	cfg := new(AdaptiveConfig)
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		if err := strayBlock(d); err != nil {
			return err
		}
		sub := d.Val()
		if seen[sub] {
			return d.Errf("adaptive: %s is given twice", sub)
		}
		seen[sub] = true
		switch sub {
		case "cpu_target", "min_factor":
			want := "a number above 0 and below 1" // a CPU target of 1 is never exceeded
			if sub == "min_factor" {
				want = "a number above 0 and at most 1"
			}
			v, err := wantArg(d, "adaptive "+sub, want)
			if err != nil {
				return err
			}
			f, ok := finiteNumber(v)
			if !ok || !(f > 0 && f <= 1) || (sub == "cpu_target" && f == 1) {
				return d.Errf("adaptive %s: expected %s, got %q", sub, want, v)
			}
			if sub == "cpu_target" {
				cfg.CPUTarget = f
			} else {
				cfg.MinFactor = f
			}
		case "inflight_target":
			n, err := intArg(d, "adaptive inflight_target", 1, 1<<30)
			if err != nil {
				return err
			}
			cfg.InFlightTarget = n
		case "interval":
			dur, err := durationArg(d, "adaptive interval")
			if err != nil {
				return err
			}
			if dur < minAdaptiveInterval {
				return d.Errf("adaptive interval %v is shorter than %v (the CPU reading needs time to mean something, and sampling burns CPU)", dur, minAdaptiveInterval)
			}
			if dur > maxAdaptiveInterval {
				return d.Errf("adaptive interval %v is longer than %v (%s)", dur, maxAdaptiveInterval, maxAdaptiveIntervalWhy)
			}
			cfg.Interval = caddy.Duration(dur)
		default:
			return d.Errf("adaptive: unknown subdirective %q; expected cpu_target, min_factor, inflight_target or interval", sub)
		}
	}
	a.Adaptive = cfg
	return nil
}

// parseRateLimitStore reads where the limiter keeps its state:
//
//	rate_limit {
//		store redis|memory
//		max_keys <n>
//		store_timeout <duration>
//		on_store_failure fallback|allow|deny
//		leases on|off
//	}
func parseRateLimitStore(d *caddyfile.Dispenser, a *App) error {
	if d.NextArg() {
		return d.Errf("rate_limit takes a block; unexpected %q", d.Val())
	}
	cfg := new(RateLimitConfig)
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		if err := strayBlock(d); err != nil {
			return err
		}
		sub := d.Val()
		if seen[sub] {
			return d.Errf("rate_limit: %s is given twice", sub)
		}
		seen[sub] = true
		switch sub {
		case "store":
			v, err := wantArg(d, "rate_limit store", "redis or memory")
			if err != nil {
				return err
			}
			if v != "redis" && v != "memory" {
				return d.Errf("rate_limit store: expected redis or memory, got %q", v)
			}
			if v == "redis" {
				at := *d // this line, for the check once the whole block is read
				a.parseChecks = append(a.parseChecks, func() error {
					if a.Redis == nil {
						return at.Err("rate_limit store redis: the hardening block has no redis; add `redis <url>` to it, or use store memory")
					}
					return nil
				})
			}
			cfg.Store = v
		case "max_keys":
			n, err := intArg(d, "rate_limit max_keys", 1, 1<<31-1)
			if err != nil {
				return err
			}
			cfg.MaxKeys = n
		case "store_timeout":
			dur, err := durationArg(d, "rate_limit store_timeout")
			if err != nil {
				return err
			}
			if dur > maxStoreTimeout {
				return d.Errf("rate_limit store_timeout %s: at most %s (every request waits up to it while Redis is slow; the default is %s)", dur, maxStoreTimeout, defaultStoreTimeout)
			}
			cfg.StoreTimeout = caddy.Duration(dur)
		case "on_store_failure":
			v, err := wantArg(d, "rate_limit on_store_failure", "fallback, allow or deny")
			if err != nil {
				return err
			}
			if _, err := parseFailureMode(v); err != nil {
				return d.Errf("rate_limit on_store_failure: %v", err)
			}
			cfg.OnStoreFailure = v
		case "leases":
			on, err := onOff(d, "rate_limit leases")
			if err != nil {
				return err
			}
			cfg.DisableLeases = !on
		default:
			return d.Errf("rate_limit: unknown subdirective %q; expected store, max_keys, store_timeout, on_store_failure or leases", sub)
		}
	}
	a.RateLimit = cfg
	return nil
}

func parsePolicyRateLimitCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	m := new(PolicyRateLimit)
	line := *h.Dispenser
	line.Next() // the directive's token, for an unknown policy's line
	if err := m.UnmarshalCaddyfile(h.Dispenser); err != nil {
		return nil, err
	}
	if known := caddyfilePolicies(h); !slices.Contains(known, m.Policy) {
		return nil, line.Errf("policy_rate_limit: unknown policy %q; expected one of: %s (define others with `policy <name> { ... }` in the hardening global option)", m.Policy, strings.Join(known, ", "))
	}
	return m, nil
}

// caddyfilePolicies lists the built-in policies and those the Caddyfile's hardening global
// option defines, so an unknown name is refused with its line at adapt time.
func caddyfilePolicies(h httpcaddyfile.Helper) []string {
	names := sortedKeys(builtinPolicies)
	if opt, ok := h.Option("hardening").(httpcaddyfile.App); ok {
		var a App
		if json.Unmarshal(opt.Value, &a) == nil {
			for name := range a.Policies {
				if !slices.Contains(names, name) {
					names = append(names, name)
				}
			}
		}
	}
	slices.Sort(names)
	return names
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens:
//
//	policy_rate_limit [<matcher>] <policy> {
//		key <placeholders>
//		status <code>
//		message <text>
//		headers off
//	}
//
// The policy is one of the hardening app's policies or a built-in one (authentication,
// api_intensive, api, public, default). The block overrides, for this route only, the key, the
// refusal's status code (default 429) and detail message, and can hide the RateLimit header
// fields.
func (h *PolicyRateLimit) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the directive name
	if !d.NextArg() {
		return d.Err("policy_rate_limit: expected a policy name, e.g. policy_rate_limit authentication")
	}
	h.Policy = d.Val()
	if d.NextArg() {
		return d.Errf("policy_rate_limit takes one policy name; unexpected %q", d.Val())
	}
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		if err := strayBlock(d); err != nil {
			return err
		}
		sub := d.Val()
		if seen[sub] {
			return d.Errf("policy_rate_limit: %s is given twice", sub)
		}
		seen[sub] = true
		switch sub {
		case "key":
			k, err := parseKeyArg(d, "policy_rate_limit key")
			if err != nil {
				return err
			}
			h.Key = k
		case "status":
			n, err := intArg(d, "policy_rate_limit status", 400, 599)
			if err != nil {
				return err
			}
			h.StatusCode = n
		case "message":
			v, err := wantArg(d, "policy_rate_limit message", "the refusal's detail text, in quotes")
			if err != nil {
				return err
			}
			if err := checkMessageTemplate(v); err != nil {
				return d.Errf("policy_rate_limit message %q: %v", v, err)
			}
			h.Message = v
		case "headers":
			on, err := onOff(d, "policy_rate_limit headers")
			if err != nil {
				return err
			}
			h.HideHeaders = !on
		default:
			return d.Errf("policy_rate_limit: unknown subdirective %q; expected key, status, message or headers", sub)
		}
	}
	return nil
}
