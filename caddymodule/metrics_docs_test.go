package caddymodule

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestMetricsReadmeMatchesCode: every caddy_hardening_* family the code defines (a
// prometheus Opts literal with Namespace "caddy" and Subsystem "hardening", or a NewDesc of a
// caddy_hardening_ name, in any package of the module) is named in README.md, and every caddy_hardening_* name README.md
// gives is one the code defines (a histogram's _bucket, _sum and _count series included):
// dashboards and alerts are written from the README, and a renamed or new metric must not
// leave it behind. Read from the source rather than from /metrics, so a family that has no
// series yet (a CounterVec nothing incremented) is not missed.
func TestMetricsReadmeMatchesCode(t *testing.T) {
	code := codeMetrics(t)
	if len(code) < 20 { // the scan itself broke (the families: TestOurMetricsPassPromlint)
		t.Fatalf("found only %d caddy_hardening_* families in the code: %v", len(code), code)
	}
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for _, name := range regexp.MustCompile(`caddy_hardening_[a-z0-9_]*[a-z0-9]`).FindAllString(string(readme), -1) {
		documented[name] = true
	}
	for _, name := range code {
		if !documented[name] {
			t.Errorf("%s is defined in the code and not named in README.md: document it where its module's metrics are listed", name)
		}
	}
	for name := range documented {
		base := name
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if b, ok := strings.CutSuffix(name, suffix); ok && slices.Contains(code, b) {
				base = b
			}
		}
		if !slices.Contains(code, base) {
			t.Errorf("README.md names %s, which the code does not define: rename or drop it there", name)
		}
	}
}

// codeMetrics lists the caddy_hardening_* family names defined in the module's sources (every
// package, not only this one; directories with a go.mod of their own, such as bench's Caddy
// builds, and testdata are other code).
func codeMetrics(t *testing.T) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir("..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path == ".." {
				return nil
			}
			if name := d.Name(); name == "testdata" || name == "node_modules" || strings.HasPrefix(name, ".") {
				return filepath.SkipDir
			}
			if _, err := os.Stat(filepath.Join(path, "go.mod")); err == nil {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasSuffix(path, ".go") && !strings.HasSuffix(path, "_test.go") {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	seen := map[string]bool{}
	for _, f := range files {
		file, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(file, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.CompositeLit:
				fields := map[string]string{}
				for _, e := range n.Elts {
					kv, ok := e.(*ast.KeyValueExpr)
					if !ok {
						continue
					}
					key, kok := kv.Key.(*ast.Ident)
					lit, lok := kv.Value.(*ast.BasicLit)
					if kok && lok && lit.Kind == token.STRING {
						fields[key.Name], _ = strconv.Unquote(lit.Value)
					}
				}
				if fields["Namespace"] == "caddy" && fields["Subsystem"] == "hardening" && fields["Name"] != "" {
					seen["caddy_hardening_"+fields["Name"]] = true
				}
			case *ast.CallExpr:
				sel, ok := n.Fun.(*ast.SelectorExpr)
				if !ok || sel.Sel.Name != "NewDesc" || len(n.Args) == 0 {
					break
				}
				if lit, ok := n.Args[0].(*ast.BasicLit); ok && lit.Kind == token.STRING {
					if name, _ := strconv.Unquote(lit.Value); strings.HasPrefix(name, "caddy_hardening_") {
						seen[name] = true
					}
				}
			}
			return true
		})
	}
	out := make([]string, 0, len(seen))
	for name := range seen {
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}
