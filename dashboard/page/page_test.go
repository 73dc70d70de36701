package page

import (
	"bytes"
	"regexp"
	"strings"
	"testing"

	"github.com/swarmsec/caddy-hardening/csp"
)

func TestRenderPutsTheNonceOnTheScriptAndTheStyle(t *testing.T) {
	nonce := csp.NewNonce()
	page := Render(nonce)
	if bytes.Contains(page, []byte(placeholder)) {
		t.Fatal("a {{nonce}} placeholder is left in the page")
	}
	for _, tag := range []string{"<style nonce=\"" + nonce + "\">", "<script nonce=\"" + nonce + "\">"} {
		if c := bytes.Count(page, []byte(tag)); c != 1 {
			t.Errorf("%q appears %d times, want once", tag, c)
		}
	}
	// Every <script> and <style> carries the nonce: one without would be blocked by the CSP.
	for _, m := range regexp.MustCompile(`<(script|style)\b[^>]*>`).FindAll(page, -1) {
		if !bytes.Contains(m, []byte(`nonce="`+nonce+`"`)) {
			t.Errorf("%s has no nonce", m)
		}
	}
	if other := Render("b"); bytes.Contains(other, []byte(nonce)) {
		t.Fatal("Render kept an earlier nonce")
	}
	if want := len(indexHTML) + 2*(len(nonce)-len(placeholder)); len(page) != want {
		t.Fatalf("len = %d, want %d", len(page), want)
	}
}

// TestPageHasNothingTheCSPBlocks reads the page as the CSP will: no inline handler, no style
// attribute, no external resource, no eval, no HTML built from strings.
func TestPageHasNothingTheCSPBlocks(t *testing.T) {
	page := string(Render("n"))
	for name, re := range map[string]string{
		"an inline event handler":            `(?i)<[^>]+\son[a-z]+\s*=`,
		"a style attribute":                  `(?i)<[^>]+\sstyle\s*=`,
		"setAttribute('style')":              `setAttribute\(\s*['"]style`,
		"innerHTML/outerHTML":                `(?i)(inner|outer)HTML|insertAdjacentHTML|document\.write`,
		"eval":                               `\beval\s*\(|new Function\b|setTimeout\(\s*['"]|setInterval\(\s*['"]`,
		"an external URL":                    `(?i)(src|href)\s*=\s*["']?(https?:)?//`,
		"a javascript: URL":                  `(?i)javascript:`,
		"an @import or a font":               `(?i)@import|@font-face|\burl\(`,
		"a form that posts somewhere":        `(?i)<form[^>]+(action|method)=`,
		"a key in a URL (query or fragment)": `(?i)[?&#](key|token|api_key)=`,
	} {
		if m := regexp.MustCompile(re).FindString(page); m != "" {
			t.Errorf("the page has %s: %q", name, m)
		}
	}
	if !strings.Contains(page, "sessionStorage") || !strings.Contains(page, "'hardening.dashboard.key'") {
		t.Error("the key is not kept in sessionStorage under hardening.dashboard.key")
	}
}

func TestCSPIsTheContractsPolicy(t *testing.T) {
	want := "default-src 'none'; script-src 'nonce-N'; style-src 'nonce-N'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'; require-trusted-types-for 'script'; trusted-types 'none'"
	if got := CSP("N"); got != want {
		t.Fatalf("CSP = %q\nwant  %q", got, want)
	}
}

func BenchmarkRender(b *testing.B) {
	nonce := csp.NewNonce()
	b.ReportAllocs()
	for b.Loop() {
		_ = Render(nonce)
	}
}
