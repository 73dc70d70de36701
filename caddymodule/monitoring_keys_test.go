package caddymodule

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/swarmsec/caddy-hardening/internal/testcaddy"
)

// TestMonitoringAPIKeysFromRuntimePlaceholders: Kubernetes deployments keep secrets in
// environment variables or mounted files; `api_keys {env.MONITORING_KEYS}` was refused at
// adapt time ("API key digest \"{env.MONITORING_KEYS}\": expected sha256:..."), though the
// project's other secrets take {env.*}. It is now resolved at load, a variable may hold
// several digests, and one that is unset (or holds a key instead of its digest) is refused by
// its name, without quoting what it holds.
func TestMonitoringAPIKeysFromRuntimePlaceholders(t *testing.T) {
	k1, d1 := newKey(t)
	k2, d2 := newKey(t)
	k3, d3 := newKey(t)
	k4, d4 := newKey(t)
	t.Setenv("HARDENING_TEST_MON_KEYS", d1+", "+d2)
	file := filepath.Join(t.TempDir(), "monitoring_keys")
	if err := os.WriteFile(file, []byte(d3+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cf, base := monitoringSite(t, "", fmt.Sprintf("api_keys {env.HARDENING_TEST_MON_KEYS} {file.%s}\napi_keys %s", file, d4))
	c := testcaddy.StartCaddy(t, cf)
	for i, k := range []string{k1, k2, k3, k4} {
		if a := call(t, "GET", base+"metrics", k); !strings.Contains(a.body, `"system":`) {
			t.Errorf("key %d shows no detail: %d %.200s", i+1, a.code, a.body)
		}
	}
	unknown, _ := newKey(t)
	if a := call(t, "GET", base+"metrics", unknown); a.body != "{\"status\":\"pass\"}\n" {
		t.Errorf("an unknown key shows more than the status word: %.200s", a.body)
	}

	for _, tc := range []struct{ name, value, want string }{
		{"unset", "", "api_keys {env.HARDENING_TEST_MON_KEYS_2} resolves to nothing"},
		{"a key, not its digest", d1 + " " + k1, "api_keys {env.HARDENING_TEST_MON_KEYS_2}: item 2 of 2 is not a sha256:<64 hex digits> digest"},
	} {
		if tc.value != "" {
			t.Setenv("HARDENING_TEST_MON_KEYS_2", tc.value)
		}
		bad, _ := monitoringSite(t, "", "api_keys {env.HARDENING_TEST_MON_KEYS_2}")
		err := c.Load(bad)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: load error %v, want %q", tc.name, err, tc.want)
		} else if strings.Contains(err.Error(), k1) {
			t.Errorf("%s: the error quotes the key: %v", tc.name, err)
		}
	}
}
