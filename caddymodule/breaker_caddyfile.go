package caddymodule

import (
	"errors"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/swarmsec/caddy-hardening/breaker"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("upstream_breaker", parseUpstreamBreaker)
	httpcaddyfile.RegisterDirectiveOrder("upstream_breaker", httpcaddyfile.Before, "reverse_proxy")
}

func parseUpstreamBreaker(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	ub := new(UpstreamBreaker)
	if err := ub.unmarshal(h); err != nil {
		return nil, err
	}
	return ub, nil
}

// UnmarshalCaddyfile sets up the breaker from Caddyfile tokens (without a fallback block,
// which needs the HTTP Caddyfile adapter's helper; the directive parser handles it):
//
//	upstream_breaker [<matcher>] <name> {
//		consecutive_failures <n>
//		failure_ratio <0..1>
//		min_requests <n>
//		interval <duration>
//		open_for <duration>
//		half_open_requests <n>
//		failure_status <code|class>...
//		slow_threshold <duration>
//		shared
//		sync_interval <duration>
//		critical
//		fallback {
//			<handler directives>
//		}
//	}
//
// Every subdirective is optional; see the JSON fields for the defaults. Every upstream_breaker
// of one name must have the same settings in effect but the fallback (one name is one
// breaker): under the HTTP Caddyfile adapter, a second one with others is refused at its line.
func (h *UpstreamBreaker) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	return h.unmarshal(httpcaddyfile.Helper{Dispenser: d})
}

func (h *UpstreamBreaker) unmarshal(hp httpcaddyfile.Helper) error {
	d := hp.Dispenser
	d.Next() // the directive
	directive := *d
	if !d.NextArg() {
		return d.Err("upstream_breaker: expected a breaker name (letters, digits, '.', '_', '-')")
	}
	h.Name = d.Val()
	if err := breaker.ValidateName(h.Name); err != nil {
		if len(h.Name) > 2 && h.Name[0] == '{' && h.Name[len(h.Name)-1] == '}' { // a runtime placeholder
			hint := "a placeholder is not replaced here (the name is fixed when the config loads, for metrics, health and Redis)"
			if v, ok := strings.CutPrefix(h.Name[1:len(h.Name)-1], "env."); ok {
				hint += "; for an environment variable write {$" + v + "}, which the Caddyfile adapter replaces"
			}
			return d.Errf("breaker name %q: %s", h.Name, hint)
		}
		return d.WrapErr(err)
	}
	if d.NextArg() {
		return d.Errf("upstream_breaker takes one name, then a block; unexpected %q", d.Val())
	}
	seen := map[string]caddyfile.Dispenser{} // each subdirective's position, for later errors
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		if err := strayBlock(d); err != nil {
			return err
		}
		name := d.Val()
		if _, dup := seen[name]; dup {
			return d.Errf("upstream_breaker: %s is given twice", name)
		}
		seen[name] = *d
		if name == "fallback" {
			if hp.State == nil && hp.BlockState == nil { // not under the HTTP Caddyfile adapter
				return d.Err("upstream_breaker: fallback needs the HTTP Caddyfile adapter")
			}
			if err := h.parseFallback(hp); err != nil {
				return err
			}
			continue
		}
		if err := h.parseSubdirective(d, name); err != nil {
			return err
		}
	}
	if at, ok := seen["min_requests"]; ok && h.FailureRatio == 0 {
		return at.Errf("upstream_breaker %s: min_requests applies to failure_ratio, which is not set", h.Name)
	}
	// The bounds are provisioning's own (one set of rules), reported here with the line.
	if err := h.validate(); err != nil {
		var se *breaker.SettingError
		if errors.As(err, &se) {
			if at, ok := seen[se.Setting]; ok {
				return at.Errf("upstream_breaker %s: %v", h.Name, err)
			}
		}
		return d.Errf("upstream_breaker %s: %v", h.Name, err)
	}
	return h.checkSameName(hp, directive, seen)
}

// adaptedBreakersKey keeps, in the adapter's state, the first upstream_breaker of each name.
const adaptedBreakersKey = "hardening.upstream_breaker.first"

// adaptedBreaker is the first upstream_breaker of a name in the Caddyfile: its settings in
// effect, and where it and each setting it writes out are.
type adaptedBreaker struct {
	settings []breakerSetting
	at       string            // file:line of the directive
	lines    map[string]string // setting -> file:line, for those written out
}

