package caddymodule

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/swarmsec/caddy-hardening/internal/testcaddy"
	"github.com/swarmsec/caddy-hardening/internal/testenv"
)

// TestReloadLoweringMaxTrackedKeepsScores: `caddy reload` with a smaller `max_tracked` keeps
// the detector (and its scores), and spreads it as a fresh one of that size is spread: below
// 90 % of max_tracked nothing is evicted. A detector started with the default kept 64 shards
// of 15 entries under `max_tracked 1000`, and lost about one client's score in ten.
func TestReloadLoweringMaxTrackedKeepsScores(t *testing.T) {
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
%s		}
	}
}
http://%s {
	bind 127.0.0.1
	path_guard
	respond "ok"
}
`, detection, addr)
	}
	c := testcaddy.StartCaddy(t, site("\t\t\tthreshold 20\n"))
	if err := c.Load(site("\t\t\tthreshold 20\n\t\t\tmax_tracked 1000\n")); err != nil {
		t.Fatal(err)
	}
	const clients = 900
	for i := range clients {
		if status, _, body := rawGet(t, addr, "/.env", fmt.Sprintf("X-Forwarded-For: 10.9.%d.%d", i>>8, i&255)); status != http.StatusOK {
			t.Fatalf("probe %d: %d %s", i, status, body)
		}
	}
	if tracked, _ := activeApp(t).detector().Counts(); tracked != clients {
		t.Fatalf("%d clients probed under max_tracked 1000, %d tracked", clients, tracked)
	}
}

// TestFullBanTableEvictsTheBanEndingFirst: more clients detected at once than max_tracked
// bans: the table stays bounded, each new ban evicts the one ending first (an operator's
// longer ban outlasts the flood), caddy_hardening_detection_bans_evicted_total counts them,
// the health component shows it, and one WARN line says so.
func TestFullBanTableEvictsTheBanEndingFirst(t *testing.T) {
	adminPort := testenv.FreePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	c := testcaddy.StartCaddy(t, fmt.Sprintf(`{
	admin 127.0.0.1:%d
	servers {
		trusted_proxies static 127.0.0.1/32
		trusted_proxies_strict
	}
	hardening {
		environment development
		detection {
			max_tracked 64
		}
	}
}
http://%s {
	bind 127.0.0.1
	path_guard {
		suspicious_action block
	}
	respond "ok"
}
`, adminPort, addr))
	admin := fmt.Sprintf("http://127.0.0.1:%d", adminPort)
	if code, body := adminDo(t, "POST", admin+"/hardening/ipclass/detected", `{"ip": "192.0.2.7", "ban_for": "1h"}`); code != 201 {
		t.Fatalf("ban: %d %s", code, body)
	}
	const clients = 100
	client := func(i int) string { return fmt.Sprintf("10.8.0.%d", i) }
	for i := range clients {
		if status := sendAs(t, addr, client(i), "/a/%2e%2e/b"); status != 400 {
			t.Fatalf("traversal from %s: %d", client(i), status)
		}
	}
	if status := sendAs(t, addr, "192.0.2.7", "/"); status != 403 {
		t.Errorf("the operator's 1h ban: %d after the flood of 15m detections, want 403", status)
	}
	if status := sendAs(t, addr, client(clients-1), "/"); status != 403 {
		t.Errorf("the latest detection: %d, want 403", status)
	}
	if status := sendAs(t, addr, client(0), "/"); status != 200 {
		t.Errorf("the detection ending first: %d, want 200 (evicted)", status)
	}
	const evicted = clients + 1 - 64
	if _, detected := activeApp(t).detector().Counts(); detected != 64 {
		t.Errorf("%d detected, max_tracked 64", detected)
	}
	metrics := getReply(t, admin+"/metrics").body
	if want := fmt.Sprintf("caddy_hardening_detection_bans_evicted_total %d\n", evicted); !strings.Contains(metrics, want) {
		t.Errorf("metrics without %q", want)
	}
	if got := componentStatus(t, "ipclass:detection").Observed["bans_evicted"]; got != uint64(evicted) {
		t.Errorf("health bans_evicted %v, want %d", got, evicted)
	}
	warned := testenv.Filter(c.Logs(), func(e testenv.LogEntry) bool {
		return strings.HasPrefix(e.Msg(), "detection: the ban table is full")
	})
	if len(warned) != 1 || warned[0].Level() != "warn" || warned[0].Str("evicted") != client(0) {
		t.Errorf("want one WARN line naming %s, got %v", client(0), warned)
	}
}
