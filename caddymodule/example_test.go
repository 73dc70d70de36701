package caddymodule

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"testing"
)

// parserKeywords walks the Caddyfile parsers (*_caddyfile.go) and returns every keyword they
// accept: the string labels of their switch cases and the string keys of their map literals
// (the subdirective tables), with the file that accepts it.
func parserKeywords(t *testing.T) map[string]string {
	t.Helper()
	files, err := filepath.Glob("*_caddyfile.go")
	if err != nil || len(files) == 0 {
		t.Fatalf("no parser files: %v", err)
	}
	files = append(files, "ipclass_matcher.go") // the ip_class matcher parses in its own file
	return sourceStrings(t, files, func(n ast.Node, take func(ast.Expr)) {
		switch n := n.(type) {
		case *ast.CaseClause:
			for _, e := range n.List {
				take(e)
			}
		case *ast.CompositeLit:
			if _, ok := n.Type.(*ast.MapType); ok {
				for _, el := range n.Elts {
					if kv, ok := el.(*ast.KeyValueExpr); ok {
						take(kv.Key)
					}
				}
			}
		}
	})
}

// sourceStrings parses files and returns the non-empty string literals that pick takes from
// their nodes, each with the file it is in.
func sourceStrings(t *testing.T, files []string, pick func(n ast.Node, take func(ast.Expr))) map[string]string {
	t.Helper()
	found := map[string]string{}
	for _, f := range files {
		af, err := parser.ParseFile(token.NewFileSet(), f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		take := func(e ast.Expr) {
			if bl, ok := e.(*ast.BasicLit); ok && bl.Kind == token.STRING {
				if s, err := strconv.Unquote(bl.Value); err == nil && s != "" {
					found[s] = f
				}
			}
		}
		ast.Inspect(af, func(n ast.Node) bool {
			pick(n, take)
			return true
		})
	}
	return found
}

// missingKeywords lists the parsers' keywords (parserKeywords) that doc does not match with the
// expression pattern makes of the keyword (regexp-quoted), each with the file that accepts it.
func missingKeywords(t *testing.T, doc []byte, pattern func(quoted string) string) []string {
	t.Helper()
	words := parserKeywords(t)
	if len(words) < 80 {
		t.Fatalf("only %d keywords found: the walk no longer sees the parsers", len(words))
	}
	var missing []string
	for w, file := range words {
		if !regexp.MustCompile(pattern(regexp.QuoteMeta(w))).Match(doc) {
			missing = append(missing, w+" ("+file+")")
		}
	}
	sort.Strings(missing)
	return missing
}

// TestExampleHasEveryOption fails when a subdirective or keyword a parser accepts is missing
// from Caddyfile.example (as a word, in a line or a comment): the example is the
// configuration reference.
func TestExampleHasEveryOption(t *testing.T) {
	example, err := os.ReadFile("../Caddyfile.example")
	if err != nil {
		t.Fatal(err)
	}
	// As a word, in a line or a comment.
	missing := missingKeywords(t, example, func(q string) string { return `(?m)(^|[\s#{(])` + q + `($|[\s})])` })
	// Every directive, matcher and global option of ours starts a line (written or commented).
	for _, name := range []string{"hardening", "policy_rate_limit", "security_headers", "csp_report", "path_guard",
		"upstream_breaker", "monitoring", "ip_class"} {
		if !regexp.MustCompile(`(?m)^\s*#?\s*` + name + `\b`).Match(example) {
			missing = append(missing, name+" (a directive of ours)")
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Fatalf("Caddyfile.example lacks %d option(s) the parsers accept: %v", len(missing), missing)
	}
}
