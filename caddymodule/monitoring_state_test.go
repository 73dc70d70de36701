package caddymodule

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/swarmsec/caddy-hardening/internal/testcaddy"
	"github.com/swarmsec/caddy-hardening/internal/testenv"
)

// statusProbe is a test-only module that registers a component's status with the app, the way
// breakers and the rate-limit store do.
type statusProbe struct {
	Component string `json:"component"`
	Status    string `json:"status"`
	Critical  bool   `json:"critical,omitempty"`
}

func (statusProbe) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "http.handlers.hardening_status_probe", New: func() caddy.Module { return new(statusProbe) }}
}

func (p *statusProbe) Provision(ctx caddy.Context) error {
	app, err := hardeningApp(ctx)
	if err != nil {
		return err
	}
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	app.RegisterStatus(p.Component, func() StatusReport {
		return StatusReport{Component: p.Component, Type: "component", Status: Health(p.Status), Critical: p.Critical,
			Output: "probe says " + p.Status, Observed: map[string]any{"state": "open"}, Time: at}
	})
	return nil
}

func (p *statusProbe) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	return next.ServeHTTP(w, r)
}

func init() {
	caddy.RegisterModule(statusProbe{})
	httpcaddyfile.RegisterHandlerDirective("hardening_status_probe", func(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
		h.Next()
		p := new(statusProbe)
		if !h.Args(&p.Component, &p.Status) {
			return nil, h.ArgErr()
		}
		p.Critical = h.NextArg() && h.Val() == "critical"
		return p, nil
	})
	httpcaddyfile.RegisterDirectiveOrder("hardening_status_probe", httpcaddyfile.Before, "respond")
}

func TestMonitoringReportsRegisteredStatuses(t *testing.T) {
	key, digest := newKey(t)
	for _, tc := range []struct {
		probe        string
		health       string
		healthCode   int
		readyCode    int
		wantInHealth string
	}{
		{"hardening_status_probe ratelimit:store warn", "warn", 200, 200, `"ratelimit:store":[{"componentId":"ratelimit:store","componentType":"component","observedValue":{"state":"open"},"status":"warn","time":"2026-01-01T00:00:00Z","output":"probe says warn"}]`},
		{"hardening_status_probe breaker:billing fail", "warn", 200, 200, `"breaker:billing":[{"componentId":"breaker:billing"`},
		{"hardening_status_probe breaker:billing fail critical", "fail", 503, 503, `"notes":["critical component breaker:billing fails: not ready"]`},
		{"hardening_status_probe breaker:billing pass critical", "pass", 200, 200, `"status":"pass"`},
	} {
		t.Run(tc.probe, func(t *testing.T) {
			cf, base := monitoringSite(t, "", "api_keys "+digest)
			cf = strings.Replace(cf, "\thandle_path", "\t"+tc.probe+"\n\thandle_path", 1)
			testcaddy.StartCaddy(t, cf)
			h := call(t, "GET", base+"health", key)
			if h.code != tc.healthCode || !strings.Contains(h.body, `{"status":"`+tc.health+`"`) || !strings.Contains(h.body, tc.wantInHealth) {
				t.Fatalf("/health: %d %s\nwant %d, status %s and %s", h.code, h.body, tc.healthCode, tc.health, tc.wantInHealth)
			}
			if r := call(t, "GET", base+"ready", ""); r.code != tc.readyCode {
				t.Fatalf("/ready: %+v", r)
			}
			if anon := call(t, "GET", base+"health", ""); strings.Contains(anon.body, "breaker") || strings.Contains(anon.body, "ratelimit") {
				t.Fatalf("component names shown without a key: %s", anon.body)
			}
		})
	}
}

func TestMonitoringChecksSurviveReloadAndStopWhenRemoved(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer up.Close()
	key, digest := newKey(t)
	before := runtime.NumGoroutine()
	checks := fmt.Sprintf("check http billing %s {\ninterval 100ms\ntimeout 50ms\n}\napi_keys %s", up.URL, digest)
	cf, base := monitoringSite(t, "", checks)
	c := testcaddy.StartCaddy(t, cf)
	waitFor(t, "three runs", func() bool { return services(t, base, key).Dependencies[0].Runs >= 3 })

	// The same check in the next config keeps running: its history goes on.
	if err := c.Load(strings.Replace(cf, "respond \"app\"", "respond \"app v2\"", 1)); err != nil {
		t.Fatal(err)
	}
	if n := poolSize(); n != 1 {
		t.Fatalf("%d pooled checks after a reload that kept the check", n)
	}
	if runs := services(t, base, key).Dependencies[0].Runs; runs < 3 {
		t.Fatalf("the reload restarted the check's history (runs %d)", runs)
	}

	// A changed check replaces the old one, whose goroutine ends.
	if err := c.Load(strings.Replace(cf, "interval 100ms", "interval 200ms", 1)); err != nil {
		t.Fatal(err)
	}
	if n := poolSize(); n != 1 {
		t.Fatalf("%d pooled checks after a reload that changed the check", n)
	}
	if err := c.Load(""); err != nil {
		t.Fatal(err)
	}
	if n := poolSize(); n != 0 {
		t.Fatalf("%d checks still pooled with no monitoring configured", n)
	}
	liveChecks.mu.Lock()
	n := len(liveChecks.m)
	liveChecks.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d check identities still indexed for resuming with no monitoring configured", n)
	}
	waitFor(t, "check goroutines gone", func() bool { return runtime.NumGoroutine() <= before+2 })
}

