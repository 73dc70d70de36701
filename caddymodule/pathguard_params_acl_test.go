package caddymodule

import (
	"fmt"
	"net/http"
	"slices"
	"testing"
)

// TestPathGuardAllowPathParamsACL: what the README says of `allow path_params` in front of an
// upstream that drops `;` parameters (Tomcat, Jetty, Spring): a `path /admin /admin/*` rule is
// walked around by `/admin;x/secret` and `/admin;jsessionid=1`, and the rule it recommends,
// `path_regexp (?i)^/admin(;[^/]*)?(/|$)`, holds them (also escaped, in capitals, behind //)
// and nothing else.
func TestPathGuardAllowPathParamsACL(t *testing.T) {
	upstream, seen := recordingUpstream(t)
	addr, _ := guardCaddy(t, fmt.Sprintf(`	@plain path /plain /plain/*
	respond @plain 403
	@admin path_regexp (?i)^/admin(;[^/]*)?(/|$)
	respond @admin 403
	path_guard {
		allow path_params
	}
	reverse_proxy %s
`, upstream))
	walkedAround := []string{"/plain;x/secret", "/plain;jsessionid=1"}
	passed := append(slices.Clone(walkedAround), "/administrator", "/x/admin;y/z", "/cart;jsessionid=1")
	for _, p := range passed {
		if status, _, body := rawGet(t, addr, p); status != http.StatusOK {
			t.Errorf("%q: %d %q, want 200", p, status, body)
		}
	}
	for _, p := range []string{"/admin", "/admin/secret", "/admin;x/secret", "/ADMIN;x/secret", "/admin;jsessionid=1", "/admin%3bx/secret", "//admin;x/secret"} {
		if status, _, body := rawGet(t, addr, p); status != http.StatusForbidden {
			t.Errorf("%q: %d %q, want 403 from the path_regexp rule", p, status, body)
		}
	}
	if got := seen(); !slices.Equal(got, passed) {
		t.Errorf("the upstream received %q, want %q", got, passed)
	}
}
