// Package csp is the Content Security Policy core of caddy-hardening: per-response nonces, a
// policy model (parse, validate, render with the response's nonce), environment presets, the
// other security headers' value rules (HSTS preload), and a streaming HTML rewriter that puts
// the nonce into a page's own script and style tags.
//
// It imports nothing from Caddy: the Caddy adapter lives in caddymodule.
package csp

import (
	"crypto/rand"
	"encoding/base64"
)

// NonceBytes is the nonce's entropy: 128 bits, the minimum CSP Level 3 recommends.
const NonceBytes = 16

// NonceLen is the length of a nonce as sent: NonceBytes in padded standard base64.
var NonceLen = base64.StdEncoding.EncodedLen(NonceBytes)

// NewNonce returns a fresh nonce: 128 bits from crypto/rand in standard base64 (24
// characters, the base64-value grammar CSP's 'nonce-…' source expects).
func NewNonce() string {
	var raw [NonceBytes]byte
	_, _ = rand.Read(raw[:]) // crypto/rand.Read never fails (Go 1.24+): it crashes the program instead
	var enc [24]byte
	base64.StdEncoding.Encode(enc[:], raw[:])
	return string(enc[:])
}
