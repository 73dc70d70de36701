package caddymodule

import (
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("csp_report", parseCSPReport)
	httpcaddyfile.RegisterDirectiveOrder("csp_report", httpcaddyfile.Before, "handle")
}

func parseCSPReport(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	c := new(CSPReport)
	return c, c.UnmarshalCaddyfile(h.Dispenser)
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens:
//
//	csp_report [<matcher>] {
//		max_body_size <bytes>
//	}
//
// Give it its own path, the one report_uri names: `csp_report /csp-report`.
func (c *CSPReport) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the directive name
	if d.NextArg() {
		return d.Errf("csp_report takes no arguments (only a matcher, e.g. csp_report /csp-report); got %q", d.Val())
	}
	seen := map[string]bool{}
	for d.NextBlock(0) {
		if err := strayBlock(d); err != nil {
			return err
		}
		if seen[d.Val()] {
			return d.Errf("csp_report: %s is given twice", d.Val())
		}
		seen[d.Val()] = true
		switch d.Val() {
		case "max_body_size":
			n, err := intArg(d, "max_body_size", 1024, 1<<20)
			if err != nil {
				return err
			}
			c.MaxBodySize = int64(n)
		default:
			return d.Errf("unknown csp_report subdirective %q; expected max_body_size", d.Val())
		}
	}
	return nil
}
