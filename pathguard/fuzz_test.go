package pathguard

import (
	"net/url"
	"path"
	"strings"
	"testing"

	"github.com/swarmsec/caddy-hardening/internal/testenv"
)

// FuzzCheck: Check never panics, and whatever it passes cannot climb out of the root once a
// server decodes it (however many layers) and resolves it.
func FuzzCheck(f *testing.F) {
	for _, name := range []string{"attacks.txt", "benign.txt"} {
		for _, p := range testenv.Lines(f, "testdata/"+name) {
			f.Add(p)
		}
	}
	f.Fuzz(func(t *testing.T, raw string) {
		if Check(raw, Options{}) != "" {
			return
		}
		p := raw
		for range maxDecodeRounds + 1 {
			dec, err := url.PathUnescape(p)
			if err != nil {
				break
			}
			if strings.ContainsAny(dec, "\\\x00") {
				t.Fatalf("passed %q, which decodes to %q", raw, dec)
			}
			for _, seg := range strings.Split(dec, "/") {
				if seg == ".." {
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
