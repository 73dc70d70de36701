package csp

import (
	"strings"
	"testing"
)

func TestPresetsRenderWithNonce(t *testing.T) {
	p, ok := Preset(PresetStrict)
	if !ok {
		t.Fatal("no strict preset")
	}
	if err := p.Validate(); err != nil {
		t.Fatalf("strict preset invalid: %v", err)
	}
	got := p.Compile().Render(testNonce)
	want := "default-src 'self'; script-src 'nonce-" + testNonce + "' 'strict-dynamic'; style-src 'self' 'nonce-" + testNonce +
		"'; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'; upgrade-insecure-requests"
	if got != want {
		t.Fatalf("strict:\n got  %s\n want %s", got, want)
	}
	dev, _ := Preset(PresetDevelopment)
	if err := dev.Validate(); err != nil {
		t.Fatal(err)
	}
	if _, ok := dev.Get("upgrade-insecure-requests"); ok {
		t.Error("development upgrades http://localhost")
	}
	if v, _ := dev.Get("connect-src"); strings.Join(v, " ") != "'self' ws: wss:" {
		t.Errorf("development connect-src %q", v)
	}
	// Editing a preset copy leaves the preset alone.
	p.Set("script-src", "'self'")
	if again, _ := Preset(PresetStrict); strings.Contains(again.String(), "script-src 'self'") {
		t.Error("Preset returned a shared policy")
	}
	if none, _ := Preset(PresetNone); len(none.Directives) != 0 {
		t.Error("none preset not empty")
	}
}

func TestParseAndValidate(t *testing.T) {
	cases := []struct{ policy, err string }{
		{"default-src 'self'; script-src 'nonce' 'strict-dynamic' https:; img-src * data: blob:", ""},
		{"connect-src 'self' https://api.example.com wss://*.example.com:443/path", ""},
		{"script-src 'sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU='", ""},
		{"sandbox allow-scripts allow-forms; report-uri /csp-report https://r.example/x; report-to csp-endpoint", ""},
		{"require-trusted-types-for 'script'; trusted-types app 'allow-duplicates'; upgrade-insecure-requests", ""},
		{"frame-ancestors 'self' https://partner.example", ""},
		{"scripts-src 'self'", `unknown CSP directive "scripts-src"`},
		{"block-all-mixed-content", `CSP directive "block-all-mixed-content" is obsolete: it is deprecated and browsers now block or upgrade mixed content by themselves; use upgrade-insecure-requests`},
		{"plugin-types application/pdf", `"plugin-types" is obsolete: browsers removed it along with plugins; use object-src 'none'`},
		{"referrer no-referrer", `"referrer" is obsolete: it was removed from CSP; use the Referrer-Policy header`},
		{"reflected-xss block", `"reflected-xss" is obsolete`},
		{"prefetch-src 'self'", `"prefetch-src" is obsolete`},
		{"navigate-to 'self'", `"navigate-to" is obsolete`},
		{"require-sri-for script", `"require-sri-for" is obsolete`},
		{"disown-opener", `"disown-opener" is obsolete: it was never shipped by browsers; use the Cross-Origin-Opener-Policy header`},
		{"script-src self", "without quotes is a host name; write 'self'"},
		{"script-src 'self' nonce", "without quotes is a host name; write 'nonce'"},
		{"script-src 'unsafe-everything'", "unknown keyword 'unsafe-everything'"},
		{"script-src 'none' 'self'", "'none' must be the only source"},
		{"script-src 'strict-dynamic'", "'strict-dynamic' without 'nonce' or a hash"},
		{"script-src 'nonce-abc'", "fixed nonce"},
		{"img-src 'nonce'", "'nonce' only applies"},
		{"script-src 'sha256-abc'", "bad hash source"},
		{"frame-ancestors 'unsafe-inline'", "frame-ancestors accepts only"},
		{"connect-src https://a,b", `has "," at byte 9`},
		{"report-uri /\x00", `has "\x00" at byte 1`},
		{"img-src https://bücher.example", "punycode"},
		{"connect-src https://a:99999", "bad port"},
		{"upgrade-insecure-requests 1", "takes no value"},
		{"sandbox allow-everything", "unknown flag"},
		{"report-uri javascript:x", "report-uri"},
		{"report-uri https://", "report-uri"},
		{"report-uri /r http:///r", "report-uri"},
		{"report-uri https://:443/r", "report-uri"},
		{"report-to a b", "one endpoint name"},
		{"default-src 'self'; default-src 'none'", "given twice"},
		{"img-src", "needs at least one source"},
		{"script-src 'nonce' 'nonce' 'strict-dynamic'", "source 'nonce' is given twice"},
		{"img-src 'self' https://a.example 'self'", "source 'self' is given twice"},
		{"img-src 'self' https://a.example 'SELF'", "source 'SELF' is given twice"},
		{"img-src https: HTTPS:", "source HTTPS: is given twice"},
		{"script-src 'nonce' 'strict-dynamic' 'sha256-AAAA' 'sha256-aaaa'", "bad hash source"},
		{"sandbox allow-forms allow-scripts Allow-Forms", "value Allow-Forms is given twice"},
		{"trusted-types angular angular", "value angular is given twice"},
		{"trusted-types angular Angular", ""},
		{"report-uri /r https://c.example/r /r", "value /r is given twice"},
		{"webrtc allow", "'allow' or 'block'"},
		{"trusted-types angular angular#bundler angular#unsafe-bypass goog#html @lit/x my.policy a=b 50% 'allow-duplicates'", ""},
		{"script-src 'nonce' 'strict-dynamic' 'trusted-types-eval'; require-trusted-types-for 'script'", ""},
		{"trusted-types 'none' foo", "'none' must be the only value"},
		{"script-src 'nonce' 'strict-dynamic' 'report-sha256' 'report-sha384' 'report-sha512'", ""},
		{"trusted-types angular!", `"angular!" is not a policy name`},
		{"img-src 'trusted-types-eval'", "'trusted-types-eval' only applies to script-src and default-src"},
		{"img-src https://cdn.example/img?v=2", "the query and fragment of a source"},
		{"img-src cdn.example/img#top", "the query and fragment of a source"},
	}
	for _, c := range cases {
		_, err := Parse(c.policy)
		switch {
		case c.err == "" && err != nil:
			t.Errorf("%q: unexpected error %v", c.policy, err)
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("%q: error %v, want it to contain %q", c.policy, err, c.err)
		}
	}
}

