package caddymodule

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/swarmsec/caddy-hardening/internal/testcaddy"
	"github.com/swarmsec/caddy-hardening/internal/testenv"
)

// TestCSPReportReloadUnderReports: a reload provisions the new configuration's csp_report
// while the running one counts reports. Provision used to assign the package's counter
// variables (to the same collectors) each time, a write racing every report's read of them:
// `go test -race` failed whenever reports arrived during a reload. Run it under -race.
func TestCSPReportReloadUnderReports(t *testing.T) {
	port := testenv.FreePort(t)
	site := func(i int) string {
		return fmt.Sprintf(`{
	admin off
}
http://127.0.0.1:%d {
	bind 127.0.0.1
	csp_report /csp-report
	respond "config %d"
}
`, port, i)
	}
	c := testcaddy.StartCaddy(t, site(0))
	url := fmt.Sprintf("http://127.0.0.1:%d/csp-report", port)
	var stop atomic.Bool
	var wg sync.WaitGroup
	var sent atomic.Int64
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(
					`{"csp-report": {"document-uri": "http://127.0.0.1/", "effective-directive": "script-src-elem", "blocked-uri": "inline"}}`))
				req.Header.Set("Content-Type", "application/csp-report")
				if resp, err := http.DefaultClient.Do(req); err == nil {
					resp.Body.Close()
					sent.Add(1)
				}
			}
		}()
	}
	for i := 1; i <= 5; i++ {
		before := sent.Load()
		testenv.WaitFor(t, 5*time.Second, "reports answered before the reload", func() bool { return sent.Load() > before })
		if err := c.Load(site(i)); err != nil {
			t.Fatal(err)
		}
	}
	stop.Store(true)
	wg.Wait()
}
