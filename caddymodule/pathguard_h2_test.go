package caddymodule

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"testing"

	"github.com/swarmsec/caddy-hardening/internal/testcaddy"
	"github.com/swarmsec/caddy-hardening/internal/testenv"
)

// TestPathGuardRawPseudoPath: HTTP/2 (and HTTP/3, whose server reads :path the same way:
// quic-go's http3 sets RequestURI to it as sent) carries the path in a header, where bytes an
// HTTP/1 request line cannot hold are possible: a raw space (`/a/.. /x`, `/admin /secret`), a
// raw backslash, raw bytes that are not UTF-8. path_guard judges :path as sent, so each is
// refused as over HTTP/1, and the upstream receives none of them.
func TestPathGuardRawPseudoPath(t *testing.T) {
	upstream, seen := recordingUpstream(t)
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	testcaddy.StartCaddy(t, fmt.Sprintf("{\n\tservers {\n\t\tprotocols h1 h2c\n\t}\n\thardening {\n\t\tfeatures {\n\t\t\tdetection off\n\t\t}\n\t}\n}\nhttp://%s {\n\tbind 127.0.0.1\n\tpath_guard {\n\t\twindows on\n\t}\n\treverse_proxy %s\n}\n", addr, upstream))
	protocols := new(http.Protocols)
	protocols.SetUnencryptedHTTP2(true) // h2c with prior knowledge
	client := &http.Client{Transport: &http.Transport{Protocols: protocols}}
	get := func(path string) (int, string) {
		t.Helper()
		// URL.Opaque is sent as :path as it is.
		req := &http.Request{Method: http.MethodGet, URL: &url.URL{Scheme: "http", Host: addr, Opaque: path}, Host: addr, Header: http.Header{}}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("GET %q: %v", path, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.ProtoMajor != 2 {
			t.Fatalf("GET %q went over %s", path, resp.Proto)
		}
		return resp.StatusCode, string(body)
	}
	for _, p := range []string{"/a/.. /x", "/a/ ../x", "/admin /secret", "/web.config ", "/a\\..\\x", "/\xc0\xae\xc0\xae/x", "/caf\xe9", "/a/..#/x", "/\uff0e\uff0e/x", "/\u3002\u3002/x"} {
		if code, body := get(p); code != http.StatusBadRequest {
			t.Errorf("%q: %d %q, want 400", p, code, body)
		}
	}
	if got := seen(); len(got) != 0 {
		t.Errorf("the upstream received %q", got)
	}
	if code, body := get("/a b/caf\u00e9"); code != http.StatusOK || body != "upstream /a%20b/caf%C3%A9" {
		t.Errorf("an ordinary path with a raw space: %d %q", code, body)
	}
}
