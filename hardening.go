// Package hardening is the xcaddy entry point of caddy-hardening: importing it registers every
// caddy-hardening module with Caddy.
//
//	xcaddy build v2.11.9 --with github.com/swarmsec/caddy-hardening
package hardening

import (
	// The Caddy adapter: apps, handlers, matchers, Caddyfile directives and subcommands.
	_ "github.com/swarmsec/caddy-hardening/caddymodule"
)
