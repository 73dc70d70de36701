package caddymodule

import (
	"os"
	"testing"
)

// TestReadmeHasEveryOption fails when a subdirective or keyword a Caddyfile parser accepts is
// not in README.md's configuration reference as code (`name`, or a line of a ```caddyfile
// block): the README is the reference a reader looks an option up in, and an option only
// Caddyfile.example shows has no stated default or behaviour.
func TestReadmeHasEveryOption(t *testing.T) {
	raw, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	// `name`, `name value`, or a Caddyfile line starting with the name.
	missing := missingKeywords(t, raw, func(q string) string { return "`" + q + "[` ]|(?m)^\\s*#?\\s*" + q + "($|[\\s{])" })
	if len(missing) > 0 {
		t.Fatalf("README.md lacks %d option(s) the parsers accept: %v", len(missing), missing)
	}
}
