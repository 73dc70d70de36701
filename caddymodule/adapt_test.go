package caddymodule

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddytest"
)

// goldenSecret is the password golden files use; no error may show it.
const goldenSecret = "hunter2"

// TestCaddyfileAdapt runs the golden files in testdata/caddyfile_adapt: a Caddyfile, a line of
// dashes, then either the expected JSON or `error: <text the error must contain>`. Error texts
// include ", at Caddyfile:<line>": every refusal names the file and the line.
func TestCaddyfileAdapt(t *testing.T) {
	files, err := filepath.Glob("testdata/caddyfile_adapt/*.caddyfiletest")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files: %v", err)
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".caddyfiletest"), func(t *testing.T) {
			raw, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			input, expected, ok := strings.Cut(string(raw), "\n----------\n")
			if !ok {
				t.Fatalf("%s: no ---------- separator", f)
			}
			expected = strings.TrimSpace(expected)
			if want, isErr := strings.CutPrefix(expected, "error: "); isErr {
				_, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(input), map[string]any{"filename": "Caddyfile"})
				if err == nil {
					t.Fatalf("adapted without error; want an error containing %q", want)
				}
				if strings.Contains(err.Error(), goldenSecret) {
					t.Fatalf("the error shows the password: %v", err)
				}
				if !strings.Contains(err.Error(), want) {
					t.Fatalf("error:\n  %v\nwant it to contain:\n  %s", err, want)
				}
				return
			}
			if !caddytest.CompareAdapt(t, f, input, "caddyfile", expected) {
				t.Fatal("adapted JSON differs from the golden file (diff above)")
			}
		})
	}
}
