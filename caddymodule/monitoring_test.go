package caddymodule

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/swarmsec/caddy-hardening/apikey"
	"github.com/swarmsec/caddy-hardening/internal/testcaddy"
	"github.com/swarmsec/caddy-hardening/internal/testenv"
)

// monitoringSite is a Caddyfile with the given global options and a site that mounts
// `monitoring { block }` under /api/monitoring/; it returns the Caddyfile and the routes' base URL.
func monitoringSite(t *testing.T, global, block string) (string, string) {
	port := testenv.FreePort(t)
	cf := fmt.Sprintf(`{
%s
}
http://127.0.0.1:%d {
	bind 127.0.0.1
	handle_path /api/monitoring/* {
		monitoring {
%s
		}
	}
	handle /metrics {
		metrics
	}
	respond "app"
}
`, global, port, block)
	return string(caddyfile.Format([]byte(cf))), fmt.Sprintf("http://127.0.0.1:%d/api/monitoring/", port)
}

type answer struct {
	code   int
	header http.Header
	body   string
}

// call sends a request with an optional bearer key.
func call(t *testing.T, method, url, key string) answer {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	return send(t, req)
}

// send sends req and reads the whole answer.
func send(t *testing.T, req *http.Request) answer {
	t.Helper()
	resp, err := replyClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, resp.Header, string(b)}
}

// waitFor polls until cond holds (bounded: 15 s).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testenv.WaitFor(t, 15*time.Second, what, cond)
}

// newKey returns a key and its digest.
func newKey(t *testing.T) (string, string) {
	key, err := apikey.Generate("mon_")
	if err != nil {
		t.Fatal(err)
	}
	return key, apikey.Digest(key)
}

// services decodes /services for an authorized client.
type servicesDoc struct {
	Status       string `json:"status"`
	Ready        bool   `json:"ready"`
	Dependencies []struct {
		Name                string         `json:"name"`
		Type                string         `json:"type"`
		Target              string         `json:"target"`
		Status              string         `json:"status"`
		Up                  bool           `json:"up"`
		Output              string         `json:"output"`
		ConsecutiveFailures int            `json:"consecutive_failures"`
		Runs                int64          `json:"runs"`
		Observed            map[string]any `json:"observed"`
	} `json:"dependencies"`
	Components []struct {
		Component string `json:"component"`
		Status    string `json:"status"`
		Output    string `json:"output"`
	} `json:"components"`
}

func services(t *testing.T, base, key string) servicesDoc {
	t.Helper()
	a := call(t, "GET", base+"services", key)
	var doc servicesDoc
	if err := json.Unmarshal([]byte(a.body), &doc); err != nil {
		t.Fatalf("/services: %v: %s", err, a.body)
	}
	return doc
}

func TestMonitoringRoutesWithoutChecks(t *testing.T) {
	cf, base := monitoringSite(t, "", "")
	testcaddy.StartCaddy(t, cf)

	if a := call(t, "GET", base+"simple-health", ""); a.code != 200 || a.body != "ok\n" || a.header.Get("Cache-Control") != "no-store" {
		t.Fatalf("simple-health: %+v", a)
	}
	for _, route := range []string{"live", "ready", "health"} {
		a := call(t, "GET", base+route, "")
		if a.code != 200 || a.body != "{\"status\":\"pass\"}\n" || a.header.Get("Content-Type") != "application/health+json" {
			t.Fatalf("%s: %+v", route, a)
		}
	}
	if a := call(t, "HEAD", base+"ready", ""); a.code != 200 || a.body != "" {
		t.Fatalf("HEAD ready: %+v", a)
	}
	if a := call(t, "GET", base+"nope", ""); a.code != 404 || a.header.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("unknown route: %+v", a)
	}
	if a := call(t, "POST", base+"ready", ""); a.code != 405 || a.header.Get("Allow") != "GET, HEAD" {
		t.Fatalf("POST: %+v", a)
	}
	if a := call(t, "GET", strings.TrimSuffix(base, "api/monitoring/"), ""); a.body != "app" {
		t.Fatalf("the rest of the site: %+v", a)
	}
}

