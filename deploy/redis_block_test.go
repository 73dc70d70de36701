package deploy_test

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/swarmsec/caddy-hardening/internal/testenv"
)

// uncommentRedisBlock is Caddyfile.example with its redis block uncommented as render.yaml and
// kubernetes.yaml tell a user to: one comment level off each line of the block, the URL
// replaced by {env.REDIS_URL}. Lines commented twice stay comments (they are the options one
// picks).
func uncommentRedisBlock(t *testing.T, example string) string {
	t.Helper()
	lines := strings.Split(example, "\n")
	in := false
	for i, line := range lines {
		if strings.HasPrefix(line, "\t\t# redis redis://") {
			in = true
			line = regexp.MustCompile(`redis redis://\S+ \{`).ReplaceAllString(line, "redis {env.REDIS_URL} {")
		}
		if !in {
			continue
		}
		lines[i] = strings.Replace(line, "#", "", 1)
		if strings.TrimSpace(line) == "# }" {
			return strings.Join(lines, "\n")
		}
	}
	t.Fatal("Caddyfile.example has no commented redis block")
	return ""
}

// TestExampleRedisBlockLoadsWithTheShippedVariables: the example's redis block, uncommented as
// the deployment files say, loads with the variables they provide (.env.example with the URL
// and password filled in; render.yaml's edge-redis group and kubernetes.yaml's Secret set only
// REDIS_URL and REDIS_PASSWORD) and connects to a Redis that has no ACL user.
func TestExampleRedisBlockLoadsWithTheShippedVariables(t *testing.T) {
	const password = "example-pw"
	r := testenv.StartRedis(t, "--requirepass", password)
	caddyfile := uncommentRedisBlock(t, read(t, "../Caddyfile.example"))
	var env []string
	for k, v := range envFile(t, "../.env.example") {
		env = append(env, k+"="+v)
	}
	env = append(env, "REDIS_URL="+r.URL(0), "REDIS_PASSWORD="+password,
		fmt.Sprintf("HTTP_PORT=%d", testenv.FreePort(t)),
		fmt.Sprintf("HTTPS_PORT=%d", testenv.FreePort(t)),
		fmt.Sprintf("ADMIN_ADDR=127.0.0.1:%d", testenv.FreePort(t)))
	p := testenv.StartProcess(t, testenv.CaddyBinary(t), []string{"run", "--config", "Caddyfile", "--adapter", "caddyfile"}, caddyfile, env...)
	if err := p.WaitOutput(`"redis connected"`, 60*time.Second); err != nil {
		t.Fatalf("the uncommented redis block did not load and connect: %v", err)
	}
}
