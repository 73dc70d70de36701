package csp

import (
	"bytes"
	"errors"
	"io"
)

// Mode says which tags of a page get the response's nonce.
type Mode uint8

const (
	// Placeholder replaces every occurrence of a secret placeholder with the nonce and removes
	// every nonce attribute that does not then carry this response's nonce: only tags the
	// application marked get a working nonce; a tag an attacker injected never does.
	Placeholder Mode = iota + 1
	// Tags adds the nonce to every <script>, <style> and <link rel=stylesheet|preload|
	// modulepreload>: for pages the operator fully controls (a built single-page app), never
	// for pages that contain user content.
	Tags
	// Redact overwrites every occurrence of the placeholder with as many '-', in a body that
	// is not HTML (JSON, JavaScript, CSS, text), or in any body where no nonce is made (the
	// security_headers feature turned off): the secret never leaves, and the body keeps its
	// length (so its Content-Length).
	Redact
	// Substitute replaces every occurrence of a marker with the nonce and passes every other
	// byte on, nonce attributes included (no tag is read): a stage in front of a Placeholder
	// or Tags injector that turns the page's own nonce into the response's, or alone, the
	// placeholder's replacement in a page whose nonces belong to a policy that is not this
	// response's.
	Substitute
)

// MinPlaceholderLen is the shortest placeholder accepted: it is a secret (whoever knows it can
// make the edge nonce their own tag), so it must not be guessable.
const MinPlaceholderLen = 16

// Injector rewrites an HTML body on its way to w, one Write at a time: no buffering of the
// body, a fixed amount of state per response (a few bytes of a tag or placeholder split
// across writes). It follows the HTML tokenizer (comments, raw text elements, script escapes)
// but builds no tree. Only nonce attributes change; every other byte passes through.
//
// A tag with a '<' in an attribute name or value, quoted or not, never keeps or gets a nonce:
// that is the dangling-markup attack (`<script src=//evil x=` or `<link rel=stylesheet
// href=//evil x="` injected before a real nonced tag, so the browser reads both as one tag).
// Chromium ignores such nonces on scripts, but not on stylesheets.
type Injector struct {
	w     io.Writer
	err   error
	mode  Mode
	nonce []byte
	attr  []byte // ` nonce="<nonce>"`; attr[1:] is the kept form
	ph    []byte
	phN   int  // bytes of ph seen at the end of the last write, not yet passed on
	nul   bool // ph holds a NUL byte (its UTF-16 and UTF-32 forms): text without one cannot hold it
	// a placeholder became dashes inside a tag holding a '<' in an attribute (see passNonce)
	dashed bool
	t      tokenizer
	// placed, when set (by tests), is told what each placeholder became, in body order
	placed func(dashed bool)
}

// NewInjector returns an Injector writing to w. In Placeholder mode, placeholder is the secret
// marker the application writes where the nonce goes (at least MinPlaceholderLen bytes); in
// Redact mode it is the secret to overwrite, and nonce is unused; in Substitute mode it is the
// marker the nonce replaces (at least MinPlaceholderLen bytes too).
func NewInjector(w io.Writer, mode Mode, nonce, placeholder string) (*Injector, error) {
	in := &Injector{}
	return in, in.Reset(w, mode, nonce, placeholder)
}

// Reset prepares the Injector for another response, keeping its memory.
func (in *Injector) Reset(w io.Writer, mode Mode, nonce, placeholder string) error {
	if mode < Placeholder || mode > Substitute {
		return errors.New("csp: unknown injection mode")
	}
	if mode != Tags && len(placeholder) < MinPlaceholderLen {
		return errors.New("csp: the nonce placeholder must be at least 16 characters: it is a secret")
	}
	*in = Injector{w: w, mode: mode, nonce: append(in.nonce[:0], nonce...), attr: in.attr[:0], ph: append(in.ph[:0], placeholder...)}
	switch mode {
	case Tags:
		in.ph = in.ph[:0]
	case Redact:
		in.nonce = in.nonce[:0]
		for range len(placeholder) {
			in.nonce = append(in.nonce, '-')
		}
	}
	in.nul = bytes.IndexByte(in.ph, 0) >= 0
	in.attr = append(append(append(in.attr, ` nonce="`...), nonce...), '"')
	in.t = tokenizer{in: in, st: sData}
	return nil
}

// Write rewrites p and passes it on. Bytes that may belong to a placeholder or a nonce
// attribute continued by the next write are held back until it comes (or Close).
func (in *Injector) Write(p []byte) (int, error) {
	if in.err != nil {
		return 0, in.err
	}
	if len(in.ph) == 0 {
		in.pass(p)
	} else {
		in.replace(p)
	}
	if in.err != nil {
		return 0, in.err
	}
	return len(p), nil
}