func TestMonitoringRedisDownAfterFailuresBeforeDown(t *testing.T) {
	r := testenv.StartRedis(t)
	key, digest := newKey(t)
	for _, critical := range []bool{true, false} {
		t.Run(fmt.Sprintf("critical=%v", critical), func(t *testing.T) {
			crit := ""
			if critical {
				crit = "critical"
			}
			cf, base := monitoringSite(t, "\thardening {\n\t\tredis "+r.URL(0)+"\n\t}",
				fmt.Sprintf("check redis {\n%s\ninterval 150ms\ntimeout 100ms\nfailures_before_down 3\n}\napi_keys %s", crit, digest))
			testcaddy.StartCaddy(t, cf)
			waitFor(t, "redis up", func() bool {
				return call(t, "GET", base+"ready", "").code == 200 && services(t, base, key).Dependencies[0].Up
			})

			r.Kill()
			// Every observation on the way down: up exactly while fewer than 3 failures.
			waitFor(t, "redis down", func() bool {
				d := services(t, base, key).Dependencies[0]
				if d.Up != (d.ConsecutiveFailures < 3) {
					t.Fatalf("up=%v after %d consecutive failures (failures_before_down 3)", d.Up, d.ConsecutiveFailures)
				}
				return !d.Up
			})
			ready, health := call(t, "GET", base+"ready", ""), call(t, "GET", base+"health", key)
			if critical && (ready.code != 503 || ready.body != "{\"status\":\"fail\"}\n" || health.code != 503) {
				t.Fatalf("critical redis down: ready %+v, health %+v", ready, health)
			}
			if !critical && (ready.code != 200 || health.code != 200 || !strings.Contains(health.body, `"status":"warn"`)) {
				t.Fatalf("non-critical redis down: ready %+v, health %+v", ready, health)
			}
			if a := call(t, "GET", base+"live", ""); a.code != 200 {
				t.Fatalf("live must not depend on Redis: %+v", a)
			}

			r.Restart()
			waitFor(t, "up again", func() bool { return services(t, base, key).Dependencies[0].Up })
			if a := call(t, "GET", base+"ready", ""); a.code != 200 {
				t.Fatalf("ready after restart: %+v", a)
			}
			if d := services(t, base, key).Dependencies[0]; d.Status != "pass" {
				t.Fatalf("after restart: %+v", d)
			}
		})
	}
}

func TestMonitoringDetailsNeedAKey(t *testing.T) {
	key, digest := newKey(t)
	other, otherDigest := newKey(t)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer up.Close()
	cf, base := monitoringSite(t, "", fmt.Sprintf("check http billing %s/healthz\napi_keys %s %s", up.URL, digest, otherDigest))
	testcaddy.StartCaddy(t, cf)
	waitFor(t, "the first run", func() bool { return services(t, base, key).Dependencies[0].Runs > 0 })

	for _, route := range []string{"health", "services", "metrics", "ready"} {
		unknown, _ := newKey(t)
		for name, k := range map[string]string{"no key": "", "an unknown key": unknown, "a key with a suffix": key + "x"} {
			a := call(t, "GET", base+route, k)
			if a.body != "{\"status\":\"pass\"}\n" {
				t.Errorf("%s with %s shows more than the status word: %s", route, name, a.body)
			}
		}
		req, _ := http.NewRequest("GET", base+route, nil)
		req.SetBasicAuth(key, "") // the right key under another scheme
		resp, err := replyClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "{\"status\":\"pass\"}\n" {
			t.Errorf("%s with Basic auth shows more than the status word: %s", route, b)
		}
		for _, k := range []string{key, other} {
			a := call(t, "GET", base+route, k)
			if route != "ready" && !strings.Contains(a.body, "billing") {
				t.Errorf("%s with a right key shows no detail: %s", route, a.body)
			}
		}
	}
	req, _ := http.NewRequest("GET", base+"health", nil)
	req.Header.Set("Authorization", "bearer "+key) // the scheme is case-insensitive
	resp, err := replyClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), "billing:responseTime") {
		t.Fatalf("lower-case bearer: %s", b)
	}
}

func TestMonitoringNoAmplification(t *testing.T) {
	var hits atomic.Int64
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer up.Close()
	key, digest := newKey(t)
	cf, base := monitoringSite(t, "", fmt.Sprintf("check http billing %s {\ninterval 1m\n}\ncheck tcp billing_tcp %s {\ninterval 1m\n}\napi_keys %s",
		up.URL, strings.TrimPrefix(up.URL, "http://"), digest))
	testcaddy.StartCaddy(t, cf)

	start := time.Now()
	var wg sync.WaitGroup
	var failed atomic.Int64
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 20}}
	for w := 0; w < 20; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				route := []string{"ready", "health", "services", "metrics"}[(w+i)%4]
				req, _ := http.NewRequest("GET", base+route, nil)
				if i%2 == 0 {
					req.Header.Set("Authorization", "Bearer "+key)
				}
				resp, err := client.Do(req)
				if err != nil {
					failed.Add(1)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}(w)
	}
	wg.Wait()
	elapsed := time.Since(start)
	if failed.Load() > 0 {
		t.Fatalf("%d requests failed", failed.Load())
	}
	allowed := 1 + int64(elapsed/time.Minute) // one run at start, then one per interval
	if n := hits.Load(); n > allowed {
		t.Fatalf("1000 probe requests in %s caused %d HTTP check runs; at most %d allowed", elapsed, n, allowed)
	}
	for _, d := range services(t, base, key).Dependencies {
		if d.Runs > allowed {
			t.Fatalf("check %s ran %d times for 1000 requests", d.Name, d.Runs)
		}
	}
	t.Logf("1000 requests in %s; upstream hits %d", elapsed, hits.Load())
}

