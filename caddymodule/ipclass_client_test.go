package caddymodule

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/swarmsec/caddy-hardening/internal/testcaddy"
	"github.com/swarmsec/caddy-hardening/internal/testenv"
)

// TestDetectionScoresCaddysClientIPOnly: who a scan is scored against is Caddy's client IP,
// never an address the scanner writes. From a peer that is no trusted proxy, X-Forwarded-For
// is ignored: the peer is detected, not the address it named (else anyone could get any
// address banned: a competitor's customers, a partner, the load balancer). Behind a trusted
// proxy that appends to the header, with trusted_proxies_strict, the entry the scanner wrote
// in front of the proxy's is ignored too: the address the proxy saw is detected, and the
// named one and the proxy itself stay default. Without trusted_proxies_strict, Caddy takes
// that left-most entry: the scanner gets the address it wrote detected, which is what the
// proxies.not_strict finding warns about.
func TestDetectionScoresCaddysClientIPOnly(t *testing.T) {
	victim := netip.MustParseAddr("198.51.100.50")
	for _, tc := range []struct {
		name, servers, xff string
		detected           netip.Addr
		framed             bool // not strict: the victim is detected instead
	}{
		{"appending trusted proxy, not strict", "\n\tservers {\n\t\ttrusted_proxies static 127.0.0.1/32\n\t}",
			"198.51.100.50, 203.0.113.66", victim, true},
		{"untrusted peer names a victim", "", "198.51.100.50", netip.MustParseAddr("127.0.0.1"), false},
		{"appending trusted proxy, strict", "\n\tservers {\n\t\ttrusted_proxies static 127.0.0.1/32\n\t\ttrusted_proxies_strict\n\t}",
			"198.51.100.50, 203.0.113.66", netip.MustParseAddr("203.0.113.66"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
			c := testcaddy.StartCaddy(t, fmt.Sprintf(`{
	admin off%s
	hardening {
		environment development
	}
}
http://%s {
	bind 127.0.0.1
	path_guard
	respond "{http.vars.ip_class}"
}
`, tc.servers, addr))
			for _, p := range []string{"/.env", "/.git/config"} {
				rawGet(t, addr, p, "X-Forwarded-For: "+tc.xff)
			}
			det := activeApp(t).detector()
			if !det.Suspicious(tc.detected) {
				t.Errorf("%s not detected after two probes; ip_reclassified: %v", tc.detected, reclassifiedIPs(c))
			}
			if !tc.framed && det.Suspicious(victim) {
				t.Errorf("the address the scanner wrote, %s, was detected", victim)
			}
			if tc.detected != netip.MustParseAddr("127.0.0.1") && det.Suspicious(netip.MustParseAddr("127.0.0.1")) {
				t.Error("the trusted proxy was detected for its client's scan")
			}
			det.Unban(tc.detected) // the pooled detector outlives the test's config
		})
	}
}

// TestDetectionSurvivesAReload: `caddy reload` keeps the detector (a caddy.UsagePool): a
// client detected before it is still refused after it, a score made before it adds up with
// the signals after it, and the detection table of the new config is the same one.
func TestDetectionSurvivesAReload(t *testing.T) {
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	site := func(banFor, body string) string {
		return fmt.Sprintf(`{
	admin off
	servers {
		trusted_proxies static 127.0.0.1/32
		trusted_proxies_strict
	}
	hardening {
		environment development
		detection {
			ban_for %s
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
`, banFor, addr, body)
	}
	c := testcaddy.StartCaddy(t, site("15m", "one"))
	const detected, scored = "192.0.2.10", "192.0.2.11"
	sendAs(t, addr, detected, "/.env")
	sendAs(t, addr, detected, "/.git/config")
	sendAs(t, addr, scored, "/.env") // 10 of 20
	if status := sendAs(t, addr, detected, "/"); status != 403 {
		t.Fatalf("before the reload: %d, want 403", status)
	}
	if err := c.Load(site("1h", "two")); err != nil {
		t.Fatal(err)
	}
	// The old server may take a connection or two until it has shut down, and close them
	// unanswered (unread: it waits for the requests it has read): those are sent again.
	sendAs := func(t *testing.T, addr, client, target string) int {
		t.Helper()
		for try := 1; ; try++ {
			status, _, _, err := tryRawGet(addr, target, "X-Forwarded-For: "+client)
			if err == nil {
				return status
			}
			if try == 5 {
				t.Fatalf("GET %q: %v", target, err)
			}
		}
	}
	waitFor(t, "the new config to answer", func() bool {
		_, _, body, err := tryRawGet(addr, "/", "X-Forwarded-For: 192.0.2.99")
		return err == nil && body == "two"
	})
	if status := sendAs(t, addr, detected, "/"); status != 403 {
		t.Errorf("the client detected before the reload: %d after it, want 403", status)
	}
	if status := sendAs(t, addr, scored, "/"); status != 200 {
		t.Fatalf("half a score: %d", status)
	}
	sendAs(t, addr, scored, "/.aws/credentials") // 20 with the probe before the reload
	if status := sendAs(t, addr, scored, "/"); status != 403 {
		t.Errorf("a score made before the reload was lost: %d after a second probe, want 403", status)
	}
}
