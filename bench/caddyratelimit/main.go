// Command caddyratelimit is plain Caddy v2.11.9 with its standard modules and
// github.com/mholt/caddy-ratelimit v0.1.0: the comparison point of bench/ratelimit.sh. It is a
// module of its own so that caddy-hardening does not depend on the plugin it is compared with.
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/mholt/caddy-ratelimit"
)

func main() {
	caddycmd.Main()
}
