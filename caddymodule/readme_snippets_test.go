package caddymodule

import (
	"fmt"
	"os"
	"path/filepath"
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
// placeholders) are not adapted; the subdirectives they name must be ones the parsers accept.
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
				checkSynopsis(t, name, s.body)
				return
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

// synopsisWord is the word a synopsis line starts with, and its alternatives
// (`probe_paths|probe_paths_replace`).
var synopsisWord = regexp.MustCompile(`^\s*([a-z][a-z0-9_]*(\|[a-z][a-z0-9_]*)*)\b`)

// checkSynopsis fails for a line of a synopsis that names a subdirective no parser accepts:
// a synopsis the parsers no longer match (a renamed or removed subdirective).
func checkSynopsis(t *testing.T, name, body string) {
	t.Helper()
	known := parserKeywords(t)
	// Directive and option names, registered by name rather than in a parser's switch, the
	// hardening option's blocks (a table built in init) and the breaker's fallback block.
	for _, w := range []string{"hardening", "security_headers", "csp_report", "path_guard", "policy_rate_limit",
		"upstream_breaker", "monitoring", "handle_path", "fallback"} {
		known[w] = "directive"
	}
	for w := range appSubdirectives {
		known[w] = "hardening"
	}
	for i, l := range strings.Split(body, "\n") {
		m := synopsisWord.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		for _, w := range strings.Split(m[1], "|") {
			if _, ok := known[w]; !ok {
				t.Errorf("%s, line %d of the block: %q is no subdirective a parser accepts: %s", name, i+1, w, strings.TrimSpace(l))
			}
		}
	}
}

// TestDocAnchorsResolve: every in-page link of README.md (`[...](#anchor)`, and `file.md#anchor`
// to another document of the repository) names a heading that exists, with GitHub's anchor
// rule (lower case; punctuation but `-` and `_` dropped; spaces as `-`). The README is long:
// readers find a directive's options through these links, and a renamed heading broke them
// without a word.
func TestDocAnchorsResolve(t *testing.T) {
	heading := regexp.MustCompile(`^#{1,6}\s+(.*?)\s*$`)
	drop := regexp.MustCompile(`[^\p{L}\p{N}_\- ]`)
	anchors := func(file string) map[string]bool {
		raw, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]bool{}
		fenced := false
		for _, l := range strings.Split(string(raw), "\n") {
			if strings.HasPrefix(strings.TrimSpace(l), "```") {
				fenced = !fenced
				continue
			}
			if m := heading.FindStringSubmatch(l); m != nil && !fenced {
				out[strings.ReplaceAll(drop.ReplaceAllString(strings.ToLower(m[1]), ""), " ", "-")] = true
			}
		}
		return out
	}
	link := regexp.MustCompile(`\]\(([^)\s#]*)#([^)\s]+)\)`)
	checked := 0
	for _, file := range []string{"../README.md", "../ARCHITECTURE.md", "../xcaddy.md", "../docs/security-events.md"} {
		raw, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range link.FindAllStringSubmatch(string(raw), -1) {
			target := file
			if m[1] != "" {
				if strings.Contains(m[1], "://") || !strings.HasSuffix(m[1], ".md") {
					continue
				}
				target = filepath.Join(filepath.Dir(file), m[1])
			}
			checked++
			if !anchors(target)[m[2]] {
				t.Errorf("%s: link %q: %s has no heading with that anchor", file, m[0], target)
			}
		}
	}
	if checked < 40 {
		t.Fatalf("checked %d links; the extraction is broken", checked)
	}
}
