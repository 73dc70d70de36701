// Package apikey makes API keys and checks them against stored digests.
//
// A key is an optional prefix followed by 256 random bits from crypto/rand in unpadded
// base64url (43 characters). Configurations store only the digest "sha256:<hex>" of the whole
// key string; Set compares a presented key against every digest in constant time.
package apikey

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
)

// Bits is the key's entropy.
const Bits = 256

// MaxPrefix is the longest prefix Generate accepts.
const MaxPrefix = 32

// DigestPrefix starts every digest string.
const DigestPrefix = "sha256:"

// Generate returns a new key: prefix + 43 characters of base64url (no padding).
func Generate(prefix string) (string, error) {
	if err := ValidatePrefix(prefix); err != nil {
		return "", err
	}
	var b [Bits / 8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("reading crypto/rand: %w", err)
	}
	return prefix + base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// ValidatePrefix accepts up to MaxPrefix characters of [A-Za-z0-9_-], so a key stays one
// token in a header, a URL or a shell.
func ValidatePrefix(prefix string) error {
	if len(prefix) > MaxPrefix {
		return fmt.Errorf("prefix %q is longer than %d characters", prefix, MaxPrefix)
	}
	for _, c := range prefix {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return fmt.Errorf("prefix %q: only letters, digits, '_' and '-' are allowed", prefix)
		}
	}
	return nil
}

// Digest is "sha256:" and the lowercase hex SHA-256 of the key string exactly as given.
func Digest(key string) string {
	sum := sha256.Sum256([]byte(key))
	return DigestPrefix + hex.EncodeToString(sum[:])
}

// Set holds the digests of the accepted keys.
type Set struct {
	digests [][sha256.Size]byte
}

// ParseSet parses "sha256:<64 hex>" digests; it names the first malformed one. Only a
// malformed digest of hex digits is quoted; any other item is named by its position: it may
// be a key pasted where its digest goes, and the error reaches Caddy's logs.
func ParseSet(digests []string) (*Set, error) {
	s := &Set{}
	for i, d := range digests {
		hexPart, ok := strings.CutPrefix(d, DigestPrefix)
		raw, err := hex.DecodeString(hexPart)
		if ok && err == nil && len(raw) == sha256.Size {
			s.digests = append(s.digests, [sha256.Size]byte(raw))
			continue
		}
		if ok && !strings.ContainsFunc(hexPart, func(c rune) bool { return !isHexDigit(c) }) {
			return nil, fmt.Errorf("API key digest %q: expected sha256:<64 hex digits> (from caddy hardening keygen)", d)
		}
		item := ""
		if len(digests) > 1 {
			item = fmt.Sprintf("item %d of %d ", i+1, len(digests))
		}
		return nil, fmt.Errorf("API key digest %s(not shown: it may be a key itself) is not sha256:<64 hex digits>: the configuration takes only the digest from caddy hardening keygen, never the key", item)
	}
	return s, nil
}

func isHexDigit(c rune) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// Len is the number of accepted keys.
func (s *Set) Len() int { return len(s.digests) }

// Match reports whether key is one of the accepted keys. It compares against every digest,
// whatever matches, so its time does not depend on which digest matched or how much of one.
func (s *Set) Match(key string) bool {
	if s == nil || key == "" {
		return false
	}
	var buf [128]byte // keys are short: hash from the stack, no allocation per request
	sum := sha256.Sum256(append(buf[:0], key...))
	found := 0
	for i := range s.digests {
		found |= subtle.ConstantTimeCompare(sum[:], s.digests[i][:])
	}
	return found == 1
}
