package pathguard

import (
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"unicode"

	"github.com/swarmsec/caddy-hardening/internal/testenv"
	"golang.org/x/net/idna"
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
		{"/a/..%3f/b", Options{}, ReasonDotSegment}, // a server that parses the decoded path again reads `..`
		{"/a/%2e%2e%23/b", Options{}, ReasonDotSegment},
		{"/a/..%253F/b", Options{}, ReasonDotSegment}, // the second layer, as `..%253B/`
		{"/faq/why%3F", Options{}, ""},
		{"/a/...%3F/b", Options{}, ""},
		{"/a;b", Options{}, ReasonPathParams},
		{"/a;b", Options{AllowPathParams: true}, ""},
		{"/a%3bb", Options{}, ReasonPathParams},
		{"/a%2fb", Options{}, ReasonEncodedSlash},
		{"/a%2fb", Options{AllowEncodedSlash: true}, ""},
		{"/a%2f..%2fb", Options{AllowEncodedSlash: true}, ReasonDotSegment},
		// An encoded slash next to a separator or another encoded slash decodes to an empty
		// segment (`//`, an absolute path to a naive join), which no slash merging removes.
		{"/a/%2F/etc/passwd", Options{AllowEncodedSlash: true}, ReasonEncodedSlash},
		{"/%2F%2Fetc/passwd", Options{AllowEncodedSlash: true}, ReasonEncodedSlash},
		{"/%2fevil.example", Options{AllowEncodedSlash: true}, ReasonEncodedSlash},
		{"/a%2F%2Fb", Options{AllowEncodedSlash: true}, ReasonEncodedSlash},
		{"/group%2F/x", Options{AllowEncodedSlash: true}, ReasonEncodedSlash},
		{"/a/%2F/etc/passwd", Options{AllowEncodedSlash: true, AllowEncodedEmptySegment: true}, ""},
		{"/group%2Fproject/files%2Fa.txt", Options{AllowEncodedSlash: true}, ""},
		{"/group%2F", Options{AllowEncodedSlash: true}, ""}, // a trailing slash, no empty segment
		{"/%2F..%2Fetc", Options{AllowEncodedSlash: true}, ReasonDotSegment},
		{"/a%2F..%2F..%2Fb", Options{AllowEncodedSlash: true}, ReasonDotSegment},
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
		// A colon or semicolon escaped twice is judged as the layer's own text: a wiki title
		// passes, a parameter is path_params, a `..;` or a drive root stays an attack.
		{"/wiki/Special%253ASearch", Options{}, ""},
		{"/wiki/C%253A_The_Contra_Adventure", Options{}, ""},
		{"/wiki/A%253a", Options{}, ""},
		{"/docs/a%253Bb", Options{}, ReasonPathParams},
		{"/docs/a%253Bb", Options{AllowPathParams: true}, ""},
		{"/x/..%253B/etc", Options{}, ReasonDotSegment},
		{"/x/..%253B/etc", Options{AllowPathParams: true}, ReasonDotSegment},
		{"/C%253A%252FWindows/win.ini", Options{}, ReasonDoubleEncoding}, // the slash escaped twice
		{"/C%253A/Windows/win.ini", Options{}, ReasonDrivePath},
		{"/%2525252e%2525252e/x", Options{}, ReasonDoubleEncoding}, // a dot encoded four times
		{"/%25252e%25252e/x", Options{}, ReasonDoubleEncoding},
		{"/a%25252fb", Options{}, ReasonDoubleEncoding},
		{"/a%25255cb", Options{}, ReasonDoubleEncoding},
		{"/a%252500", Options{}, ReasonDoubleEncoding},
		{"/a%25250d%25250a", Options{}, ReasonDoubleEncoding},
		{"/%25c0%25ae%25c0%25ae/x", Options{}, ReasonOverlongUTF8},
		{"/%2525c0%2525ae/x", Options{}, ReasonOverlongUTF8},
		{"/%25ef%25bc%258e%25ef%25bc%258e/x", Options{}, ReasonLookalike}, // ．． encoded twice
		{"/x/..%25ef%25bc%258fetc", Options{}, ReasonLookalike},           // ..／ with ／ encoded twice
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
		// allow invalid_utf8: legacy Latin-1 links pass; overlong UTF-8 and traversal behind
		// such a byte stay refused.
		{"/fr/caf%E9", Options{AllowInvalidUTF8: true}, ""},
		{"/fr/caf\xe9", Options{AllowInvalidUTF8: true}, ""},
		{"/de/stra%DFe", Options{AllowInvalidUTF8: true}, ""},
		{"/se/%C5ngstr%F6m", Options{AllowInvalidUTF8: true}, ""},
		{"/fr/%C0-la-une", Options{AllowInvalidUTF8: true}, ""},
		{"/fr/%E0-propos", Options{AllowInvalidUTF8: true}, ""},
		{"/a%80b", Options{AllowInvalidUTF8: true}, ""},
		{"/%c0%ae%c0%ae/x", Options{AllowInvalidUTF8: true}, ReasonOverlongUTF8},
		{"/\xc0\xae\xc0\xae/x", Options{AllowInvalidUTF8: true}, ReasonOverlongUTF8},
		{"/%e0%80%ae/x", Options{AllowInvalidUTF8: true}, ReasonOverlongUTF8},
		{"/fr/caf%e9/%c0%ae%c0%ae/x", Options{AllowInvalidUTF8: true}, ReasonOverlongUTF8},
		{"/fr/caf%e9/../x", Options{AllowInvalidUTF8: true}, ReasonDotSegment},
		{"/x/.%ff./y", Options{AllowInvalidUTF8: true}, ReasonLookalike},
		{"/fr/caf%e9;x", Options{AllowInvalidUTF8: true}, ReasonPathParams}, // one allow opens one form
		{"/%u002e%u002e/x", Options{}, ReasonUnicodeEscape},
		{"/\uff0e\uff0e/x", Options{}, ReasonLookalike},
		{"/%e2%80%a5/x", Options{}, ReasonLookalike},          // ‥ two-dot leader: NFKC ".."
		{"/\u2025/x", Options{}, ReasonLookalike},             // the same, sent raw
		{"/%ef%b8%b0/x", Options{}, ReasonLookalike},          // ︰ vertical two-dot leader
		{"/%ef%b9%92%ef%b9%92/x", Options{}, ReasonLookalike}, // ﹒﹒ small full stops
		{"/.%e2%80%a4/x", Options{}, ReasonLookalike},         // '.' and a one-dot leader
		{"/%e2%80%a6/x", Options{}, ""},                       // … is "...", which passes like "..."
		// The ideographic full stops: UTS#46 (IDNA mapping in URL libraries, .NET's IdnMapping)
		// maps 。 U+3002, ｡ U+FF61 (NFKC: 。) and ︒ U+FE12 (NFKC: 。) to '.', although NFKC
		// keeps 。 as it is.
		{"/%E3%80%82%E3%80%82/etc/passwd", Options{}, ReasonLookalike}, // 。。
		{"/\u3002\u3002/etc/passwd", Options{}, ReasonLookalike},
		{"/%EF%BD%A1%EF%BD%A1/etc/passwd", Options{}, ReasonLookalike},  // ｡｡
		{"/%EF%B8%92%EF%B8%92/etc/passwd", Options{}, ReasonLookalike},  // ︒︒
		{"/x/.%E3%80%82/y", Options{}, ReasonLookalike},                 // .。
		{"/x/%E3%80%82./y", Options{}, ReasonLookalike},                 // 。.
		{"/x/%E3%80%82%EF%BC%8E/y", Options{}, ReasonLookalike},         // 。．
		{"/x/a%EF%BC%8F%E3%80%82%E3%80%82", Options{}, ReasonLookalike}, // a／。。
		{"/x/%2525E3%252580%252582%2525E3%252580%252582/y", Options{}, ReasonLookalike},
		{"/ja/%E3%81%82%E3%82%8A%E3%81%8C%E3%81%A8%E3%81%86%E3%80%82", Options{}, ""}, // ありがとう。
		{"/ja/%E3%80%82/x", Options{}, ""},                                            // 。 alone: '.'
		{"/ja/%E3%80%82%E3%80%82%E3%80%82/x", Options{}, ""},                          // 。。。: "..."
		{"/ja/a%E3%80%82%E3%80%82b/x", Options{}, ""},                                 // inside a name
		{"/%e2%80%a5x/y", Options{}, ""},                                              // ‥ inside a name
		// A look-alike separator is an attack only where the normalized segment makes a `..`
		// segment or a drive root; between words it is text (F1: one such link banned a
		// reader of a Japanese page).
		{"/ja/AC%EF%BC%8FDC", Options{}, ""}, // AC／DC
		{"/ja/AC\uff0fDC", Options{}, ""},    // the same, sent raw
		{"/ja/%E3%83%A9%E3%83%BC%E3%83%A1%E3%83%B3%EF%BC%8F%E3%81%A4%E3%81%91%E9%BA%BA", Options{}, ""}, // ラーメン／つけ麺
		{"/math/a%E2%88%95b", Options{}, ""},                  // a∕b, division slash
		{"/ja/%E5%86%86%EF%BC%BC100", Options{}, ""},          // 円＼100, full-width backslash
		{"/x/a%E2%81%84b%EF%B9%A8c%E2%88%96d", Options{}, ""}, // ⁄ ﹨ ∖ between names
		{"/x/%EF%BC%8Fa%EF%BC%8F", Options{}, ""},             // ／a／: empty parts are no `..`
		{"/x/.%EF%BC%8F.", Options{}, ""},                     // ./.: single dots
		{"/x/a%E2%80%A5%EF%BC%8Fb", Options{}, ""},            // a‥／b: ‥ inside a name
		{"/x/..%EF%BC%8F..%EF%BC%8Fetc", Options{}, ReasonLookalike},
		{"/x/foo\uff0f..", Options{}, ReasonLookalike},
		{"/x/foo\uff0f..;a/y", Options{AllowPathParams: true}, ReasonLookalike}, // ..;a is .. to Tomcat
		{"/x/foo;a\uff0f../y", Options{AllowPathParams: true}, ReasonLookalike}, // parameters end at the separator
		{"/x/\u2025\uff0fx", Options{}, ReasonLookalike},                        // ‥／x
		{"/x/\uff0e\uff0e\uff3cx", Options{}, ReasonLookalike},                  // ．．＼x
		{"/x/..\u00a5..\u00a5windows\u00a5win.ini", Options{}, ReasonLookalike}, // ¥ is \ in code page 932
		{"/x/..%C2%A5x", Options{}, ReasonLookalike},
		{"/x/..%E2%82%A9..%E2%82%A9x", Options{}, ReasonLookalike}, // ₩ is \ in code page 949
		{"/x/C:%C2%A5windows", Options{}, ReasonLookalike},
		{"/x/%E5%86%86%C2%A5100", Options{}, ""}, // 円¥100: between names
		{"/x/100%C2%A5", Options{}, ""},
		{"/x/%E2%82%A91000", Options{}, ""},
		{"/x/a\u2215..\u2215b", Options{}, ReasonLookalike},
		{"/x/C:\uff0fwindows", Options{}, ReasonLookalike}, // a drive root, through a look-alike
		{"/x/a\uff0fC:/windows", Options{}, ReasonLookalike},
		{"/x/a\uff0fC:", Options{}, ""},             // a drive name at the end, as /docs/C:
		{"/x/.\xff./y", Options{}, ReasonLookalike}, // `..` to a decoder that drops bad bytes
		// A drive segment is an attack when a separator follows it (the root of the drive); as
		// the last segment it is a name (F1: /wiki/A: banned its reader).
		{"/C:/x", Options{}, ReasonDrivePath},
		{"/C:/", Options{}, ReasonDrivePath},
		{"/static/C:/Windows/win.ini", Options{}, ReasonDrivePath},
		{"/static/c:;x/win.ini", Options{AllowPathParams: true}, ReasonDrivePath},
		{"/D%3a/x", Options{}, ReasonDrivePath},
		{"/static/C:%5cwindows", Options{}, ReasonBackslash},
		{"/wiki/A:", Options{}, ""},
		{"/docs/C:", Options{}, ""},
		{"/docs/C%3A", Options{}, ""},
		{"/C:", Options{}, ""},
		{"/wiki/C:_The_Contra_Adventure", Options{}, ""},
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
		// `..` padded with spaces or dots: a server that trims segments reads `..`.
		{"/a/..%20/b", Options{}, ReasonDotSegment},
		{"/a/%20..", Options{}, ReasonDotSegment},
		{"/a/%20..%20/b", Options{}, ReasonDotSegment},
		{"/a/..%20.%20/b", Options{}, ReasonDotSegment},
		{"/a/...%20/b", Options{}, ReasonDotSegment},
		{"/a/..%20;x/b", Options{AllowPathParams: true}, ReasonDotSegment},
		{"/a/..%2520/b", Options{}, ReasonDotSegment},
		{"/a/%E2%80%A5%20/b", Options{}, ReasonLookalike}, // ‥ and a space
		{"/a/..%09/b", Options{}, ReasonControl},
		{"/a/..%C2%A0/b", Options{}, ReasonDotSegment},       // U+00A0, which str.strip removes
		{"/a/..%E3%80%80/b", Options{}, ReasonDotSegment},    // U+3000, ideographic space
		{"/a/%E2%80%83../b", Options{}, ReasonDotSegment},    // U+2003, em space
		{"/a/..%C2%85/b", Options{}, ReasonDotSegment},       // U+0085, NEL
		{"/a/%E3%80%80..%E3%80%80x/b", Options{}, ""},        // ..x, not ..
		{"/ja/%E3%80%80%E6%97%A5%E6%9C%AC/b", Options{}, ""}, // a name after U+3000
		{"/a/.%20./b", Options{}, ""},                        // no `..` however it is trimmed
		{"/a/%20.%20/b", Options{}, ""},
		{"/a/.../b", Options{}, ""},
		{"/a/..../b", Options{}, ""},
		{"/a/%20..b/c", Options{}, ""},
		{"/a/b%20../c", Options{}, ""},
		// NTFS streams: IIS's ::$DATA source disclosure, a directory's $INDEX_ALLOCATION.
		{"/index.asp::$DATA", Options{}, ReasonNTFSStream},
		{"/index.asp::$data", Options{}, ReasonNTFSStream},
		{"/index.asp%3a%3a%24DATA", Options{}, ReasonNTFSStream},
		{"/index.asp::$DATA.", Options{}, ReasonNTFSStream},
		{"/a/file.txt:secret:$DATA", Options{}, ReasonNTFSStream},
		{"/admin::$INDEX_ALLOCATION/x", Options{}, ReasonNTFSStream},
		{"/a::$DATA;x", Options{AllowPathParams: true}, ReasonNTFSStream},
		{"/index.asp::%EF%BC%84DATA", Options{}, ReasonLookalike}, // fullwidth $
		{"/wiki/Price:$5", Options{}, ""},
		{"/wiki/X:$Database", Options{}, ""},
		{"/wiki/A:$", Options{}, ""},
		{"/v1/p:batchGet", Options{}, ""},
	} {
		if got := Check(tc.path, tc.opt); got != tc.want {
			t.Errorf("Check(%q, %+v) = %q, want %q", tc.path, tc.opt, got, tc.want)
		}
	}
}

