package caddymodule

import (
	"fmt"
	"testing"

	"github.com/swarmsec/caddy-hardening/internal/testcaddy"
	"github.com/swarmsec/caddy-hardening/internal/testenv"
)

// TestIPClassVarInExpressions: {http.vars.ip_class} is the class's name wherever Caddy reads
// it, CEL included. Before, the variable held the class as a number type of this module: the
// replacer printed its name, but an `expression {http.vars.ip_class} == "suspicious"` compared a
// number with a string and never matched, so a route meant for suspicious clients served them
// as anyone. A `vars ip_class trusted` of the config (a string) still changes no class.
func TestIPClassVarInExpressions(t *testing.T) {
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	testcaddy.StartCaddy(t, fmt.Sprintf(`{
	hardening {
		ip_classes {
			suspicious 127.0.0.1
		}
	}
}
http://%s {
	bind 127.0.0.1
	@forged header X-Forge 1
	vars @forged ip_class trusted
	path_guard
	@sus expression {http.vars.ip_class} == "suspicious"
	@insider ip_class trusted
	handle @insider {
		respond "trusted {http.vars.ip_class}"
	}
	handle @sus {
		respond "expression matched {http.vars.ip_class}"
	}
	respond "other {http.vars.ip_class}"
}
`, addr))
	if _, _, body := rawGet(t, addr, "/"); body != "expression matched suspicious" {
		t.Errorf("a suspicious client: %q, want the expression to match", body)
	}
	if _, _, body := rawGet(t, addr, "/", "X-Forge: 1"); body != "expression matched suspicious" {
		t.Errorf("a config's vars ip_class trusted: %q, want the class the address has", body)
	}
}
