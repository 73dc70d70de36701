package caddymodule

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"

	"github.com/caddyserver/caddy/v2"
)

// One breaker name is one breaker, so every upstream_breaker of a name must have the same
// settings in effect (all but the fallback). A Caddyfile is refused when adapted, at the line
// of the second one (checkSameName); a JSON config, and a Caddyfile's named route (which the
// adapter parses apart from the sites), when provisioned, naming both handlers' places in the
// config (sameNameConflict).

// sameNameRule says why one name's handlers must agree, and what to do.
const sameNameRule = "routes with one breaker name share one breaker, so only their fallback may differ"

// firstDifference is the first setting on which two inEffect lists disagree, with both values.
func firstDifference(a, b []breakerSetting) (name, va, vb string, differ bool) {
	for i := range a {
		if a[i].value != b[i].value {
			return a[i].name, a[i].value, b[i].value, true
		}
	}
	return "", "", "", false
}

// sameNameConflict refuses a breaker whose name this configuration already gave other
// settings (prev). It names the two handlers by their place in the JSON config
// (apps.http.servers.srv0.routes.1.handle.0), the first in config order and the first that
// differs from it; without them, by the two values only.
func (h *UpstreamBreaker) sameNameConflict(ctx caddy.Context, prev, mine []breakerSetting) error {
	places := breakerPlaces(ctx, h.Name)
	for _, p := range places[min(1, len(places)):] {
		if name, va, vb, differ := firstDifference(places[0].settings, p.settings); differ {
			return fmt.Errorf("upstream_breaker %s is configured twice with different settings: %s is %s at %s and %s at %s; %s: give them the same settings or different names",
				h.Name, name, va, places[0].path, vb, p.path, sameNameRule)
		}
	}
	name, va, vb, _ := firstDifference(prev, mine)
	return fmt.Errorf("upstream_breaker %s is configured twice with different settings: %s is %s in one route and %s in another; %s: give them the same settings or different names",
		h.Name, name, va, vb, sameNameRule)
}

// breakerPlace is one upstream_breaker handler of the JSON config and its settings in effect.
type breakerPlace struct {
	path     string
	settings []breakerSetting
}

// breakerPlaces lists, in config order (arrays in order, object keys sorted), the
// upstream_breaker handlers named name anywhere in the http app's JSON (routes, subroutes,
// fallbacks, error routes, named routes), which Caddy keeps while it provisions that app.
func breakerPlaces(ctx caddy.Context, name string) []breakerPlace {
	var tree any
	if err := json.Unmarshal(configuredAppJSON(ctx, "http"), &tree); err != nil {
		return nil
	}
	var out []breakerPlace
	var walk func(v any, path string)
	walk = func(v any, path string) {
		switch v := v.(type) {
		case map[string]any:
			if v["handler"] == "upstream_breaker" && v["name"] == name {
				raw, _ := json.Marshal(v)
				var b UpstreamBreaker
				if json.Unmarshal(raw, &b) == nil {
					if s, err := b.settings(); err == nil {
						out = append(out, breakerPlace{path, b.inEffect(s)})
					}
				}
			}
			keys := make([]string, 0, len(v))
			for k := range v {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			for _, k := range keys {
				walk(v[k], path+"."+k)
			}
		case []any:
			for i, e := range v {
				walk(e, path+"."+strconv.Itoa(i))
			}
		}
	}
	walk(tree, "apps.http")
	return out
}
