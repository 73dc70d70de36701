package caddymodule

import (
	"fmt"
	"testing"

	"github.com/swarmsec/caddy-hardening/internal/testcaddy"
	"github.com/swarmsec/caddy-hardening/internal/testenv"
)

// TestIPClassMatcherUnderNot: the ip_class matcher inverted by `not`, on one line and in a
// block beside another matcher, matches every class but the named ones, from Caddy's client
// IP (a forwarded address only from a trusted proxy).
func TestIPClassMatcherUnderNot(t *testing.T) {
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	testcaddy.StartCaddy(t, fmt.Sprintf(`{
	admin off
	servers {
		trusted_proxies static 127.0.0.1/32
		trusted_proxies_strict
	}
	hardening {
		environment development
		ip_classes {
			trusted 10.0.0.0/8
			suspicious 203.0.113.0/24
		}
	}
}
http://%s {
	bind 127.0.0.1
	@outsiders not ip_class trusted
	@plain {
		not ip_class trusted suspicious
		path /plain
	}
	respond @plain "plain {http.vars.ip_class}"
	respond @outsiders "outsider {http.vars.ip_class}"
	respond "insider {http.vars.ip_class}"
}
`, addr))
	for _, tc := range []struct{ client, path, want string }{
		{"10.1.2.3", "/", "insider trusted"},
		{"10.1.2.3", "/plain", "insider trusted"},
		{"203.0.113.9", "/", "outsider suspicious"},
		{"203.0.113.9", "/plain", "outsider suspicious"},
		{"198.51.100.1", "/", "outsider default"},
		{"198.51.100.1", "/plain", "plain default"},
		{"64:ff9b::a00:1", "/", "insider trusted"},
	} {
		if _, _, body := rawGet(t, addr, tc.path, "X-Forwarded-For: "+tc.client); body != tc.want {
			t.Errorf("%s %s: %q, want %q", tc.client, tc.path, body, tc.want)
		}
	}
}
