package caddymodule

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/swarmsec/caddy-hardening/ipclass"
)

func init() {
	caddy.RegisterModule(MatchIPClass{})
}

// MatchIPClass matches requests whose client is in one of the given IP classes (trusted,
// default, suspicious), as the `hardening` app classifies it from Caddy's client IP: the
// server's trusted_proxies are respected, a spoofed X-Forwarded-For from another peer is not.
// The class is also available as {http.vars.ip_class}.
type MatchIPClass struct {
	// Classes to match: any of trusted, default, suspicious.
	Classes []string `json:"classes,omitempty"`

	app  *App
	want [3]bool
}

// UnmarshalJSON reads the matcher's object, strictly as Caddy decodes modules, and says what
// is expected of the list form `"ip_class": ["trusted"]` (path and host take a list; this
// matcher an object, as remote_ip does).
func (m *MatchIPClass) UnmarshalJSON(b []byte) error {
	if t := bytes.TrimSpace(b); len(t) > 0 && t[0] == '[' {
		return errors.New(`ip_class: expected an object, {"classes": ["trusted"]}, not a list`)
	}
	type plain MatchIPClass // without this method
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	return dec.Decode((*plain)(m))
}

// CaddyModule returns the Caddy module information.
func (MatchIPClass) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.matchers.ip_class",
		New: func() caddy.Module { return new(MatchIPClass) },
	}
}

// UnmarshalCaddyfile sets up the matcher:
//
//	ip_class <class>...
//
// Classes: trusted, default, suspicious. Several matchers in one set are merged. The matcher
// takes no block.
func (m *MatchIPClass) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	for d.Next() {
		args := d.RemainingArgs()
		if d.Next() {
			if d.Val() == "{" {
				return d.Err("ip_class takes its classes on one line and no block: @name ip_class trusted|default|suspicious...")
			}
			d.Prev()
		}
		if len(args) == 0 {
			return d.Err("ip_class: expected one or more classes: trusted, default, suspicious")
		}
		for _, a := range args {
			if _, err := ipclass.ParseClass(a); err != nil {
				return d.WrapErr(err)
			}
		}
		m.Classes = append(m.Classes, args...)
	}
	return nil
}

// Provision gets the app that classifies clients.
func (m *MatchIPClass) Provision(ctx caddy.Context) error {
	app, err := hardeningApp(ctx)
	if err != nil {
		return err
	}
	m.app = app
	for _, name := range m.Classes {
		c, err := ipclass.ParseClass(name)
		if err != nil {
			return err
		}
		m.want[c] = true
	}
	return nil
}

// Validate refuses a matcher without classes.
func (m *MatchIPClass) Validate() error {
	if len(m.Classes) == 0 {
		return errors.New("ip_class: no class to match")
	}
	return nil
}

// MatchWithError reports whether the client's class is one of the matcher's. During TLS early
// data the client address is not verified yet: like Caddy's remote_ip matcher, it answers
// 425 Too Early instead of matching on an address that could be spoofed.
func (m *MatchIPClass) MatchWithError(r *http.Request) (bool, error) {
	if earlyData(r) {
		return false, caddyhttp.Error(http.StatusTooEarly, errors.New("TLS handshake not complete, client IP cannot be verified"))
	}
	return m.want[m.app.ClassOf(r)], nil
}

// Match is MatchWithError without the error.
func (m *MatchIPClass) Match(r *http.Request) bool {
	ok, _ := m.MatchWithError(r)
	return ok
}

// Interface guards.
var (
	_ caddyhttp.RequestMatcherWithError = (*MatchIPClass)(nil)
	_ caddy.Provisioner                 = (*MatchIPClass)(nil)
	_ caddy.Validator                   = (*MatchIPClass)(nil)
	_ caddyfile.Unmarshaler             = (*MatchIPClass)(nil)
)
