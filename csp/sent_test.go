package csp

import (
	"slices"
	"testing"
)

func TestNonces(t *testing.T) {
	for _, c := range []struct {
		policy string
		want   []string
	}{
		{"default-src 'none'; script-src 'nonce-a-b-c'; style-src 'nonce-a-b-c';", []string{"a-b-c"}},
		{"script-src 'NONCE-x' 'nonce-y';style-src\t'nonce-x'", []string{"x", "y"}},
		{"script-src 'self' 'nonce-' nonce-z 'sha256-abc'", nil},
		{"", nil},
	} {
		if got := Nonces(c.policy); !slices.Equal(got, c.want) {
			t.Errorf("Nonces(%q) = %q, want %q", c.policy, got, c.want)
		}
	}
}

func TestFrameOptionsOf(t *testing.T) {
	for _, c := range []struct {
		policies []string
		want     string
		found    bool
	}{
		{[]string{"default-src 'none'; frame-ancestors 'self'; form-action 'self';"}, "SAMEORIGIN", true},
		{[]string{"FRAME-ANCESTORS 'NONE'"}, "DENY", true},
		{[]string{"frame-ancestors"}, "DENY", true},
		{[]string{"frame-ancestors https://a.example; frame-ancestors 'none'"}, "", true}, // the first counts
		{[]string{"frame-ancestors https://a.example", "frame-ancestors 'self'"}, "SAMEORIGIN", true},
		{[]string{"frame-ancestors 'self'", "script-src 'none'", "frame-ancestors 'none'"}, "DENY", true},
		{[]string{"default-src 'self'"}, "", false},
		{nil, "", false},
	} {
		got, found := FrameOptionsOf(c.policies)
		if got != c.want || found != c.found {
			t.Errorf("FrameOptionsOf(%q) = %q, %v; want %q, %v", c.policies, got, found, c.want, c.found)
		}
	}
}
