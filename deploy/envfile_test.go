package deploy_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/swarmsec/caddy-hardening/internal/testenv"
)

// TestEnvfileCutsAtHash: what .env.example and README.md say about `caddy run --envfile` is
// what the Caddy we build does with a .env. They said it refuses a value followed by a
// comment; Caddy v2.11.9 accepts it and cuts every value at its first `#`, quoted or not, so a
// password holding `#` arrives cut (and Redis answers WRONGPASS) with nothing said. The
// documents now say so; this test fails when a Caddy upgrade changes the rule.
func TestEnvfileCutsAtHash(t *testing.T) {
	for _, doc := range []string{"../.env.example", "../README.md"} { // .env.example: comment lines
		if text := strings.Join(strings.Fields(strings.ReplaceAll(read(t, doc), "\n# ", "\n")), " "); !strings.Contains(text, "cuts every value at its first `#`, quoted or not") {
			t.Errorf("%s does not say that `caddy run --envfile` cuts every value at its first `#`", doc)
		}
	}
	bin := testenv.CaddyBinary(t)
	dir := t.TempDir()
	caddyfile := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(caddyfile, []byte("{\n\tadmin off\n}\n\nhttp://localhost {\n\trespond \"[{$A}] [{$B}] [{$C}]\"\n}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := filepath.Join(dir, ".env")
	if err := os.WriteFile(env, []byte("A=one # a comment\nB=pass#word\nC=\"pass#word\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "adapt", "--config", caddyfile, "--envfile", env).Output()
	if err != nil {
		t.Fatalf("caddy adapt --envfile: %v\n%s", err, out)
	}
	if want := `[one] [pass] [pass]`; !strings.Contains(string(out), want) {
		t.Fatalf("caddy adapt --envfile: want the body %q (each value cut at #), got:\n%s", want, out)
	}
}
