package caddymodule

import "testing"

func TestLinkWithNonce(t *testing.T) {
	const n = "Tk+/a="
	for _, tc := range []struct{ in, want string }{
		{`</app.js>; rel=preload; as=script`, `</app.js>; rel=preload; as=script; nonce="Tk+/a="`},
		{`</a.css>; rel="preload stylesheet"; as=style, </font.woff2>; rel=preload; as=font; crossorigin`,
			`</a.css>; rel="preload stylesheet"; as=style; nonce="Tk+/a=", </font.woff2>; rel=preload; as=font; crossorigin; nonce="Tk+/a="`},
		{`</m.js>; REL=ModulePreload; nonce="stale"`, `</m.js>; REL=ModulePreload; nonce="Tk+/a="`},
		// Commas and semicolons inside the URI or a quoted string split nothing.
		{`</a,b;c.js>; title="x, rel=preload; y"; rel=preload`, `</a,b;c.js>; title="x, rel=preload; y"; rel=preload; nonce="Tk+/a="`},
		// Only the first rel counts (RFC 8288 §3.3); other relations stay as they are.
		{`</x>; rel=canonical; rel=preload`, `</x>; rel=canonical; rel=preload`},
		{`<https://cdn.example>; rel=preconnect`, `<https://cdn.example>; rel=preconnect`},
		{`</next>; rel="next", </p.js>; rel=prefetch`, `</next>; rel="next", </p.js>; rel=prefetch`},
		{`garbage without rel`, `garbage without rel`},
		{`</q>; rel="preload\"x"`, `</q>; rel="preload\"x"`},
	} {
		got, changed := linkWithNonce(tc.in, n)
		if got != tc.want || changed != (tc.in != tc.want) {
			t.Errorf("linkWithNonce(%q) = %q, %v; want %q", tc.in, got, changed, tc.want)
		}
	}
}
