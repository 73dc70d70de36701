package caddymodule

import (
	"net/http"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/swarmsec/caddy-hardening/ipclass"
)

// ipClassVarKey is the request variable that holds the client's class: {http.vars.ip_class}.
const ipClassVarKey = "ip_class"

// ClassOf is the client's IP class, computed once per request from Caddy's client IP (so
// trusted_proxies are respected) and cached in the request's vars as {http.vars.ip_class}.
func (a *App) ClassOf(r *http.Request) ipclass.Class {
	if c, ok := caddyhttp.GetVar(r.Context(), ipClassVarKey).(ipclass.Class); ok {
		return c
	}
	c := ipclass.Default // static and detected classes arrive with issue #3
	caddyhttp.SetVar(r.Context(), ipClassVarKey, c)
	return c
}
