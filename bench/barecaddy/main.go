// Command barecaddy is plain Caddy v2.11.9 with its standard modules only: the baseline of
// bench/run.sh. It is a module of its own so that its dependency versions are Caddy's, not
// raised by caddy-hardening's or caddy-ratelimit's requirements.
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"
)

func main() {
	caddycmd.Main()
}
