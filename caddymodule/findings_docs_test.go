package caddymodule

import (
	"go/ast"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// sourceFindingCodes returns the finding codes the package's sources can report: the Code of each
// Finding literal, and the first argument of a local report(code, ...) helper (security_headers
// builds its findings so).
func sourceFindingCodes(t *testing.T) map[string]string {
	t.Helper()
	all, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	for _, f := range all {
		if !strings.HasSuffix(f, "_test.go") {
			files = append(files, f)
		}
	}
	return sourceStrings(t, files, func(n ast.Node, take func(ast.Expr)) {
		switch n := n.(type) {
		case *ast.CompositeLit:
			if id, ok := n.Type.(*ast.Ident); ok && id.Name == "Finding" {
				for _, el := range n.Elts {
					if kv, ok := el.(*ast.KeyValueExpr); ok {
						if k, ok := kv.Key.(*ast.Ident); ok && k.Name == "Code" {
							take(kv.Value)
						}
					}
				}
			}
		case *ast.CallExpr:
			if id, ok := n.Fun.(*ast.Ident); ok && id.Name == "report" && len(n.Args) > 0 {
				take(n.Args[0])
			}
		}
	})
}

// TestFindingCodesAreDocumented fails when a finding code the modules can report is in no
// table row of README.md (the check's table, the Validation table, or a `redis.*` row): an
// operator reading `caddy hardening check` output or a WARN line looks the code up there, and
// a code added without its row has no stated severity, environments or meaning. A code named
// in a row that no module reports any more fails too.
func TestFindingCodesAreDocumented(t *testing.T) {
	raw, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	codes := sourceFindingCodes(t)
	if len(codes) < 40 {
		t.Fatalf("found %d finding codes; the walk no longer sees the modules' findings", len(codes))
	}
	// Codes the check command itself reports, outside the modules' findings.
	for _, c := range []string{"config.invalid", "check.temp_storage"} {
		codes[c] = "check"
	}
	// The first cell of every table row that names codes: `a.b`, `a.b`, ...
	rowCodes := map[string]bool{}
	cell := regexp.MustCompile(`^\|\s*([^|]+)\|`)
	code := regexp.MustCompile("`([a-z][a-z0-9_]*\\.(?:[a-z0-9_]+|\\*))`")
	for _, l := range strings.Split(string(raw), "\n") {
		if m := cell.FindStringSubmatch(l); m != nil {
			for _, c := range code.FindAllStringSubmatch(m[1], -1) {
				rowCodes[c[1]] = true
			}
		}
	}
	var missing []string
	for c, file := range codes {
		family := strings.SplitN(c, ".", 2)[0] + ".*"
		if !rowCodes[c] && !rowCodes[family] {
			missing = append(missing, c+" ("+file+")")
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("README.md has no table row for %d finding code(s): %v", len(missing), missing)
	}
	var stale []string
	for c := range rowCodes {
		if strings.HasSuffix(c, ".*") {
			continue
		}
		if _, ok := codes[c]; !ok && regexp.MustCompile(`^(redis|ip_classes|detection|features|breaker|csp|hsts|headers|monitoring|path_guard|ratelimit|proxies|admin|config|check)\.`).MatchString(c) {
			stale = append(stale, c)
		}
	}
	sort.Strings(stale)
	if len(stale) > 0 {
		t.Errorf("README.md documents finding code(s) no module reports: %v", stale)
	}
}
