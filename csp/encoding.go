package csp

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
)

// The injector reads a body byte by byte as ASCII: it finds tags, attributes and the
// placeholder only in text whose ASCII characters are single ASCII bytes, which is what every
// encoding of the WHATWG Encoding standard but UTF-16 and ISO-2022-JP gives. ISO-2022-JP
// starts in ASCII, but an escape sequence (ESC $ B) switches it to two-byte characters made of
// ASCII bytes: after one, `">` is a kanji to the browser and a quote and a tag's end to the
// injector, so user content can hide from the injector a tag the browser leaves open.
// A browser picks the encoding of a page from, in order: a byte order mark, the charset of
// Content-Type, then the page itself (<meta charset> or the XML declaration, read as ASCII,
// where UTF-16 means UTF-8), then a guess.

// UnreadableEncoding tells whether a page is in an encoding the injector cannot read as the
// browser will. head is the start of the body (three bytes are enough), charset the
// Content-Type's charset parameter, and more whether more of the body may come. It returns
// "" for text the injector reads (decided), or what makes the body unreadable:
//   - a UTF-16 byte order mark (a browser obeys it whatever the charset says; a UTF-32LE one
//     starts with it);
//   - a NUL among the first two bytes: UTF-16 or UTF-32 without a byte order mark (XML
//     parsers, Chromium's included, detect those from `<\0?\0`; and whoever reads the bytes
//     reads the placeholder in them);
//   - a charset that names UTF-16 or ISO-2022-JP (labels of the Encoding standard, which
//     browsers obey), or
//     one browsers do not know but whose bytes for ASCII are not ASCII's (UTF-32, UCS-4,
//     UTF-7, EBCDIC): the page holds the placeholder in bytes the injector cannot find.
//
// A UTF-8 byte order mark makes the page UTF-8, whatever the charset says; an empty body is
// readable. decided is false while head is too short to tell and more may come.
func UnreadableEncoding(head []byte, charset string, more bool) (enc string, decided bool) {
	bom8 := []byte{0xEF, 0xBB, 0xBF}
	switch {
	case len(head) == 0 && !more:
		return "", true // an empty body holds nothing to read
	case bytes.HasPrefix(head, bom8):
		return "", true
	case bytes.HasPrefix(head, []byte{0xFE, 0xFF}):
		return "UTF-16BE (byte order mark)", true
	case bytes.HasPrefix(head, []byte{0xFF, 0xFE}):
		return "UTF-16LE (byte order mark)", true
	case bytes.IndexByte(head[:min(2, len(head))], 0) >= 0:
		return "UTF-16 or UTF-32 (a NUL byte in the first two)", true
	case more && (len(head) < 2 || len(head) < len(bom8) && bytes.HasPrefix(bom8, head)):
		return "", false
	}
	if !asciiCompatibleLabel(charset) {
		return fmt.Sprintf("charset %q", charset), true
	}
	return "", true
}

// utf16Labels are the Encoding standard's labels of UTF-16LE and UTF-16BE.
var utf16Labels = map[string]bool{
	"csunicode": true, "iso-10646-ucs-2": true, "ucs-2": true, "unicode": true, "unicodefeff": true,
	"utf-16": true, "utf-16le": true, "unicodefffe": true, "utf-16be": true,
}

// wideLabels name encodings browsers do not know (so ignore) whose bytes for ASCII are not
// ASCII's.
var wideLabels = map[string]bool{
	"utf-32": true, "utf-32le": true, "utf-32be": true, "ucs-4": true, "iso-10646-ucs-4": true,
	"csucs4": true, "utf-7": true, "csutf7": true, "utf-7-imap": true, "x-utf-32le": true,
	"x-utf-32be": true,
}

