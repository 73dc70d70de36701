package caddymodule

import (
	"bytes"
	"encoding/json"
	"io"
	"strings"
	"testing"
)

// TestCheckUnloadedConfigNamesNoEnvironment: a configuration that could not be loaded (a
// Caddyfile its adapter refuses, JSON that does not decode) was reported as "environment
// production: 1 error(s)" in the text and "environment": "production" in --json, as if a
// production configuration had been checked; a staging one refused by its adapter read as
// production too. The report now says the configuration was not loaded and gives no
// environment (null in --json); a configuration that decodes keeps the environment it names,
// also when Caddy refuses it.
func TestCheckUnloadedConfigNamesNoEnvironment(t *testing.T) {
	dir := t.TempDir()
	bad := dir + "/Caddyfile"
	// A staging configuration whose Caddyfile its adapter refuses (a subdirective given twice).
	if err := writeFile(bad, "{\n\tadmin off\n\thardening {\n\t\tenvironment staging\n\t}\n}\n"+
		"http://127.0.0.1:9 {\n\tbind 127.0.0.1\n\tmonitoring {\n\t\tdashboard on\n\t\tdashboard off\n\t}\n}\n"); err != nil {
		t.Fatal(err)
	}
	undecodable := dir + "/caddy.json"
	if err := writeFile(undecodable, `{"apps":`); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) string {
		cmd := checkCommand()
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetErr(io.Discard)
		cmd.SetArgs(args)
		if err := cmd.Execute(); err == nil {
			t.Errorf("%q exits 0", args)
		}
		return out.String()
	}
	for _, file := range []string{bad, undecodable} {
		text := run("--config", file)
		if strings.Contains(text, "environment ") || !strings.Contains(text, "the configuration was not loaded: 1 error(s), 0 warning(s), 0 info(s)") {
			t.Errorf("%s: text report names an environment or not that nothing was loaded:\n%s", file, text)
		}
		out := run("--config", file, "--json")
		var rep map[string]any
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			t.Fatalf("%s: --json: %v\n%s", file, err, out)
		}
		if env, ok := rep["environment"]; !ok || env != nil {
			t.Errorf("%s: --json environment %#v (present %t), want null", file, env, ok)
		}
	}

	// Decoded, then refused by Caddy: the environment is the one the configuration names.
	for _, cfg := range []string{
		`{"storage": {"module": "nosuch"}, "apps": {"hardening": {"environment": "staging"}}}`,
		`{"admin": {"disabled": true}, "apps": {"hardening": {"environment": "staging"}, "http": {"servers": {"s": {"listen": ["127.0.0.1:9"], "routes": [{"handle": [
			{"handler": "security_headers", "hsts": {"max_age": 63072000, "include_subdomains": false, "preload": true}}]}]}}}}}`,
	} {
		rep := CheckConfig([]byte(cfg))
		if rep.Environment != Staging || rep.Errors != 1 {
			t.Errorf("%s: environment %q, %d error(s); want staging, 1", cfg, rep.Environment, rep.Errors)
		}
	}
}
