package caddymodule

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/swarmsec/caddy-hardening/internal/testcaddy"
	"github.com/swarmsec/caddy-hardening/internal/testenv"
)

// TestEscalationDetectsAWiderNetwork: a scanner holding a /48 sent two probe paths from each
// of its /64s, every one a fresh client: each /64 was banned alone and the next one scanned
// on. With the default ipv6_escalate 48 8, the eighth detected /64 detects the /48: its next
// /64 is refused at its first request, the event and the admin listing name the /48, an
// operator lifts it with DELETE of that network, and a ban of a /48 through the admin API
// works the same way (a network holding ::1 is refused).
func TestEscalationDetectsAWiderNetwork(t *testing.T) {
	adminPort := testenv.FreePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	c := testcaddy.StartCaddy(t, fmt.Sprintf(`{
	admin 127.0.0.1:%d
	servers {
		trusted_proxies static 127.0.0.1/32
		trusted_proxies_strict
	}
	hardening
}
http://%s {
	bind 127.0.0.1
	path_guard {
		suspicious_action block
	}
	respond 200
}
`, adminPort, addr))
	admin := fmt.Sprintf("http://127.0.0.1:%d/hardening/ipclass/", adminPort)
	for i := range 8 {
		client := fmt.Sprintf("2001:db8:5:%x::7", i)
		sendAs(t, addr, client, "/.env")
		sendAs(t, addr, client, "/.git/config")
		if status := sendAs(t, addr, client, "/"); status != 403 {
			t.Fatalf("/64 %d: %d after two probes, want 403", i, status)
		}
	}
	if status := sendAs(t, addr, "2001:db8:5:ffff::1", "/"); status != 403 {
		t.Errorf("a fresh /64 of the /48 with eight detected /64s: %d, want 403", status)
	}
	if status := sendAs(t, addr, "2001:db8:6::1", "/"); status != 200 {
		t.Errorf("the next /48: %d, want 200", status)
	}
	if got := reclassifiedIPs(c)["2001:db8:5::/48"]; got != "probe" {
		t.Errorf("ip_reclassified events %v: want the /48 by probe", reclassifiedIPs(c))
	}
	if _, body := adminDo(t, "GET", admin, ""); !strings.Contains(body, `"ip":"2001:db8:5::/48"`) {
		t.Errorf("listing without the /48: %s", body)
	}
	if code, body := adminDo(t, "DELETE", admin+"detected/2001:db8:5::/48", ""); code != 200 || !strings.Contains(body, `"was_detected":true`) {
		t.Fatalf("unban of the /48: %d %s", code, body)
	}
	if status := sendAs(t, addr, "2001:db8:5:ffff::1", "/"); status != 200 {
		t.Errorf("after the /48's unban: %d, want 200", status)
	}
	if code, body := adminDo(t, "POST", admin+"detected", `{"ip": "2001:db8:7::/48"}`); code != 201 || !strings.Contains(body, `"ip":"2001:db8:7::/48"`) {
		t.Fatalf("ban of a /48: %d %s", code, body)
	}
	if status := sendAs(t, addr, "2001:db8:7:1234::1", "/"); status != 403 {
		t.Errorf("an address of a banned /48: %d, want 403", status)
	}
	for _, ip := range []string{"::/48", "2001:db8:7::/40", "2001:db8:7::1/48"} {
		if code, body := adminDo(t, "POST", admin+"detected", `{"ip": "`+ip+`"}`); code != 400 {
			t.Errorf("ban of %s: %d %s, want 400", ip, code, body)
		}
	}
}

// TestEscalateJSONBounds: the JSON config is held to the Caddyfile's bounds.
func TestEscalateJSONBounds(t *testing.T) {
	c := testcaddy.StartCaddy(t, "")
	for cfg, want := range map[string]string{
		`"ipv6_escalate": {"prefix": 64}`:                  "ipv6_escalate: prefix 64: expected a length shorter than ipv6_prefix (/64)",
		`"ipv6_prefix": 40, "ipv6_escalate": {"count": 4}`: "ipv6_escalate: prefix 0: expected a length shorter than ipv6_prefix (/40)",
		`"ipv6_escalate": {"prefix": 48, "count": 1}`:      "ipv6_escalate: count 1: expected 2 to 16",
		`"ipv6_escalate": {"prefix": 48, "count": 17}`:     "ipv6_escalate: count 17: expected 2 to 16",
		`"ipv6_escalate": {"off": true, "prefix": 48}`:     "ipv6_escalate: off takes no prefix or count",
		`"ipv6_escalate": {"prefix": -1}`:                  "ipv6_escalate: prefix -1",
	} {
		err := c.LoadJSON(`{"apps": {"hardening": {"detection": {` + cfg + `}}}}`)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("detection {%s}: %v, want an error containing %q", cfg, err, want)
		}
	}
	if err := c.LoadJSON(`{"apps": {"hardening": {"detection": {"ipv6_prefix": 40}}}}`); err != nil {
		t.Errorf("ipv6_prefix 40 without ipv6_escalate (the default /48 does not apply): %v", err)
	}
}

// TestFullWideTableCountsEvictedNetworkBans: bans of wider networks (escalations, an
// operator's ban of a /48) beyond their table's bound (max_tracked / 2, at least 32 per
// shard: 2048 under max_tracked 64) evict the one ending first, and each such eviction of an
// active ban counts in caddy_hardening_detection_bans_evicted_total and is logged as the ban
// table's are. Before, they went uncounted and unlogged: the metric said no ban was lost
// while hundreds were.
func TestFullWideTableCountsEvictedNetworkBans(t *testing.T) {
	adminPort := testenv.FreePort(t)
	c := testcaddy.StartCaddy(t, fmt.Sprintf(`{
	admin 127.0.0.1:%d
	hardening {
		environment development
		detection {
			max_tracked 64
		}
	}
}
`, adminPort))
	admin := fmt.Sprintf("http://127.0.0.1:%d", adminPort)
	const day, networks = "2001:db8:ffff::/48", 2400
	if code, body := adminDo(t, "POST", admin+"/hardening/ipclass/detected", `{"ip": "`+day+`", "ban_for": "24h"}`); code != 201 {
		t.Fatalf("ban of %s: %d %s", day, code, body)
	}
	for i := range networks {
		if code, body := adminDo(t, "POST", admin+"/hardening/ipclass/detected", fmt.Sprintf(`{"ip": "2001:db8:%x::/48"}`, i)); code != 201 {
			t.Fatalf("ban %d: %d %s", i, code, body)
		}
	}
	app := activeApp(t)
	_, detected := app.detector().Counts()
	evicted := networks + 1 - detected
	if evicted <= 0 || app.classOfAddr(netip.MustParseAddr("2001:db8:ffff:1::1")).String() != "suspicious" {
		t.Fatalf("%d network bans kept of %d (the day-long one: %v)", detected, networks+1,
			app.classOfAddr(netip.MustParseAddr("2001:db8:ffff:1::1")))
	}
	metrics := getReply(t, admin+"/metrics").body
	if want := fmt.Sprintf("caddy_hardening_detection_bans_evicted_total %d\n", evicted); !strings.Contains(metrics, want) {
		t.Errorf("metrics without %q", want)
	}
	warned := testenv.Filter(c.Logs(), func(e testenv.LogEntry) bool {
		return strings.HasPrefix(e.Msg(), "detection: the ban table is full")
	})
	if len(warned) != 1 || !strings.HasSuffix(warned[0].Str("evicted"), "::/48") {
		t.Errorf("want one WARN line naming an evicted /48, got %v", warned)
	}
}