// checkSameName refuses an upstream_breaker whose name an earlier one of the Caddyfile has with
// other settings, at the line of the differing setting (or of the directive, for a default),
// naming the earlier one's line. Provision checks it too, for JSON configs and for named routes,
// which the adapter parses apart from the sites (hp.State is not shared with them).
func (h *UpstreamBreaker) checkSameName(hp httpcaddyfile.Helper, directive caddyfile.Dispenser, seen map[string]caddyfile.Dispenser) error {
	if hp.State == nil {
		return nil // not under the HTTP Caddyfile adapter
	}
	settings, _ := h.settings() // validated
	mine := h.inEffect(settings)
	first, _ := hp.State[adaptedBreakersKey].(map[string]adaptedBreaker)
	if first == nil {
		first = map[string]adaptedBreaker{}
		hp.State[adaptedBreakersKey] = first
	}
	prev, ok := first[h.Name]
	if !ok {
		lines := make(map[string]string, len(seen))
		for name, at := range seen {
			lines[name] = position(at)
		}
		first[h.Name] = adaptedBreaker{settings: mine, at: position(directive), lines: lines}
		return nil
	}
	name, va, vb, differ := firstDifference(prev.settings, mine)
	if !differ {
		return nil
	}
	at := directive
	if d, ok := seen[name]; ok {
		at = d
	}
	// The first one's places go in parentheses: the error's own place is the one after the
	// last comma (Caddy adds the end of an enclosing handle or route block after it).
	firstAt := prev.at
	if l, ok := prev.lines[name]; ok {
		file, _, chain := splitPosition(prev.at)
		if lf, line, lchain := splitPosition(l); lf == file && lchain == chain {
			l = "line " + line
		}
		firstAt += ", " + name + " on " + l
	}
	return at.Errf("upstream_breaker %s is configured twice with different settings: %s is %s here and %s in the first upstream_breaker %s (%s); %s: expected the same settings, or another name",
		h.Name, name, vb, va, h.Name, firstAt, sameNameRule)
}

// position is the file:line of the dispenser's token, with the import chain that brought it
// (as Caddy's errors give it: a snippet's line alone would not say which import it was).
func position(d caddyfile.Dispenser) string {
	return strings.TrimPrefix(d.WrapErr(errors.New("")).Error(), ", at ")
}

// splitPosition is a position's file, line and import chain (empty when there is none).
func splitPosition(p string) (file, line, chain string) {
	at, chain, _ := strings.Cut(p, " import chain ")
	i := strings.LastIndexByte(at, ':')
	return at[:i], at[i+1:], chain
}

func (h *UpstreamBreaker) parseSubdirective(d *caddyfile.Dispenser, name string) error {
	switch name {
	// Values are only read here; their bounds are checked with the whole block (validate). A
	// zero, which in JSON means the default, is refused: leave the line out instead.
	case "consecutive_failures", "min_requests", "half_open_requests":
		v, err := wantArg(d, name, "a whole number above 0")
		if err != nil {
			return err
		}
		n, err := strconv.Atoi(v)
		if errors.Is(err, strconv.ErrRange) {
			return d.Errf("%s: %q is too large: expected a whole number from 1 to 1000000", name, v)
		}
		if err != nil || n <= 0 {
			return d.Errf("%s: expected a whole number above 0, got %q", name, v)
		}
		*map[string]*int{"consecutive_failures": &h.ConsecutiveFailures, "min_requests": &h.MinRequests,
			"half_open_requests": &h.HalfOpenRequests}[name] = n
	case "failure_ratio":
		v, err := wantArg(d, name, "a number above 0 and at most 1 (0.5 is half the requests)")
		if err != nil {
			return err
		}
		r, err := strconv.ParseFloat(v, 64)
		if err != nil || !(r > 0) {
			return d.Errf("failure_ratio: expected a number above 0 and at most 1 (0.5 is half the requests), got %q", v)
		}
		h.FailureRatio = r
	case "interval", "open_for", "slow_threshold", "sync_interval":
		v, err := wantArg(d, name, "a positive duration such as 500ms, 30s or 1m")
		if err != nil {
			return err
		}
		dur, err := caddy.ParseDuration(v)
		if err != nil && durationOverflows(v) {
			return d.Errf("%s: %q is too long: %s", name, v, durationLimit)
		}
		if err != nil || dur <= 0 {
			return d.Errf("%s: expected a positive duration such as 500ms, 30s or 1m, got %q", name, v)
		}
		*map[string]*caddy.Duration{"interval": &h.Interval, "open_for": &h.OpenFor,
			"slow_threshold": &h.SlowThreshold, "sync_interval": &h.SyncInterval}[name] = caddy.Duration(dur)
	case "failure_status":
		args := d.RemainingArgs()
		if len(args) == 0 {
			return d.Err("failure_status: expected one or more status codes (503) or classes (5xx)")
		}
		h.FailureStatus = args
	case "shared", "critical":
		if err := noValue(d, name); err != nil {
			return err
		}
		if name == "shared" {
			h.Shared = true
		} else {
			h.Critical = true
		}
	default:
		return d.Errf("unknown upstream_breaker subdirective %q; expected one of: %s", name, strings.Join([]string{
			"consecutive_failures", "failure_ratio", "min_requests", "interval", "open_for", "half_open_requests",
			"failure_status", "slow_threshold", "shared", "sync_interval", "critical", "fallback"}, ", "))
	}
	return nil
}

// parseFallback reads `fallback { ... }` as a list of routes, like `handle` does.
func (h *UpstreamBreaker) parseFallback(hp httpcaddyfile.Helper) error {
	d := hp.Dispenser
	if d.CountRemainingArgs() > 0 {
		d.NextArg()
		return d.Errf("fallback takes no argument, only a block of handler directives; unexpected %q", d.Val())
	}
	line := *d
	handler, err := httpcaddyfile.ParseSegmentAsSubroute(hp.WithDispenser(d.NewFromNextSegment()))
	if err != nil {
		return err
	}
	sub, ok := handler.(*caddyhttp.Subroute)
	if !ok || len(sub.Routes) == 0 {
		return line.Err("fallback: expected a block of handler directives, such as respond, redir or reverse_proxy")
	}
	h.Fallback = sub.Routes
	return nil
}

// Interface guard.
var _ caddyfile.Unmarshaler = (*UpstreamBreaker)(nil)
