package csp

import (
	"bytes"
	"strings"
	"testing"
)

const (
	testNonce = "AAAAAAAAAAAAAAAAAAAAAA=="
	testPH    = "__CSP_NONCE_7f3a9c1e__"
)

// rewrite runs the injector over in, split into writes of at most chunk bytes (0: one write).
func rewrite(t testing.TB, mode Mode, nonce, ph, in string, chunk int) string {
	t.Helper()
	var out bytes.Buffer
	inj, err := NewInjector(&out, mode, nonce, ph)
	if err != nil {
		t.Fatal(err)
	}
	b := []byte(in)
	for len(b) > 0 {
		n := len(b)
		if chunk > 0 && chunk < n {
			n = chunk
		}
		if _, err := inj.Write(b[:n]); err != nil {
			t.Fatal(err)
		}
		b = b[n:]
	}
	if err := inj.Close(); err != nil {
		t.Fatal(err)
	}
	return out.String()
}

func TestInjectorPlaceholder(t *testing.T) {
	n := `nonce="` + testNonce + `"`
	cases := []struct{ name, in, want string }{
		{"marked script", `<script nonce="` + testPH + `">a()</script>`, `<script ` + n + `>a()</script>`},
		{"unquoted and upper case", `<SCRIPT NONCE=` + testPH + `>`, `<SCRIPT ` + n + `>`},
		{"spaces around =", `<style nonce = '` + testPH + `' >`, `<style ` + n + ` >`},
		{"foreign nonce removed", `<script nonce="abc" src=x>`, `<script  src=x>`},
		{"empty nonce removed", `<script nonce>x</script>`, `<script >x</script>`},
		{"second nonce removed", `<script nonce=` + testPH + ` nonce="` + testPH + `">`, `<script ` + n + ` >`},
		{"placeholder in text replaced", `var n="` + testPH + `";`, `var n="` + testNonce + `";`},
		{"dangling markup: unquoted value with <", `<script src=//evil x=<script nonce="` + testPH + `">`, `<script src=//evil x=<script >`},
		{"dangling markup: double-quoted value with <", `<link rel=stylesheet href=//evil a="</p><link rel="stylesheet" nonce="` + testPH + `">`, `<link rel=stylesheet href=//evil a="</p><link rel="stylesheet" >`},
		{"dangling markup: single-quoted value with <", `<script src=//evil a='<script type='module' nonce="` + testPH + `">`, `<script src=//evil a='<script type='module' >`},
		{"dangling markup: attribute name with <", `<img src=x <script nonce="` + testPH + `">`, `<img src=x <script >`},
		{"nonce in comment is text", `<!-- <script nonce="x"> -->`, `<!-- <script nonce="x"> -->`},
		{"nonce in textarea is text", `<textarea><script nonce="x"></textarea><b nonce=y>`, `<textarea><script nonce="x"></textarea><b >`},
		{"nonce in script body is text", `<script nonce=` + testPH + `>s='<p nonce=1>'</script>`, `<script ` + n + `>s='<p nonce=1>'</script>`},
		{"nonceX is another attribute", `<a noncex="1" data-nonce="2">`, `<a noncex="1" data-nonce="2">`},
		{"Vite's meta and Angular's ngCspNonce get the nonce", `<meta property="csp-nonce" nonce="` + testPH + `"><app-root ngCspNonce="` + testPH + `">`, `<meta property="csp-nonce" ` + n + `><app-root ngCspNonce="` + testNonce + `">`},
		{"self-closing", `<script nonce="q"/>`, `<script />`},
		{"no tags mode insertion", `<script>1</script>`, `<script>1</script>`},
		{"bogus comment", `<!doctype html><?x nonce=1>`, `<!doctype html><?x nonce=1>`},
		{"end tag attribute removed", `</p nonce=1>`, `</p >`},
		// An attribute value that holds a '<' swallowed markup (`<iframe srcdoc='<script
		// src=//evil x=` before the application's marked tag): a srcdoc (or data: URL)
		// document is parsed from it and inherits the page's policy, so the placeholder there
		// becomes dashes, as a nonce attribute there is removed. Without a '<', it is replaced.
		{"placeholder in a srcdoc after a '<'", `<iframe srcdoc='<script src=//evil x=` + "\n" + `<meta property="csp-nonce" nonce="` + testPH + `">'>`,
			`<iframe srcdoc='<script src=//evil x=` + "\n" + `<meta property="csp-nonce" nonce="` + strings.Repeat("-", len(testNonce)) + `">'>`},
		{"placeholder in an unquoted value after a '<'", `<a x=<b` + testPH + `>`, `<a x=<b` + strings.Repeat("-", len(testNonce)) + `>`},
		{"placeholder in a later value of such a tag", `<a x="<b" y="` + testPH + `">`, `<a x="<b" y="` + strings.Repeat("-", len(testNonce)) + `">`},
		{"placeholder in an entity-encoded srcdoc", `<iframe srcdoc="&lt;script nonce=&quot;` + testPH + `&quot;&gt;">`, `<iframe srcdoc="&lt;script nonce=&quot;` + testNonce + `&quot;&gt;">`},
		{"placeholder in text after such a tag", `<a x="<b">` + testPH, `<a x="<b">` + testNonce},
	}
	for _, c := range cases {
		for _, chunk := range []int{0, 1, 2, 3, 7} {
			if got := rewrite(t, Placeholder, testNonce, testPH, c.in, chunk); got != c.want {
				t.Errorf("%s (writes of %d):\n got  %s\n want %s", c.name, chunk, got, c.want)
			}
		}
	}
}