func TestMonitoringHTTPAndTCPChecksFailAndRecover(t *testing.T) {
	var code atomic.Int32
	code.Store(200)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(int(code.Load()))
		_, _ = w.Write([]byte("database ok"))
	}))
	defer up.Close()
	key, digest := newKey(t)
	tcpAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)) // nothing listens
	cf, base := monitoringSite(t, "", fmt.Sprintf(`check http billing %s/healthz {
	critical
	expect 200
	body "database ok"
	interval 150ms
	timeout 100ms
	failures_before_down 1
}
check tcp smtp %s {
	interval 150ms
	timeout 100ms
	failures_before_down 1
}
api_keys %s`, up.URL, tcpAddr, digest))
	testcaddy.StartCaddy(t, cf)
	byName := func() map[string]bool {
		m := map[string]bool{}
		for _, d := range services(t, base, key).Dependencies {
			m[d.Name] = d.Up
		}
		return m
	}
	waitFor(t, "billing up, smtp down", func() bool { s := byName(); return s["billing"] && !s["smtp"] && len(s) == 2 })
	if a := call(t, "GET", base+"ready", ""); a.code != 200 {
		t.Fatalf("a non-critical tcp check down must not take readiness: %+v", a)
	}
	if a := call(t, "GET", base+"ready", key); a.code != 200 || !strings.Contains(a.body, `"check smtp is down (no success yet): not critical, so ready (health warns)"`) {
		t.Fatalf("/ready's note on a non-critical check down: %+v", a)
	}
	code.Store(500)
	waitFor(t, "billing down", func() bool { return !byName()["billing"] })
	if a := call(t, "GET", base+"ready", key); a.code != 503 || !strings.Contains(a.body, "critical check billing is down: not ready") {
		t.Fatalf("critical http down: %+v", a)
	}
	code.Store(200)
	waitFor(t, "ready again", func() bool { return call(t, "GET", base+"ready", "").code == 200 })
}

