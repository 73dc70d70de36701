package caddymodule

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/swarmsec/caddy-hardening/internal/testcaddy"
	"github.com/swarmsec/caddy-hardening/internal/testenv"
)

// TestBreakerAroundHandleResponse: a reverse_proxy whose handle_response routes answer an
// upstream's 5xx themselves, keeping its status (respond with {rp.status_code}, copy_response,
// error {rp.status_code}): the breaker counts each as a failure and opens, as README says.
func TestBreakerAroundHandleResponse(t *testing.T) {
	u := startUpstream(t, "fail")
	var sites string
	urls := map[string]string{}
	for name, route := range map[string]string{
		"t_hr_respond": `respond "sorry" {rp.status_code}`,
		"t_hr_copy":    `copy_response`,
		"t_hr_error":   `error {rp.status_code}`,
	} {
		port := testenv.FreePort(t)
		urls[name] = fmt.Sprintf("http://127.0.0.1:%d/", port)
		sites += fmt.Sprintf(`http://127.0.0.1:%d {
	bind 127.0.0.1
	upstream_breaker %s {
		consecutive_failures 2
		open_for 1m
	}
	reverse_proxy %s {
		@err status 5xx
		handle_response @err {
			%s
		}
		transport http {
			response_header_timeout 2s
		}
	}
}
`, port, name, u.addr(), route)
	}
	testcaddy.StartCaddy(t, sites)
	for name, url := range urls {
		for i := range 2 {
			if r := getReply(t, url); r.status != http.StatusInternalServerError {
				t.Fatalf("%s, request %d: %d, want the upstream's 500 kept", name, i+1, r.status)
			}
		}
		waitBreakerState(t, name, "open")
		assertOpenReply(t, getReply(t, url), 60)
	}
}
