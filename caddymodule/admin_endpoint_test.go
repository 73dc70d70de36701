package caddymodule

import (
	"testing"

	"github.com/caddyserver/caddy/v2"
)

// TestAdminEndpointOf: the unban command reaches the admin endpoint as Caddy starts it from
// the `admin` settings: its address (placeholders replaced, a wildcard reached on localhost,
// a Unix socket without its permission bits), and the Host and Origin headers it accepts.
func TestAdminEndpointOf(t *testing.T) {
	t.Setenv("HARDENING_TEST_ADMIN", "127.0.0.1:2777")
	const path = "/hardening/ipclass/detected/192.0.2.7"
	for _, tc := range []struct {
		admin      *caddy.AdminConfig
		name, curl string
	}{
		{nil, caddy.DefaultAdminListen, "curl -X DELETE http://" + caddy.DefaultAdminListen + path},
		{&caddy.AdminConfig{Listen: "127.0.0.1:2999"}, "127.0.0.1:2999", "curl -X DELETE http://127.0.0.1:2999" + path},
		{&caddy.AdminConfig{Listen: "[::1]:2999"}, "[::1]:2999", "curl -X DELETE http://[::1]:2999" + path},
		{&caddy.AdminConfig{Listen: ":2999"}, ":2999", "curl -X DELETE http://localhost:2999" + path},
		{&caddy.AdminConfig{Listen: "0.0.0.0:2999"}, "0.0.0.0:2999", "curl -X DELETE http://localhost:2999" + path},
		{&caddy.AdminConfig{Listen: "{env.HARDENING_TEST_ADMIN}"}, "127.0.0.1:2777", "curl -X DELETE http://127.0.0.1:2777" + path},
		{&caddy.AdminConfig{Listen: "unix//run/caddy/admin.sock"}, "unix//run/caddy/admin.sock",
			"curl -X DELETE --unix-socket /run/caddy/admin.sock http://localhost" + path},
		{&caddy.AdminConfig{Listen: "unix//run/caddy/admin.sock|0220"}, "unix//run/caddy/admin.sock",
			"curl -X DELETE --unix-socket /run/caddy/admin.sock http://localhost" + path},
		{&caddy.AdminConfig{Listen: "unix//run/my caddy/admin.sock"}, "unix//run/my caddy/admin.sock",
			"curl -X DELETE --unix-socket '/run/my caddy/admin.sock' http://localhost" + path},
		{&caddy.AdminConfig{Listen: "127.0.0.1:2999", Origins: []string{"admin.internal:2999"}}, "127.0.0.1:2999",
			"curl -X DELETE -H 'Host: admin.internal:2999' http://127.0.0.1:2999" + path},
		{&caddy.AdminConfig{Listen: "127.0.0.1:2999", Origins: []string{"https://admin.internal", "127.0.0.1:2999"}}, "127.0.0.1:2999",
			"curl -X DELETE http://127.0.0.1:2999" + path},
		{&caddy.AdminConfig{Listen: "127.0.0.1:2999", EnforceOrigin: true}, "127.0.0.1:2999",
			"curl -X DELETE -H 'Origin: http://127.0.0.1:2999' http://127.0.0.1:2999" + path},
		{&caddy.AdminConfig{Listen: "127.0.0.1:2999", EnforceOrigin: true, Origins: []string{"https://admin.internal"}}, "127.0.0.1:2999",
			"curl -X DELETE -H 'Host: admin.internal' -H 'Origin: https://admin.internal' http://127.0.0.1:2999" + path},
		{&caddy.AdminConfig{Listen: "fd/3"}, "fd/3", ""},
		{&caddy.AdminConfig{Disabled: true}, "off", ""},
		{&caddy.AdminConfig{Listen: "127.0.0.1:2999-3000"}, "", ""}, // Caddy refuses a range
	} {
		e := adminEndpointOf(tc.admin)
		if e.name != tc.name || e.unban("192.0.2.7") != tc.curl {
			t.Errorf("%+v: %q, %q; want %q, %q", tc.admin, e.name, e.unban("192.0.2.7"), tc.name, tc.curl)
		}
	}
}
