package caddymodule

import (
	"fmt"
	"strings"
)

// Environment is the deployment stage. Every caddy-hardening module picks its defaults from it:
// production is strict, development relaxes what local tooling needs.
type Environment string

// The environments the `hardening` app accepts.
const (
	Production  Environment = "production"
	Staging     Environment = "staging"
	Development Environment = "development"
)

var environments = []Environment{Production, Staging, Development}

// ParseEnvironment accepts exactly production, staging or development.
func ParseEnvironment(s string) (Environment, error) {
	for _, e := range environments {
		if s == string(e) {
			return e, nil
		}
	}
	return "", fmt.Errorf("environment %q: expected one of production, staging, development", s)
}

// IsProduction reports whether the strictest defaults apply.
func (e Environment) IsProduction() bool { return e == Production }

// isPlaceholder reports whether s is left for Caddy's replacer at load time ({env.X}, {file.X}).
func isPlaceholder(s string) bool {
	return strings.Contains(s, "{") && strings.Contains(s, "}")
}
