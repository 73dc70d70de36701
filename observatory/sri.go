package observatory

import (
	"bytes"
	"mime"
	"net/url"
	"strings"

	"golang.org/x/net/html"
)

// sriBadness orders the SRI outcomes as the Observatory's subresource-integrity.js does
// ("goodness"); the later one found wins. Its order, not the modifiers', decides: a script
// without integrity over HTTPS (-5) ranks after one with integrity over HTTP (-20).
var sriBadness = []string{
	"sri-implemented-and-all-scripts-loaded-securely",
	"sri-implemented-and-external-scripts-loaded-securely",
	"sri-implemented-but-external-scripts-not-loaded-securely",
	"sri-not-implemented-but-external-scripts-loaded-securely",
	"sri-not-implemented-and-external-scripts-not-loaded-securely",
}

// sriTest checks every <script src> of an HTML response: a script from another site
// (another second-level domain, or a protocol-relative URL) needs an integrity attribute
// and HTTPS. A page with inline scripts only has all its scripts from a secure origin.
func sriTest(s *Scan) Result {
	const t = TestSRI
	if s.Final == nil {
		return result(t, "sri-not-implemented-response-not-html")
	}
	// Without a Content-Type the Observatory parses the body as HTML (browsers sniff it).
	ct := s.Final.Header.Get("Content-Type")
	mt, _, _ := mime.ParseMediaType(ct)
	if ct != "" && mt != "text/html" && mt != "application/xhtml+xml" {
		return result(t, "sri-not-implemented-response-not-html")
	}
	page := s.Final.URL
	outcome, scripts, external := "", 0, false
	z := html.NewTokenizer(bytes.NewReader(s.Body))
	for {
		tt := z.Next()
		if tt == html.ErrorToken {
			break
		}
		if tt != html.StartTagToken && tt != html.SelfClosingTagToken {
			continue
		}
		tok := z.Token()
		if tok.Data != "script" {
			continue
		}
		scripts++ // inline ones too: the Observatory counts every <script>
		var src, integrity string
		for _, a := range tok.Attr {
			switch strings.ToLower(a.Key) {
			case "src":
				src = strings.TrimSpace(a.Val)
			case "integrity":
				integrity = strings.TrimSpace(a.Val)
			}
		}
		if src == "" {
			continue
		}
		u, err := url.Parse(src)
		if err != nil {
			continue
		}
		relativeOrigin := u.Scheme == "" && u.Host == ""
		relativeProtocol := u.Scheme == "" && u.Host != ""
		sameSLD := relativeOrigin || secondLevel(u.Hostname()) == secondLevel(page.Hostname())
		secureOrigin := relativeOrigin || sameSLD && !relativeProtocol
		secureScheme := u.Scheme == "https" || relativeOrigin && page.Scheme == "https"
		hasIntegrity := integrity != ""
		if !secureOrigin {
			external = true
			switch {
			case hasIntegrity && !secureScheme:
				outcome = worseOf(sriBadness, outcome, "sri-implemented-but-external-scripts-not-loaded-securely")
			case !hasIntegrity && secureScheme:
				outcome = worseOf(sriBadness, outcome, "sri-not-implemented-but-external-scripts-loaded-securely")
			case !hasIntegrity && !secureScheme:
				outcome = worseOf(sriBadness, outcome, "sri-not-implemented-and-external-scripts-not-loaded-securely")
			}
		} else if hasIntegrity && secureScheme && outcome == "" {
			outcome = "sri-implemented-and-all-scripts-loaded-securely"
		}
	}
	switch {
	case scripts == 0:
		return result(t, "sri-not-implemented-but-no-scripts-loaded")
	case outcome != "":
		return result(t, outcome)
	case !external:
		return result(t, "sri-not-implemented-but-all-scripts-loaded-from-secure-origin")
	}
	return result(t, "sri-implemented-and-external-scripts-loaded-securely")
}

// secondLevel is the last two labels of a host name, the Observatory's "similar origin".
func secondLevel(host string) string {
	labels := strings.Split(strings.TrimSuffix(strings.ToLower(host), "."), ".")
	if len(labels) > 2 {
		labels = labels[len(labels)-2:]
	}
	return strings.Join(labels, ".")
}