func TestInjectorTags(t *testing.T) {
	n := ` nonce="` + testNonce + `"`
	cases := []struct{ name, in, want string }{
		{"script", `<script src="/a.js"></script>`, `<script src="/a.js"` + n + `></script>`},
		{"style", `<style>p{}</style>`, `<style` + n + `>p{}</style>`},
		{"stylesheet", `<link rel="stylesheet" href=/a.css>`, `<link rel="stylesheet" href=/a.css` + n + `>`},
		{"modulepreload token", `<link rel='icon modulepreload' href=/m.js />`, `<link rel='icon modulepreload' href=/m.js ` + n + `/>`},
		{"self-closing slash kept last", `<script src=a.js/>`, `<script src=a.js/` + n + `>`},
		{"quoted then slash", `<script src="a"/>`, `<script src="a"` + n + `/>`},
		{"icon link untouched", `<link rel=icon href=/f.ico>`, `<link rel=icon href=/f.ico>`},
		{"stale nonce replaced", `<script nonce="old">`, `<script ` + n + `>`},
		{"Vite's meta loses its nonce", `<meta property="csp-nonce" nonce="x">`, `<meta property="csp-nonce" >`},
		{"Angular's ngCspNonce untouched", `<app-root ngCspNonce="x">`, `<app-root ngCspNonce="x">`},
		{"response's nonce kept once", `<script nonce="` + testNonce + `">`, `<script nonce="` + testNonce + `">`},
		{"script text untouched", `<script>document.write("<script src=x></scr"+"ipt>")</script>`, `<script` + n + `>document.write("<script src=x></scr"+"ipt>")</script>`},
		{"escaped script text", `<script><!--<script></script>--></script><style>`, `<script` + n + `><!--<script></script>--></script><style` + n + `>`},
		{"escaped script text after '<' and a space", `<script><!-- a < b; s='<script></script><style>'; --></script><style>`,
			`<script` + n + `><!-- a < b; s='<script></script><style>'; --></script><style` + n + `>`},
		{"end tag never gets one", `</script>`, `</script>`},
		{"comment", `<!--><script>`, `<!--><script` + n + `>`},
		{"suspicious tag gets none", `<script a=<b>`, `<script a=<b>`},
		{"empty nonce replaced", `<script nonce=>x</script>`, `<script ` + n + `>x</script>`},
		{"empty nonce then space", `<style nonce= >`, `<style ` + n + `>`},
		{"other bare = keeps none", `<script a=>`, `<script a=>`},
		// A <font> with color, face or size leaves SVG (WHATWG HTML §13.2.6.5): its <style>
		// is HTML's, raw text, so the <script> in it is text (measured in Chromium 156,
		// TestBrowserTagsModeNoncesOnlyTags); without them it is SVG's, holding tags.
		{"<font color> leaves SVG", `<svg><font color=red><style><script>x</script></style>`,
			`<svg><font color=red><style` + n + `><script>x</script></style>`},
		{"<font SIZE> split leaves SVG", `<svg><font id=a SIZE=2><style><script>x</script></style>`,
			`<svg><font id=a SIZE=2><style` + n + `><script>x</script></style>`},
		{"<font> without them is SVG's", `<svg><font colour=red><style><script>x</script></style>`,
			`<svg><font colour=red><style` + n + `><script` + n + `>x</script></style>`},
	}
	for _, c := range cases {
		for _, chunk := range []int{0, 1, 2, 5} {
			if got := rewrite(t, Tags, testNonce, "", c.in, chunk); got != c.want {
				t.Errorf("%s (writes of %d):\n got  %s\n want %s", c.name, chunk, got, c.want)
			}
		}
	}
}

