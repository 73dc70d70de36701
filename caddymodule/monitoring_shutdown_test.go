package caddymodule

import (
	"fmt"
	"testing"
	"time"

	"github.com/swarmsec/caddy-hardening/internal/testenv"
)

// TestMonitoringReadyFailsWhileDraining runs the built binary: after SIGINT, during the
// shutdown_delay that keeps listeners open, /ready answers 503 (load balancers stop sending
// traffic) while /live still answers 200 (the orchestrator must not kill the draining process).
func TestMonitoringReadyFailsWhileDraining(t *testing.T) {
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
}
`, port))
	base := fmt.Sprintf("http://127.0.0.1:%d/api/monitoring/", port)
	if a := call(t, "GET", base+"ready", ""); a.code != 200 {
		t.Fatalf("ready before the stop: %+v", a)
	}
	stopped := make(chan struct{})
	go func() { p.Stop(); close(stopped) }() // SIGINT: Caddy's graceful stop
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
	<-stopped
}
