// Package page holds the security dashboard's single HTML page (issue #10): its script and
// stylesheet are inline and carry the request's CSP nonce, so the page runs under
// `script-src 'nonce-N'; style-src 'nonce-N'` and loads nothing else. The monitoring handler
// serves Render(nonce) at <mount>/dashboard; the page fetches <mount>/dashboard/data.
package page

import (
	_ "embed"
	"strings"
)

//go:embed index.html
var indexHTML string

// placeholder marks where the nonce goes: the nonce attribute of the <style> and <script>.
const placeholder = "{{nonce}}"

// parts is the page split at each placeholder once, so a request only concatenates.
var (
	parts []string
	size  int
)

func init() {
	parts = strings.Split(indexHTML, placeholder)
	for _, p := range parts {
		size += len(p)
	}
}

// Render returns the page with nonce in place of every {{nonce}}. The nonce must be the one
// of the Content-Security-Policy sent with the page (base64 from crypto/rand, as
// csp.NewNonce makes it): it is inserted as is, inside an attribute value.
func Render(nonce string) []byte {
	b := make([]byte, 0, size+len(nonce)*(len(parts)-1))
	for i, p := range parts {
		if i > 0 {
			b = append(b, nonce...)
		}
		b = append(b, p...)
	}
	return b
}

// CSP is the Content-Security-Policy the page is built for, with nonce filled in: the page
// needs nothing more, so a server should send exactly this with it. Trusted Types are
// required with no policy allowed: the page writes text and attributes only, never HTML or
// script through a DOM sink, so a sink that crept in (innerHTML with a client's URI) throws
// instead of running what it was given.
func CSP(nonce string) string {
	return "default-src 'none'; script-src 'nonce-" + nonce + "'; style-src 'nonce-" + nonce +
		"'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'" +
		"; require-trusted-types-for 'script'; trusted-types 'none'"
}