func TestInjectorPlaceholderAcrossWrites(t *testing.T) {
	// Every split of a placeholder, and near-misses that share its prefix.
	in := strings.Repeat(`<p>`+testPH[:5]+`x`+testPH+`</p>`, 3) + testPH[:7]
	want := strings.ReplaceAll(in[:len(in)-7], testPH, testNonce) + testPH[:7]
	for chunk := 1; chunk <= len(in); chunk++ {
		if got := rewrite(t, Placeholder, testNonce, testPH, in, chunk); got != want {
			t.Fatalf("writes of %d:\n got  %s\n want %s", chunk, got, want)
		}
	}
}

func TestInjectorRefusesShortPlaceholder(t *testing.T) {
	if _, err := NewInjector(&bytes.Buffer{}, Placeholder, testNonce, "NONCE"); err == nil {
		t.Fatal("a 5-character placeholder was accepted")
	}
}

func TestInjectorUnfinishedNonceAtEOFDropped(t *testing.T) {
	if got := rewrite(t, Placeholder, testNonce, testPH, `<script nonce="abc`, 0); got != `<script ` {
		t.Fatalf("got %q", got)
	}
	if got := rewrite(t, Placeholder, testNonce, testPH, `<script nonc`, 0); got != `<script nonc` {
		t.Fatalf("got %q", got)
	}
}

func TestInjectorRedact(t *testing.T) {
	in := `{"html": "<script nonce=\"` + testPH + `\">x()</script>", "n": "` + testPH[:9] + `"}` + testPH[:5]
	want := strings.ReplaceAll(in, testPH, strings.Repeat("-", len(testPH)))
	for chunk := 0; chunk <= len(in); chunk++ {
		got := rewrite(t, Redact, "", testPH, in, chunk)
		if got != want {
			t.Fatalf("writes of %d:\n got  %s\n want %s", chunk, got, want)
		}
	}
}

func TestInjectorSubstitute(t *testing.T) {
	// The marker becomes the nonce wherever it is; every nonce attribute stays as it is.
	in := `<style nonce="` + testPH + `">p{}</style><script nonce="other">x()</script><script>` + testPH[:9] + `</script>` + testPH[:5]
	want := strings.ReplaceAll(in, testPH, testNonce)
	for chunk := 0; chunk <= len(in); chunk++ {
		if got := rewrite(t, Substitute, testNonce, testPH, in, chunk); got != want {
			t.Fatalf("writes of %d:\n got  %s\n want %s", chunk, got, want)
		}
	}
	if _, err := NewInjector(&bytes.Buffer{}, Substitute, testNonce, "short"); err == nil {
		t.Fatal("a 5-character marker was accepted")
	}
}

