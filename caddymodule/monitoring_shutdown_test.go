package caddymodule

import (
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/swarmsec/caddy-hardening/internal/testenv"
)

// TestMonitoringReadyFailsWhileDraining runs the built binary: after SIGINT (Ctrl-C, systemd's
// KillSignal is SIGTERM) or SIGTERM (what the kubelet and docker stop send), during the
// shutdown_delay that keeps listeners open, /ready answers 503 (load balancers stop sending
// traffic) while /live still answers 200 (the orchestrator must not kill the draining process)
// and the site still serves; then Caddy exits 0.
func TestMonitoringReadyFailsWhileDraining(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			port := testenv.FreePort(t)
			p := testenv.RunCaddy(t, fmt.Sprintf(`{
	admin off
	shutdown_delay 5s
	grace_period 5s
}

http://127.0.0.1:%d {
	bind 127.0.0.1
	handle_path /api/monitoring/* {
		monitoring
	}
	respond "app"
}
`, port))
			base := fmt.Sprintf("http://127.0.0.1:%d/api/monitoring/", port)
			if a := call(t, "GET", base+"ready", ""); a.code != 200 {
				t.Fatalf("ready before the stop: %+v", a)
			}
			if err := syscall.Kill(p.PID(), sig); err != nil {
				t.Fatal(err)
			}
			if err := p.WaitOutput("shutdown scheduled", 10*time.Second); err != nil {
				t.Fatal(err)
			}
			ready, live := call(t, "GET", base+"ready", ""), call(t, "GET", base+"live", "")
			if ready.code != 503 || ready.body != "{\"status\":\"fail\"}\n" {
				t.Fatalf("ready while draining: %+v", ready)
			}
			if live.code != 200 {
				t.Fatalf("live while draining: %+v", live)
			}
			if a := call(t, "GET", base+"simple-health", ""); a.code != 200 {
				t.Fatalf("simple-health while draining: %+v", a)
			}
			if a := call(t, "GET", fmt.Sprintf("http://127.0.0.1:%d/", port), ""); a.code != 200 || a.body != "app" {
				t.Fatalf("the site while draining: %+v", a)
			}
			if err := p.Wait(20 * time.Second); err != nil {
				t.Fatalf("exit after %s: %v", sig, err)
			}
		})
	}
}