// TestMalformedReasons: the reasons legacy links and sloppy clients cause are Malformed; the
// attack forms are not.
func TestMalformedReasons(t *testing.T) {
	malformed := map[Reason]bool{ReasonInvalidUTF8: true, ReasonPathParams: true, ReasonEncodedSlash: true, ReasonBadEncoding: true, ReasonTrailingDotSpace: true}
	for _, r := range Reasons {
		if r.Malformed() != malformed[r] {
			t.Errorf("%s: Malformed() = %v", r, r.Malformed())
		}
	}
}

func TestCheckOrdinaryPathAllocatesNothing(t *testing.T) {
	for _, p := range []string{"/api/v1/users/123", "/static/app.9f8e7d.css", "/a..b.txt", "/ja/\u65e5\u672c/\u30e9\u30fc\u30e1\u30f3"} {
		if n := testing.AllocsPerRun(100, func() { Check(p, Options{}) }); n != 0 {
			t.Errorf("Check(%q): %v allocations", p, n)
		}
	}
}

// uts46Dots are the runes UTS#46 (x/net/idna, as URL libraries map host names) makes a '.' of,
// found by asking it about every rune.
var uts46Dots = sync.OnceValue(func() map[rune]bool {
	profile := idna.New(idna.MapForLookup(), idna.StrictDomainName(false), idna.ValidateLabels(false))
	set := map[rune]bool{}
	for r := rune(0x80); r <= unicode.MaxRune; r++ {
		if r >= 0xd800 && r <= 0xdfff {
			continue
		}
		if s, _ := profile.ToUnicode("a" + string(r) + "b"); s == "a.b" {
			set[r] = true
		}
	}
	return set
})

