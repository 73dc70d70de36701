package caddymodule

import (
	"net/http"
	"strings"
	"testing"

	"github.com/swarmsec/caddy-hardening/pathguard"
)

// TestPathGuardStripPrefixCannotForgeAnAttack: a prefix strip after path_guard (`uri
// strip_prefix /app`, `handle_path /app*`) that cuts inside a segment makes the rest of that
// segment the first one: `/appC:/windows/win.ini` was judged with the segment `appC:`, and the
// upstream received `/C:/windows/win.ini`. path_guard judges the path each such strip would
// leave, so the upstream receives nothing path_guard refuses, and the ordinary paths under the
// prefix still pass.
func TestPathGuardStripPrefixCannotForgeAnAttack(t *testing.T) {
	upstream, seen := recordingUpstream(t)
	addr, _ := guardCaddy(t, `	path_guard {
		windows on
	}
	handle /app* {
		uri strip_prefix /app
		reverse_proxy `+upstream+`
	}
	handle_path /static* {
		reverse_proxy `+upstream+`
	}
	handle /caf* {
		uri strip_prefix /caf%C3%A9
		reverse_proxy `+upstream+`
	}
	handle /tail/* {
		uri strip_suffix .php
		reverse_proxy `+upstream+`
	}
`)
	for _, p := range []string{
		"/appC:/windows/win.ini",       // drive_path
		"/APPc:/windows/win.ini",       // the strip ignores case
		"/app%43:/windows/win.ini",     // and decodes what the prefix writes plainly
		"/app..%20/x",                  // `.. `, which a server that trims segments reads as ..
		"/app%EF%BC%8E%EF%BC%8E/x",     // ．．
		"/app%E3%80%82%E3%80%82/x",     // 。。
		"/app%E2%80%A5/x",              // ‥
		"/appcon",                      // a DOS device, with windows on
		"/appPROGRA~1/x",               // an 8.3 short name
		"/staticC:/windows/win.ini",    // handle_path's strip
		"/static%EF%BC%8E%EF%BC%8E/x",  // ．．
		"/caf%C3%A9C:/windows/win.ini", // a prefix written escaped
		"/tail/a/..%20.php",            // strip_suffix leaves `.. `
		"/tail/admin%20.php",           // and a trailing space, with windows on
	} {
		status, ctype, body := rawGet(t, addr, p)
		if status != http.StatusBadRequest || ctype != "application/problem+json" {
			t.Errorf("%s: %d %s %q, want 400 problem+json", p, status, ctype, body)
		}
	}
	for _, got := range seen() {
		if r := pathguard.Check(strings.SplitN(got, "?", 2)[0], pathguard.Options{Windows: true}); r != "" {
			t.Errorf("the upstream received %q (%s)", got, r)
		}
	}
	for p, want := range map[string]string{
		"/app/users/1":     "upstream /users/1",
		"/app":             "upstream /",
		"/apple/pie":       "upstream /le/pie",
		"/app..b/x":        "upstream /..b/x",
		"/static/app.css":  "upstream /app.css",
		"/tail/index.php":  "upstream /tail/index",
		"/app%E3%80%82x/y": "upstream /%E3%80%82x/y",
	} {
		if status, _, body := rawGet(t, addr, p); status != http.StatusOK || body != want {
			t.Errorf("%s: %d %q, want 200 %q", p, status, body, want)
		}
	}
}
