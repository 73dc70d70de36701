package csp

import (
	"encoding/base64"
	"io"
	"regexp"
	"strings"
	"testing"

	"golang.org/x/net/html"
)

// FuzzInjector checks, for any body and any way of splitting it into writes:
//   - the output does not depend on how the body was split;
//   - only nonce attributes change: removing every nonce attribute from the output gives
//     what removing them from the input gives (after the placeholder became the nonce, or
//     '-' where the injector gave up; in Tags mode, after taking out the inserted
//     ` nonce="…"`);
//   - Go's HTML5 tokenizer (golang.org/x/net/html) finds no tag whose nonce is not the
//     response's, none that keeps one after an attribute holding a '<' (dangling markup),
//     and in Tags mode no tag with two nonces (each nonce in the output is one
//     tag's nonce);
//   - the placeholder never reaches the client.
func FuzzInjector(f *testing.F) {
	for _, s := range []string{
		`<script nonce="` + testPH + `">a()</script><script>evil()</script>`,
		`<script src=//evil x=<script nonce="` + testPH + `">`,
		`<link rel=stylesheet href=//evil a="</p><link rel="stylesheet" nonce="` + testPH + `">`,
		`<svg><style></svg><p><link rel=stylesheet href=//evil x=` + "\n" + `<link rel="stylesheet" nonce="` + testPH + `">`,
		`<svg><title>x</title><![CDATA[ > ]]><foreignObject><p></p></foreignObject></svg>`,
		`<!--<script nonce=x>--><textarea><script nonce=y></textarea>`,
		`<script><!--<script>x</script>--></script><style nonce=1>`,
		`<link rel=stylesheet href=a.css/><script nonce=` + testPH + testPH[:4],
		`<p nonce nonce=1 NONCE='2'>`, `</a nonce=1>`, `<!---->`, `<plaintext><script>`,
		`<math><mtext><table></mtext></math><style><link rel=stylesheet href=//evil x=</style></table></mtext><style></math><link rel="stylesheet" nonce="` + testPH + `">`,
		`<svg><foreignObject><p><table><td><select><style></table></p></foreignObject><script nonce="` + testPH + `">`,
		// <font> leaves SVG with color, face or size (split across writes too), not without.
		`<svg><font id=1 CoLoR=red><style><a title="</style><link rel=stylesheet href=//evil a=` + "\n" + `<link rel=stylesheet href=/a.css nonce="` + testPH + `">`,
		`<svg><font colors=1 fac=2><style></svg><p><link rel=stylesheet href=//evil x=` + "\n" + `<link rel="stylesheet" nonce="` + testPH + `">`,
		// In escaped script data, `<1` stays escaped: the first </script> is script text.
		`<script><!--<1<script></script><textarea></script><link rel=stylesheet href=//evil x=` + "\n" + `<link rel="stylesheet" nonce="` + testPH + `">`,
		`<script><!-- a<b <script></script><p nonce=x><link x=<a nonce="` + testPH + `"></script>`,
		// A placeholder in an attribute value after a '<' (a srcdoc that swallowed markup).
		`<iframe srcdoc='<script src=//evil x=` + "\n" + `<meta property="csp-nonce" nonce="` + testPH + `">'><p>` + testPH,
		// A placeholder glued to an attribute name: a '/' or '=' of the nonce splits the name.
		`<k a="+"nonce` + testPH + ` >`, `<p x` + testPH + `=1 nonce=` + testPH + `>`,
		`<!--` + testPH + `><textarea>--><p nonce=1>`,
	} {
		f.Add(s, uint8(3), false)
		f.Add(s, uint8(1), true)
	}
	// Foreign content inside a table, where the tree builder leaves the <math> at a table part,
	// or inside a <select>, where the standard's older parser ignores it (placeholder mode
	// gives up there; tags mode, for pages without user content, does not).
	for _, s := range []string{
		`<table><math><mtext><table></table></mtext><style><a title="</style><link rel=stylesheet href=//evil a=` + "\n" + `<link rel=stylesheet href=/a.css nonce="` + testPH + `">`,
		`<table><math><mtext><col></mtext><style><a title="</style><link rel=stylesheet href=//evil a=` + "\n" + `<link rel=stylesheet href=/a.css nonce="` + testPH + `">`,
		`<select><math><![CDATA[ > <script src=//evil/x.js a=` + "\n" + `<script nonce="` + testPH + `" src=/app.js></script>`,
		`<select><template></select></template><style><script src=//evil a='</style><script src='/a.js' nonce="` + testPH + `"></script>`,
	} {
		f.Add(s, uint8(3), false)
	}
	f.Fuzz(func(t *testing.T, body string, split uint8, tags bool) {
		mode, ph := Placeholder, testPH
		if tags {
			mode, ph = Tags, ""
		}
		nonce := NewNonce()
		whole := rewrite(t, mode, nonce, ph, body, 0)
		if got := rewrite(t, mode, nonce, ph, body, int(split%16)+1); got != whole {
			t.Fatalf("output depends on the writes:\n whole %q\n split %q", whole, got)
		}

		// Only nonce attributes change.
		strip := func(s string) string { return rewrite(t, Placeholder, NewNonce(), "__never_in_body_"+NewNonce(), s, 0) }
		if tags {
			// Read as tags mode reads, which does not give up where placeholder mode does (a
			// table part in MathML's <mtext>): after that point the two read the rest apart.
			other := NewNonce()
			stripTags := func(s string) string {
				return strings.ReplaceAll(rewrite(t, Tags, other, "", s, 0), ` nonce="`+other+`"`, "")
			}
			if stripTags(strings.ReplaceAll(whole, ` nonce="`+nonce+`"`, "")) != stripTags(body) {
				t.Fatalf("bytes outside nonce attributes changed:\n in  %q\n out %q", body, whole)
			}
		} else {
			// Each placeholder becomes the nonce, or as many '-' (once the injector gave up on
			// the page, see foreign.go, or inside a tag holding a '<'): the body with each
			// placeholder as what it became. Not '-' for all: a nonce glued to an attribute
			// name splits it at a '/' or '=' (`a="x"nonce__PH__` has a `nonce` attribute once
			// the nonce is in, which the injector rightly drops), where '-' does not.
			if strip(whole) != strip(asPlaced(t, body, nonce)) {
				t.Fatalf("bytes outside nonce attributes changed:\n in  %q\n out %q", body, whole)
			}
		}
		if !tags && strings.Contains(whole, testPH) {
			t.Fatalf("the placeholder reached the output: %q", whole)
		}

		// Redact mode keeps the length and removes every placeholder, whatever the body.
		if !tags {
			red := rewrite(t, Redact, "", testPH, body, int(split%16)+1)
			if len(red) != len(body) || strings.Contains(red, testPH) || red != strings.ReplaceAll(body, testPH, strings.Repeat("-", len(testPH))) {
				t.Fatalf("redact:\n in  %q\n out %q", body, red)
			}
		}

		// An independent HTML5 tokenizer sees only this response's nonce. Go's tokenizer reads
		// <style> and <script> as raw text also inside <svg> and <math>, where the injector,
		// as browsers, reads tags (`<math><style><a x="</style><a nonce>` is one tag to both):
		// there only the tree builder below judges, and the count is skipped.
		//
		// Go's tokenizer also leaves escaped script data (`<script><!--`) at a '<' followed by
		// neither '/' nor a letter, where the standard and browsers stay escaped (the injector
		// too): there a later `<script>` starts no double escape for it, so it ends the script
		// at a `</script>` that browsers read as script text, and reads the script's text as
		// tags. Such bodies skip its checks as well.
		lower := strings.ToLower(whole)
		foreign := strings.Contains(lower, "<svg") || strings.Contains(lower, "<math") || goEscapeDiffers.MatchString(lower)
		z := html.NewTokenizer(strings.NewReader(whole))
		nonced := 0
		for !foreign {
			tt := z.Next()
			if tt == html.ErrorToken {
				break
			}
			if tt != html.StartTagToken && tt != html.SelfClosingTagToken {
				continue
			}
			dangling := false // a '<' in an attribute before: markup swallowed into this tag
			for _, a := range z.Token().Attr {
				if a.Key != "nonce" {
					dangling = dangling || strings.Contains(a.Key, "<") || strings.Contains(a.Val, "<")
					continue
				}
				if dangling {
					t.Fatalf("a tag with '<' in an attribute keeps the nonce:\n in  %q\n out %q", body, whole)
				}
				if a.Val != nonce {
					t.Fatalf("a tag keeps nonce %q (the response's is %q):\n in  %q\n out %q", a.Val, nonce, body, whole)
				}
				nonced++
			}
		}
		// Go's HTML5 parser (a tree builder: foreign content, integration points) finds no
		// element that carries the response's nonce after an attribute holding a '<'.
		if !tags && !goEscapeDiffers.MatchString(lower) {
			doc, err := html.Parse(strings.NewReader(whole))
			if err != nil {
				t.Fatal(err)
			}
			for el := range doc.Descendants() {
				dangling := false
				for _, a := range el.Attr {
					if a.Key == "nonce" && a.Val == nonce && dangling {
						t.Fatalf("parsed, <%s> with '<' in an attribute keeps the nonce:\n in  %q\n out %q", el.Data, body, whole)
					}
					dangling = dangling || strings.Contains(a.Key, "<") || strings.Contains(a.Val, "<")
				}
			}
		}
		if tags && !foreign && strings.Count(whole, nonce) != nonced {
			t.Fatalf("%d nonces in the output but %d nonced tags (a tag with two?):\n in  %q\n out %q", strings.Count(whole, nonce), nonced, body, whole)
		}
	})
}