// TestInjectorForeignContent: inside <svg> and <math>, <style>, <title>, <script>, ... hold
// markup, not raw text, as in the browser; where the tokenizer cannot follow the tree, the
// rest of the page gets no nonce (placeholders become '-').
func TestInjectorForeignContent(t *testing.T) {
	n := `nonce="` + testNonce + `"`
	app := `<link rel="stylesheet" href="/a.css" nonce="` + testPH + `">`
	cases := []struct{ name, in, want string }{
		{"style in svg holds markup: dangling markup seen",
			`<svg><style></svg><p><link rel=stylesheet href=//evil x=` + "\n" + app,
			`<svg><style></svg><p><link rel=stylesheet href=//evil x=` + "\n" + `<link rel="stylesheet" href="/a.css" >`},
		{"script in svg holds markup", `<svg><script><b nonce=x></b></script></svg>`, `<svg><script><b ></b></script></svg>`},
		{"an inline icon with a title, then the app's tag", `<svg><title>Close</title><path d="M0 0"/></svg>` + app,
			`<svg><title>Close</title><path d="M0 0"/></svg><link rel="stylesheet" href="/a.css" ` + n + `>`},
		{"style after the svg is raw text again", `<svg><style>p{}</style></svg><style><b nonce=x></style>` + app,
			`<svg><style>p{}</style></svg><style><b nonce=x></style><link rel="stylesheet" href="/a.css" ` + n + `>`},
		{"breakout tag ends foreign content", `<math><p><style><b nonce=x></style>` + app,
			`<math><p><style><b nonce=x></style><link rel="stylesheet" href="/a.css" ` + n + `>`},
		{"CDATA in svg is text", `<svg><![CDATA[ <b nonce=x> ]]><b nonce=y></svg>`, `<svg><![CDATA[ <b nonce=x> ]]><b ></svg>`},
		{"CDATA in HTML is a bogus comment", `<![CDATA[ x ]]><b nonce=y>`, `<![CDATA[ x ]]><b >`},
		{"self-closing svg opens nothing", `<svg/><style><b nonce=x></style>` + app,
			`<svg/><style><b nonce=x></style><link rel="stylesheet" href="/a.css" ` + n + `>`},
		{"HTML inside an integration point (a diagram's labels)", `<svg><switch><foreignObject><div><div><b>A</b><br>B<style><b nonce=x></style></div></div></foreignObject></switch></svg>` + app,
			`<svg><switch><foreignObject><div><div><b>A</b><br>B<style><b nonce=x></style></div></div></foreignObject></switch></svg><link rel="stylesheet" href="/a.css" ` + n + `>`},
		{"svg in an integration point, breakout back to its HTML", `<svg><foreignObject><svg><style></svg><span><style><b nonce=x></style></span></foreignObject></svg>` + app,
			`<svg><foreignObject><svg><style></svg><span><style><b nonce=x></style></span></foreignObject></svg><link rel="stylesheet" href="/a.css" ` + n + `>`},
		{"integration point closed over an open element: gives up", `<svg><foreignObject><span></foreignObject></svg>` + app,
			`<svg><foreignObject><span></foreignObject></svg><link rel="stylesheet" href="/a.css" >`},
		{"mglyph right inside mi is MathML: its <style> holds tags", `<math><mi><mglyph><style></mglyph></mi></math><p><link rel=stylesheet href=//evil x=` + "\n" + app,
			`<math><mi><mglyph><style></mglyph></mi></math><p><link rel=stylesheet href=//evil x=` + "\n" + `<link rel="stylesheet" href="/a.css" >`},
		{"mglyph inside HTML in mi is HTML", `<math><mi><span><mglyph></mglyph></span></mi></math>` + app,
			`<math><mi><span><mglyph></mglyph></span></mi></math><link rel="stylesheet" href="/a.css" ` + n + `>`},
		{"a <select> with options", `<select name=a><option>1</option><option selected>2</option></select><style>p{}</style>` + app,
			`<select name=a><option>1</option><option selected>2</option></select><style>p{}</style><link rel="stylesheet" href="/a.css" ` + n + `>`},
		{"<style> in <select>: parsers differ, gives up", `<select><style></select><link rel=stylesheet href=//evil x=` + "\n" + app,
			`<select><style></select><link rel=stylesheet href=//evil x=` + "\n" + `<link rel="stylesheet" href="/a.css" nonce="` + strings.Repeat("-", len(testNonce)) + `">`},
		// The older <select> parser ignores the <style> and reads one script: src //evil, the
		// application's nonce.
		{"<template> in <select>: its </select> is ignored there, gives up", `<select><template></select></template><style><script src=//evil a='</style><script src='/a.js' nonce="` + testPH + `"></script>`,
			`<select><template></select></template><style><script src=//evil a='</style><script src='/a.js' ></script>`},
		{"<input> in a <template> in <select> does not end it either", `<select><template><input></template><style></style>` + app,
			`<select><template><input></template><style></style><link rel="stylesheet" href="/a.css" >`},
		{"table inside an integration point is HTML", `<math><mtext><table><tr><td><style><b nonce=x></style></td></tr></table></mtext></math>` + app,
			`<math><mtext><table><tr><td><style><b nonce=x></style></td></tr></table></mtext></math><link rel="stylesheet" href="/a.css" ` + n + `>`},
		{"table in an SVG label, then the svg's style holds tags", `<svg><desc><table><caption>A</caption></table></desc><style></svg><p><link rel=stylesheet href=//evil x=` + "\n" + app,
			`<svg><desc><table><caption>A</caption></table></desc><style></svg><p><link rel=stylesheet href=//evil x=` + "\n" + `<link rel="stylesheet" href="/a.css" >`},
		{"an end tag in the table does not close what is around it", `<math><mtext><table></mtext></math><style><link rel=stylesheet href=//evil x=</style></table></mtext></math>` + app,
			`<math><mtext><table></mtext></math><style><link rel=stylesheet href=//evil x=</style></table></mtext></math><link rel="stylesheet" href="/a.css" ` + n + `>`},
		{"svg in a table inside an integration point: gives up", `<math><mtext><table><td><svg></svg></td></table></mtext></math>` + app,
			`<math><mtext><table><td><svg></svg></td></table></mtext></math><link rel="stylesheet" href="/a.css" >`},
		{"a table part in an integration point inside a table: gives up (it closes the <math>)",
			`<table><math><mtext><col></mtext><style><a title="</style><link rel=stylesheet href=//evil a=` + "\n" + `<link rel=stylesheet href=/a.css nonce="` + testPH + `">`,
			`<table><math><mtext><col></mtext><style><a title="</style><link rel=stylesheet href=//evil a=` + "\n" + `<link rel=stylesheet href=/a.css >`},
		{"a table in an integration point after a table: gives up (it may close that one)",
			`<table><math><mtext><table></table></mtext><style><a title="</style><link rel=stylesheet href=//evil a=` + "\n" + `<link rel=stylesheet href=/a.css nonce="` + testPH + `">`,
			`<table><math><mtext><table></table></mtext><style><a title="</style><link rel=stylesheet href=//evil a=` + "\n" + `<link rel=stylesheet href=/a.css >`},
		{"<math> in <select>: parsers differ, gives up", `<select><math><![CDATA[ > <script src=//evil/x.js a=` + "\n" + `<script nonce="` + testPH + `" src=/app.js></script>`,
			`<select><math><![CDATA[ > <script src=//evil/x.js a=` + "\n" + `<script nonce="` + strings.Repeat("-", len(testNonce)) + `" src=/app.js></script>`},
		{"</template> in such a table: gives up", `<template><math><mtext><table></template>` + app,
			`<template><math><mtext><table></template><link rel="stylesheet" href="/a.css" >`},
		{"placeholder in text after giving up becomes dashes", `<svg><annotation-xml></svg><script>var n="` + testPH + `"</script>`,
			`<svg><annotation-xml></svg><script>var n="` + strings.Repeat("-", len(testNonce)) + `"</script>`},
		{"<font color> leaves SVG, followed", `<svg><font color=red></svg><script>var n="` + testPH + `"</script>`,
			`<svg><font color=red></svg><script>var n="` + testNonce + `"</script>`},
		{"<font> without color, face or size is SVG's: its <style> holds tags", `<svg><font><style></svg><p><link rel=stylesheet href=//evil x=` + "\n" + app,
			`<svg><font><style></svg><p><link rel=stylesheet href=//evil x=` + "\n" + `<link rel="stylesheet" href="/a.css" >`},
		{"<font face> leaves SVG: its <style> is raw text", `<svg><font face=x><style><a title="</style><link rel=stylesheet href=/b.css nonce="` + testPH + `">`,
			`<svg><font face=x><style><a title="</style><link rel=stylesheet href=/b.css nonce="` + testNonce + `">`},
		{"end tag of an element below the svg: gives up", `<div><svg></div><style>` + app,
			`<div><svg></div><style><link rel="stylesheet" href="/a.css" >`},
		{"an ESC byte (ISO-2022-JP's escapes): gives up", `<link rel=stylesheet href=//evil a="` + "\x1b$B" + `">` + "\x1b(B" + app,
			`<link rel=stylesheet href=//evil a="` + "\x1b$B" + `">` + "\x1b(B" + `<link rel="stylesheet" href="/a.css" >`},
		{"unquoted placeholder after giving up", `<math><annotation-xml></math><script nonce=` + testPH + `>`,
			`<math><annotation-xml></math><script >`},
		// WHATWG HTML §13.2.5.21: in escaped script data, '<' and a byte other than '/' or a
		// letter stays escaped (x/net/html goes back to script data), so a <script> after it
		// starts a double escape and the </script> that follows does not end the script
		// (measured in Chromium 156): the <textarea> is script text, the <link> a tag.
		{"escaped script data stays escaped after '<' and a digit",
			`<script><!--<1<script></script><textarea></script><link rel=stylesheet href=//evil x=` + "\n" + app,
			`<script><!--<1<script></script><textarea></script><link rel=stylesheet href=//evil x=` + "\n" + `<link rel="stylesheet" href="/a.css" >`},
	}
	for _, c := range cases {
		for _, chunk := range []int{0, 1, 2, 3, 7} {
			if got := rewrite(t, Placeholder, testNonce, testPH, c.in, chunk); got != c.want {
				t.Errorf("%s (writes of %d):\n got  %s\n want %s", c.name, chunk, got, c.want)
			}
		}
	}
}