func TestMonitoringWorkerBacklog(t *testing.T) {
	r := testenv.StartRedis(t)
	for i := 0; i < 5; i++ {
		if _, err := r.Do("RPUSH", "celery", "task"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.Do("SET", "celery:heartbeat", fmt.Sprint(time.Now().Unix())); err != nil {
		t.Fatal(err)
	}
	key, digest := newKey(t)
	cf, base := monitoringSite(t, "", fmt.Sprintf(`check worker celery {
	redis %s
	queue celery
	max_backlog 3
	heartbeat_key celery:heartbeat
	max_age 1h
	interval 600ms
	timeout 500ms
}
check worker urgent {
	redis %s
	queue celery
	max_backlog 3
	on_backlog fail
	critical
	failures_before_down 1
	interval 600ms
	timeout 500ms
}
api_keys %s`, r.URL(0), r.URL(0), digest))
	testcaddy.StartCaddy(t, cf)
	// Waited for, not read at the first run: a run that a loaded machine ends at its timeout
	// fails, and the next one says the backlog.
	var doc servicesDoc
	waitFor(t, "both checked, celery warning of its backlog", func() bool {
		doc = services(t, base, key)
		warned := false
		for _, d := range doc.Dependencies {
			warned = warned || d.Name == "celery" && d.Status == "warn"
		}
		return doc.Dependencies[0].Runs > 0 && doc.Dependencies[1].Runs > 0 && warned
	})
	for _, d := range doc.Dependencies {
		switch d.Name {
		case "celery":
			if !d.Up || d.Status != "warn" || d.Observed["backlog"] != 5.0 || !strings.Contains(d.Output, "backlog 5 is over 3") {
				t.Errorf("on_backlog warn: %+v", d)
			}
		case "urgent":
			if d.Up || d.Status != "fail" {
				t.Errorf("on_backlog fail: %+v", d)
			}
		}
	}
	if a := call(t, "GET", base+"ready", ""); a.code != 503 {
		t.Fatalf("a critical worker over its backlog: %+v", a)
	}
	if _, err := r.Do("LTRIM", "celery", "0", "1"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "backlog drained", func() bool { return call(t, "GET", base+"health", "").body == "{\"status\":\"pass\"}\n" })
	if a := call(t, "GET", base+"ready", ""); a.code != 200 {
		t.Fatalf("drained: %+v", a)
	}
}

func TestMonitoringPostgresNeverShowsThePassword(t *testing.T) {
	testenv.RequirePostgres(t)
	const secret = "pg-pass-hunter2"
	down := testenv.FreePort(t)
	t.Setenv("MONITOR_TEST_DSN", "postgres://postgres:"+secret+"@127.0.0.1:5432/postgres?sslmode=disable")
	t.Setenv("MONITOR_TEST_DSN_DOWN", fmt.Sprintf("postgres://app:%s@127.0.0.1:%d/test?sslmode=disable", secret, down))
	key, digest := newKey(t)
	cf, base := monitoringSite(t, "", fmt.Sprintf(`check postgres main {env.MONITOR_TEST_DSN} {
	critical
	interval 200ms
	timeout 150ms
}
check postgres replica {env.MONITOR_TEST_DSN_DOWN} {
	interval 200ms
	timeout 150ms
	failures_before_down 1
}
api_keys %s`, digest))
	c := testcaddy.StartCaddy(t, cf)
	waitFor(t, "main up, replica down", func() bool {
		doc := services(t, base, key)
		return doc.Dependencies[0].Up && doc.Dependencies[1].Runs > 0 && !doc.Dependencies[1].Up
	})
	if a := call(t, "GET", base+"ready", ""); a.code != 200 {
		t.Fatalf("main is up and critical; replica is not critical: %+v", a)
	}
	var out strings.Builder
	for _, route := range []string{"health", "services", "metrics", "ready"} {
		out.WriteString(call(t, "GET", base+route, key).body)
	}
	doc := services(t, base, key)
	if doc.Dependencies[1].Target != fmt.Sprintf("127.0.0.1:%d/test", down) || !strings.Contains(doc.Dependencies[1].Output, "refused") {
		t.Fatalf("the down check: %+v", doc.Dependencies[1])
	}
	logs, _ := os.ReadFile(c.LogFile)
	if !strings.Contains(string(logs), "dependency down") {
		t.Fatal("no 'dependency down' log line")
	}
	if strings.Contains(out.String(), secret) || strings.Contains(string(logs), secret) {
		t.Fatal("the PostgreSQL password appears in a response or the log")
	}
}

// TestMonitoringOtherSchemesAreNoKeyGuess: only a Bearer key that matches no digest is a
// monitoring_access_denied event and an auth_failure signal. The Basic credentials of a
// basic_auth in front are no key at all: its operators get the status word and keep their class.
func TestMonitoringOtherSchemesAreNoKeyGuess(t *testing.T) {
	port := testenv.FreePort(t)
	c := testcaddy.StartCaddy(t, fmt.Sprintf(`http://127.0.0.1:%d {
	bind 127.0.0.1
	handle_path /mon/* {
		basic_auth {
			# ops:s3cret (bcrypt cost 4, to keep the test fast)
			ops $2a$04$WJHzzFXwFr4kfuwfHcnUu..tOyWAwu4kUs9MIYsEFjr.UF5P56j42
		}
		monitoring
	}
	handle_path /open/* {
		monitoring
	}
	respond "app"
}
`, port))
	base := fmt.Sprintf("http://127.0.0.1:%d/", port)
	// Enough auth_failure signals to make the client suspicious, were they counted.
	for range 15 {
		req, _ := http.NewRequest("GET", base+"mon/health", nil)
		req.SetBasicAuth("ops", "s3cret")
		resp, err := replyClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != "{\"status\":\"pass\"}\n" {
			t.Fatalf("basic_auth in front: %d %s", resp.StatusCode, b)
		}
	}
	if n := len(securityLogs(c, EventMonitoringDenied)) + len(securityLogs(c, EventIPReclassified)); n != 0 {
		t.Fatalf("Basic credentials counted as monitoring key guesses: %d events", n)
	}
	unknown, _ := newKey(t)
	call(t, "GET", base+"open/health", unknown)
	if denied := securityLogs(c, EventMonitoringDenied); len(denied) != 1 || denied[0].Str("route") != "health" {
		t.Fatalf("a wrong Bearer key: %d monitoring_access_denied events, want 1", len(denied))
	}
}

// TestMonitoringFeatureOffPassesThrough: a disabled handler passes /ready on, which then no
// longer reflects readiness: in production that is the warning monitoring.disabled, pointing at
// the handler.
func TestMonitoringFeatureOffPassesThrough(t *testing.T) {
	cf, base := monitoringSite(t, "\thardening {\n\t\tenvironment production\n\t\tfeatures {\n\t\t\tmonitoring off\n\t\t}\n\t}", "check tcp x 127.0.0.1:1")
	c := testcaddy.StartCaddy(t, cf)
	if a := call(t, "GET", base+"ready", ""); a.code != 200 || a.body != "app" {
		t.Fatalf("monitoring off: the request must reach the site's next handler: %+v", a)
	}
	if n := poolSize(); n != 0 {
		t.Fatalf("a disabled monitoring handler started %d checks", n)
	}
	var found bool
	for _, f := range activeApp(t).Findings() {
		if f.Code == "monitoring.disabled" {
			found = true
			if h, _ := adaptedAt(t, cf, f.Config).(map[string]any); f.Severity != Warning || h["handler"] != "monitoring" {
				t.Fatalf("monitoring.disabled %+v: not a warning at the handler (%v)", f, h)
			}
		}
	}
	if !found {
		t.Fatalf("no monitoring.disabled finding in production: %v", findingCodes(c))
	}
	// Outside production, disabling it is an ordinary choice (the feature log still names it).
	cf, _ = monitoringSite(t, "\thardening {\n\t\tenvironment development\n\t\tfeatures {\n\t\t\tmonitoring off\n\t\t}\n\t}", "")
	if err := c.Load(cf); err != nil {
		t.Fatal(err)
	}
	for _, f := range activeApp(t).Findings() {
		if f.Code == "monitoring.disabled" {
			t.Fatalf("monitoring.disabled in development: %+v", f)
		}
	}
}

func poolSize() int {
	n := 0
	checkPool.Range(func(_, _ any) bool { n++; return true })
	return n
}

func TestMonitoringRedisCheckNeedsARedis(t *testing.T) {
	cf, _ := monitoringSite(t, "", "check redis")
	_, err := testcaddy.TryStartCaddy(t, cf)
	if err == nil || !strings.Contains(err.Error(), "monitoring: redis check redis uses the hardening app's Redis, and none is configured") {
		t.Fatalf("err = %v", err)
	}
}

func TestMonitoringJSONIsValidatedAtLoad(t *testing.T) {
	c := testcaddy.StartCaddy(t, "")
	for body, want := range map[string]string{
		`{"type": "mysql"}`: `monitoring: unknown check type "mysql"`,
		`{"type": "tcp", "address": "x:1", "interval": 1000000000, "timeout": 1000000000}`: "monitoring: check tcp: timeout 1s must be shorter than interval 1s",
		// Was accepted: with its ±10% jitter the interval wrapped negative, and the check ran back
		// to back in a loop.
		`{"type": "tcp", "address": "x:1", "interval": "2500000h"}`:              "monitoring: check tcp: interval 2500000h0m0s is longer than 1h0m0s",
		`{"type": "http", "url": "{env.MONITOR_TEST_UNSET_URL}"}`:                `monitoring: check http: url {env.MONITOR_TEST_UNSET_URL} is empty once resolved; set the variable`,
		`{"type": "tcp", "address": "x:1", "expect": ["200"]}`:                   "monitoring: check tcp: expect applies to http checks only, not tcp",
		`{"type": "redis", "redis": "redis://x:1", "dsn": "postgres://x/db"}`:    "monitoring: check redis: dsn applies to postgres checks only, not redis",
		`{"type": "postgres", "dsn": "postgres://x/db", "redis": "redis://x:1"}`: "monitoring: check postgres: redis applies to redis and worker checks only, not postgres",
		`{"type": "postgres", "dsn": "postgres://x/db", "role": "replica"}`:      `monitoring: check postgres: role: expected primary, standby or any, got "replica"`,
		`{"type": "tcp", "address": "x:1", "role": "primary"}`:                   "monitoring: check tcp: role applies to postgres checks only, not tcp",
	} {
		err := c.LoadJSON(`{"apps": {"http": {"servers": {"s": {"listen": ["127.0.0.1:0"], "routes": [{"handle": [{"handler": "monitoring", "checks": [` + body + `]}]}]}}}}}`)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err = %v, want %q", body, err, want)
		}
	}
	err := c.LoadJSON(`{"apps": {"http": {"servers": {"s": {"listen": ["127.0.0.1:0"], "routes": [{"handle": [{"handler": "monitoring", "api_keys": ["md5:abc"]}]}]}}}}}`)
	if err == nil || !strings.Contains(err.Error(), `API key digest (not shown: it may be a key itself) is not sha256:<64 hex digits>`) {
		t.Errorf("bad digest: %v", err)
	}
}

func TestMonitoringLiteralSecretIsAFinding(t *testing.T) {
	key, digest := newKey(t)
	down := testenv.FreePort(t)
	cf, base := monitoringSite(t, "", fmt.Sprintf(`check postgres main postgres://app:%[1]s@127.0.0.1:%[2]d/app {
	interval 1h
}
check postgres safe {env.MONITOR_TEST_DSN} {
	interval 1h
}
check worker celery {
	redis redis://:%[1]s@127.0.0.1:%[2]d/0
	queue celery
	interval 1h
}
api_keys %[3]s`, goldenSecret, down, digest))
	t.Setenv("MONITOR_TEST_DSN", "postgres://app:x@127.0.0.1:1/app")
	c := testcaddy.StartCaddy(t, cf)
	var found []string
	for _, f := range activeApp(t).Findings() {
		if f.Code == "monitoring.literal_secret" {
			found = append(found, f.Config)
		}
	}
	if len(found) != 2 || !strings.HasPrefix(found[0], "apps.http.servers.") || !strings.HasSuffix(found[0], ".checks.0.dsn") ||
		!strings.HasPrefix(found[1], "apps.http.servers.") || !strings.HasSuffix(found[1], ".checks.2.redis") {
		t.Fatalf("findings = %v, want apps.http.servers.….checks.0.dsn and ….checks.2.redis", found)
	}
	waitFor(t, "every check ran", func() bool {
		for _, d := range services(t, base, key).Dependencies {
			if d.Runs == 0 {
				return false
			}
		}
		return true
	})
	for _, route := range []string{"health", "services"} {
		if body := call(t, "GET", base+route, key).body; strings.Contains(body, goldenSecret) || !strings.Contains(body, "refused") {
			t.Fatalf("/%s shows the password or no error: %s", route, body)
		}
	}
	// Caddy itself logs the config at debug level (that is the finding's point); our lines
	// must not repeat the password.
	for _, e := range c.Logs() {
		if e.Logger() != "http.auto_https" && strings.Contains(fmt.Sprint(e), goldenSecret) {
			t.Fatalf("the password is in a log line: %v", e)
		}
	}
}

// TestMonitoringValidateProbesNothing: `caddy validate` provisions the config without running
// it; no check may reach a dependency then.
func TestMonitoringValidateProbesNothing(t *testing.T) {
	var hits atomic.Int64
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer up.Close()
	cf, _ := monitoringSite(t, "\tadmin off", "check http billing "+up.URL)
	cfg, err := testcaddy.Adapt(cf)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(cfg)
	var c caddy.Config
	if err := json.Unmarshal(raw, &c); err != nil {
		t.Fatal(err)
	}
	if err := caddy.Validate(&c); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // a started check would run at once
	if n := hits.Load(); n != 0 {
		t.Fatalf("validation probed the dependency %d times", n)
	}
	if n := poolSize(); n != 0 {
		t.Fatalf("%d checks left pooled after validation", n)
	}
}

// TestMonitoringDetailsForTrustedClass: a client in the trusted IP class sees the details
// without a key; a forwarded client through a trusted proxy gets its own class, not the
// proxy's; a spoofed X-Forwarded-For from an untrusted peer changes nothing.
func TestMonitoringDetailsForTrustedClass(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer up.Close()
	for _, tc := range []struct {
		name, global, xff string
		detail            bool
	}{
		{"trusted peer", "hardening {\nip_classes {\ntrusted 127.0.0.1\n}\n}", "", true},
		{"default peer", "hardening {\nip_classes {\ntrusted 10.0.0.0/8\n}\n}", "", false},
		{"default peer spoofing a trusted address", "hardening {\nip_classes {\ntrusted 10.0.0.0/8\n}\n}", "10.1.2.3", false},
		{"trusted proxy forwarding a default client", "servers {\ntrusted_proxies static 127.0.0.1/32\n}\nhardening {\nip_classes {\ntrusted 127.0.0.1\n}\n}", "198.51.100.4", false},
		{"trusted proxy forwarding a trusted client", "servers {\ntrusted_proxies static 127.0.0.1/32\n}\nhardening {\nip_classes {\ntrusted 10.0.0.0/8\n}\n}", "10.1.2.3", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cf, base := monitoringSite(t, tc.global, fmt.Sprintf("check http billing %s/healthz", up.URL))
			testcaddy.StartCaddy(t, cf)
			req, _ := http.NewRequest("GET", base+"health", nil)
			if tc.xff != "" {
				req.Header.Set("X-Forwarded-For", tc.xff)
			}
			resp, err := replyClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if got := strings.Contains(string(b), "billing"); got != tc.detail {
				t.Fatalf("details shown = %v, want %v: %s", got, tc.detail, b)
			}
		})
	}
}