// TestMonitoringChangedCheckResumesOnReload: a reload that changes a critical check's settings
// (here only its interval) makes a new check, which reads its predecessor's result until its
// own first run ends: /ready stays 200 while that run hangs. A check of the same name watching
// another target starts down as before.
func TestMonitoringChangedCheckResumesOnReload(t *testing.T) {
	var hang atomic.Bool
	release := make(chan struct{})
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hang.Load() {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}
	})
	up, other := httptest.NewServer(handler), httptest.NewServer(handler)
	defer up.Close()
	defer other.Close()
	defer close(release) // first: lets the hanging runs end before the servers close
	key, digest := newKey(t)
	cf, base := monitoringSite(t, "", fmt.Sprintf("check http app %s {\ninterval 30s\ntimeout 20s\ncritical\n}\napi_keys %s", up.URL, digest))
	c := testcaddy.StartCaddy(t, cf)
	waitFor(t, "ready", func() bool { return call(t, "GET", base+"ready", "").code == 200 })

	// From now on a run lasts its whole timeout (20 s: the checks below, however slow the
	// machine, come before the new check's first run ends).
	hang.Store(true)
	if err := c.Load(strings.Replace(cf, "interval 30s", "interval 31s", 1)); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		if r := call(t, "GET", base+"ready", key); r.code != 200 {
			t.Fatalf("/ready during the new check's first run: %+v", r)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if d := services(t, base, key).Dependencies[0]; d.Runs != 0 || !d.Up {
		t.Fatalf("want the new check (no run yet) up with the old one's result: %+v", d)
	}

	if err := c.Load(strings.Replace(cf, up.URL, other.URL, 1)); err != nil {
		t.Fatal(err)
	}
	if r := call(t, "GET", base+"ready", key); r.code != 503 {
		t.Fatalf("/ready of a check with a new target before its first run: %+v", r)
	}
}

// TestMonitoringAnswersThroughReloads: on a reload Caddy cleans up the old configuration
// without waiting for the requests its servers still answer, so a handler must keep answering
// beside its own Cleanup. /services is read without pause while the configuration reloads:
// every answer lists the check (and -race sees no write a Cleanup makes under a request).
func TestMonitoringAnswersThroughReloads(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer up.Close()
	key, digest := newKey(t)
	cf, base := monitoringSite(t, "", fmt.Sprintf("check http billing %s {\ninterval 100ms\n}\napi_keys %s", up.URL, digest))
	c := testcaddy.StartCaddy(t, cf)
	waitFor(t, "the first run", func() bool { return services(t, base, key).Dependencies[0].Runs >= 1 })
	stop := make(chan struct{})
	type outcome struct{ answers, without int }
	got := make(chan outcome)
	go func() {
		var o outcome
		defer func() { got <- o }()
		for {
			select {
			case <-stop:
				return
			default:
			}
			req, _ := http.NewRequest(http.MethodGet, base+"services", nil)
			req.Header.Set("Authorization", "Bearer "+key)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				continue // a connection the old server closed under the request: never answered
			}
			var doc servicesDoc
			err = json.NewDecoder(resp.Body).Decode(&doc)
			resp.Body.Close()
			o.answers++
			if err != nil || resp.StatusCode != http.StatusOK || len(doc.Dependencies) != 1 {
				o.without++
			}
		}
	}()
	for i := 0; i < 10; i++ {
		if err := c.Load(strings.Replace(cf, "respond \"app\"", fmt.Sprintf("respond \"app %d\"", i), 1)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(30 * time.Millisecond)
	}
	close(stop)
	o := <-got
	if o.answers == 0 || o.without > 0 {
		t.Fatalf("%d of %d answers during reloads did not list the check", o.without, o.answers)
	}
}

