package caddymodule

import (
	"fmt"
	"strings"
)

// features names every feature flag of the `hardening` app and what it switches. A disabled
// feature's handlers pass requests to the next handler untouched (security_headers in
// placeholder mode still redacts its placeholder).
var features = map[string]string{
	"rate_limit":       "policy_rate_limit",
	"security_headers": "security_headers",
	"csp_report":       "csp_report",
	"path_guard":       "path_guard",
	"ip_classes":       "the ip_class matcher and {http.vars.ip_class} (every client is default)",
	"detection":        "automatic suspicious-client detection",
	"upstream_breaker": "upstream_breaker",
	"monitoring":       "monitoring",
}

func checkFeature(name string) error {
	if _, ok := features[name]; !ok {
		return fmt.Errorf("unknown feature %q; known features: %s", name, strings.Join(sortedKeys(features), ", "))
	}
	return nil
}

// instead is, per feature, the way to stage or loosen it in production without switching it
// off (features.disabled's fix).
var instead = map[string]string{
	"rate_limit":       "a `shadow` policy counts and logs what it would refuse",
	"security_headers": "`report_only` sends the policy without enforcing it",
	"csp_report":       "keep it on: reports are bounded (64 KiB) and sampled, and never reach the upstream",
	"path_guard":       "`allow <reason>` lets one rule's paths through",
	"ip_classes":       "remove the prefixes you doubt from `ip_classes`",
	"detection":        "`detection { shadow }` scores and logs without banning",
	"upstream_breaker": "a higher `consecutive_failures` or `failure_ratio`",
}

// reportDisabledFeatures warns, in production, of each security feature switched off: its
// handlers pass every request through, a state `caddy hardening check --strict` must catch
// before it ships (monitoring has its own finding, at the handler it disables).
func (a *App) reportDisabledFeatures() {
	for _, name := range sortedKeys(instead) {
		if on, set := a.Features[name]; set && !on {
			_ = a.Report(Finding{Code: "features.disabled", Severity: Warning, Module: "hardening", Config: "apps.hardening.features." + name,
				Message: "feature " + name + " is off in production: " + features[name] + " passes every request through",
				Fix:     "remove `" + name + " off` from the features block; to stage it instead: " + instead[name]}, Production)
		}
	}
}
