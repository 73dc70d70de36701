package csp

import (
	"strings"
	"testing"
	"unicode/utf16"
)

func TestUnreadableEncoding(t *testing.T) {
	for _, c := range []struct {
		name, head, charset string
		more                bool
		unreadable, decided bool
	}{
		{"ASCII, no charset", "<!d", "", true, false, true},
		{"utf-8", "<ht", "utf-8", true, false, true},
		{"windows-1252", "<ht", "windows-1252", true, false, true},
		{"shift_jis", "<ht", "Shift_JIS", true, false, true},
		{"iso-2022-jp: its escapes make ASCII bytes two-byte characters", "<ht", "ISO-2022-JP", true, true, true},
		{"csiso2022jp", "<ht", "csISO2022JP", true, true, true},
		{"unknown label: browsers ignore it", "<ht", "utf8mb4", true, false, true},
		{"ibm437 (DOS) is ASCII", "<ht", "IBM437", true, false, true},
		{"UTF-16LE BOM", "\xff\xfe<", "", true, true, true},
		{"UTF-16BE BOM", "\xfe\xff\x00", "", true, true, true},
		{"UTF-32LE BOM (read as UTF-16LE)", "\xff\xfe\x00", "", true, true, true},
		{"UTF-32BE BOM", "\x00\x00\xfe", "", true, true, true},
		{"BOM against charset=utf-8", "\xff\xfe<", "utf-8", true, true, true},
		{"UTF-8 BOM against charset=utf-16", "\xef\xbb\xbf", "utf-16", true, false, true},
		{"UTF-16LE without BOM", "<\x00!", "", true, true, true},
		{"UTF-16BE without BOM", "\x00<\x00", "", true, true, true},
		{"UTF-32LE without BOM", "<\x00\x00", "", true, true, true},
		{"charset utf-16", "<ht", "utf-16", true, true, true},
		{"charset UTF-16LE, spaces", "<ht", " UTF-16LE ", true, true, true},
		{"charset unicodefffe", "<ht", "unicodeFFFE", true, true, true},
		{"charset ucs-2", "<ht", "ucs-2", true, true, true},
		{"charset utf-32", "<ht", "utf-32", true, true, true},
		{"charset utf-7", "<ht", "UTF-7", true, true, true},
		{"charset ebcdic", "L\x88\xa3", "ebcdic-cp-us", true, true, true},
		{"charset ibm037", "L\x88\xa3", "IBM037", true, true, true},
		{"charset cp1047", "L\x88\xa3", "cp1047", true, true, true},
		{"charset csIBM500", "L\x88\xa3", "csIBM500", true, true, true},
		{"one byte, more to come", "<", "", true, false, false},
		{"UTF-8 BOM's start, more to come", "\xef\xbb", "utf-16", true, false, false},
		{"nothing yet", "", "utf-16", true, false, false},
		{"one byte, the end", "<", "", false, false, true},
		{"one byte, the end, charset utf-16", "<", "utf-16", false, true, true},
		{"empty body", "", "utf-16", false, false, true},
	} {
		enc, decided := UnreadableEncoding([]byte(c.head), c.charset, c.more)
		if decided != c.decided || decided && (enc != "") != c.unreadable {
			t.Errorf("%s: UnreadableEncoding(%q, %q, %v) = %q, %v; want unreadable %v, decided %v",
				c.name, c.head, c.charset, c.more, enc, decided, c.unreadable, c.decided)
		}
	}
}

func TestWideForms(t *testing.T) {
	f := WideForms(testPH)
	var le, be []byte
	for _, u := range utf16.Encode([]rune(testPH)) {
		le = append(le, byte(u), byte(u>>8))
		be = append(be, byte(u>>8), byte(u))
	}
	if f[0] != string(le) || f[1] != string(be) || len(f[2]) != 4*len(testPH) || !strings.HasPrefix(f[3], "\x00\x00\x00"+testPH[:1]) {
		t.Fatalf("WideForms(%q) = %q", testPH, f)
	}
}

func TestValidatePlaceholder(t *testing.T) {
	for ph, ok := range map[string]bool{
		testPH:                          true,
		"3f9c2a7b1e6d4c08a1b2":          true,
		"k7-_K7cQ9L.mZp1Xw2Vb~4Rn":      true,  // base64url, hex and - . ~
		"k+/=K7cQ9LmZp1Xw2Vb4Rn==":      false, // base64: html/template writes + as &#43;
		"PH&3f9c2a7b1e6d4c08":           false,
		"PH<3f9c2a7b1e6d4c08":           false,
		"PH\"3f9c2a7b1e6d4c08":          false,
		"PH'3f9c2a7b1e6d4c08":           false,
		"PH\\3f9c2a7b1e6d4c08":          false,
		"PH/3f9c2a7b1e6d4c08":           false,
		"PH é 3f9c2a7b1e6d4c08":         false, // non-ASCII: other bytes in windows-1252 than in UTF-8
		"PH-3f9c2a7b1e6d4c08\n":         false,
		"PH 3f9c2a7b1e6d4c08":           false,
		"PH-3f9c2a7b\x001e6d4c08":       false,
		"PH-\u00a03f9c2a7b1e6d4c08xxxx": false,
	} {
		err := ValidatePlaceholder(ph)
		if (err == nil) != ok {
			t.Errorf("ValidatePlaceholder(%q) = %v, want ok %v", ph, err, ok)
		}
		if err != nil && strings.Contains(err.Error(), ph[:4]) {
			t.Errorf("the error shows the placeholder: %v", err)
		}
	}
}

// A wide form is redacted like the placeholder: split across writes at any point, next to
// NUL-free text (where the search is skipped) and after a false start.
func TestRedactWideForms(t *testing.T) {
	for _, form := range WideForms(testPH) {
		dashes := strings.Repeat("-", len(form))
		in := "text " + form[:3] + form + " more\x00" + form + "x" + form[:len(form)-1]
		want := "text " + form[:3] + dashes + " more\x00" + dashes + "x" + form[:len(form)-1]
		for chunk := 0; chunk <= len(in); chunk++ {
			if got := rewrite(t, Redact, "", form, in, chunk); got != want {
				t.Fatalf("form %q, writes of %d: got %q, want %q", form, chunk, got, want)
			}
		}
	}
}
