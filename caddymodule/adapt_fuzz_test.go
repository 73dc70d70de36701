package caddymodule

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
)

// FuzzCaddyfileAdapt feeds mutated Caddyfiles (seeded with every golden file's input and the
// example) to the adapter with all our directives and the hardening global option: malformed
// input must come back as an error, never a panic. (That our errors name the file and line is
// checked by the golden files: a mutated Caddyfile also fails in Caddy's own code, whose
// errors need not, e.g. a site address no certificate can cover.)
func FuzzCaddyfileAdapt(f *testing.F) {
	files, _ := filepath.Glob("testdata/caddyfile_adapt/*.caddyfiletest")
	for _, name := range files {
		raw, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		input, _, _ := strings.Cut(string(raw), "\n----------\n")
		f.Add(input)
	}
	if raw, err := os.ReadFile("../Caddyfile.example"); err == nil {
		f.Add(string(raw))
	}
	adapter := caddyconfig.GetAdapter("caddyfile")
	f.Fuzz(func(t *testing.T, input string) {
		if len(input) > 16<<10 {
			return
		}
		_, _, _ = adapter.Adapt([]byte(input), map[string]any{"filename": "Caddyfile"})
	})
}
