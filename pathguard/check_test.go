package pathguard

import (
	"net/url"
	"strings"
	"testing"
	"unicode"

	"github.com/swarmsec/caddy-hardening/internal/testenv"
	"golang.org/x/text/unicode/norm"
)

func TestCorpusAttacksRefused(t *testing.T) {
	attacks := testenv.Lines(t, "testdata/attacks.txt")
	if len(attacks) < 100 {
		t.Fatalf("only %d attack forms", len(attacks))
	}
	for _, p := range attacks {
		if r := Check(p, Options{}); r == "" {
			t.Errorf("Check(%q) passed an attack", p)
		}
	}
}

func TestCorpusBenignPassed(t *testing.T) {
	benign := testenv.Lines(t, "testdata/benign.txt")
	if len(benign) < 100 {
		t.Fatalf("only %d benign paths", len(benign))
	}
	for _, p := range benign {
		if r := Check(p, Options{}); r != "" {
			t.Errorf("Check(%q) = %s, want it passed", p, r)
		}
	}
}

func TestCheckReasons(t *testing.T) {
	for _, tc := range []struct {
		path string
		opt  Options
		want Reason
	}{
		{"/../x", Options{}, ReasonDotSegment},
		{"/%2E%2e/x", Options{}, ReasonDotSegment},
		{"/..;/x", Options{AllowPathParams: true}, ReasonDotSegment},
		{"/a;b", Options{}, ReasonPathParams},
		{"/a;b", Options{AllowPathParams: true}, ""},
		{"/a%3bb", Options{}, ReasonPathParams},
		{"/a%2fb", Options{}, ReasonEncodedSlash},
		{"/a%2fb", Options{AllowEncodedSlash: true}, ""},
		{"/a%2f..%2fb", Options{AllowEncodedSlash: true}, ReasonDotSegment},
		{"/a\\b", Options{}, ReasonBackslash},
		{"/a%5Cb", Options{}, ReasonBackslash},
		{"/a%00", Options{}, ReasonNUL},
		{"/a%0d%0a", Options{}, ReasonControl},
		{"/%252e%252e/x", Options{}, ReasonDoubleEncoding},
		{"/%2541", Options{}, ""}, // double-encoded "A": odd, harmless
		// Deeper layers are judged like the first: text passes, however often it was
		// encoded; a dot, separator, NUL or control byte is double_encoding; bytes that are
		// not UTF-8 are invalid_utf8 or, read as a separator, overlong_utf8.
		{"/caf%25C3%25A9", Options{}, ""},         // é encoded twice, as some proxies send it
		{"/caf%2525C3%2525A9", Options{}, ""},     // three times
		{"/caf%252525C3%252525A9", Options{}, ""}, // four times
		{"/%25E2%2580%25A6", Options{}, ""},       // … encoded twice: "...", which passes
		{"/caf%25e9", Options{}, ReasonInvalidUTF8},
		{"/%2525252e%2525252e/x", Options{}, ReasonDoubleEncoding}, // a dot encoded four times
		{"/%25252e%25252e/x", Options{}, ReasonDoubleEncoding},
		{"/a%25252fb", Options{}, ReasonDoubleEncoding},
		{"/a%25255cb", Options{}, ReasonDoubleEncoding},
		{"/a%252500", Options{}, ReasonDoubleEncoding},
		{"/a%25250d%25250a", Options{}, ReasonDoubleEncoding},
		{"/%25c0%25ae%25c0%25ae/x", Options{}, ReasonOverlongUTF8},
		{"/%2525c0%2525ae/x", Options{}, ReasonOverlongUTF8},
		{"/%25ef%25bc%258e%25ef%25bc%258e/x", Options{}, ReasonLookalike}, // ．． encoded twice
		{"/a%25ef%25bc%258fb", Options{}, ReasonLookalike},                // ／ encoded twice
		{"/%25u002e%25u002e/x", Options{}, ReasonUnicodeEscape},
		{"/caf%25e9/%2e%2e/x", Options{}, ReasonDotSegment},
		{"/%c0%ae%c0%ae/x", Options{}, ReasonOverlongUTF8},
		{"/\xc0\xae\xc0\xae/x", Options{}, ReasonOverlongUTF8}, // the same bytes sent raw
		{"/\xe0\x80\xae/x", Options{}, ReasonOverlongUTF8},
		{"/a/\xc1\x9c/b", Options{}, ReasonOverlongUTF8}, // overlong '\'
		{"/\xc0\xae./x", Options{}, ReasonOverlongUTF8},
		{"/%f8%80%80%80%ae", Options{}, ReasonOverlongUTF8},    // five-byte form
		{"/%fc%80%80%80%80%ae", Options{}, ReasonOverlongUTF8}, // six-byte form
		{"/a%80b", Options{}, ReasonInvalidUTF8},               // lone continuation byte
		{"/a\x80b", Options{}, ReasonInvalidUTF8},
		{"/caf%e9", Options{}, ReasonInvalidUTF8}, // Latin-1
		// Latin-1 letters whose bytes are also overlong lead bytes: only a following
		// continuation byte makes the overlong form.
		{"/M%FCnchen", Options{}, ReasonInvalidUTF8},    // ü
		{"/K%F6ln.html", Options{}, ReasonInvalidUTF8},  // ö
		{"/%C0ngstr%F6m", Options{}, ReasonInvalidUTF8}, // À
		{"/%C1lvaro", Options{}, ReasonInvalidUTF8},     // Á
		{"/%E0-propos", Options{}, ReasonInvalidUTF8},   // à
		{"/%F0r", Options{}, ReasonInvalidUTF8},         // ð
		{"/%FDes", Options{}, ReasonInvalidUTF8},        // ý
		{"/%FE%FF", Options{}, ReasonInvalidUTF8},
		{"/%F5%80%80%80", Options{}, ReasonInvalidUTF8}, // above U+10FFFF, no separator
		{"/a%e2%80/b", Options{}, ReasonInvalidUTF8},
		{"/%ed%a0%80", Options{}, ReasonInvalidUTF8}, // surrogate half
		{"/%f4%90%80%80", Options{}, ReasonInvalidUTF8},
		{"/%ef%bf%bd", Options{}, ""},   // U+FFFD itself is valid UTF-8
		{"/caf\xc3\xa9", Options{}, ""}, // raw UTF-8
		{"/caf%C3%A9", Options{}, ""},
		{"/%u002e%u002e/x", Options{}, ReasonUnicodeEscape},
		{"/\uff0e\uff0e/x", Options{}, ReasonLookalike},
		{"/%e2%80%a5/x", Options{}, ReasonLookalike},          // ‥ two-dot leader: NFKC ".."
		{"/\u2025/x", Options{}, ReasonLookalike},             // the same, sent raw
		{"/%ef%b8%b0/x", Options{}, ReasonLookalike},          // ︰ vertical two-dot leader
		{"/%ef%b9%92%ef%b9%92/x", Options{}, ReasonLookalike}, // ﹒﹒ small full stops
		{"/.%e2%80%a4/x", Options{}, ReasonLookalike},         // '.' and a one-dot leader
		{"/%e2%80%a6/x", Options{}, ""},                       // … is "...", which passes like "..."
		{"/%e2%80%a5x/y", Options{}, ""},                      // ‥ inside a name
		{"/C:/x", Options{}, ReasonDrivePath},
		{"/%", Options{}, ReasonBadEncoding},
		{"/a..b.txt", Options{}, ""},
		{"/100%25", Options{}, ""},
		// A malformed reason only when nothing worse is there: a flaw in front of an attack
		// form does not lower its weight (Reason.Malformed).
		{"/..;/x", Options{}, ReasonDotSegment}, // Tomcat's traversal, not mere path params
		{"/shop/item;jsessionid=ABC", Options{}, ReasonPathParams},
		{"/a/..%2fetc", Options{}, ReasonDotSegment},
		{"/caf\xe9/%2e%2e/x", Options{}, ReasonDotSegment},
		{"/caf%e9/%c0%ae%c0%ae/x", Options{}, ReasonOverlongUTF8},
		{"/a%zz/%2e%2e/x", Options{}, ReasonDotSegment},
		{"/a;b/%5c", Options{}, ReasonBackslash},
		{"/a%zz/b", Options{}, ReasonBadEncoding},
	} {
		if got := Check(tc.path, tc.opt); got != tc.want {
			t.Errorf("Check(%q, %+v) = %q, want %q", tc.path, tc.opt, got, tc.want)
		}
	}
}