// TestMonitoringJSONRefusesWhatTheCaddyfileRefuses: a JSON config (or an admin API PATCH) with
// a check's failures_before_down over 1000 or an HTTP method that is no token was accepted,
// where the Caddyfile refuses both; the method failed every run ("net/http: invalid method").
func TestMonitoringJSONRefusesWhatTheCaddyfileRefuses(t *testing.T) {
	c := testcaddy.StartCaddy(t, "")
	for _, tc := range []struct{ check, want string }{
		{`{"type": "tcp", "name": "x", "address": "127.0.0.1:1", "failures_before_down": 100000}`, "monitoring: check x: failures_before_down 100000: expected 1 to 1000"},
		{`{"type": "http", "name": "x", "url": "http://127.0.0.1:1/", "method": "G T"}`, `monitoring: check x: method: expected an HTTP method such as GET or HEAD, got "G T"`},
		// Were accepted: Go's client refuses to send such a header, so the check failed on
		// every run and reported the dependency down.
		{`{"type": "http", "name": "x", "url": "http://127.0.0.1:1/", "headers": {"X Token": "a"}}`, `monitoring: check x: header "X Token": expected a field name`},
		{`{"type": "http", "name": "x", "url": "http://127.0.0.1:1/", "headers": {"X-Token": "a\r\nX-Other: b"}}`, `monitoring: check x: header X-Token: the value holds a control character`},
		// Was accepted: the text "Bearer {env.TOKEN" was sent as the header.
		{`{"type": "http", "name": "x", "url": "http://127.0.0.1:1/", "headers": {"Authorization": "Bearer {env.TOKEN"}}`, `monitoring: check x: header Authorization: the placeholder {env.TOKEN is not closed`},
		// Were accepted: a bound without what it bounds was ignored with nothing said.
		{`{"type": "worker", "name": "w", "redis": "redis://127.0.0.1:1", "queue": "q", "max_age": 60000000000}`, "monitoring: check w: max_age bounds the age of heartbeat_key, and there is none"},
		{`{"type": "worker", "name": "w", "redis": "redis://127.0.0.1:1", "queue": "q", "on_backlog": "fail"}`, "monitoring: check w: on_backlog says what a backlog over max_backlog reports, and there is no max_backlog"},
		{`{"type": "worker", "name": "w", "redis": "redis://127.0.0.1:1", "heartbeat_key": "hb", "max_backlog": 5}`, "monitoring: check w: max_backlog bounds the length of queue, and there is none"},
		// Was accepted: a HEAD response has no body, so the check failed on every run ("the
		// first 65536 bytes of the body do not contain the expected text").
		{`{"type": "http", "name": "x", "url": "http://127.0.0.1:1/", "method": "HEAD", "body_contains": "ok"}`, "monitoring: check x: body: a HEAD response has no body"},
		// Panicked the load (a nil dereference in Validate), which took caddy validate down.
		{`null`, `monitoring: checks[0] is null; expected a check object`},
	} {
		err := c.LoadJSON(`{"apps": {"http": {"servers": {"s": {"listen": ["127.0.0.1:0"], "routes": [{"handle": [{"handler": "monitoring", "checks": [` + tc.check + `]}]}]}}}}}`)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.check, err, tc.want)
		}
	}
}

