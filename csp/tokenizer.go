package csp

import "bytes"

// state is where the tokenizer is in the HTML tokenization algorithm (WHATWG HTML §13.2.5),
// reduced to what decides where tags and attributes are.
type state uint8

const (
	sData        state = iota
	sTagOpen           // after '<'
	sEndTagOpen        // after '</'
	sMarkup1           // after '<!'
	sMarkup2           // after '<!-'
	sComment           // after '<!--'
	sCommentBang       // after '--!' in a comment
	sBogus             // a bogus comment, doctype or '<?': up to '>'
	sTagName
	sBeforeAttr
	sAttrName
	sAfterAttrName
	sBeforeValue
	sValueDQ
	sValueSQ
	sValueUnq
	sSelfClosing
	sRaw    // RAWTEXT or RCDATA content (style, textarea, title, ...) up to its end tag
	sRawLt  // '<' in raw text
	sRawEnd // '</' + k bytes of the element's name in raw text
	sScript // script data
	sScriptLt
	sScriptEnd
	sEscStart
	sEscStartDash
	sEsc
	sEscDash
	sEscDashDash
	sEscLt
	sEscEnd
	sDblStart
	sDbl
	sDblDash
	sDblDashDash
	sDblLt
	sDblEnd
	sPlaintext
	sCDataOpen // after '<![' in foreign content, matching "CDATA["
	sCData     // a CDATA section (foreign content): text up to ']]>'
)

type tagKind uint8

const (
	kOther tagKind = iota
	kScript
	kStyle
	kLink
	kRaw // RAWTEXT/RCDATA: its content is text up to its own end tag
	kPlaintext
	kFont // in foreign content, HTML's with a color, face or size attribute (see treeTag)
)

const (
	candNonce = 1 << iota
	candRel
	candColor // color, face, size: the attributes that take a <font> out of foreign content
	candFace
	candSize
	candFont = candColor | candFace | candSize
)

type attrKind uint8

const (
	aOther attrKind = iota
	aNonce
	aRel
)

// tokenizer finds tags and their nonce attributes in a stream and passes every other byte on
// unchanged. It works on the Injector's output (placeholders already replaced).
type tokenizer struct {
	in    *Injector
	st    state
	p     []byte // the current write
	start int    // p[start:] is not yet passed on

	// the current tag
	endTag     bool
	name       [tagNameLen]byte
	nameN      int
	kind       tagKind
	rawName    string
	suspicious bool // a '<' in an attribute name or value (or the tag name)
	hasNonce   bool // this tag already carries the response's nonce
	relOK      bool // <link rel=stylesheet|preload|modulepreload>
	fontAttr   bool // a <font> with a color, face or size attribute
	slashHeld  bool // a '/' at the end of the last write, maybe '/>'

	// the current attribute
	cand     uint8
	attrN    int
	attr     attrKind
	held     [5]byte // the start of a name that may be "nonce", from the last write
	heldN    int
	suppress bool // inside a nonce attribute: decided at its end
	hasVal   bool
	valN     int
	valOK    bool
	rel      [16]byte
	relN     int

	k      int  // bytes matched of an end tag name, "script" or "CDATA["; dashes in a comment; ']' in CDATA
	cbegin bool // the comment has had nothing but dashes yet

	// the elements open in foreign content (see foreign.go)
	foreign  [maxForeign]foreignElem
	fN       int
	poisoned bool // lost track of the tree: no nonce is kept or written any more
	inSelect bool // inside <select>, where parsers differ on <style>, <title>, ... (see treeTag)
	// a table's start tag (<table>, <tr>, <col>, ...) was seen outside integration points: the
	// tree builder may be in a table's insertion mode there, where a <table> pops the stack
	// (see tableTag)
	tableSeen bool
}

// tagNameLen is how much of a tag name is kept: enough for every HTML, SVG and MathML name.
const tagNameLen = 24

// Byte classes of the tag states' scans.
const (
	endsName     = 1 << iota // space, '/', '>': the end of a tag name
	endsAttr                 // space, '/', '>', '=': the end of an attribute name
	endsUnquoted             // space, '>': the end of an unquoted value
)

var byteClass = func() (t [256]uint8) {
	for _, c := range []byte(" \n\t\r\f") {
		t[c] = endsName | endsAttr | endsUnquoted
	}
	t['/'] = endsName | endsAttr
	t['>'] = endsName | endsAttr | endsUnquoted
	t['='] = endsAttr
	return t
}()