// dotForm is r as a server that normalizes it reads it: its NFKC form, each rune of that
// mapped by UTS#46 where UTS#46 makes it a '.'.
func dotForm(r rune) string {
	var b strings.Builder
	for _, c := range norm.NFKC.String(string(r)) {
		if uts46Dots()[c] {
			c = '.'
		}
		b.WriteRune(c)
	}
	return b.String()
}

// TestDotsMatchesNFKC: for every rune that NFKC, then UTS#46's mapping, makes full stops only,
// dots gives their number, and every such rune, alone or paired so that the segment normalizes
// to "..", is refused. UTS#46 adds the ideographic full stops (。 U+3002, ｡ U+FF61), which NFKC
// keeps.
// TestWindowsDotSpaceMatchesNFKC: windowsDotSpace holds exactly the non-ASCII runes NFKC makes
// a '.' or a ' '.
func TestWindowsDotSpaceMatchesNFKC(t *testing.T) {
	for r := rune(0x80); r <= unicode.MaxRune; r++ {
		if r >= 0xd800 && r <= 0xdfff {
			continue
		}
		nf := norm.NFKC.String(string(r))
		if want := nf == "." || nf == " "; windowsDotSpace(r) != want {
			t.Errorf("windowsDotSpace(%U) = %v; NFKC gives %q", r, !want, nf)
		}
	}
}

