package caddymodule

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/swarmsec/caddy-hardening/internal/testcaddy"
	"github.com/swarmsec/caddy-hardening/internal/testenv"
)

// TestDetectionCountsNotReadPerProbe: /ready, /health, /services and /metrics report the
// detection component, whose counts (tracked clients, active bans) read every entry and ban of
// the detector under their shards' locks: 38 ms at 200,000 bans. Those routes answer anyone
// (probes must never be refused), so with the ban table filled by made-up clients each
// unauthenticated probe cost that much CPU, and held the locks the requests' own detector calls
// wait for. The counts are now read at most once per detectionCountsMaxAge, whatever the number
// of probes; the test makes that an hour to see that a probe reuses them.
func TestDetectionCountsNotReadPerProbe(t *testing.T) {
	old := detectionCountsMaxAge.Load()
	detectionCountsMaxAge.Store(int64(time.Hour))
	t.Cleanup(func() { detectionCountsMaxAge.Store(old) })
	port := testenv.FreePort(t)
	testcaddy.StartCaddy(t, fmt.Sprintf(`{
	servers {
		trusted_proxies static 127.0.0.1/32
	}
	hardening {
		ip_classes {
			trusted 127.0.0.1
		}
	}
}
http://127.0.0.1:%d {
	bind 127.0.0.1
	handle_path /api/monitoring/* {
		monitoring
	}
	path_guard
	respond "app"
}
`, port))
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	detect := func(from, to int) {
		for i := from; i < to; i++ {
			req, _ := http.NewRequest("GET", base+"/a/%2e%2e/b", nil)
			req.Header.Set("X-Forwarded-For", fmt.Sprintf("192.0.2.%d", i))
			if a := send(t, req); a.code != http.StatusBadRequest {
				t.Fatalf("traversal from 192.0.2.%d: %d %s", i, a.code, a.body)
			}
		}
	}
	suspicious := func() any {
		var doc struct {
			Components []struct {
				Component string         `json:"component"`
				Observed  map[string]any `json:"observed"`
			} `json:"components"`
		}
		a := call(t, "GET", base+"/api/monitoring/services", "")
		if err := json.Unmarshal([]byte(a.body), &doc); err != nil {
			t.Fatalf("/services: %v: %s", err, a.body)
		}
		for _, c := range doc.Components {
			if c.Component == "ipclass:detection" {
				return c.Observed["suspicious"]
			}
		}
		t.Fatal("/services lists no ipclass:detection component")
		return nil
	}
	detect(1, 4)
	before := suspicious() // counted now, or when Caddy started (0)
	detect(4, 6)
	for range 20 {
		if a := call(t, "GET", base+"/api/monitoring/ready", ""); a.code != http.StatusOK {
			t.Fatalf("/ready: %d %s", a.code, a.body)
		}
	}
	if got := suspicious(); got != before {
		t.Errorf("within detectionCountsMaxAge of the last count, /services says %v suspicious, then %v: the probes counted the bans again", before, got)
	}
	detectionCountsMaxAge.Store(0) // and the counts are the detector's
	if got := suspicious(); got != 5.0 {
		t.Errorf("after 5 detections, counted afresh, /services says %v suspicious, want 5", got)
	}
}
