package pathguard

import (
	"golang.org/x/text/unicode/norm"
	"net/url"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/swarmsec/caddy-hardening/internal/testenv"
)

// FuzzCheck: Check never panics, and whatever it passes cannot climb out of the root once a
// server decodes it (up to the maxDecodeRounds layers Check peels) and resolves it, decodes to
// UTF-8 only, and is still passed in the escaped form a proxy forwards; with encoded slashes
// allowed, it decodes to no empty segment but literal ones. Options.Windows only adds
// refusals (whatever passes with it, alone or beside the allows, passes without it too, so
// the invariants above hold for it), and what it passes decodes, in every layer, to no name
// Windows reads as another (windowsAlias).
func FuzzCheck(f *testing.F) {
	for _, name := range []string{"attacks.txt", "benign.txt", "windows.txt"} {
		for _, p := range testenv.Lines(f, "testdata/"+name) {
			f.Add(p)
		}
	}
	for _, p := range []string{"/\xc0\xae\xc0\xae/etc/passwd", "/a\x80b", "/caf\xc3\xa9", "/%e2%80/b", "/caf%25C3%25A9", "/%25c0%25ae", "/a/%2F/b", "/group%2Fproject"} {
		f.Add(p) // raw bytes above 0x7f, which the UTF-8 corpus files cannot hold
	}
	for _, p := range []string{"/a./b", "/con\xb9", "/PROGRA~1;x", "/a%2fcon", "/x/aux%252etxt", "/%2e%2e./x", "/a%20;b/"} {
		f.Add(p) // Windows forms beside bytes and allows
	}
	f.Fuzz(func(t *testing.T, raw string) {
		// Check reads a path without its query, as path_guard cuts it from the request line.
		if i := strings.IndexByte(raw, '?'); i >= 0 {
			raw = raw[:i]
		}
		allows := Options{AllowEncodedSlash: true, AllowPathParams: true, AllowInvalidUTF8: true}
		for _, opt := range []Options{{}, allows, {AllowEncodedSlash: true, AllowEncodedEmptySegment: true}} {
			win := opt
			win.Windows = true
			if Check(raw, win) == "" && Check(raw, opt) != "" {
				t.Fatalf("passed %q with Windows (%+v), refused it without: %s", raw, opt, Check(raw, opt))
			}
		}
		if Check(raw, Options{Windows: true}) == "" {
			for p, round := raw, 0; round <= maxDecodeRounds; round++ {
				for _, seg := range strings.Split(p, "/") {
					if alias := windowsAlias(seg); alias != "" {
						t.Fatalf("passed %q with Windows, whose layer %q holds %s %q", raw, p, alias, seg)
					}
				}
				dec, err := url.PathUnescape(p)
				if err != nil || dec == p {
					break
				}
				p = dec
			}
		}
		// With encoded slashes allowed, what passes holds no empty segment once decoded but the
		// literal ones a slash-merging proxy merges (path_guard's merge_slashes).
		if Check(raw, Options{AllowEncodedSlash: true}) == "" {
			merged := raw
			for strings.Contains(merged, "//") {
				merged = strings.ReplaceAll(merged, "//", "/")
			}
			if dec, err := url.PathUnescape(merged); err == nil && strings.Contains(dec, "//") {
				t.Fatalf("passed %q with encoded slashes allowed, which decodes to %q", raw, dec)
			}
		}
		if Check(raw, Options{}) != "" {
			return
		}
		if u, err := url.ParseRequestURI(raw); err == nil && Check(u.EscapedPath(), Options{}) != "" {
			t.Fatalf("passed %q, but refuses %q, the form a proxy forwards", raw, u.EscapedPath())
		}
		p := raw
		for range maxDecodeRounds {
			dec, err := url.PathUnescape(p)
			if err != nil {
				break
			}
			if strings.ContainsAny(dec, "\\\x00") || !utf8.ValidString(dec) {
				t.Fatalf("passed %q, which decodes to %q", raw, dec)
			}
			for _, seg := range strings.Split(dec, "/") {
				if strings.Trim(seg, " ") == ".." { // also as a server that trims segments reads it
					t.Fatalf("passed %q, which decodes to %q (a .. segment)", raw, dec)
				}
			}
			p = dec
		}
		if c := path.Clean("/" + p); c == "/.." || strings.HasPrefix(c, "/../") {
			t.Fatalf("passed %q, which resolves to %q", raw, c)
		}
	})
}

