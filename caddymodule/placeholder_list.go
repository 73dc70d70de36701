package caddymodule

import (
	"strings"

	"github.com/caddyserver/caddy/v2"
)

// resolveList resolves the placeholders of each item and splits what they hold on commas and
// white space, so one `{env.VAR}` may hold several addresses or prefixes
// (`10.0.0.1:26379,10.0.0.2:26379`); an item that resolves to nothing adds nothing.
func resolveList(repl *caddy.Replacer, items []string) []string {
	var out []string
	for _, item := range items {
		out = append(out, strings.FieldsFunc(repl.ReplaceKnown(item, ""), func(r rune) bool {
			return r == ',' || r == ' ' || r == '\t' || r == '\n'
		})...)
	}
	return out
}
