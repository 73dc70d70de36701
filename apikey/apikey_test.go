package apikey

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"regexp"
	"strings"
	"testing"
)

var keyBody = regexp.MustCompile(`^[A-Za-z0-9_-]{43}$`)

func TestGenerateShapeAndUniqueness(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 10000; i++ {
		k, err := Generate("hk_")
		if err != nil {
			t.Fatal(err)
		}
		body, ok := strings.CutPrefix(k, "hk_")
		if !ok || !keyBody.MatchString(body) {
			t.Fatalf("key %q: want hk_ and 43 base64url characters", k)
		}
		raw, err := base64.RawURLEncoding.DecodeString(body)
		if err != nil || len(raw)*8 != Bits {
			t.Fatalf("key %q decodes to %d bytes (%v), want %d bits", k, len(raw), err, Bits)
		}
		if seen[k] {
			t.Fatalf("duplicate key %q", k)
		}
		seen[k] = true
	}
}

func TestGenerateUsesAllBits(t *testing.T) {
	// Over many keys every bit position must take both values: a constant byte (a broken
	// source, a zeroed buffer) fails.
	var or, and [Bits / 8]byte
	for i := range and {
		and[i] = 0xff
	}
	for i := 0; i < 64; i++ {
		k, _ := Generate("")
		raw, _ := base64.RawURLEncoding.DecodeString(k)
		for j := range raw {
			or[j] |= raw[j]
			and[j] &= raw[j]
		}
	}
	for j := range or {
		if or[j] != 0xff || and[j] != 0 {
			t.Fatalf("byte %d is not random across 64 keys: or=%08b and=%08b", j, or[j], and[j])
		}
	}
}

func TestPrefixRules(t *testing.T) {
	for _, p := range []string{"", "hk_", "live-", "A1_b2", strings.Repeat("x", MaxPrefix)} {
		if err := ValidatePrefix(p); err != nil {
			t.Errorf("prefix %q refused: %v", p, err)
		}
	}
	for _, p := range []string{"a b", "x:", "ключ", "a/b", "a=b", strings.Repeat("x", MaxPrefix+1)} {
		if _, err := Generate(p); err == nil {
			t.Errorf("prefix %q accepted", p)
		}
	}
}

func TestDigestIsSHA256OfTheKeyString(t *testing.T) {
	k := "hk_abc"
	sum := sha256.Sum256([]byte(k))
	if got, want := Digest(k), "sha256:"+hex.EncodeToString(sum[:]); got != want {
		t.Fatalf("Digest = %s, want %s", got, want)
	}
	// Known vector: sha256("abc").
	if got := Digest("abc"); got != "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" {
		t.Fatalf("Digest(abc) = %s", got)
	}
}

func TestSetMatch(t *testing.T) {
	a, _ := Generate("a_")
	b, _ := Generate("b_")
	other, _ := Generate("a_")
	s, err := ParseSet([]string{Digest(a), Digest(b)})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		key  string
		want bool
	}{{a, true}, {b, true}, {other, false}, {"", false}, {a + "x", false}, {a[:len(a)-1], false}, {Digest(a), false}} {
		if got := s.Match(c.key); got != c.want {
			t.Errorf("Match(%q) = %v, want %v", c.key, got, c.want)
		}
	}
	var none *Set
	if none.Match(a) {
		t.Error("a nil set matched")
	}
}

func TestParseSetRejects(t *testing.T) {
	good := Digest("k")
	for _, d := range []string{"", "k", "sha256:", "sha256:xyz", "md5:" + good[7:], good[:len(good)-2], good + "00", strings.ToUpper(good[:6]) + good[6:]} {
		if _, err := ParseSet([]string{good, d}); err == nil || !strings.Contains(err.Error(), "sha256:<64 hex digits>") {
			t.Errorf("digest %q: err = %v, want a message naming the expected form", d, err)
		}
	}
}

func BenchmarkSetMatch(b *testing.B) {
	var ds []string
	for i := 0; i < 8; i++ {
		k, _ := Generate("")
		ds = append(ds, Digest(k))
	}
	s, _ := ParseSet(ds)
	k, _ := Generate("")
	b.ReportAllocs()
	for b.Loop() {
		s.Match(k)
	}
}

// TestParseSetNeverQuotesAKey: a key pasted where its digest goes was quoted in the error,
// which Caddy logs (adapt, load, the admin API's /load answer): the secret reached the logs.
// An item that is not "sha256:" and hex digits is now named by its position, never shown; a
// malformed digest of hex digits is still quoted (it is no secret).
func TestParseSetNeverQuotesAKey(t *testing.T) {
	k, err := Generate("hk_")
	if err != nil {
		t.Fatal(err)
	}
	good := Digest(k)
	for _, items := range [][]string{{k}, {good, k}, {good, "sha256" + k}, {"sha256:" + k}} {
		_, err := ParseSet(items)
		if err == nil {
			t.Fatalf("%d items with a key accepted", len(items))
		}
		if strings.Contains(err.Error(), k) || strings.Contains(err.Error(), k[3:]) {
			t.Errorf("the error quotes the key: %v", err)
		}
		if !strings.Contains(err.Error(), "sha256:<64 hex digits>") {
			t.Errorf("the error does not name the expected form: %v", err)
		}
	}
	if _, err := ParseSet([]string{good, k}); err == nil || !strings.Contains(err.Error(), "item 2 of 2") {
		t.Errorf("the error does not name the item: %v", err)
	}
	if _, err := ParseSet([]string{good + "0"}); err == nil || !strings.Contains(err.Error(), `"`+good+`0"`) {
		t.Errorf("a malformed digest is not quoted: %v", err)
	}
	if _, err := ParseSet([]string{"sha256:abc"}); err == nil || !strings.Contains(err.Error(), `"sha256:abc"`) {
		t.Errorf("a malformed digest is not quoted: %v", err)
	}
}
