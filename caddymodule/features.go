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
