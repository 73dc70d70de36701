package caddymodule

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/swarmsec/caddy-hardening/internal/testcaddy"
	"github.com/swarmsec/caddy-hardening/internal/testenv"
)

// TestAdminBanAnswersTheEffectiveEnd: a ban through the admin API never shortens one in
// effect (the detector keeps the later end). An operator who re-banned a client banned for
// 10h with "ban_for": "1m" was answered 201 with an end a minute away, and the event said so,
// while the client stayed banned for 10 hours. The answer, the listing and the event all give
// the end that applies.
func TestAdminBanAnswersTheEffectiveEnd(t *testing.T) {
	adminPort := testenv.FreePort(t)
	c := testcaddy.StartCaddy(t, fmt.Sprintf("{\n\tadmin 127.0.0.1:%d\n\thardening\n}\n", adminPort))
	admin := fmt.Sprintf("http://127.0.0.1:%d/hardening/ipclass/", adminPort)
	ban := func(banFor string) time.Time {
		t.Helper()
		code, body := adminDo(t, "POST", admin+"detected", `{"ip": "192.0.2.45", "ban_for": "`+banFor+`"}`)
		var got adminDetection
		if code != 201 || json.Unmarshal([]byte(body), &got) != nil {
			t.Fatalf("ban for %s: %d %s", banFor, code, body)
		}
		return got.Until
	}
	long := ban("10h")
	if short := ban("1m"); !short.Equal(long) {
		t.Errorf("a ban for 1m of a client banned for 10h answered until %v; the ban in effect ends %v", short, long)
	}
	_, body := adminDo(t, "GET", admin, "")
	var list struct{ Detected []adminDetection }
	if err := json.Unmarshal([]byte(body), &list); err != nil || len(list.Detected) != 1 || !list.Detected[0].Until.Equal(long) {
		t.Fatalf("listing: %s", body)
	}
	logged := securityLogs(c, EventIPReclassified)
	if len(logged) != 2 || logged[1].Str("until") != long.Format(time.RFC3339) {
		t.Errorf("ip_reclassified of the second ban: %v, want until %s", logged, long.Format(time.RFC3339))
	}
	// A longer ban extends it, and says so.
	if longer := ban("20h"); !longer.After(long.Add(9 * time.Hour)) {
		t.Errorf("a ban for 20h answered until %v", longer)
	}
}

// TestAdminListingLimitKeepsTheLatestEnds: with more detections than ?limit=, the listing is
// the ones that end last, latest first. Before, it took the first `limit` the detector's maps
// gave, in no order, and sorted only those: `?limit=5` under a scan of thousands showed five
// arbitrary clients, not the bans that matter most.
func TestAdminListingLimitKeepsTheLatestEnds(t *testing.T) {
	adminPort := testenv.FreePort(t)
	testcaddy.StartCaddy(t, fmt.Sprintf("{\n\tadmin 127.0.0.1:%d\n\thardening\n}\n", adminPort))
	admin := fmt.Sprintf("http://127.0.0.1:%d/hardening/ipclass/", adminPort)
	for i := 1; i <= 60; i++ {
		if code, body := adminDo(t, "POST", admin+"detected", fmt.Sprintf(`{"ip": "192.0.2.%d", "ban_for": "%dh"}`, i, i)); code != 201 {
			t.Fatalf("ban %d: %d %s", i, code, body)
		}
	}
	_, body := adminDo(t, "GET", admin+"?limit=5", "")
	var list struct{ Detected []adminDetection }
	if err := json.Unmarshal([]byte(body), &list); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range list.Detected {
		got = append(got, d.IP)
	}
	if want := "[192.0.2.60 192.0.2.59 192.0.2.58 192.0.2.57 192.0.2.56]"; fmt.Sprint(got) != want {
		t.Errorf("?limit=5 listed %v, want the five latest ends %s", got, want)
	}
}

// TestAdminBanRefusesTheUnspecifiedAddress: 0.0.0.0 and :: are no client's address, and an IPv6
// ban covers the client's network: POST {"ip": "::"} was answered 201 and banned ::/64, the
// host's own ::1 with it.
func TestAdminBanRefusesTheUnspecifiedAddress(t *testing.T) {
	adminPort := testenv.FreePort(t)
	testcaddy.StartCaddy(t, fmt.Sprintf("{\n\tadmin 127.0.0.1:%d\n\thardening\n}\n", adminPort))
	admin := fmt.Sprintf("http://127.0.0.1:%d/hardening/ipclass/", adminPort)
	for _, ip := range []string{"0.0.0.0", "::", "::/64", "::ffff:0.0.0.0"} {
		if code, body := adminDo(t, "POST", admin+"detected", `{"ip": "`+ip+`"}`); code != 400 || !strings.Contains(body, "unspecified address") {
			t.Errorf("ban of %s: %d %s, want 400 naming the unspecified address", ip, code, body)
		}
	}
	if _, body := adminDo(t, "GET", admin, ""); strings.Contains(body, `"ip"`) {
		t.Errorf("listing after the refused bans: %s", body)
	}
	if code, body := adminDo(t, "POST", admin+"detected", `{"ip": "2001:db8::1"}`); code != 201 {
		t.Errorf("ban of a client: %d %s", code, body)
	}
}

// TestAdminBanOfLoopbackWarns: 127.0.0.1 and ::1 are this host's own addresses (its health
// checks, the admin's curl, a local proxy's every client without trusted_proxies). A ban of
// one, or of ::2 (whose client, ::/64, holds ::1), was answered 201 as any other. It still
// applies, as a detection of such a client would, but the answer and the event say what it
// refuses; a ban of any other client carries no warning.
func TestAdminBanOfLoopbackWarns(t *testing.T) {
	adminPort := testenv.FreePort(t)
	c := testcaddy.StartCaddy(t, fmt.Sprintf("{\n\tadmin 127.0.0.1:%d\n\thardening\n}\n", adminPort))
	admin := fmt.Sprintf("http://127.0.0.1:%d/hardening/ipclass/", adminPort)
	for _, ip := range []string{"127.0.0.1", "127.8.9.10", "::1", "::2", "::ffff:127.0.0.1", "128.0.0.1", "0:0:0:1::1"} {
		code, body := adminDo(t, "POST", admin+"detected", `{"ip": "`+ip+`"}`)
		var got adminDetection
		if code != 201 || json.Unmarshal([]byte(body), &got) != nil {
			t.Fatalf("ban of %s: %d %s", ip, code, body)
		}
		loopback := ip != "128.0.0.1" && ip != "0:0:0:1::1"
		if loopback != strings.Contains(got.Warning, "loopback") {
			t.Errorf("ban of %s: warning %q (loopback: %v)", ip, got.Warning, loopback)
		}
	}
	warned := 0
	for _, e := range securityLogs(c, EventIPReclassified) {
		if strings.Contains(e.Str("warning"), "loopback") {
			warned++
		}
	}
	if warned != 5 {
		t.Errorf("%d ip_reclassified events with the warning, want 5", warned)
	}
}
