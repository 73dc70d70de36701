package caddymodule

import (
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/swarmsec/caddy-hardening/internal/testcaddy"
	"github.com/swarmsec/caddy-hardening/internal/testenv"
)

// TestRefusedLoadKeepsOurSeriesOnTheAdminMetrics: Caddy serves the admin /metrics from the
// registry of the last configuration it tried to load, also when that load failed and the
// previous one goes on running. A load refused in the hardening app's provisioning (a PATCH
// with a negative rate) removed every rate-limit series from it until the next load that
// succeeded, and the dependency states with them; they stay now, with the running
// configuration's figures.
func TestRefusedLoadKeepsOurSeriesOnTheAdminMetrics(t *testing.T) {
	admin, port := testenv.FreePort(t), testenv.FreePort(t)
	dep, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer dep.Close()
	caddyfile := fmt.Sprintf(`{
	admin 127.0.0.1:%d
	hardening {
		policy carried {
			limit 1/1h
		}
	}
}
http://127.0.0.1:%d {
	bind 127.0.0.1
	handle_path /mon/* {
		monitoring {
			check tcp dep %s
		}
	}
	policy_rate_limit carried
	respond "ok"
}
`, admin, port, dep.Addr())
	c := testcaddy.StartCaddy(t, caddyfile)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	getReply(t, base+"/")
	getReply(t, base+"/")
	want := []string{
		`caddy_hardening_ratelimit_decisions_total{class="default",policy="carried",result="denied"} 1`,
		`caddy_hardening_ratelimit_memory_keys{policy="carried"} 1`,
		`caddy_hardening_ratelimit_store_mode{mode="memory"} 1`,
		`caddy_hardening_dependency_up{check="dep",critical="false",type="tcp"} 1`,
	}
	metricsURL := fmt.Sprintf("http://127.0.0.1:%d/metrics", admin)
	waitForSeries(t, metricsURL, want, "before the refused load")

	cfg, err := testcaddy.Adapt(caddyfile)
	if err != nil {
		t.Fatal(err)
	}
	policy := cfg["apps"].(map[string]any)["hardening"].(map[string]any)["policies"].(map[string]any)["carried"].(map[string]any)
	policy["limit"].(map[string]any)["rate"] = -1
	raw, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.LoadJSON(string(raw)); err == nil || !strings.Contains(err.Error(), "rate must be positive") {
		t.Fatalf("load with a negative rate: %v, want it refused", err)
	}
	if got := getReply(t, base+"/").status; got != 429 {
		t.Fatalf("after the refused load the running limit answers %d, want 429", got)
	}
	want[0] = `caddy_hardening_ratelimit_decisions_total{class="default",policy="carried",result="denied"} 2`
	waitForSeries(t, metricsURL, want, "after the refused load")
}

// waitForSeries waits up to 5 s for every line of want on the metrics page at url.
func waitForSeries(t *testing.T, url string, want []string, when string) {
	t.Helper()
	var body string
	for deadline := time.Now().Add(5 * time.Second); ; {
		body = getReply(t, url).body
		missing := ""
		for _, line := range want {
			if !strings.Contains(body, line+"\n") {
				missing = line
				break
			}
		}
		if missing == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s, /metrics lacks %s; our series on it:\n%s", when, missing, grepLines(body, "caddy_hardening_"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func grepLines(text, prefix string) string {
	var out []string
	for line := range strings.SplitSeq(text, "\n") {
		if strings.HasPrefix(line, prefix) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}
