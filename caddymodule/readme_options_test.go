package caddymodule

import (
	"os"
	"regexp"
	"sort"
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
	words := parserKeywords(t)
	if len(words) < 80 {
		t.Fatalf("only %d keywords found: the walk no longer sees the parsers", len(words))
	}
	var missing []string
	for w, file := range words {
		q := regexp.QuoteMeta(w)
		// `name`, `name value`, or a Caddyfile line starting with the name.
		re := regexp.MustCompile("`" + q + "[` ]|(?m)^\\s*#?\\s*" + q + "($|[\\s{])")
		if !re.Match(raw) {
			missing = append(missing, w+" ("+file+")")
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Fatalf("README.md lacks %d option(s) the parsers accept: %v", len(missing), missing)
	}
}