// Close passes on what was held back. A tag left open at the end of the body stays as it was,
// except a nonce attribute, which is dropped (a browser drops the whole unfinished tag).
func (in *Injector) Close() error {
	if in.err != nil {
		return in.err
	}
	if in.phN > 0 {
		in.pass(in.ph[:in.phN])
		in.phN = 0
	}
	if in.reads() {
		in.t.close()
	}
	return in.err
}

// replace passes p on with every placeholder turned into the nonce, including placeholders
// split across writes. Only the prefix of ph that ends p is held (no copy: it is ph's prefix).
func (in *Injector) replace(p []byte) {
	ph := in.ph
	if in.phN > 0 {
		need := ph[in.phN:]
		n := min(len(need), len(p))
		if bytes.Equal(p[:n], need[:n]) {
			if n < len(need) {
				in.phN += n
				return
			}
			in.phN = 0
			in.passNonce()
			p = p[n:]
		} else {
			// Not a placeholder after all: its first byte is text; the rest may start one.
			held := in.phN
			in.phN = 0
			in.pass(ph[:1])
			in.replace(ph[1:held])
			in.replace(p)
			return
		}
	}
	for len(p) > 0 && (!in.nul || bytes.IndexByte(p, 0) >= 0) {
		i := bytes.Index(p, ph)
		if i < 0 {
			break
		}
		in.pass(p[:i])
		in.passNonce()
		p = p[i+len(ph):]
	}
	// Hold the longest end of p that begins the placeholder.
	k := min(len(ph)-1, len(p))
	for ; k > 0; k-- {
		if bytes.Equal(p[len(p)-k:], ph[:k]) {
			break
		}
	}
	in.pass(p[:len(p)-k])
	in.phN = k
}

// GaveUp reports whether placeholder mode lost track of the page (see foreign.go): from that
// point its placeholders became '-' and no nonce was kept, so the page's later scripts and
// styles are blocked. The operator should hear of it: the page looks broken to its users.
func (in *Injector) GaveUp() bool { return in.t.poisoned }

// Dashed reports whether a placeholder became dashes inside a tag holding a '<' in an
// attribute (markup swallowed into an attribute value, see passNonce), before any giving up.
func (in *Injector) Dashed() bool { return in.dashed }

// passNonce hands on what a placeholder becomes: the nonce, or as many '-' once the tokenizer
// lost track of the page (see foreign.go), where no tag may get it, and inside a tag that
// holds a '<' in an attribute name or value before it. Such a tag swallowed markup (`<iframe
// srcdoc='<script src=//evil x=` before the application's marked tag): an `<iframe srcdoc>`
// or a `data:` URL makes a document of that value, which inherits the page's policy, and the
// attacker's tag there would carry the nonce.
func (in *Injector) passNonce() {
	if !in.t.poisoned {
		if !in.t.inSuspiciousTag() {
			if in.placed != nil {
				in.placed(false)
			}
			in.pass(in.nonce)
			return
		}
		in.dashed = true
	}
	if in.placed != nil {
		in.placed(true)
	}
	for n := len(in.nonce); n > 0; n -= min(n, len(dashes)) {
		in.pass(dashes[:min(n, len(dashes))])
	}
}

var dashes = bytes.Repeat([]byte{'-'}, 32)

// pass hands text on: to the tokenizer, or straight out when no tag is read. In Placeholder
// mode an ESC byte gives up on the rest of the page (see foreign.go's poison): it starts the
// escape sequences of ISO-2022-JP, which a page can declare in a <meta> or a browser guess
// for a page without a charset, and after which the browser reads ASCII bytes as parts of
// two-byte characters (see UnreadableEncoding).
func (in *Injector) pass(b []byte) {
	if !in.reads() {
		in.out(b)
		return
	}
	if in.mode == Placeholder && !in.t.poisoned {
		if i := bytes.IndexByte(b, 0x1B); i >= 0 {
			in.t.feed(b[:i])
			in.t.poison()
			b = b[i:]
		}
	}
	in.t.feed(b)
}

// reads reports whether the mode reads tags (to rewrite their nonce attributes).
func (in *Injector) reads() bool { return in.mode == Placeholder || in.mode == Tags }

func (in *Injector) out(b []byte) {
	if in.err == nil && len(b) > 0 {
		_, in.err = in.w.Write(b)
	}
}
