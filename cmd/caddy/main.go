// Command caddy is a Caddy build with the standard modules and caddy-hardening's.
//
//	go run ./cmd/caddy run --config Caddyfile.example
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/swarmsec/caddy-hardening"
)

func main() {
	caddycmd.Main()
}
