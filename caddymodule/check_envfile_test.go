package caddymodule

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLoadEnvFile: `caddy hardening check --envfile` reads a .env as `caddy run --envfile` does
// (Caddy v2.11.9's rules), so that both see the same values; a variable already set wins.
func TestLoadEnvFile(t *testing.T) {
	for _, tc := range []struct {
		name, file string
		want       map[string]string
		err        string
	}{
		{"plain, comments, export", "# c\n\nCKENV_A=one\nexport CKENV_B=two\n", map[string]string{"CKENV_A": "one", "CKENV_B": "two"}, ""},
		{"cut at the first #, quoted or not", "CKENV_C=pass#word\nCKENV_D=\"pa#ss\"\nCKENV_E=x # note\n", map[string]string{"CKENV_C": "pass", "CKENV_D": "pa", "CKENV_E": "x"}, ""},
		{"quoted over two lines", "CKENV_F=\"line one\nline two\"\n", map[string]string{"CKENV_F": "line one\nline two"}, ""},
		{"empty value", "CKENV_G=\n", map[string]string{"CKENV_G": ""}, ""},
		{"set already: kept", "CKENV_SET=file\n", map[string]string{"CKENV_SET": "env"}, ""},
		{"no =", "CKENV_H\n", nil, "line 1: want KEY=VALUE"},
		{"space in the key", "CKENV I=1\n", nil, "holds a space"},
		{"space before the value", "CKENV_J= 1\n", nil, "white space before the value"},
		{"no key", "=1\n", nil, "no key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("CKENV_SET", "env")
			for k := range tc.want {
				if k != "CKENV_SET" {
					t.Cleanup(func() { os.Unsetenv(k) })
				}
			}
			path := filepath.Join(t.TempDir(), ".env")
			if err := os.WriteFile(path, []byte(tc.file), 0o600); err != nil {
				t.Fatal(err)
			}
			err := loadEnvFile(path)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range tc.want {
				if got, ok := os.LookupEnv(k); !ok || got != v {
					t.Errorf("%s = %q (set: %t), want %q", k, got, ok, v)
				}
			}
		})
	}
	if err := loadEnvFile(filepath.Join(t.TempDir(), "missing")); err == nil || !strings.Contains(err.Error(), "--envfile") {
		t.Errorf("a missing file: %v", err)
	}
}