func TestDotsMatchesNFKC(t *testing.T) {
	if len(uts46Dots()) < 3 {
		t.Fatalf("UTS#46 maps only %v to '.'", uts46Dots())
	}
	form := func(s string) string {
		var b strings.Builder
		for _, r := range s {
			b.WriteString(dotForm(r))
		}
		return b.String()
	}
	for r := rune(0x80); r <= unicode.MaxRune; r++ {
		if r >= 0xd800 && r <= 0xdfff {
			continue
		}
		nf := dotForm(r)
		if strings.Trim(nf, ".") != "" {
			continue
		}
		if got := dots(r); got != len(nf) {
			t.Errorf("dots(%U) = %d, NFKC and UTS#46 give %q", r, got, nf)
		}
		seg := string(r)
		for len(form(seg)) < 2 {
			seg += "."
		}
		if want := form(seg) == ".."; (Check("/"+seg+"/x", Options{}) != "") != want {
			t.Errorf("Check(%q) = %q, normalized form %q", "/"+seg+"/x", Check("/"+seg+"/x", Options{}), form(seg))
		}
	}
}

// TestLookalikeSegmentsMatchNFKC: for every rune whose NFKC form holds a dot, a slash or a
// backslash (or that lax servers map to a separator: ∕ U+2215, ⁄ U+2044, ∖ U+2216), set in
// names around it, Check refuses a path exactly when its normalized form has a `..` segment or
// a drive segment followed by a separator, and names that unicode_lookalike: `..／etc` and
// `C:／windows` are refused, `AC／DC` and `a‥b` pass.
func TestLookalikeSegmentsMatchNFKC(t *testing.T) {
	// Each rune as a server reads it: its NFKC form (UTS#46's full stops as '.'), or a
	// separator to a lax server.
	normalize := func(p string) string {
		var b strings.Builder
		for _, r := range p {
			switch r {
			case '\u2215', '\u2044', '\u2216':
				b.WriteByte('/')
			default:
				b.WriteString(strings.ReplaceAll(dotForm(r), `\`, "/"))
			}
		}
		return b.String()
	}
	drive := regexp.MustCompile(`^[A-Za-z]:$`)
	traverses := func(p string) bool {
		segs := strings.Split(normalize(p), "/")
		for i, seg := range segs {
			if seg == ".." || i < len(segs)-1 && drive.MatchString(seg) {
				return true
			}
		}
		return false
	}
	templates := []string{"a%sb", "..%sx", "x%s..", "%s", "%s%s", ".%s", "%s.", "..%s..", "C:%sx", "x%sC:", "%s..%s"}
	tried := 0
	for r := rune(0x80); r <= unicode.MaxRune; r++ {
		if r >= 0xd800 && r <= 0xdfff || !strings.ContainsAny(normalize(string(r)), "./") {
			continue
		}
		for _, tmpl := range templates {
			seg := strings.ReplaceAll(tmpl, "%s", string(r))
			for _, p := range []string{"/" + seg + "/y", "/y/" + seg} {
				want := Reason("")
				if traverses(p) {
					want = ReasonLookalike
				}
				if got := Check(p, Options{}); got != want {
					t.Errorf("Check(%q) = %q, want %q (normalized %q)", p, got, want, normalize(p))
				}
				tried++
			}
		}
	}
	if tried < 500 {
		t.Fatalf("only %d paths tried", tried)
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

// TestColonsMatchNFKC: hasColon knows every rune NFKC makes a colon, and a drive root written
// with a look-alike letter or colon (any rune NFKC makes a single ASCII letter, any rune it
// makes ':') is refused with a separator after it, and passes at the end of the path, as
// `/wiki/A:` does.
func TestColonsMatchNFKC(t *testing.T) {
	var colons, letters []rune
	for r := rune(0x80); r <= unicode.MaxRune; r++ {
		if r >= 0xd800 && r <= 0xdfff {
			continue
		}
		nf := norm.NFKC.String(string(r))
		if nf == ":" {
			colons = append(colons, r)
			if !hasColon(string(r)) {
				t.Errorf("hasColon(%U) = false, NFKC gives ':'", r)
			}
		}
		if len(nf) == 1 && isLetter(nf[0]) {
			letters = append(letters, r)
		}
	}
	if len(colons) == 0 || len(letters) < 100 {
		t.Fatalf("%d colons, %d letters", len(colons), len(letters))
	}
	for _, c := range append(colons, ':') {
		for _, l := range append(letters, 'C') {
			if l == 'C' && c == ':' {
				continue
			}
			drive := string(l) + string(c)
			esc := (&url.URL{Path: "/x/" + drive + "/windows/win.ini"}).EscapedPath()
			for _, p := range []string{"/x/" + drive + "/windows/win.ini", esc, "/x/" + drive + "\uff0fwindows"} {
				if got := Check(p, Options{}); got != ReasonLookalike {
					t.Fatalf("Check(%q) = %q, want %q", p, got, ReasonLookalike)
				}
			}
			if got := Check("/wiki/"+drive, Options{}); got != "" {
				t.Fatalf("Check(%q) = %q, want it to pass (a drive name at the end)", "/wiki/"+drive, got)
			}
		}
	}
	for _, p := range []string{"/ja/%E6%99%82%E5%88%BB%EF%BC%9A12", "/x/%EF%BC%A1%EF%BC%A2%EF%BC%9A/y", "/x/%E2%84%85%EF%BC%9Ax"} {
		if got := Check(p, Options{}); got != "" {
			t.Errorf("Check(%q) = %q, want it to pass", p, got)
		}
	}
}

// TestCheckWindows: with Options.Windows, the names Windows reads as another file or as a
// device are refused, in every encoding Check peels; without it they are ordinary names.
func TestCheckWindows(t *testing.T) {
	win := Options{Windows: true}
	for _, tc := range []struct {
		path string
		want Reason
	}{
		{"/admin./secret", ReasonTrailingDotSpace},
		{"/admin%20/secret", ReasonTrailingDotSpace},
		{"/admin%2e/secret", ReasonTrailingDotSpace},
		{"/admin.%20./secret", ReasonTrailingDotSpace},
		{"/web.config.", ReasonTrailingDotSpace},
		{"/web.config%20", ReasonTrailingDotSpace},
		{"/web.config%2520", ReasonTrailingDotSpace}, // the space escaped twice
		{"/web.config.;x", ReasonPathParams},         // `;` first, as for every path
		{"/con", ReasonDOSDevice},
		{"/CON", ReasonDOSDevice},
		{"/con/con", ReasonDOSDevice},
		{"/docs/nul.txt", ReasonDOSDevice},
		{"/aux.tar.gz", ReasonDOSDevice},
		{"/prn", ReasonDOSDevice},
		{"/com1", ReasonDOSDevice},
		{"/LPT9.log", ReasonDOSDevice},
		{"/com1:", ReasonDOSDevice},
		{"/com%C2%B9", ReasonDOSDevice}, // COM¹
		{"/conout$", ReasonDOSDevice},
		{"/c%6fn", ReasonDOSDevice},
		{"/PROGRA~1/x", ReasonShortName},
		{"/WEB~1.CON", ReasonShortName},
		{"/web~1.con", ReasonShortName},
		{"/a*~1*/.aspx", ReasonShortName}, // IIS tilde enumeration
		{"/a*~1.a*/.aspx", ReasonShortName},
		{"/DOCUM~12/x", ReasonShortName},
		// A scan's '*' before the '~' may match nothing: `0~000000` and `abcdef~1` are short names.
		{"/0*~000000", ReasonShortName},
		{"/abcdef*~1/x", ReasonShortName},
		{"/*~1*/.aspx", ReasonShortName},
		{"/admin%7E1/x", ReasonShortName},
		// Look-alike dots and spaces that NFKC and best-fit make ASCII are dropped as well.
		{"/web.config%EF%BC%8E", ReasonTrailingDotSpace}, // ．U+FF0E
		{"/admin%E3%80%80/x", ReasonTrailingDotSpace},    // U+3000
		{"/admin%C2%A0", ReasonTrailingDotSpace},         // U+00A0
		{"/a%E2%80%A4", ReasonTrailingDotSpace},          // ․ U+2024
		// An attack form besides a trailing dot is named for the attack.
		{"/a./%2e%2e/x", ReasonDotSegment},
		{"/a./%252e%252e/x", ReasonDoubleEncoding},
		// Ordinary names.
		{"/", ""},
		{"/index.html", ""},
		{"/~user/page", ""},
		{"/a~b", ""},
		{"/pkg_1.0~rc1.deb", ""},
		{"/docs/...", ""},
		{"/console", ""},
		{"/control/com10", ""},
		{"/api/lpt", ""},
		{"/auxiliary.txt", ""},
		{"/connect.php", ""},
		{"/longname~1", ""}, // eight characters before the ~: no short name has that
		{"/abcdefg*~1", ""}, // seven before the ~ besides the '*'
		{"/0*~0000000", ""}, // nine characters at least
		{"/a~1b", ""},
		{"/a~1.html", ""},                         // a four-character extension
		{"/wiki/%E3%81%AF%E3%81%84%E3%80%82", ""}, // はい。: U+3002 is no '.' to NFKC or best-fit
		{"/.well-known/x", ""},
		{"/a%20b", ""},
	} {
		if got := Check(tc.path, win); got != tc.want {
			t.Errorf("Check(%q, Windows) = %q, want %q", tc.path, got, tc.want)
		}
		if tc.want == ReasonTrailingDotSpace || tc.want == ReasonDOSDevice || tc.want == ReasonShortName {
			if got := Check(tc.path, Options{}); got != "" {
				t.Errorf("Check(%q) without Windows = %q, want it passed", tc.path, got)
			}
		}
	}
	if !ReasonTrailingDotSpace.Malformed() || ReasonDOSDevice.Malformed() || ReasonShortName.Malformed() {
		t.Error("trailing_dot_space is malformed (a pasted link's full stop), dos_device and short_name are attack forms")
	}
}

// TestCorpusWindows: every path of testdata/windows.txt is refused with Options.Windows (also
// beside the allows) and passed without it, and the fuzz target's oracle (windowsAlias) sees an
// alias in each.
func TestCorpusWindows(t *testing.T) {
	paths := testenv.Lines(t, "testdata/windows.txt")
	if len(paths) < 30 {
		t.Fatalf("only %d Windows forms", len(paths))
	}
	for _, p := range paths {
		for _, opt := range []Options{{Windows: true}, {Windows: true, AllowEncodedSlash: true, AllowPathParams: true, AllowInvalidUTF8: true}} {
			if r := Check(p, opt); r == "" {
				t.Errorf("Check(%q, %+v) passed a Windows alias", p, opt)
			}
		}
		if r := Check(p, Options{}); r != "" {
			t.Errorf("Check(%q) without Windows = %q, want it passed", p, r)
		}
		seen := false
		for q, round := p, 0; round <= maxDecodeRounds; round++ {
			for _, seg := range strings.Split(q, "/") {
				seen = seen || windowsAlias(seg) != ""
			}
			dec, err := url.PathUnescape(q)
			if err != nil || dec == q {
				break
			}
			q = dec
		}
		if !seen {
			t.Errorf("windowsAlias sees no alias in %q", p)
		}
	}
	for _, seg := range []string{"index.html", "~user", "a~b", "pkg_1.0~rc1.deb", "...", "console", "com10", "longname~1", "a~1.html", "a%20b"} {
		if a := windowsAlias(seg); a != "" {
			t.Errorf("windowsAlias(%q) = %q, want none", seg, a)
		}
	}
}
