package caddymodule

import (
	"strings"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("path_guard", parsePathGuard)
	httpcaddyfile.RegisterDirectiveOrder("path_guard", httpcaddyfile.Before, "header")
}

func parsePathGuard(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	g := new(PathGuard)
	err := g.UnmarshalCaddyfile(h.Dispenser)
	return g, err
}

// UnmarshalCaddyfile sets up the handler:
//
//	path_guard [<matcher>] {
//		allow encoded_slash|path_params|invalid_utf8...
//		suspicious_action none|block
//		signals on|off
//		merge_slashes on|off
//		windows on|off
//	}
//
// Without a block: refuse hostile paths, merge empty segments, feed the detector, never block
// by class.
func (g *PathGuard) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.Errf("path_guard takes no arguments, only an optional block; unexpected %q", d.Val())
	}
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		if err := strayBlock(d); err != nil {
			return err
		}
		name := d.Val()
		if seen[name] {
			return d.Errf("path_guard: %s is given twice", name)
		}
		seen[name] = true
		switch name {
		case "allow":
			args := d.RemainingArgs()
			known := strings.Join(sortedKeys(pathGuardAllows), ", ")
			if len(args) == 0 {
				return d.Errf("allow: expected one or more of: %s", known)
			}
			for _, a := range args {
				if _, ok := pathGuardAllows[a]; !ok {
					return d.Errf("allow: unknown %q; expected one of: %s", a, known)
				}
			}
			g.Allow = args
		case "suspicious_action":
			v, err := wantArg(d, name, "none or block")
			if err != nil {
				return err
			}
			if v != "none" && v != "block" {
				return d.Errf("suspicious_action: expected none or block, got %q", v)
			}
			g.SuspiciousAction = v
		case "signals":
			on, err := onOff(d, name)
			if err != nil {
				return err
			}
			g.Signals = &on
		case "merge_slashes":
			on, err := onOff(d, name)
			if err != nil {
				return err
			}
			g.MergeSlashes = &on
		case "windows":
			on, err := onOff(d, name)
			if err != nil {
				return err
			}
			g.Windows = on
		default:
			return d.Errf("unknown path_guard subdirective %q; expected allow, suspicious_action, signals, merge_slashes or windows", name)
		}
	}
	return nil
}

// Interface guard.
var _ caddyfile.Unmarshaler = (*PathGuard)(nil)