// ebcdicPages are the IBM EBCDIC code pages registered with IANA (ibm037, cp500, ...).
var ebcdicPages = map[int]bool{
	37: true, 273: true, 277: true, 278: true, 280: true, 284: true, 285: true, 290: true,
	297: true, 420: true, 423: true, 424: true, 500: true, 870: true, 871: true, 875: true,
	880: true, 905: true, 918: true, 1025: true, 1026: true, 1047: true, 1140: true, 1141: true,
	1142: true, 1143: true, 1144: true, 1145: true, 1146: true, 1147: true, 1148: true, 1149: true,
}

// asciiCompatibleLabel reports whether a charset label leaves ASCII as ASCII bytes, as far as
// a browser is concerned: "" and labels it does not know count as ASCII-compatible (it ignores
// them), except those naming an encoding known not to be.
func asciiCompatibleLabel(label string) bool {
	l := strings.ToLower(strings.Trim(label, " \t\n\f\r")) // the Encoding standard's "get an encoding"
	if l == "" {
		return true
	}
	if utf16Labels[l] || wideLabels[l] || l == "iso-2022-jp" || l == "csiso2022jp" || strings.HasPrefix(l, "ebcdic") {
		return false
	}
	num := strings.TrimPrefix(l, "cs")
	if rest, ok := strings.CutPrefix(num, "ibm"); ok {
		num = rest
	} else if rest, ok := strings.CutPrefix(num, "cp"); ok {
		num = rest
	} else {
		return true
	}
	n, err := strconv.Atoi(strings.TrimPrefix(num, "-"))
	return err != nil || !ebcdicPages[n]
}

// WideFormCount is the number of forms WideForms returns.
const WideFormCount = 4

// WideForms returns the bytes of an ASCII placeholder in UTF-16LE, UTF-16BE, UTF-32LE and
// UTF-32BE: how it appears in a body written in one of those encodings, where a byte search
// for the placeholder does not find it.
func WideForms(placeholder string) [WideFormCount]string {
	var le16, be16, le32, be32 []byte
	for i := 0; i < len(placeholder); i++ {
		c := placeholder[i]
		le16 = append(le16, c, 0)
		be16 = append(be16, 0, c)
		le32 = append(le32, c, 0, 0, 0)
		be32 = append(be32, 0, 0, 0, c)
	}
	return [WideFormCount]string{string(le16), string(be16), string(le32), string(be32)}
}

// ValidatePlaceholder checks that a nonce placeholder is made of letters, digits, '-', '_', '.'
// and '~' (the characters of `openssl rand -hex` and base64url). Other ASCII would not have
// the same bytes in every charset whose bytes for ASCII are ASCII (a space, a control byte,
// non-ASCII), or is what templating engines escape: every HTML escaper writes & < > " ' as
// entities, Go's html/template writes + as &#43; (and \u002b in a script), JSON encoders write
// / as \/ or \u002f. An escaped placeholder is not found in the page, so the application's
// tags lose their nonce, and the secret stays in the page in its escaped form. Its length is
// checked apart (MinPlaceholderLen). The error never shows the placeholder (it is a secret).
func ValidatePlaceholder(ph string) error {
	for i := 0; i < len(ph); i++ {
		c := ph[i]
		if c < 0x21 || c > 0x7E {
			return fmt.Errorf("inject_nonce placeholder has a space, control or non-ASCII byte at position %d: it must be printable ASCII without spaces, to read the same in every charset a page may use (e.g. from `openssl rand -hex 16`)", i+1)
		}
		if !isAlpha(c) && !(c >= '0' && c <= '9') && c != '-' && c != '_' && c != '.' && c != '~' {
			return fmt.Errorf("inject_nonce placeholder has a punctuation character at position %d: templating engines escape such characters (& < > \" ' as entities, + as &#43; in Go's html/template, / as \\/ in JSON), so the page would carry another text than the placeholder, its tags would lose their nonce and the escaped secret would reach the client; use letters, digits, - _ . ~ (e.g. from `openssl rand -hex 16`)", i+1)
		}
	}
	return nil
}