// TestMonitoringRedisCheckNamesConfigurationMistakes: a redis check against a wrong connection
// said only what the driver said ("EOF", "i/o timeout", an x509 error, "WRONGPASS ..."), where
// the app's startup names the mistake. The check now names it the same way (one shared
// diagnosis), the driver's text after it.
func TestMonitoringRedisCheckNamesConfigurationMistakes(t *testing.T) {
	files := testenv.WriteTLSFiles(t)
	tlsPort := testenv.FreePort(t)
	plain := testenv.StartRedis(t, "--tls-port", strconv.Itoa(tlsPort), "--tls-cert-file", files.Cert,
		"--tls-key-file", files.Key, "--tls-ca-cert-file", files.CA, "--tls-auth-clients", "no")
	locked := testenv.StartRedis(t, "--requirepass", "right-one")
	key, digest := newKey(t)
	want := map[string]string{
		"plain_to_tls": "redis closed the connection without an answer: a port that serves TLS only",
		"tls_to_plain": "redis did not complete the TLS handshake (TLS is on",
		"untrusted":    "redis's TLS certificate was refused (signed by a CA",
		"wrongpass":    "redis refused this client's credentials (username, password or ACL): WRONGPASS",
		"app":          "redis did not complete the TLS handshake (TLS is on",
	}
	cf, base := monitoringSite(t,
		fmt.Sprintf("\thardening {\n\t\tenvironment development\n\t\tredis rediss://%s/0 {\n\t\t\tdial_timeout 200ms\n\t\t\tread_timeout 200ms\n\t\t}\n\t}", plain.Addr),
		fmt.Sprintf(`check redis plain_to_tls redis://127.0.0.1:%d/0 {
	interval 300ms
	timeout 250ms
}
check redis tls_to_plain rediss://%s/0 {
	interval 300ms
	timeout 250ms
}
check redis untrusted rediss://127.0.0.1:%d/0 {
	interval 300ms
	timeout 250ms
}
check redis wrongpass redis://:wrong-one@%s/0 {
	interval 300ms
	timeout 250ms
}
check redis app {
	interval 300ms
	timeout 250ms
}
api_keys %s`, tlsPort, plain.Addr, tlsPort, locked.Addr, digest))
	testcaddy.StartCaddy(t, cf)
	// Every check runs again each 300 ms: on a loaded machine one run can end at its 250 ms
	// timeout before the handshake fails, and the next names the mistake.
	named, last := map[string]bool{}, map[string]string{}
	for deadline := time.Now().Add(15 * time.Second); len(named) < len(want) && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		for _, d := range services(t, base, key).Dependencies {
			if strings.Contains(d.Output, "wrong-one") {
				t.Fatalf("check %s: output shows the password: %q", d.Name, d.Output)
			}
			last[d.Name] = d.Output
			if strings.Contains(d.Output, want[d.Name]) {
				named[d.Name] = true
			}
		}
	}
	for name, w := range want {
		if !named[name] {
			t.Errorf("check %s: output %q, want it to say %q", name, last[name], w)
		}
	}
}

