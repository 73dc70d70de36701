package caddymodule

import (
	"fmt"
	"testing"

	"github.com/swarmsec/caddy-hardening/internal/testcaddy"
	"github.com/swarmsec/caddy-hardening/internal/testenv"
)

// TestStaticClassesMatchNAT64Clients: an IPv4 client translated by NAT64's well-known prefix
// (64:ff9b::a00:1 is 10.0.0.1, as an IPv6-only host behind SIIT sees it) is in the static
// classes of its IPv4 address, as detection and the rate-limit keys already took it: a trusted
// 10.0.0.0/8 trusts it and a suspicious 203.0.113.0/24 holds it. Before, both lists matched
// only the address as written, so a known-abusive IPv4 range reached an IPv6-only host as
// default. A prefix written in IPv6 still matches the address as written.
func TestStaticClassesMatchNAT64Clients(t *testing.T) {
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
			suspicious 203.0.113.0/24 64:ff9b::c633:6400/120
		}
	}
}
http://%s {
	bind 127.0.0.1
	@sus ip_class suspicious
	respond @sus "matched {http.vars.ip_class}"
	respond "class {http.vars.ip_class}"
}
`, addr))
	for _, tc := range []struct{ client, want string }{
		{"64:ff9b::a00:1", "class trusted"},          // 10.0.0.1
		{"64:ff9b::cb00:7107", "matched suspicious"}, // 203.0.113.7
		{"64:ff9b::c633:6407", "matched suspicious"}, // 198.51.100.7, listed in its IPv6 form
		{"64:ff9b::c000:207", "class default"},       // 192.0.2.7
		{"64:ff9b:1::a00:1", "class default"},        // not the well-known /96
		{"2001:db8::a00:1", "class default"},
	} {
		if _, _, body := rawGet(t, addr, "/", "X-Forwarded-For: "+tc.client); body != tc.want {
			t.Errorf("%s: %q, want %q", tc.client, body, tc.want)
		}
	}
}
