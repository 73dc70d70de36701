package pathguard

import (
	"net/url"
	"path"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/swarmsec/caddy-hardening/internal/testenv"
)

// FuzzCheck: Check never panics, and whatever it passes cannot climb out of the root once a
// server decodes it (up to the maxDecodeRounds layers Check peels) and resolves it, decodes to
// UTF-8 only, and is still passed in the escaped form a proxy forwards; with encoded slashes
// allowed, it decodes to no empty segment but literal ones.
func FuzzCheck(f *testing.F) {
	for _, name := range []string{"attacks.txt", "benign.txt"} {
		for _, p := range testenv.Lines(f, "testdata/"+name) {
			f.Add(p)
		}
	}
	for _, p := range []string{"/\xc0\xae\xc0\xae/etc/passwd", "/a\x80b", "/caf\xc3\xa9", "/%e2%80/b", "/caf%25C3%25A9", "/%25c0%25ae", "/a/%2F/b", "/group%2Fproject"} {
		f.Add(p) // raw bytes above 0x7f, which the UTF-8 corpus files cannot hold
	}
	f.Fuzz(func(t *testing.T, raw string) {
		// Check reads a path without its query, as path_guard cuts it from the request line.
		if i := strings.IndexByte(raw, '?'); i >= 0 {
			raw = raw[:i]
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
