package pathguard

import (
	"testing"

	"github.com/swarmsec/caddy-hardening/internal/testenv"
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
		{"/%c0%ae%c0%ae/x", Options{}, ReasonOverlongUTF8},
		{"/%u002e%u002e/x", Options{}, ReasonUnicodeEscape},
		{"/\uff0e\uff0e/x", Options{}, ReasonLookalike},
		{"/C:/x", Options{}, ReasonDrivePath},
		{"/%", Options{}, ReasonBadEncoding},
		{"/a..b.txt", Options{}, ""},
		{"/100%25", Options{}, ""},
	} {
		if got := Check(tc.path, tc.opt); got != tc.want {
			t.Errorf("Check(%q, %+v) = %q, want %q", tc.path, tc.opt, got, tc.want)
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
