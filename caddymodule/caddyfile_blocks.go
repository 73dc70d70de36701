package caddymodule

import (
	"strings"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// strayBlock refuses a block opened after a subdirective that takes none (`shadow {`,
// `threshold 5 {`). The block loop would otherwise read the `{` as the next subdirective's
// name and answer `unknown subdirective "{"` with the list of names, which says nothing of the
// mistake. Call it first in each block loop, on the token NextBlock gave.
func strayBlock(d *caddyfile.Dispenser) error {
	if d.Val() != "{" {
		return nil
	}
	// The words before the `{` on its line: the subdirective that took no block.
	back := *d
	line := d.Line()
	var words []string
	for back.Prev() && back.Line() == line && back.Val() != "{" && back.Val() != "}" {
		words = append([]string{back.Val()}, words...)
	}
	if len(words) == 0 {
		return d.Err("unexpected '{': a block opens on the line of what it belongs to; expected a subdirective")
	}
	return d.Errf("%s takes no block; unexpected '{' after %q (expected its values on one line, and the next subdirective on the next line)", words[0], strings.Join(words, " "))
}

// unclosedSecretPlaceholder reports a `{env.` or `{file.` with no `}` after it ("{env.PASS"):
// Caddy's replacer leaves such text as it is, so the typo would be sent as the password or
// header value itself. Other braces are left alone: a literal password may hold one.
func unclosedSecretPlaceholder(v string) (string, bool) {
	for _, open := range []string{"{env.", "{file."} {
		rest := v
		for {
			i := strings.Index(rest, open)
			if i < 0 {
				break
			}
			rest = rest[i+1:]
			if j := strings.IndexAny(rest, "{}"); j < 0 || rest[j] == '{' {
				return "{" + strings.SplitN(rest, "{", 2)[0], true
			}
		}
	}
	return "", false
}