func TestTemplateWithoutNonce(t *testing.T) {
	p, _ := Parse("default-src 'self'")
	tpl := p.Compile()
	if tpl.UsesNonce() || tpl.Render("x") != "default-src 'self'" {
		t.Fatalf("got %q", tpl.Render("x"))
	}
}

func TestHSTSRules(t *testing.T) {
	cases := []struct {
		tokens []string
		value  string
		err    string
	}{
		{[]string{"max-age=63072000", "includeSubDomains", "preload"}, "max-age=63072000; includeSubDomains; preload", ""},
		{[]string{"max-age=300"}, "max-age=300", ""},
		{[]string{"max-age=63072000", "preload"}, "", "preload requires includeSubDomains"},
		{[]string{"max-age=86400", "includeSubDomains", "preload"}, "", "at least 31536000"},
		{[]string{"includeSubDomains"}, "", "needs max-age"},
		{[]string{"max-age=-1"}, "", "number of seconds"},
		{[]string{"max-age=1", "always"}, "", "unknown token"},
		{[]string{"max-age=100", "max-age=200"}, "", "max-age=200 is given twice"},
		{[]string{"max-age=100", "includeSubDomains", "includesubdomains"}, "", "includesubdomains is given twice"},
	}
	for _, c := range cases {
		h, err := ParseHSTS(c.tokens)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%v: error %v, want %q", c.tokens, err, c.err)
			}
			continue
		}
		if err != nil || h.String() != c.value {
			t.Errorf("%v: got %q, %v; want %q", c.tokens, h.String(), err, c.value)
		}
	}
}

func TestHeaderValueRules(t *testing.T) {
	if v, err := OneOf("frame_options", "deny", FrameOptionsValues); err != nil || v != "DENY" {
		t.Errorf("deny: %q %v", v, err)
	}
	if _, err := OneOf("frame_options", "ALLOW-FROM x", FrameOptionsValues); err == nil {
		t.Error("ALLOW-FROM accepted")
	}
	strict, _ := Preset(PresetStrict)
	if FrameOptionsFor(strict) != "DENY" {
		t.Error("frame-ancestors 'none' should map to DENY")
	}
	p, _ := Parse("frame-ancestors 'self'")
	if FrameOptionsFor(p) != "SAMEORIGIN" {
		t.Error("frame-ancestors 'self' should map to SAMEORIGIN")
	}
	p, _ = Parse("frame-ancestors https://a.example")
	if FrameOptionsFor(p) != "" {
		t.Error("X-Frame-Options cannot express a host list")
	}
}

func TestRenderNewNonce(t *testing.T) {
	p, _ := Preset(PresetStrict)
	tpl := p.Compile()
	policy, nonce := tpl.RenderNewNonce()
	if len(nonce) != 24 || policy != tpl.Render(nonce) {
		t.Fatalf("policy %q does not carry nonce %q", policy, nonce)
	}
	if _, n2 := tpl.RenderNewNonce(); n2 == nonce {
		t.Fatal("the nonce repeated")
	}
	if raceEnabled {
		return
	}
	if allocs := testing.AllocsPerRun(100, func() { _, _ = tpl.RenderNewNonce() }); allocs != 1 {
		t.Errorf("%v allocations; want 1 for the policy and its nonce", allocs)
	}
}
