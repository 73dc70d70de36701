package csp

// The preset names.
const (
	PresetStrict      = "strict"
	PresetDevelopment = "development"
	PresetNone        = "none"
)

// strict is Google's "strict CSP" shape: scripts run only with this response's nonce (and what
// they load, through 'strict-dynamic'), no plugins, no <base> hijack, no framing, forms post to
// this origin only. It needs no allow-list of hosts, so it holds when a CDN is compromised.
var strict = Policy{Directives: []Directive{
	{Name: "default-src", Values: []string{"'self'"}},
	{Name: "script-src", Values: []string{NonceToken, "'strict-dynamic'"}},
	{Name: "style-src", Values: []string{"'self'", NonceToken}},
	{Name: "img-src", Values: []string{"'self'", "data:"}},
	{Name: "object-src", Values: []string{"'none'"}},
	{Name: "base-uri", Values: []string{"'none'"}},
	{Name: "frame-ancestors", Values: []string{"'none'"}},
	{Name: "form-action", Values: []string{"'self'"}},
	{Name: "upgrade-insecure-requests"},
}}

// Preset returns a copy of the named preset's policy: `strict` (production), `development`
// (strict plus what local dev servers need: hot-reload websockets, no upgrade of http://
// localhost), or `none` (an empty policy to build on). Development is meant to be sent as
// Content-Security-Policy-Report-Only; the caller decides the header.
func Preset(name string) (Policy, bool) {
	switch name {
	case PresetStrict:
		return strict.Clone(), true
	case PresetDevelopment:
		p := strict.Clone()
		p.Remove("upgrade-insecure-requests")
		p.Set("connect-src", "'self'", "ws:", "wss:")
		return p, true
	case PresetNone:
		return Policy{}, true
	}
	return Policy{}, false
}