func isSpace(c byte) bool {
	return c == ' ' || c == '\n' || c == '\t' || c == '\r' || c == '\f'
}

func lower(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// inSuspiciousTag reports whether the tokenizer is inside a tag (its name or attributes) that
// holds a '<' in an attribute name or value so far.
func (t *tokenizer) inSuspiciousTag() bool {
	return t.suspicious && t.st >= sTagName && t.st <= sSelfClosing
}

// flushTo passes on the held name bytes and p[start:i].
func (t *tokenizer) flushTo(i int) {
	if t.heldN > 0 {
		t.in.out(t.held[:t.heldN])
		t.heldN = 0
	}
	t.in.out(t.p[t.start:i])
	t.start = i
}

func (t *tokenizer) beginTag(end bool) {
	t.endTag, t.nameN, t.kind, t.suspicious, t.hasNonce, t.relOK, t.fontAttr = end, 0, kOther, false, false, false, false
	t.st = sTagName
}

func (t *tokenizer) classify() {
	if t.endTag || t.nameN > len(t.name) {
		return
	}
	// One string switch, no allocation: the conversion is only compared.
	switch string(t.name[:t.nameN]) {
	case "script":
		t.kind, t.rawName = kScript, "script"
	case "style":
		t.kind, t.rawName = kStyle, "style"
	case "link":
		t.kind = kLink
	case "font":
		t.kind = kFont
	case "plaintext":
		t.kind = kPlaintext
	case "textarea":
		t.kind, t.rawName = kRaw, "textarea"
	case "title":
		t.kind, t.rawName = kRaw, "title"
	case "xmp":
		t.kind, t.rawName = kRaw, "xmp"
	case "iframe":
		t.kind, t.rawName = kRaw, "iframe"
	case "noembed":
		t.kind, t.rawName = kRaw, "noembed"
	case "noframes":
		t.kind, t.rawName = kRaw, "noframes"
	case "noscript":
		t.kind, t.rawName = kRaw, "noscript"
	}
}

func (t *tokenizer) beginAttr(i int) {
	t.flushTo(i)
	t.cand, t.attrN, t.attr = candNonce|candRel, 0, aOther
	if t.kind == kFont {
		t.cand |= candFont
	}
	t.st = sAttrName
}

// endAttrName is called at the delimiter that ends an attribute name.
func (t *tokenizer) endAttrName(i int) {
	if t.cand&candColor != 0 && t.attrN == 5 || t.cand&(candFace|candSize) != 0 && t.attrN == 4 {
		t.fontAttr = true
	}
	switch {
	case t.cand&candNonce != 0 && t.attrN == 5:
		t.heldN = 0 // the name is dropped with the attribute
		t.start = i
		t.attr, t.suppress, t.hasVal, t.valN, t.valOK = aNonce, true, false, 0, true
	case t.cand&candRel != 0 && t.attrN == 3 && t.kind == kLink && !t.endTag:
		t.attr, t.relN = aRel, 0
	default:
		t.attr = aOther
	}
}

// finishNonce ends a nonce attribute at i: it is written back, normalized, only when it
// carries this response's nonce and is the tag's first; otherwise it is gone.
func (t *tokenizer) finishNonce(i int) {
	if !t.suppress {
		return
	}
	if t.hasVal && t.valOK && t.valN == len(t.in.nonce) && !t.hasNonce && !t.suspicious && !t.poisoned {
		t.in.out(t.in.attr[1:])
		t.hasNonce = true
	}
	t.suppress = false
	t.attr = aOther
	t.start = i
}

func (t *tokenizer) valueByte(c byte) {
	switch t.attr {
	case aNonce:
		if t.valN >= len(t.in.nonce) || c != t.in.nonce[t.valN] {
			t.valOK = false
		}
		t.valN++
	case aRel:
		if isSpace(c) {
			t.relToken()
		} else if t.relN < len(t.rel) {
			t.rel[t.relN] = lower(c)
			t.relN++
		} else {
			t.relN = len(t.rel) + 1
		}
	}
}

func (t *tokenizer) relToken() {
	if t.relN <= len(t.rel) {
		switch string(t.rel[:t.relN]) {
		case "stylesheet", "preload", "modulepreload":
			t.relOK = true
		}
	}
	t.relN = 0
}

func (t *tokenizer) endValue(i int) {
	if t.attr == aRel {
		t.relToken()
	}
	t.finishNonce(i)
	t.attr = aOther
}

func (t *tokenizer) enterSlash(i int) {
	t.flushTo(i)
	t.st = sSelfClosing
}

// tagEnd handles the '>' at i that closes a tag: in Tags mode it adds the nonce to a script,
// style or stylesheet link that lacks it (before a '/>'), then moves to the content's state.
func (t *tokenizer) tagEnd(i int) {
	html := t.treeTag(t.st == sSelfClosing)
	// Not after a bare '=' (`<script a=>`): the nonce would become that attribute's value.
	insert := t.in.mode == Tags && !t.endTag && !t.hasNonce && !t.suspicious && t.st != sBeforeValue &&
		(t.kind == kScript || t.kind == kStyle || t.kind == kLink && t.relOK)
	if t.st == sSelfClosing {
		if insert {
			t.in.out(t.in.attr)
		}
		if t.slashHeld {
			t.in.out([]byte{'/'})
			t.slashHeld = false
		}
	} else if insert {
		t.flushTo(i)
		t.in.out(t.in.attr)
	}
	t.st = sData
	if !t.endTag && html { // in foreign content, <style>, <script>, ... hold markup
		switch t.kind {
		case kScript:
			t.st = sScript
		case kStyle, kRaw:
			t.st = sRaw
		case kPlaintext:
			t.st = sPlaintext
		}
	}
}

// matchEnd matches the next byte of the raw element's end tag name at p[i]; it returns
// whether the whole name matched and the end tag begins (the delimiter is left for sTagName).
func (t *tokenizer) matchEnd(c byte, name string) (matched, failed bool) {
	if t.k < len(name) {
		if lower(c) == name[t.k] {
			t.k++
			return false, false
		}
		return false, true
	}
	if isSpace(c) || c == '/' || c == '>' {
		return true, false
	}
	return false, true
}

// feed tokenizes p and passes it on, edited.
func (t *tokenizer) feed(p []byte) {
	t.p, t.start = p, 0
	i := 0
	for i < len(p) {
		c := p[i]
		switch t.st {
		case sData:
			j := bytes.IndexByte(p[i:], '<')
			if j < 0 {
				i = len(p)
				continue
			}
			i += j + 1
			t.st = sTagOpen
			continue
		case sTagOpen:
			switch {
			case isAlpha(c):
				t.beginTag(false)
				continue
			case c == '/':
				t.st = sEndTagOpen
			case c == '!':
				t.st = sMarkup1
			case c == '?':
				t.st = sBogus
			default:
				t.st = sData
				continue
			}
		case sEndTagOpen:
			switch {
			case c == '>':
				t.st = sData
			case isAlpha(c):
				t.beginTag(true)
				continue
			default:
				t.st = sBogus
				continue
			}
		case sMarkup1:
			if c == '[' && t.inForeign() {
				t.st, t.k = sCDataOpen, 0
				break
			}
			if c != '-' {
				t.st = sBogus
				continue
			}
			t.st = sMarkup2
		case sCDataOpen:
			if c != "CDATA["[t.k] {
				t.st = sBogus
				continue
			}
			if t.k++; t.k == len("CDATA[") {
				t.st, t.k = sCData, 0
			}
		case sCData:
			if t.k == 0 && c != ']' {
				j := bytes.IndexByte(p[i:], ']')
				if j < 0 {
					i = len(p)
					continue
				}
				i += j
				c = ']'
			}
			switch {
			case c == ']':
				t.k++
			case c == '>' && t.k >= 2:
				t.st = sData
			default:
				t.k = 0
			}
		case sMarkup2:
			if c != '-' {
				t.st = sBogus
				continue
			}
			t.st, t.k, t.cbegin = sComment, 0, true
		case sComment:
			if t.k == 0 && !t.cbegin && c != '-' {
				// Inside the comment's text only a '-' can start its end.
				j := bytes.IndexByte(p[i:], '-')
				if j < 0 {
					i = len(p)
					continue
				}
				i += j
				c = '-'
			}
			t.comment(c)
		case sCommentBang:
			switch c {
			case '>':
				t.st = sData
			case '-':
				t.st, t.k, t.cbegin = sComment, 1, false
			default:
				t.st, t.k, t.cbegin = sComment, 0, false
			}
		case sBogus:
			j := bytes.IndexByte(p[i:], '>')
			if j < 0 {
				i = len(p)
				continue
			}
			i += j
			t.st = sData
		case sTagName:
			// The name runs to a space, '/' or '>': scan it in one go.
			for byteClass[c]&endsName == 0 {
				if c == '<' {
					t.suspicious = true
				}
				if t.nameN < len(t.name) {
					t.name[t.nameN] = lower(c)
				}
				t.nameN++
				if i++; i == len(p) {
					break
				}
				c = p[i]
			}
			if i == len(p) {
				continue
			}
			switch {
			case c == '/':
				t.classify()
				t.enterSlash(i)
			case c == '>':
				t.classify()
				t.tagEnd(i)
			default:
				t.classify()
				t.st = sBeforeAttr
			}
		case sBeforeAttr:
			switch {
			case isSpace(c):
			case c == '/':
				t.enterSlash(i)
			case c == '>':
				t.tagEnd(i)
			default:
				t.beginAttr(i)
				continue
			}
		case sAttrName:
			for byteClass[c]&endsAttr == 0 || c == '=' && t.attrN == 0 {
				if c == '<' {
					t.suspicious = true
				}
				if t.cand != 0 {
					lc := lower(c)
					if t.attrN >= 5 || lc != "nonce"[t.attrN] {
						t.cand &^= candNonce
					}
					if t.attrN >= 3 || lc != "rel"[t.attrN] {
						t.cand &^= candRel
					}
					if t.cand&candFont != 0 {
						if t.attrN >= 5 || lc != "color"[t.attrN] {
							t.cand &^= candColor
						}
						if t.attrN >= 4 || lc != "face"[t.attrN] {
							t.cand &^= candFace
						}
						if t.attrN >= 4 || lc != "size"[t.attrN] {
							t.cand &^= candSize
						}
					}
				}
				t.attrN++
				if i++; i == len(p) {
					break
				}
				c = p[i]
			}
			if i == len(p) {
				continue
			}
			t.endAttrName(i)
			switch c {
			case '/':
				t.finishNonce(i)
				t.enterSlash(i)
			case '>':
				t.finishNonce(i)
				t.tagEnd(i)
			case '=':
				t.st = sBeforeValue
			default:
				t.st = sAfterAttrName
			}
		case sAfterAttrName:
			switch {
			case isSpace(c):
			case c == '=':
				t.st = sBeforeValue
			case c == '/':
				t.finishNonce(i)
				t.enterSlash(i)
			case c == '>':
				t.finishNonce(i)
				t.tagEnd(i)
			default:
				t.finishNonce(i)
				t.beginAttr(i)
				continue
			}
		case sBeforeValue:
			switch {
			case isSpace(c):
			case c == '"':
				t.st, t.hasVal = sValueDQ, true
			case c == '\'':
				t.st, t.hasVal = sValueSQ, true
			case c == '>':
				// A nonce attribute without a value (`nonce=>`) is dropped with its '=', so
				// the tag may get ours as after any attribute; another bare '=' stays.
				dropped := t.suppress
				t.endValue(i)
				if dropped {
					t.st = sBeforeAttr
				}
				t.tagEnd(i)
			default:
				t.st, t.hasVal = sValueUnq, true
				continue
			}
		case sValueDQ, sValueSQ:
			q := byte('"')
			if t.st == sValueSQ {
				q = '\''
			}
			if t.attr == aOther {
				j := bytes.IndexByte(p[i:], q)
				end := len(p)
				if j >= 0 {
					end = i + j
				}
				if !t.suspicious && bytes.IndexByte(p[i:end], '<') >= 0 {
					t.suspicious = true // dangling markup: `<link href=//evil a="` before a real tag
				}
				if j < 0 {
					i = len(p)
					continue
				}
				i += j
			} else if c != q {
				if c == '<' {
					t.suspicious = true
				}
				t.valueByte(c)
				break
			}
			t.endValue(i + 1)
			t.st = sBeforeAttr
		case sValueUnq:
			for byteClass[c]&endsUnquoted == 0 {
				if c == '<' {
					t.suspicious = true
				}
				if t.attr != aOther {
					t.valueByte(c)
				}
				if i++; i == len(p) {
					break
				}
				c = p[i]
			}
			if i == len(p) {
				continue
			}
			t.endValue(i)
			if c == '>' {
				t.tagEnd(i)
			} else {
				t.st = sBeforeAttr
			}
		case sSelfClosing:
			if c == '>' {
				t.tagEnd(i)
				break
			}
			if t.slashHeld {
				t.in.out([]byte{'/'})
				t.slashHeld = false
			}
			t.st = sBeforeAttr
			continue
		case sPlaintext:
			i = len(p)
			continue
		case sRaw, sScript:
			j := bytes.IndexByte(p[i:], '<')
			if j < 0 {
				i = len(p)
				continue
			}
			i += j + 1
			if t.st == sRaw {
				t.st = sRawLt
			} else {
				t.st = sScriptLt
			}
			continue
		case sRawLt:
			if c != '/' {
				t.st = sRaw
				continue
			}
			t.st, t.k = sRawEnd, 0
		case sRawEnd, sScriptEnd, sEscEnd:
			matched, failed := t.matchEnd(c, t.rawName)
			if matched {
				t.beginTag(true) // the delimiter is the tag name's end
				t.nameN = copy(t.name[:], t.rawName)
				continue
			}
			if failed {
				switch t.st {
				case sRawEnd:
					t.st = sRaw
				case sScriptEnd:
					t.st = sScript
				default:
					t.st = sEsc
				}
				continue
			}
		case sScriptLt:
			switch c {
			case '/':
				t.st, t.k = sScriptEnd, 0
			case '!':
				t.st = sEscStart
			default:
				t.st = sScript
				continue
			}
		case sEscStart, sEscStartDash:
			if c != '-' {
				t.st = sScript
				continue
			}
			if t.st == sEscStart {
				t.st = sEscStartDash
			} else {
				t.st = sEscDashDash
			}
		case sEsc, sEscDash, sEscDashDash, sDbl, sDblDash, sDblDashDash:
			t.escaped(c)
		case sEscLt:
			switch {
			case c == '/':
				t.st, t.k = sEscEnd, 0
			case isAlpha(c):
				t.st, t.k = sDblStart, 0
				continue
			default:
				// Still escaped (WHATWG HTML §13.2.5.21, and Chromium). x/net/html returns to
				// script data, where a later `<script>` starts no double escape, so the
				// `</script>` after it would end the script early: the script's text would
				// be read as markup (a `<textarea>` there hiding the page's next tags).
				t.st = sEsc
				continue
			}
		case sDblStart, sDblEnd:
			// "<script" in escaped script data starts a double escape; "</script" ends it.
			back, next := sEsc, sDbl
			if t.st == sDblEnd {
				back, next = sDbl, sEsc
			}
			matched, failed := t.matchEnd(c, "script")
			if failed {
				t.st = back
				continue
			}
			if matched {
				t.st = next
			}
		case sDblLt:
			if c != '/' {
				t.st = sDbl
				continue
			}
			t.st, t.k = sDblEnd, 0
		}
		i++
	}
	t.park()
}

// comment follows x/net/html's comment end rules: '-->', '--!>', and '<!-->' / '<!--->'.
func (t *tokenizer) comment(c byte) {
	switch c {
	case '-':
		t.k++
		return
	case '>':
		if t.k >= 2 || t.cbegin {
			t.st = sData
			return
		}
	case '!':
		if t.k >= 2 {
			t.st = sCommentBang
			return
		}
	}
	t.k, t.cbegin = 0, false
}

// escaped handles the dash and '<' states of escaped and double-escaped script data.
func (t *tokenizer) escaped(c byte) {
	dbl := t.st >= sDbl
	lt, dash, dashdash, body := sEscLt, sEscDash, sEscDashDash, sEsc
	if dbl {
		lt, dash, dashdash, body = sDblLt, sDblDash, sDblDashDash, sDbl
	}
	switch c {
	case '-':
		if t.st == body {
			t.st = dash
		} else {
			t.st = dashdash
		}
	case '<':
		t.st = lt
	case '>':
		if t.st == dashdash {
			t.st = sScript
		} else {
			t.st = body
		}
	default:
		t.st = body
	}
}

// park passes on what the write leaves that needs no decision, and holds the rest.
func (t *tokenizer) park() {
	p := t.p
	switch {
	case t.suppress:
		// inside a nonce attribute: its bytes are decided at its end
	case t.st == sAttrName && t.cand&candNonce != 0:
		t.heldN += copy(t.held[t.heldN:], p[t.start:])
	case t.st == sSelfClosing && t.start < len(p):
		t.in.out(p[t.start : len(p)-1])
		t.slashHeld = true
	default:
		t.flushTo(len(p))
	}
	t.p, t.start = nil, 0
}

// close passes on what was held at the end of the body.
func (t *tokenizer) close() {
	if t.suppress {
		return
	}
	if t.heldN > 0 {
		t.in.out(t.held[:t.heldN])
		t.heldN = 0
	}
	if t.slashHeld {
		t.in.out([]byte{'/'})
		t.slashHeld = false
	}
}