func TestMonitoringPrometheusSeries(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer up.Close()
	key, digest := newKey(t)
	down := testenv.FreePort(t)
	cf, base := monitoringSite(t, "", fmt.Sprintf("check http billing %s {\ncritical\n}\ncheck tcp smtp 127.0.0.1:%d {\nfailures_before_down 1\n}\napi_keys %s", up.URL, down, digest))
	cf = strings.Replace(cf, "\thandle_path", "\thardening_status_probe breaker:billing warn\n\thandle_path", 1)
	testcaddy.StartCaddy(t, cf)
	waitFor(t, "both checked", func() bool {
		d := services(t, base, key).Dependencies
		return d[0].Runs > 0 && d[1].Runs > 0
	})
	prom := call(t, "GET", strings.TrimSuffix(base, "api/monitoring/")+"metrics", "").body
	for _, want := range []string{
		`caddy_hardening_dependency_up{check="billing",critical="true",type="http"} 1`,
		`caddy_hardening_dependency_up{check="smtp",critical="false",type="tcp"} 0`,
		`caddy_hardening_dependency_status{check="smtp",status="fail"} 1`,
		`caddy_hardening_dependency_status{check="billing",status="pass"} 1`,
		`caddy_hardening_component_status{component="breaker:billing",status="warn"} 1`,
		`caddy_hardening_dependency_checks_total{check="smtp",result="fail",type="tcp"}`,
		`caddy_hardening_dependency_check_duration_seconds_count{check="billing",type="http"}`,
	} {
		if !strings.Contains(prom, want) {
			t.Errorf("Prometheus output lacks %s", want)
		}
	}
	var m struct {
		Status string `json:"status"`
		System struct {
			UptimeSeconds float64 `json:"uptime_seconds"`
			Host          struct {
				MemoryTotal uint64 `json:"memory_total_bytes"`
			} `json:"host"`
			Process struct {
				OpenFDs int `json:"open_fds"`
			} `json:"process"`
			Runtime struct {
				Goroutines int `json:"goroutines"`
			} `json:"runtime"`
		} `json:"system"`
		Counters map[string][]struct {
			Labels map[string]string `json:"labels"`
			Value  *float64          `json:"value"`
		} `json:"counters"`
	}
	body := call(t, "GET", base+"metrics", key).body
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		t.Fatal(err)
	}
	if m.System.UptimeSeconds <= 0 || m.System.Host.MemoryTotal == 0 || m.System.Process.OpenFDs == 0 || m.System.Runtime.Goroutines == 0 {
		t.Fatalf("system figures missing: %s", body)
	}
	if len(m.Counters["dependency_checks_total"]) == 0 || len(m.Counters["dependency_up"]) != 2 {
		t.Fatalf("project counters missing: %s", body)
	}
}

// TestMonitoringChecksStartAfterTheListeners: a check of a site this Caddy serves finds it
// listening on its first run, whatever order Caddy starts its apps in (map order: the hardening
// app often started first, and Caddyfile.example logged "dependency down" at start, its check
// down for a whole interval). Each load is a site on a new port, so its listener is new.
func TestMonitoringChecksStartAfterTheListeners(t *testing.T) {
	key, digest := newKey(t)
	var c *testcaddy.Caddy
	for i := range 12 {
		port := testenv.FreePort(t)
		cf := fmt.Sprintf(`http://127.0.0.1:%d {
	bind 127.0.0.1
	handle_path /api/monitoring/* {
		monitoring {
			check http self http://127.0.0.1:%d/ {
				interval 1m
				timeout 1s
				failures_before_down 1
			}
			api_keys %s
		}
	}
	respond "app"
}
`, port, port, digest)
		base := fmt.Sprintf("http://127.0.0.1:%d/api/monitoring/", port)
		if c == nil {
			c = testcaddy.StartCaddy(t, cf)
		} else if err := c.Load(cf); err != nil {
			t.Fatal(err)
		}
		var doc servicesDoc
		waitFor(t, "the check's first run", func() bool {
			doc = services(t, base, key)
			return len(doc.Dependencies) == 1 && doc.Dependencies[0].Runs >= 1
		})
		if dep := doc.Dependencies[0]; !dep.Up {
			t.Fatalf("load %d: the check of this Caddy's own site ran before its listener: %+v", i, dep)
		}
	}
}

// TestMonitoringResumedCheckLogsOnlyChanges: a reload that tunes a check that is down makes a
// new check, which resumes the old one's result: its first run, down again, is no transition,
// so `dependency down` is logged once, not once per reload.
func TestMonitoringResumedCheckLogsOnlyChanges(t *testing.T) {
	gone := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)) // nothing listens
	key, digest := newKey(t)
	cf, base := monitoringSite(t, "", fmt.Sprintf("check tcp gone %s {\ninterval 200ms\nfailures_before_down 1\n}\napi_keys %s", gone, digest))
	c := testcaddy.StartCaddy(t, cf)
	waitFor(t, "the check down", func() bool {
		d := services(t, base, key).Dependencies[0]
		return d.Runs >= 1 && !d.Up
	})
	for _, interval := range []string{"300ms", "400ms"} {
		if err := c.Load(strings.Replace(cf, "interval 200ms", "interval "+interval, 1)); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the new check's first run", func() bool { return services(t, base, key).Dependencies[0].Runs >= 1 })
	}
	downs := testenv.Filter(c.Logs(), func(e testenv.LogEntry) bool {
		return e.Msg() == "dependency down" && e.Str("check") == "gone"
	})
	if len(downs) != 1 {
		t.Fatalf("%d `dependency down` lines for a check down all along through two reloads, want 1: %v", len(downs), downs)
	}
}
