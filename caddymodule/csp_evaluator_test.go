package caddymodule

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/swarmsec/caddy-hardening/internal/testcaddy"
	"github.com/swarmsec/caddy-hardening/internal/testenv"
)

// cspEvaluatorVersion is Google's CSP Evaluator (npm csp_evaluator), installed into
// .ci/node/ (ignored by git) on first use.
const cspEvaluatorVersion = "1.1.8"

const evaluatorJS = `
const dir = process.argv[2];
const {CspEvaluator} = require(dir + '/dist/evaluator.js');
const {CspParser} = require(dir + '/dist/parser.js');
const {Version} = require(dir + '/dist/csp.js');
const findings = new CspEvaluator(new CspParser(process.argv[3]).csp, Version.CSP3).evaluate();
const seen = new Set(), out = [];
for (const f of findings) {
	const key = [f.type, f.severity, f.directive, f.value].join('|');
	if (!seen.has(key)) { seen.add(key); out.push({type: f.type, severity: f.severity, directive: f.directive, value: f.value, description: f.description}); }
}
console.log(JSON.stringify(out));
`

type cspFinding struct {
	Type        int    `json:"type"`
	Severity    int    `json:"severity"`
	Directive   string `json:"directive"`
	Value       string `json:"value"`
	Description string `json:"description"`
}

// Severities of CSP Evaluator's findings: up to MEDIUM_MAYBE (50) is a weakness; INFO (60)
// and NONE (100) are advice.
const evaluatorWorstAllowed = 60

// evaluateCSP runs Google's CSP Evaluator on a policy.
func evaluateCSP(t *testing.T, policy string) []cspFinding {
	t.Helper()
	node := testenv.RequireBinary(t, "node")
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	prefix := filepath.Join(root, ".ci", "node")
	dir := filepath.Join(prefix, "node_modules", "csp_evaluator")
	if _, err := os.Stat(filepath.Join(dir, "dist", "evaluator.js")); err != nil {
		npm := testenv.RequireBinary(t, "npm")
		out, err := exec.Command(npm, "install", "--no-audit", "--no-fund", "--prefix", prefix, "csp_evaluator@"+cspEvaluatorVersion).CombinedOutput()
		if err != nil {
			t.Fatalf("npm install csp_evaluator@%s: %v\n%s", cspEvaluatorVersion, err, out)
		}
	}
	script := filepath.Join(t.TempDir(), "evaluate.js")
	if err := os.WriteFile(script, []byte(evaluatorJS), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(node, script, dir, policy).Output()
	if err != nil {
		t.Fatalf("node: %v", err)
	}
	var findings []cspFinding
	if err := json.Unmarshal(out, &findings); err != nil {
		t.Fatalf("evaluator output %q: %v", out, err)
	}
	return findings
}

func TestCSPEvaluatorFindsNothingInTheProductionPolicy(t *testing.T) {
	// The harness finds a weak policy weak.
	weak := evaluateCSP(t, "script-src 'self' 'unsafe-inline'")
	if len(weak) == 0 || weak[0].Severity >= evaluatorWorstAllowed {
		t.Fatalf("CSP Evaluator did not flag script-src 'unsafe-inline': %+v", weak)
	}

	port := testenv.FreePort(t)
	testcaddy.StartCaddy(t, fmt.Sprintf(`{
	hardening {
		environment production
	}
}
http://127.0.0.1:%d {
	bind 127.0.0.1
	security_headers {
		report_uri /csp-report
	}
	respond "ok"
}
`, port))
	resp, _ := getBody(t, fmt.Sprintf("http://127.0.0.1:%d/", port))
	policy := resp.Header.Get("Content-Security-Policy")
	if policy == "" {
		t.Fatal("production serves no Content-Security-Policy")
	}
	for _, f := range evaluateCSP(t, policy) {
		if f.Severity < evaluatorWorstAllowed {
			t.Errorf("CSP Evaluator finding (severity %d) on %s %s: %s", f.Severity, f.Directive, f.Value, f.Description)
		} else {
			t.Logf("advice (severity %d): %s", f.Severity, f.Description)
		}
	}
}
