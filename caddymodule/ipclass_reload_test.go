package caddymodule

import (
	"fmt"
	"net/http"
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
