package caddymodule

import (
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
)

// docSnippet is one ```caddyfile block of a Markdown file.
type docSnippet struct {
	file string
	line int // of the block's first line
	body string
}

// docSnippets returns the ```caddyfile blocks of file, each without the indentation of its
// fence (a block inside a list item is indented).
func docSnippets(t *testing.T, file string) []docSnippet {
	t.Helper()
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	fence := regexp.MustCompile("^([ \t]*)```(\\w*)[ \t]*$")
	lines := strings.Split(string(raw), "\n")
	var out []docSnippet
	for i := 0; i < len(lines); i++ {
		m := fence.FindStringSubmatch(lines[i])
		if m == nil || m[2] == "" {
			continue
		}
		indent, lang, start := m[1], m[2], i+1
		for i++; i < len(lines) && strings.TrimSpace(lines[i]) != "```"; i++ {
		}
		if lang != "caddyfile" {
			continue
		}
		var body []string
		for _, l := range lines[start:i] {
			body = append(body, strings.TrimPrefix(l, indent))
		}
		out = append(out, docSnippet{file: file, line: start + 1, body: strings.Join(body, "\n") + "\n"})
	}
	return out
}

// synopsisLine is a line of a syntax synopsis: `<name>` placeholders outside a comment.
var synopsisLine = regexp.MustCompile(`^[^#]*<[a-z][^>]*>`)

// TestDocSnippetsAdapt: every Caddyfile a reader may copy from README.md and docs/ adapts,
// with no warning (Caddy's "input is not formatted" included), as written or, for a
// fragment of a site, inside `http://localhost { ... }`. Syntax synopses (`<name>`
// placeholders) are only read, not adapted.
func TestDocSnippetsAdapt(t *testing.T) {
	var snippets []docSnippet
	for _, f := range []string{"../README.md", "../docs/security-events.md"} {
		snippets = append(snippets, docSnippets(t, f)...)
	}
	if len(snippets) < 15 {
		t.Fatalf("found %d caddyfile blocks; the extraction is broken", len(snippets))
	}
	site := regexp.MustCompile(`(?m)^(\{|&\(|[a-z0-9.-]+\.[a-z]{2,}(:\d+)?[ ,]|https?://)`)
	for _, s := range snippets {
		name := fmt.Sprintf("%s:%d", strings.TrimPrefix(s.file, "../"), s.line)
		t.Run(name, func(t *testing.T) {
			synopsis := false
			for _, l := range strings.Split(s.body, "\n") {
				synopsis = synopsis || synopsisLine.MatchString(l)
			}
			if synopsis {
				t.Skip("syntax synopsis")
			}
			input := s.body
			if !site.MatchString(input) {
				var b strings.Builder
				b.WriteString("http://localhost {\n")
				for _, l := range strings.Split(strings.TrimSuffix(input, "\n"), "\n") {
					if l != "" {
						b.WriteString("\t" + l)
					}
					b.WriteString("\n")
				}
				b.WriteString("}\n")
				input = b.String()
			}
			_, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(input), map[string]any{"filename": name})
			if err != nil {
				t.Fatalf("%s does not adapt: %v\n%s", name, err, input)
			}
			for _, w := range warnings {
				t.Errorf("%s: warning %s", name, w.String())
			}
		})
	}
}