// goEscapeDiffers matches a body where Go's tokenizer may leave escaped script data early: a
// '<' followed by neither '/' nor a letter after a `<!--` after a `<script` (lower case).
var goEscapeDiffers = regexp.MustCompile(`(?s)<script.*<!--.*<[^a-z/]`)

func TestNonceIsFreshAndLongEnough(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		n := NewNonce()
		if len(n) != 24 || seen[n] {
			t.Fatalf("nonce %q: want 24 base64 characters, never repeated", n)
		}
		if raw, err := base64.StdEncoding.DecodeString(n); err != nil || len(raw) != NonceBytes {
			t.Fatalf("nonce %q is not 128 bits of base64: %v", n, err)
		}
		seen[n] = true
	}
}

// asPlaced returns body with each placeholder as placeholder mode writes it for nonce: the
// nonce, or as many '-' where the injector would not place it.
func asPlaced(t *testing.T, body, nonce string) string {
	t.Helper()
	var became []bool
	inj, err := NewInjector(io.Discard, Placeholder, nonce, testPH)
	if err != nil {
		t.Fatal(err)
	}
	inj.placed = func(dashed bool) { became = append(became, dashed) }
	if _, err := io.WriteString(inj, body); err != nil {
		t.Fatal(err)
	}
	if err := inj.Close(); err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(body, testPH)
	if len(parts) != len(became)+1 {
		t.Fatalf("%d placeholders in the body, %d placed:\n in  %q", len(parts)-1, len(became), body)
	}
	var b strings.Builder
	for i, part := range parts {
		if i > 0 {
			if became[i-1] {
				b.WriteString(strings.Repeat("-", len(nonce)))
			} else {
				b.WriteString(nonce)
			}
		}
		b.WriteString(part)
	}
	return b.String()
}
