package csp

import (
	"strings"
	"testing"
)

// FuzzParse: a policy Parse accepts serializes to one header line (no CR, LF or NUL: the
// value goes into a response header) that parses back to the same policy.
func FuzzParse(f *testing.F) {
	for _, name := range []string{PresetStrict, PresetDevelopment} {
		if p, ok := Preset(name); ok {
			f.Add(p.String())
		}
	}
	f.Add("default-src 'self'; script-src 'nonce' 'strict-dynamic'; object-src 'none'")
	f.Add("upgrade-insecure-requests; report-uri /csp; frame-ancestors 'none'")
	f.Add("img-src data: https://cdn.example.com; base-uri 'none';;")
	f.Fuzz(func(t *testing.T, s string) {
		p, err := Parse(s)
		if err != nil {
			return
		}
		out := p.String()
		if strings.ContainsAny(out, "\r\n\x00") {
			t.Fatalf("Parse(%q) serializes to %q: not one header line", s, out)
		}
		q, err := Parse(out)
		if err != nil {
			t.Fatalf("Parse(%q) = %q, which does not parse: %v", s, out, err)
		}
		if q.String() != out {
			t.Fatalf("round trip changed %q to %q", out, q.String())
		}
		if tpl := p.Compile(); p.UsesNonce() && !strings.Contains(tpl.Render("abc"), "'nonce-abc'") {
			t.Fatalf("policy %q uses the nonce but renders without it", out)
		}
	})
}