var (
	dosDeviceName = regexp.MustCompile(`(?i)^(con|prn|aux|nul|conin\$|conout\$|clock\$|(com|lpt)([0-9]|\x{b9}|\x{b2}|\x{b3})) *([.:].*)?$`)
	// An 8.3 short name as Windows makes one: ASCII, a base of up to six characters, `~`,
	// digits, eight characters in all, an extension of up to three; or IIS's `*` scan.
	shortNameForm = regexp.MustCompile(`^[!-\-0-9:-}]{1,6}~[0-9]{1,7}(\*.*|\.[!-\-/-}]{0,3})?$`)
)

// windowsAlias names what a segment (without `;` parameters) is to Windows when it reads it as
// another name: "a trailing dot or space" (`admin.`, `web.config `; a name of dots alone is kept),
// "a device" (`con`, `nul.txt`) or "a short name" (`PROGRA~1`); "" for a plain name.
func windowsAlias(seg string) string {
	if i := strings.IndexByte(seg, ';'); i >= 0 {
		seg = seg[:i]
	}
	switch {
	case endsInDotOrSpace(seg):
		return "a trailing dot or space"
	case dosDeviceName.MatchString(seg):
		return "a device"
	case isShortName(seg):
		return "a short name"
	}
	return ""
}

// endsInDotOrSpace: seg's last rune is, as NFKC reads it, a '.' (and seg is not dots alone) or
// a ' '.
func endsInDotOrSpace(seg string) bool {
	r, _ := utf8.DecodeLastRuneInString(seg)
	switch norm.NFKC.String(string(r)) {
	case ".":
		return strings.Trim(norm.NFKC.String(seg), ".") != ""
	case " ":
		return true
	}
	return false
}

// isShortName matches seg against shortNameForm, with the `*`s of a scan before the `~`
// matching as few characters as they may (none, or one where the base is nothing else).
func isShortName(seg string) bool {
	i := strings.IndexByte(seg, '~')
	if i < 0 {
		return false
	}
	base := strings.ReplaceAll(seg[:i], "*", "")
	if base == "" && i > 0 {
		base = "A"
	}
	seg = base + seg[i:]
	return shortNameForm.MatchString(seg) && len(seg[:strings.IndexAny(seg+".*", ".*")]) <= 8
}

// FuzzSafeJoin: Options.SafeJoin never panics, returns only names under the root, and with
// Windows none that Windows reads as another name (windowsAlias); without Windows it refuses
// nothing more than with it.
func FuzzSafeJoin(f *testing.F) {
	for _, name := range []string{"attacks.txt", "benign.txt", "windows.txt"} {
		for _, p := range testenv.Lines(f, "testdata/"+name) {
			if dec, err := url.PathUnescape(p); err == nil {
				f.Add(dec, false)
				f.Add(dec, true)
			}
		}
	}
	root := f.TempDir()
	f.Fuzz(func(t *testing.T, p string, windows bool) {
		opt := Options{Windows: windows}
		name, err := opt.SafeJoin(root, p)
		if err != nil {
			return
		}
		if _, errOff := (Options{}).SafeJoin(root, p); errOff != nil {
			t.Fatalf("SafeJoin(%q) passed with %+v, refused without Windows: %v", p, opt, errOff)
		}
		rel, err := filepath.Rel(root, name)
		if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) || filepath.IsAbs(rel) {
			t.Fatalf("SafeJoin(%q) = %q, outside %q", p, name, root)
		}
		if windows {
			for _, seg := range strings.Split(filepath.ToSlash(rel), "/") {
				if alias := windowsAlias(seg); alias != "" {
					t.Fatalf("SafeJoin(%q) with Windows = %q, whose %q is %s", p, name, seg, alias)
				}
			}
		}
	})
}