// TestMalformedReasons: the reasons legacy links and sloppy clients cause are Malformed; the
// attack forms are not.
func TestMalformedReasons(t *testing.T) {
	malformed := map[Reason]bool{ReasonInvalidUTF8: true, ReasonPathParams: true, ReasonEncodedSlash: true, ReasonBadEncoding: true}
	for _, r := range Reasons {
		if r.Malformed() != malformed[r] {
			t.Errorf("%s: Malformed() = %v", r, r.Malformed())
		}
	}
}

func TestCheckOrdinaryPathAllocatesNothing(t *testing.T) {
	for _, p := range []string{"/api/v1/users/123", "/static/app.9f8e7d.css", "/a..b.txt"} {
		if n := testing.AllocsPerRun(100, func() { Check(p, Options{}) }); n != 0 {
			t.Errorf("Check(%q): %v allocations", p, n)
		}
	}
}

// TestDotsMatchesNFKC: for every rune whose NFKC form is only full stops, dots gives their
// number, and every such rune, alone or paired so that the segment normalizes to "..", is
// refused; a rune whose NFKC form holds a slash or backslash next to nothing but dots would
// be a separator look-alike and is refused too.
func TestDotsMatchesNFKC(t *testing.T) {
	for r := rune(0x80); r <= unicode.MaxRune; r++ {
		if r >= 0xd800 && r <= 0xdfff {
			continue
		}
		nf := norm.NFKC.String(string(r))
		if strings.Trim(nf, ".") == "" {
			if got := dots(r); got != len(nf) {
				t.Errorf("dots(%U) = %d, NFKC gives %q", r, got, nf)
			}
			seg := string(r)
			for len(norm.NFKC.String(seg)) < 2 {
				seg += "."
			}
			if want := norm.NFKC.String(seg) == ".."; (Check("/"+seg+"/x", Options{}) != "") != want {
				t.Errorf("Check(%q) = %q, NFKC form %q", "/"+seg+"/x", Check("/"+seg+"/x", Options{}), norm.NFKC.String(seg))
			}
		} else if nf == "/" || nf == "\\" {
			if Check("/a"+string(r)+"b", Options{}) != ReasonLookalike {
				t.Errorf("%U (NFKC %q) passes as a separator look-alike", r, nf)
			}
		}
	}
}

// TestRawAndForwardedFormsAgree: Check gives the same answer for a request target as the client
// sent it and for the escaped path Go's URL makes of it (r.URL.EscapedPath, which reverse_proxy
// sends upstream and whose decoding, r.URL.Path, file_server reads): a byte refused encoded is
// refused raw, and the other way round.
func TestRawAndForwardedFormsAgree(t *testing.T) {
	paths := append(testenv.Lines(t, "testdata/attacks.txt"), testenv.Lines(t, "testdata/benign.txt")...)
	for b := 0x80; b <= 0xff; b++ {
		for _, tail := range []string{"", "\x80", "\xae", "\x80\xae", "\x80\x80\xae", "\xbf\xbf", "\x8f\xbf\xbf", "a", "/x"} {
			paths = append(paths, "/a"+string([]byte{byte(b)})+tail)
		}
	}
	for _, p := range paths {
		u, err := url.ParseRequestURI(p)
		if err != nil {
			continue // Go's server answers 400 itself
		}
		fwd := u.EscapedPath()
		if got, want := Check(p, Options{}), Check(fwd, Options{}); (got == "") != (want == "") {
			t.Errorf("Check(%q) = %q, but the forwarded form %q gives %q", p, got, fwd, want)
		}
	}
}
