package caddymodule

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/swarmsec/caddy-hardening/internal/testcaddy"
	"github.com/swarmsec/caddy-hardening/internal/testenv"
)

// TestBansSurviveDetectionSwitchedOffAndOn: bans are kept across reloads through the admin
// API's /load, a reload that keeps detection and one that switches it off (`features {
// detection off }`: nobody is suspicious by detection meanwhile) and on again: a client
// detected, and one an operator banned, are refused again once detection is back, until
// their bans end, as after shadow mode. Before, the configuration without detection released
// the pooled detector and the next one started an empty one: switching detection off for a
// minute unbanned every scanner on an instance without Redis (with Redis, the shared set
// brought them back, so the two setups disagreed).
func TestBansSurviveDetectionSwitchedOffAndOn(t *testing.T) {
	adminPort := testenv.FreePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	admin := fmt.Sprintf("http://127.0.0.1:%d", adminPort)
	logFile := filepath.Join(t.TempDir(), "caddy.log")
	site := func(features, body string) string {
		return fmt.Sprintf(`{
	admin 127.0.0.1:%d
	persist_config off
	log {
		output file %s
		format json
	}
	servers {
		trusted_proxies static 127.0.0.1/32
		trusted_proxies_strict
	}
	hardening {
		environment development
		features {
			detection %s
		}
	}
}
http://%s {
	bind 127.0.0.1
	path_guard {
		suspicious_action block
	}
	respond "%s"
}
`, adminPort, logFile, features, addr, body)
	}
	testcaddy.StartCaddy(t, site("on", "one"))
	const scanner, banned, clean = "192.0.2.20", "192.0.2.21", "192.0.2.99"
	sendAs(t, addr, scanner, "/.env")
	sendAs(t, addr, scanner, "/.git/config")
	if code, body := adminDo(t, "POST", admin+"/hardening/ipclass/detected", `{"ip": "`+banned+`", "ban_for": "1h"}`); code != 201 {
		t.Fatalf("ban: %d %s", code, body)
	}
	refused := func(when string, want int) {
		t.Helper()
		for _, c := range []string{scanner, banned} {
			if status := sendAs(t, addr, c, "/"); status != want {
				t.Errorf("%s: %s answered %d, want %d", when, c, status, want)
			}
		}
	}
	refused("before any reload", 403)
	answers := func(body string) {
		t.Helper()
		// The old server may still take a connection and close it unanswered.
		waitFor(t, "the config answering "+body, func() bool {
			req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/", nil)
			req.Header.Set("X-Forwarded-For", clean)
			req.Close = true
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return false
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return string(b) == body
		})
	}

	loadCaddyfile(t, adminPort, site("on", "two"))
	answers("two")
	refused("after a reload that keeps detection", 403)

	loadCaddyfile(t, adminPort, site("off", "three"))
	answers("three")
	refused("with detection off", 200)
	suspiciousGauge := func(when, want string) {
		t.Helper()
		if m := getReply(t, admin+"/metrics").body; !strings.Contains(m, "\ncaddy_hardening_detection_suspicious_ips "+want+"\n") {
			t.Errorf("%s: caddy_hardening_detection_suspicious_ips is not %s", when, want)
		}
	}
	suspiciousGauge("with detection off", "0")

	loadCaddyfile(t, adminPort, site("on", "four"))
	answers("four")
	refused("with detection on again", 403)
	suspiciousGauge("with detection on again", "2")
}

// TestRefusedReloadKeepsDetectionSettings: a reload that Caddy refuses (here a handler with an
// unknown policy, provisioned after the hardening app) leaves the running configuration as it
// was, detection settings included. The pooled detector took the refused configuration's
// settings when it was provisioned: a refused reload with `shadow` unbanned every client of
// the running one (and a lower max_tracked would have evicted its bans for good). Settings
// now apply when a configuration starts.
func TestRefusedReloadKeepsDetectionSettings(t *testing.T) {
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	site := func(detection string) string {
		return fmt.Sprintf(`{
	admin off
	servers {
		trusted_proxies static 127.0.0.1/32
		trusted_proxies_strict
	}
	hardening {
		environment development
		detection {
			%s
		}
	}
}
http://%s {
	bind 127.0.0.1
	path_guard {
		suspicious_action block
	}
	policy_rate_limit public
	respond "ok"
}
`, detection, addr)
	}
	c := testcaddy.StartCaddy(t, site("threshold 20"))
	const scanner = "192.0.2.30"
	sendAs(t, addr, scanner, "/.env")
	sendAs(t, addr, scanner, "/.git/config")
	if status := sendAs(t, addr, scanner, "/"); status != 403 {
		t.Fatalf("the scanner: %d, want 403", status)
	}
	cfg, err := testcaddy.Adapt(site("shadow"))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(cfg)
	const handler = `{"handler":"policy_rate_limit","policy":"public"}`
	if !strings.Contains(string(raw), handler) {
		t.Fatalf("no %s in %s", handler, raw)
	}
	bad := strings.Replace(string(raw), handler, handler+`,{"handler":"policy_rate_limit","policy":"nope"}`, 1)
	if err := c.LoadJSON(bad); err == nil || !strings.Contains(err.Error(), "unknown policy") {
		t.Fatalf("the bad configuration loaded: %v", err)
	}
	if status := sendAs(t, addr, scanner, "/"); status != 403 {
		t.Errorf("after a refused reload in shadow mode, the running configuration's ban: %d, want 403", status)
	}
	if activeApp(t).detector().Shadow() {
		t.Error("the refused configuration's shadow mode applies")
	}
}
