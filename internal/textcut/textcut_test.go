package textcut

import "testing"

func TestCutKeepsCharacters(t *testing.T) {
	for _, c := range []struct {
		in   string
		n    int
		want string
	}{
		{"abc", 5, "abc"},
		{"abcé", 4, "abc"}, // é is 2 bytes: not split
		{"ab€", 4, "ab"},   // € is 3 bytes
		{"a😀", 4, "a"},     // 4 bytes
		{"aé", 2, "a"},
		{"ab\xe9cd", 3, "ab\xe9"},                   // a byte that is not UTF-8 is cut like any
		{"\x80\x80\x80\x80\x80", 3, "\x80\x80\x80"}, // stray continuation bytes: no walk back
		{"abé", 2, "ab"},
	} {
		if got := Cut(c.in, c.n); got != c.want {
			t.Errorf("Cut(%q, %d) = %q, want %q", c.in, c.n, got, c.want)
		}
	}
}
