package caddymodule

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
)

// readmePolicyRow is one row of README's table of built-in policies, as written there.
type readmePolicyRow struct{ name, limit, trusted, suspicious, adaptive string }

// readmeBuiltinPolicies reads README's table of built-in policies (| policy | limit | trusted |
// suspicious | adaptive |).
func readmeBuiltinPolicies(t *testing.T) []readmePolicyRow {
	t.Helper()
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, table, ok := strings.Cut(string(readme), "| policy | limit | trusted | suspicious | adaptive |\n|---|---|---|---|---|\n")
	if !ok {
		t.Fatal("README has no table of built-in policies")
	}
	var rows []readmePolicyRow
	for _, line := range strings.Split(table, "\n") {
		if !strings.HasPrefix(line, "|") {
			break
		}
		cells := strings.Split(strings.Trim(line, "| "), "|")
		for i := range cells {
			cells[i] = strings.Trim(strings.TrimSpace(cells[i]), "`")
		}
		if len(cells) != 5 {
			t.Fatalf("README policy row %q: want 5 cells", line)
		}
		rows = append(rows, readmePolicyRow{cells[0], cells[1], cells[2], cells[3], cells[4]})
	}
	return rows
}

// timesTen multiplies each rate and burst of a row as README writes it ("5/1m burst 5").
func timesTen(row string) string {
	return regexp.MustCompile(`\d+(/|$)|burst \d+`).ReplaceAllStringFunc(row, func(s string) string {
		n := strings.TrimRight(strings.TrimPrefix(s, "burst "), "/")
		v, _ := strconv.Atoi(n)
		return strings.Replace(s, n, strconv.Itoa(v*developmentRateFactor), 1)
	})
}

// TestReadmeBuiltinPoliciesAreTheCode: README's table of built-in policies, written as policies
// of a configuration, resolves to the built-in policies of production and staging, and with
// every rate and burst multiplied by 10, to those of development (README: "development
// multiplies the rows of this table by 10"). The table and the code cannot drift apart.
func TestReadmeBuiltinPoliciesAreTheCode(t *testing.T) {
	rows := readmeBuiltinPolicies(t)
	if len(rows) != len(builtinPolicies) {
		t.Errorf("README lists %d built-in policies, the code has %d", len(rows), len(builtinPolicies))
	}
	for _, env := range []Environment{Production, Staging, Development} {
		var b strings.Builder
		b.WriteString("{\n\thardening {\n")
		for _, r := range rows {
			row := func(s string) string { return s }
			if env == Development {
				row = timesTen
			}
			adaptive := map[string]string{"yes": "on", "no": "off"}[r.adaptive]
			if adaptive == "" {
				t.Fatalf("README policy %s: adaptive %q, want yes or no", r.name, r.adaptive)
			}
			fmt.Fprintf(&b, "\t\tpolicy readme_%s {\n\t\t\tlimit %s\n\t\t\ttrusted %s\n\t\t\tsuspicious %s\n\t\t\tadaptive %s\n\t\t}\n",
				r.name, row(r.limit), row(r.trusted), row(r.suspicious), adaptive)
		}
		b.WriteString("\t}\n}\n")
		out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(b.String()), nil)
		if err != nil {
			t.Fatalf("%s: README's rows do not adapt: %v\n%s", env, err, b.String())
		}
		var cfg struct {
			Apps struct {
				Hardening App `json:"hardening"`
			} `json:"apps"`
		}
		if err := json.Unmarshal(out, &cfg); err != nil {
			t.Fatal(err)
		}
		resolved, err := resolvePolicies(cfg.Apps.Hardening.Policies, env)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rows {
			code, ok := resolved[r.name]
			if !ok {
				t.Errorf("README lists built-in policy %s, which the code does not have", r.name)
				continue
			}
			readme := *resolved["readme_"+r.name]
			readme.name = code.name
			if fmt.Sprintf("%+v", readme) != fmt.Sprintf("%+v", *code) {
				t.Errorf("%s: built-in policy %s is\n  %+v\nREADME's row says\n  %+v", env, r.name, *code, readme)
			}
		}
	}
}
