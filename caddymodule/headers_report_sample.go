package caddymodule

import (
	"slices"
	"strings"
)

// sampledDirectives are the directives whose violations carry a sample of the blocked code
// (an inline script or style, an event handler, an eval'd string) when they hold
// 'report-sample'.
var sampledDirectives = []string{"script-src", "script-src-elem", "script-src-attr", "style-src", "style-src-elem", "style-src-attr"}

// reportNoSample suggests 'report-sample' (an info) where the policy sends violation reports:
// without it, browsers leave the report's sample empty, and a csp_violation event of an
// inline script does not tell an injection from one of the site's own scripts that lacks its
// nonce.
func (h *SecurityHeaders) reportNoSample(app *App, at string) {
	p := h.built.policy
	_, uri := p.Get("report-uri")
	_, to := p.Get("report-to")
	if !uri && !to {
		return
	}
	var lacking []string
	for _, name := range sampledDirectives {
		v, ok := p.Get(name)
		if !ok || len(v) == 1 && v[0] == "'none'" { // 'none' stands alone: nothing to add
			continue
		}
		if !slices.ContainsFunc(v, func(s string) bool { return strings.EqualFold(s, "'report-sample'") }) {
			lacking = append(lacking, name)
		}
	}
	if len(lacking) == 0 {
		return
	}
	_ = app.Report(Finding{Code: "csp.no_report_sample", Severity: Info, Module: "security_headers",
		Config: optionPath(at, "csp."+lacking[0]),
		Message: "the policy sends violation reports, but without 'report-sample' in " + strings.Join(lacking, ", ") +
			": browsers leave the sample of a blocked inline script or style empty, so a csp_violation event does not tell an injected script from one of the site's own that lacks its nonce",
		Fix: "add 'report-sample' to " + strings.Join(lacking, " and ") + " (for the strict preset, the csp block lines `script-src 'nonce' 'strict-dynamic' 'report-sample'` and `style-src 'self' 'nonce' 'report-sample'`): " +
			"browsers then report the first 40 characters of the blocked code"})
}
