package caddymodule

import (
	"bytes"
	"reflect"

	"github.com/caddyserver/caddy/v2"
)

// Caddy keeps the configuration a context belongs to in the context's unexported field cfg
// and offers no accessor to the parts modules here need (the admin settings, an app's JSON
// while it is provisioned). Reflection reads them without writing; the values it reaches are
// read-only, so they are copied out field by field. A Caddy that renames the field makes
// these helpers report nothing, and the tests that depend on them fail
// (TestDashboardUnbanUsesTheConfiguredAdmin, TestBreakerSameNameDifferentSettingsRefused).

// contextConfig is ctx's *caddy.Config as a reflect.Value (not nil), or false.
func contextConfig(ctx caddy.Context) (reflect.Value, bool) {
	cfg := reflect.ValueOf(ctx).FieldByName("cfg")
	if !cfg.IsValid() || cfg.Kind() != reflect.Pointer || cfg.Type().Elem() != reflect.TypeFor[caddy.Config]() || cfg.IsNil() {
		return reflect.Value{}, false
	}
	return cfg.Elem(), true
}

// configuredAppJSON is the JSON of app name in ctx's configuration, as long as Caddy keeps it:
// until the app is provisioned (Caddy drops it then). nil otherwise.
func configuredAppJSON(ctx caddy.Context, name string) []byte {
	cfg, ok := contextConfig(ctx)
	if !ok {
		return nil
	}
	apps := cfg.FieldByName("AppsRaw")
	if apps.Kind() != reflect.Map || apps.IsNil() {
		return nil
	}
	raw := apps.MapIndex(reflect.ValueOf(name))
	if !raw.IsValid() || raw.Kind() != reflect.Slice {
		return nil
	}
	return bytes.Clone(raw.Bytes())
}