// TestMonitoringPlaceholderResolvingToNothingIsRefused: `check redis cache {env.CACHE_URL}` with
// the variable unset checked the hardening app's Redis instead, and said nothing: the check
// passed while the cache it was meant to watch was never probed.
func TestMonitoringPlaceholderResolvingToNothingIsRefused(t *testing.T) {
	r := testenv.StartRedis(t)
	for _, tc := range []struct{ block, want string }{
		{"check redis cache {env.HARDENING_TEST_UNSET_CACHE_URL}", "monitoring: check cache: redis {env.HARDENING_TEST_UNSET_CACHE_URL} is empty once resolved"},
		{"check worker jobs {\nqueue {env.HARDENING_TEST_UNSET_QUEUE}\nheartbeat_key hb\n}", "monitoring: check jobs: queue {env.HARDENING_TEST_UNSET_QUEUE} is empty once resolved"},
		{"check tcp db {env.HARDENING_TEST_UNSET_ADDR}", "monitoring: check db: address {env.HARDENING_TEST_UNSET_ADDR} is empty once resolved"},
	} {
		t.Run(tc.block, func(t *testing.T) {
			cf, _ := monitoringSite(t, "\thardening {\n\t\tredis "+r.URL(0)+"\n\t}", tc.block)
			_, err := testcaddy.TryStartCaddy(t, cf)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

// TestMonitoringCaddyfileRefusesABodyNeverChecked: `body ""` was accepted and ignored (no text
// to look for), and `body` with `method HEAD` failed every run; both are refused at their line.
func TestMonitoringCaddyfileRefusesABodyNeverChecked(t *testing.T) {
	for block, want := range map[string]string{
		"body \"\"":            "body: expected the text the response must contain, not an empty one (which checks nothing), at Caddyfile:4",
		"method HEAD\nbody ok": "check h: body: a HEAD response has no body",
	} {
		src := ":8080 {\n\tmonitoring {\n\t\tcheck http h http://127.0.0.1:1/ {\n" + block + "\n\t\t}\n\t}\n}\n"
		_, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(src), map[string]any{"filename": "Caddyfile"})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err = %v, want %q", block, err, want)
		}
	}
}
