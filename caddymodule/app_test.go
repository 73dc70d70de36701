package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/swarmsec/caddy-hardening/internal/testcaddy"
	"github.com/swarmsec/caddy-hardening/internal/testenv"
)

// featureProbe is a test-only handler that uses a feature flag the way every caddy-hardening
// handler does: it asks the app at provision and passes requests through when disabled.
type featureProbe struct {
	Feature string `json:"feature"`
	on      bool
}

func (featureProbe) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "http.handlers.hardening_feature_probe", New: func() caddy.Module { return new(featureProbe) }}
}

func (p *featureProbe) Provision(ctx caddy.Context) error {
	app, err := hardeningApp(ctx)
	if err != nil {
		return err
	}
	p.on = app.FeatureEnabled(p.Feature)
	return nil
}

func (p *featureProbe) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if p.on {
		w.Header().Add("X-Feature-Applied", p.Feature)
	}
	return next.ServeHTTP(w, r)
}

func init() {
	caddy.RegisterModule(featureProbe{})
	httpcaddyfile.RegisterHandlerDirective("hardening_feature_probe", func(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
		h.Next()
		p := new(featureProbe)
		if !h.Args(&p.Feature) {
			return nil, h.ArgErr()
		}
		return p, nil
	})
	httpcaddyfile.RegisterDirectiveOrder("hardening_feature_probe", httpcaddyfile.Before, "respond")
}

// site is a Caddyfile site on a free loopback port; it returns the site block and its URL.
func site(t *testing.T, directives string) (string, string) {
	port := testenv.FreePort(t)
	return fmt.Sprintf("http://127.0.0.1:%d {\n\tbind 127.0.0.1\n%s\n\trespond \"ok\"\n}\n", port, directives),
		fmt.Sprintf("http://127.0.0.1:%d/", port)
}

func get(t *testing.T, url string) *http.Response {
	t.Helper()
	resp, err := replyClient.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// reply is what a test keeps of one response.
type reply struct {
	status  int
	header  http.Header
	body    string
	elapsed time.Duration
}

// replyClient sends test requests. Right after a config reload, a connection the old server
// accepted or kept alive can be closed under the request (EOF, reset) before the request was
// read: such a request never reached a handler, so it is sent again (up to three times).
var replyClient = retryingClient{}

type retryingClient struct{ c *http.Client } // nil: http.DefaultClient

func (rc retryingClient) Do(req *http.Request) (*http.Response, error) {
	c := rc.c
	if c == nil {
		c = http.DefaultClient
	}
	var err error
	for range 3 {
		var resp *http.Response
		if resp, err = c.Do(req); err == nil {
			return resp, nil
		}
		if req.Body != nil && req.Body != http.NoBody || !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) {
			return nil, err // a body is spent: sending it again is the caller's call
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil, err
}

// Get is Do for a GET of url.
func (c retryingClient) Get(url string) (*http.Response, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	return c.Do(req)
}

// getReply sends GET url with headers ("Name: value"); a transport error fails the test.
func getReply(t testing.TB, url string, headers ...string) reply {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ": ")
		req.Header.Set(k, v)
	}
	start := time.Now()
	resp, err := replyClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return reply{resp.StatusCode, resp.Header, string(b), time.Since(start)}
}

// activeApp is the `hardening` app of the running config.
func activeApp(t *testing.T) *App {
	t.Helper()
	app, err := hardeningApp(caddy.ActiveContext())
	if err != nil {
		t.Fatal(err)
	}
	return app
}

// componentStatus is the health report registered as component in the running config; the
// zero report when none is.
func componentStatus(t *testing.T, component string) StatusReport {
	t.Helper()
	for _, s := range activeApp(t).Statuses() {
		if s.Component == component {
			return s
		}
	}
	return StatusReport{}
}

// waitComponentStatus waits (up to 5 s) until component reports status, and returns the report.
func waitComponentStatus(t *testing.T, component string, status Health) StatusReport {
	t.Helper()
	var report StatusReport
	testenv.WaitFor(t, 5*time.Second, fmt.Sprintf("%s reports %s", component, status), func() bool {
		report = componentStatus(t, component)
		return report.Status == status
	})
	t.Logf("%s: %s", component, report.Output)
	return report
}

func TestFeatureFlagsPassRequestsThrough(t *testing.T) {
	block, url := site(t, "\thardening_feature_probe rate_limit\n\thardening_feature_probe security_headers")
	c := testcaddy.StartCaddy(t, `{
	hardening {
		features {
			rate_limit off
			security_headers on
		}
	}
}
`+block)
	resp := get(t, url)
	if got := resp.Header.Values("X-Feature-Applied"); len(got) != 1 || got[0] != "security_headers" {
		t.Fatalf("applied features = %v, want only security_headers (rate_limit is off)", got)
	}
	// Production (the default): one WARN, the finding features.disabled, which `caddy hardening
	// check --strict` fails on; not a second line of its own.
	disabled := testenv.Filter(c.Logs(), func(e testenv.LogEntry) bool {
		return e.Str("code") == "features.disabled" || e.Msg() == "feature disabled: its handlers pass requests through"
	})
	if len(disabled) != 1 || disabled[0].Str("config") != "apps.hardening.features.rate_limit" || disabled[0].Level() != "warn" ||
		!strings.Contains(disabled[0].Str("fix"), "shadow") {
		t.Fatalf("want one WARN finding features.disabled for rate_limit, with a fix naming shadow policies; got %v", disabled)
	}
}

// TestDisabledFeatureOutsideProduction: in development a disabled feature is no finding; the
// startup log names it once, at INFO.
func TestDisabledFeatureOutsideProduction(t *testing.T) {
	block, _ := site(t, "\thardening_feature_probe rate_limit")
	c := testcaddy.StartCaddy(t, `{
	hardening {
		environment development
		features {
			detection off
		}
	}
}
`+block)
	disabled := testenv.Filter(c.Logs(), func(e testenv.LogEntry) bool {
		return e.Str("code") == "features.disabled" || e.Msg() == "feature disabled: its handlers pass requests through"
	})
	if len(disabled) != 1 || disabled[0].Str("feature") != "detection" || disabled[0].Level() != "info" {
		t.Fatalf("want one INFO line naming detection, got %v", disabled)
	}
}

func TestHandlersWorkWithoutTheGlobalOption(t *testing.T) {
	block, url := site(t, "\thardening_feature_probe rate_limit")
	testcaddy.StartCaddy(t, block)
	if got := get(t, url).Header.Get("X-Feature-Applied"); got != "rate_limit" {
		t.Fatalf("without a hardening block every feature is on; got %q", got)
	}
	if env := activeApp(t).Env(); env != Production {
		t.Fatalf("default environment %q, want production", env)
	}
}

func TestEnvironmentFromRuntimePlaceholder(t *testing.T) {
	t.Setenv("HARDENING_TEST_ENV", "development")
	c := testcaddy.StartCaddy(t, "{\n\thardening {\n\t\tenvironment {env.HARDENING_TEST_ENV}\n\t}\n}\n")
	if env := activeApp(t).Env(); env != Development {
		t.Fatalf("environment %q, want development", env)
	}
	t.Setenv("HARDENING_TEST_ENV", "prod")
	err := c.Load("{\n\thardening {\n\t\tenvironment {env.HARDENING_TEST_ENV}\n\t}\n}\n")
	if err == nil || !strings.Contains(err.Error(), `environment "prod": expected one of production, staging, development`) {
		t.Fatalf("a bad environment at load: %v", err)
	}
}

// TestEnvironmentPlaceholderHasNoDefault: a runtime {env.X} that is unset is empty, and the
// load is refused; Caddy's runtime placeholders have no default syntax ({env.X:staging} reads
// a variable named "X:staging"), so README points to {$X:production} (adapt time) instead.
func TestEnvironmentPlaceholderHasNoDefault(t *testing.T) {
	c := testcaddy.StartCaddy(t, "")
	for _, env := range []string{"{env.HARDENING_TEST_UNSET_ENV}", "{env.HARDENING_TEST_UNSET_ENV:staging}"} {
		err := c.Load("{\n\thardening {\n\t\tenvironment " + env + "\n\t}\n}\n")
		// Before, the error did not name the placeholder the empty value came from.
		want := `environment "": expected one of production, staging, development (from ` + env + `: set the variable)`
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("environment %s with the variable unset: %v, want %q", env, err, want)
		}
	}
	t.Setenv("HARDENING_TEST_ENV", "prod")
	want := `environment "prod": expected one of production, staging, development (from {env.HARDENING_TEST_ENV}: change the variable's value)`
	if err := c.Load("{\n\thardening {\n\t\tenvironment {env.HARDENING_TEST_ENV}\n\t}\n}\n"); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("environment {env.HARDENING_TEST_ENV}=prod: %v, want %q", err, want)
	}
	if err := c.Load("{\n\thardening {\n\t\tenvironment {$HARDENING_TEST_UNSET_ENV:staging}\n\t}\n}\n"); err != nil {
		t.Fatal(err)
	}
	if env := activeApp(t).Env(); env != Staging {
		t.Fatalf("{$X:staging} with X unset: %q, want staging", env)
	}
}

func TestUnknownFeatureInJSONIsRefused(t *testing.T) {
	c := testcaddy.StartCaddy(t, "")
	err := c.LoadJSON(`{"apps": {"hardening": {"features": {"waf": false}}}}`)
	if err == nil || !strings.Contains(err.Error(), `unknown feature "waf"; known features: csp_report,`) {
		t.Fatalf("err = %v", err)
	}
}

// TestIPClassMatcherListInJSONIsExplained: the matcher takes an object; the list form that path
// and host take is refused with the form expected, and an unknown field still is.
func TestIPClassMatcherListInJSONIsExplained(t *testing.T) {
	c := testcaddy.StartCaddy(t, "")
	for match, want := range map[string]string{
		`["trusted"]`:            `ip_class: expected an object, {"classes": ["trusted"]}, not a list`,
		`{"class": ["trusted"]}`: `unknown field "class"`,
	} {
		err := c.LoadJSON(`{"apps": {"http": {"servers": {"s": {"listen": ["127.0.0.1:0"], "routes": [{"match": [{"ip_class": ` + match + `}], "handle": [{"handler": "static_response"}]}]}}}}}`)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err = %v, want %q", match, err, want)
		}
	}
}

// redisConnections lists the ids of the caddy-hardening connections in Redis's CLIENT LIST.
func redisConnections(t *testing.T, r *testenv.Redis) []string {
	t.Helper()
	list, err := r.Do("CLIENT", "LIST")
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, line := range strings.Split(fmt.Sprint(list), "\n") {
		if strings.Contains(line, " name="+redisClientName+" ") {
			id, _, _ := strings.Cut(line, " ")
			ids = append(ids, id)
		}
	}
	return ids
}

// waitSubscribed waits until a caddy-hardening connection is subscribed (the detection sync).
func waitSubscribed(t *testing.T, r *testenv.Redis) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		list, err := r.Do("CLIENT", "LIST")
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(fmt.Sprint(list), "\n") {
			if strings.Contains(line, " name="+redisClientName+" ") && strings.Contains(line, " cmd=subscribe") {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("no subscribed caddy-hardening connection")
}

// waitLog waits until a log entry has the message.
func waitLog(t *testing.T, c *testcaddy.Caddy, msg string) testenv.LogEntry {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if found := testenv.Filter(c.Logs(), func(e testenv.LogEntry) bool { return e.Msg() == msg }); len(found) > 0 {
			return found[0]
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no log entry %q", msg)
	return nil
}

func TestRedisPoolSurvivesReloadAndClosesWhenRemoved(t *testing.T) {
	r := testenv.StartRedis(t)
	cfg := func(env, url string) string {
		return fmt.Sprintf("{\n\thardening {\n\t\tenvironment %s\n\t\tredis %s\n\t}\n}\n", env, url)
	}
	c := testcaddy.StartCaddy(t, cfg("development", r.URL(0)))
	first := activeApp(t)
	client := first.RedisClient()
	ctx := context.Background()
	waitLog(t, c, "redis connected") // the startup ping is done
	waitSubscribed(t, r)             // and detections are shared: no connection is being made
	conns := fmt.Sprint(redisConnections(t, r))
	if conns == "[]" {
		t.Fatal("Redis lists no caddy-hardening connection")
	}

	// A reload that keeps the Redis settings keeps the client and its connection.
	if err := c.Load(cfg("staging", r.URL(0))); err != nil {
		t.Fatal(err)
	}
	second := activeApp(t)
	if second == first || second.Env() != Staging {
		t.Fatal("the reload did not load a new app")
	}
	if second.RedisClient() != client {
		t.Fatal("the reload made a new Redis client; the pool should have kept the old one")
	}
	if refs, _ := redisPool.References(second.redisKey); refs != 1 {
		t.Fatalf("pool references after reload = %d, want 1 (the old config released its own)", refs)
	}
	if err := client.Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if after := fmt.Sprint(redisConnections(t, r)); after != conns {
		t.Fatalf("connections %s after the reload, want the same %s", after, conns)
	}

	// A reload that fails keeps the running config and its client; the failed config's
	// reference (if its hardening app got provisioned) is released.
	failing := fmt.Sprintf(`{"apps": {"hardening": {"redis": {"url": %q}},
		"http": {"servers": {"s": {"listen": ["127.0.0.1:0"], "routes": [{"handle": [{"handler": "no_such_handler"}]}]}}}}}`, r.URL(0))
	if err := c.LoadJSON(failing); err == nil {
		t.Fatal("a config with an unknown handler loaded")
	}
	if activeApp(t) != second || second.RedisClient() != client {
		t.Fatal("a failed reload replaced the running app or its client")
	}
	if refs, _ := redisPool.References(second.redisKey); refs != 1 {
		t.Fatalf("pool references after a failed reload = %d, want 1", refs)
	}

	// Different settings: a new client; the old one is closed once nothing uses it.
	if err := c.Load(cfg("staging", r.URL(1))); err != nil {
		t.Fatal(err)
	}
	third := activeApp(t).RedisClient()
	if third == client {
		t.Fatal("a different database reused the old client")
	}
	if err := client.Ping(ctx).Err(); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Fatalf("the old client still works after its last user left: %v", err)
	}
	if err := third.Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}

	// Redis removed from the config: the pool is empty and Redis sees no connection of ours.
	if err := c.Load("{\n\thardening {\n\t\tenvironment development\n\t}\n}\n"); err != nil {
		t.Fatal(err)
	}
	if err := third.Ping(ctx).Err(); err == nil {
		t.Fatal("the client survived the removal of Redis from the config")
	}
	deadline := time.Now().Add(3 * time.Second)
	for len(redisConnections(t, r)) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("Redis still lists caddy-hardening connections %v", redisConnections(t, r))
		}
		time.Sleep(20 * time.Millisecond)
	}
	n := 0
	redisPool.Range(func(any, any) bool { n++; return true })
	if n != 0 {
		t.Fatalf("%d clients left in the pool", n)
	}
}

func TestRedisPasswordFromPlaceholder(t *testing.T) {
	r := testenv.StartRedis(t, "--requirepass", goldenSecret)
	t.Setenv("HARDENING_TEST_REDIS_PASSWORD", goldenSecret)
	testcaddy.StartCaddy(t, fmt.Sprintf("{\n\thardening {\n\t\tredis %s {\n\t\t\tpassword {env.HARDENING_TEST_REDIS_PASSWORD}\n\t\t}\n\t}\n}\n", r.URL(0)))
	if err := activeApp(t).RedisClient().Ping(context.Background()).Err(); err != nil {
		t.Fatalf("the password from {env.*} did not authenticate: %v", err)
	}
}

// TestRedisKeyPrefixFromPlaceholder: key_prefix takes {env.*} like the other string fields of
// the redis block (it was refused for its braces), and keys start with the resolved prefix.
func TestRedisKeyPrefixFromPlaceholder(t *testing.T) {
	r := testenv.StartRedis(t)
	t.Setenv("HARDENING_TEST_APP", "shop")
	block, url := site(t, "\tpolicy_rate_limit api")
	testcaddy.StartCaddy(t, fmt.Sprintf("{\n\thardening {\n\t\tredis %s {\n\t\t\tkey_prefix {env.HARDENING_TEST_APP}:\n\t\t}\n\t}\n}\n%s", r.URL(0), block))
	if got := activeApp(t).KeyPrefix(); got != "shop:" {
		t.Fatalf("key prefix %q, want shop:", got)
	}
	if resp := get(t, url); resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	testenv.WaitFor(t, 5*time.Second, "a rate-limit key under shop:", func() bool {
		keys, err := r.Do("KEYS", "shop:rl:*")
		list, _ := keys.([]any)
		return err == nil && len(list) > 0
	})
}

// TestRedisURLPasswordFromPlaceholder: a password put into the URL from {env.*}, percent-encoded
// as URLs need, authenticates (go-redis decodes it).
func TestRedisURLPasswordFromPlaceholder(t *testing.T) {
	const password = "p@ss/w#rd 100%"
	r := testenv.StartRedis(t, "--requirepass", password)
	t.Setenv("HARDENING_TEST_REDIS_PASSWORD", url.PathEscape(password))
	testcaddy.StartCaddy(t, fmt.Sprintf("{\n\thardening {\n\t\tredis redis://:{env.HARDENING_TEST_REDIS_PASSWORD}@%s/0\n\t}\n}\n", r.Addr))
	if err := activeApp(t).RedisClient().Ping(context.Background()).Err(); err != nil {
		t.Fatalf("the percent-encoded password from {env.*} did not authenticate: %v", err)
	}
}

// TestRedisWrongPasswordAtStartupSaysSo: Redis answering with WRONGPASS is logged as refused
// credentials, not as an unreachable server, and the password stays out of the log.
func TestRedisWrongPasswordAtStartupSaysSo(t *testing.T) {
	r := testenv.StartRedis(t, "--requirepass", "the-right-one")
	c := testcaddy.StartCaddy(t, fmt.Sprintf("{\n\thardening {\n\t\tredis redis://:%s@%s/0\n\t}\n}\n", goldenSecret, r.Addr))
	expectRefusedCredentials(t, c)
}

// expectRefusedCredentials waits for the one "redis refused this client's credentials" warning,
// and checks that nothing was logged as unreachable and that no line holds the password.
func expectRefusedCredentials(t *testing.T, c *testcaddy.Caddy) {
	t.Helper()
	refused := func(e testenv.LogEntry) bool {
		return strings.HasPrefix(e.Msg(), "redis refused this client's credentials at startup")
	}
	testenv.WaitFor(t, 5*time.Second, "the refused-credentials warning", func() bool { return len(testenv.Filter(c.Logs(), refused)) == 1 })
	for _, e := range c.Logs() {
		if strings.HasPrefix(e.Msg(), "redis unreachable") || strings.Contains(fmt.Sprint(e), goldenSecret) {
			t.Fatalf("log line %v: want no 'unreachable' and no password", e)
		}
	}
}

// TestRedisSentinelWrongPasswordAtStartupSaysSo: sentinels that refuse sentinel_password are
// refused credentials too (go-redis wraps their WRONGPASS in "all sentinels ... unreachable"),
// not an unreachable Redis, and the password stays out of the log.
func TestRedisSentinelWrongPasswordAtStartupSaysSo(t *testing.T) {
	master := testenv.StartRedis(t)
	sentinel := testenv.StartSentinel(t, master, "mymaster", "requirepass the-right-one")
	c := testcaddy.StartCaddy(t, fmt.Sprintf("{\n\thardening {\n\t\tredis {\n\t\t\tsentinel mymaster %s\n\t\t\tsentinel_password %s\n\t\t}\n\t}\n}\n", sentinel.Addr, goldenSecret))
	expectRefusedCredentials(t, c)
}

// TestRedisSentinelUnknownMasterSaysSo: a sentinel that answers but knows no master of the
// configured name is reported as such, not as an unreachable Redis.
func TestRedisSentinelUnknownMasterSaysSo(t *testing.T) {
	master := testenv.StartRedis(t)
	sentinel := testenv.StartSentinel(t, master, "mymaster")
	c := testcaddy.StartCaddy(t, fmt.Sprintf("{\n\thardening {\n\t\tredis {\n\t\t\tsentinel mymastr %s\n\t\t}\n\t}\n}\n", sentinel.Addr))
	unknown := func(e testenv.LogEntry) bool { return strings.Contains(e.Msg(), `knows no master named "mymastr"`) }
	// The startup ping retries with backoff before it gives up; on a loaded machine under -race
	// that took more than 5 s.
	testenv.WaitFor(t, 15*time.Second, "the unknown-master warning", func() bool { return len(testenv.Filter(c.Logs(), unknown)) == 1 })
	for _, e := range c.Logs() {
		if strings.HasPrefix(e.Msg(), "redis unreachable") {
			t.Fatalf("log line %v: want no 'unreachable'", e)
		}
	}
}

// TestRedisDBOutOfRangeAtStartupSaysSo: a db the server does not have (db 5 on a Redis with
// `databases 2`) is a configuration mistake reported as such, not as an unreachable Redis: the
// server answered.
func TestRedisDBOutOfRangeAtStartupSaysSo(t *testing.T) {
	r := testenv.StartRedis(t, "--databases", "2")
	c := testcaddy.StartCaddy(t, fmt.Sprintf("{\n\thardening {\n\t\tredis %s {\n\t\t\tdb 5\n\t\t}\n\t}\n}\n", r.URL(0)))
	refused := func(e testenv.LogEntry) bool {
		return strings.HasPrefix(e.Msg(), "redis refused the configured db at startup")
	}
	testenv.WaitFor(t, 5*time.Second, "the refused-db warning", func() bool { return len(testenv.Filter(c.Logs(), refused)) == 1 })
	for _, e := range c.Logs() {
		if strings.HasPrefix(e.Msg(), "redis unreachable") {
			t.Fatalf("log line %v: want no 'unreachable'", e)
		}
	}
}

func TestRedisUnreachableAtStartupIsNotFatal(t *testing.T) {
	port := testenv.FreePort(t) // nothing listens there
	block, url := site(t, "")
	c := testcaddy.StartCaddy(t, fmt.Sprintf("{\n\thardening {\n\t\tredis redis://edge:%s@127.0.0.1:%d/0\n\t}\n}\n%s", goldenSecret, port, block))
	if get(t, url).StatusCode != 200 {
		t.Fatal("Caddy does not serve while Redis is down")
	}
	var warn []testenv.LogEntry
	deadline := time.Now().Add(5 * time.Second)
	for len(warn) == 0 && time.Now().Before(deadline) {
		warn = testenv.Filter(c.Logs(), func(e testenv.LogEntry) bool { return strings.HasPrefix(e.Msg(), "redis unreachable at startup") })
		time.Sleep(20 * time.Millisecond)
	}
	if len(warn) != 1 || warn[0].Level() != "warn" {
		t.Fatalf("want one WARN about the unreachable Redis, got %v", warn)
	}
	if addrs := fmt.Sprint(warn[0]["addresses"]); !strings.Contains(addrs, fmt.Sprintf("127.0.0.1:%d", port)) {
		t.Fatalf("the warning does not name the address: %v", warn[0])
	}
	for _, e := range c.Logs() {
		if strings.Contains(fmt.Sprint(e), goldenSecret) {
			t.Fatalf("a log line shows the password: %v", e)
		}
	}
}

// findingCodes lists "severity:code" of the findings the app logged at startup.
func findingCodes(c *testcaddy.Caddy) []string {
	var codes []string
	for _, e := range c.Logs() {
		if e.Logger() == "hardening" && e.Str("code") != "" {
			codes = append(codes, e.Level()+":"+e.Str("code"))
		}
	}
	return codes
}

func TestAppFindings(t *testing.T) {
	t.Setenv("REDIS_PASSWORD", "from-the-environment") // a placeholder that resolves to nothing is refused
	t.Setenv("HARDENING_TEST_REDIS_HOST", "127.0.0.1")
	for _, tc := range []struct {
		name   string
		option string
		want   string // "level:code" joined by spaces, in order
		refuse string // substring of the load error
	}{
		{"production without redis", "environment production", "info:redis.absent", ""},
		{"development without redis", "environment development", "", ""},
		{"literal password", "redis redis://127.0.0.1:1/0 {\n\t\t\tpassword " + goldenSecret + "\n\t\t}", "warn:redis.literal_password", ""},
		{"literal password in the URL", "redis redis://:" + goldenSecret + "@127.0.0.1:1/0", "warn:redis.literal_password", ""},
		// Was no finding: a placeholder anywhere in the URL hid the password written beside it.
		{"literal password in a URL with a placeholder host", "redis redis://:" + goldenSecret + "@{env.HARDENING_TEST_REDIS_HOST}:1/0", "warn:redis.literal_password", ""},
		{"placeholder password in the URL", "redis redis://:{env.REDIS_PASSWORD}@127.0.0.1:1/0", "", ""},
		{"placeholder password", "redis redis://127.0.0.1:1/0 {\n\t\t\tpassword {env.REDIS_PASSWORD}\n\t\t}", "", ""},
		{"literal password in development", "environment development\n\t\tredis redis://:" + goldenSecret + "@127.0.0.1:1/0", "", ""},
		{"plaintext to a remote redis", "redis redis://192.0.2.10:6379/0", "warn:redis.plaintext warn:redis.no_auth", ""},
		// TLS authenticates the server, not this client: without a password anyone who reaches
		// Redis rewrites the shared state.
		{"tls to a remote redis", "redis rediss://192.0.2.10:6379/0", "warn:redis.no_auth", ""},
		{"tls and a password to a remote redis", "redis rediss://192.0.2.10:6379/0 {\n\t\t\tpassword {env.REDIS_PASSWORD}\n\t\t}", "", ""},
		{"tls and a password in the URL", "redis rediss://:{env.REDIS_PASSWORD}@192.0.2.10:6379/0", "", ""},
		// Were warned as plaintext over the network: without a port, the address was not read.
		{"plaintext to localhost without a port", "redis redis://localhost/0", "", ""},
		{"plaintext to loopback without a port", "redis redis://127.0.0.1", "", ""},
		{"plaintext to IPv6 loopback without a port", "redis redis://[::1]/0", "", ""},
		{"plaintext sentinel on loopback", "redis {\n\t\t\tsentinel mymaster 127.0.0.1:1\n\t\t}", "info:redis.plaintext", ""},
		{"plaintext remote in staging", "environment staging\n\t\tredis redis://192.0.2.10:6379/0", "", ""},
		{"unverified tls in staging", "environment staging\n\t\tredis rediss://192.0.2.10:6379/0 {\n\t\t\ttls {\n\t\t\t\tinsecure_skip_verify\n\t\t\t}\n\t\t}", "warn:redis.tls_insecure", ""},
		{"trusting every IPv4 client", "environment development\n\t\tip_classes {\n\t\t\ttrusted 0.0.0.0/0\n\t\t}", "warn:ip_classes.trust_everyone", ""},
		{"trusting every IPv6 client", "environment development\n\t\tip_classes {\n\t\t\ttrusted ::/0\n\t\t}", "warn:ip_classes.trust_everyone", ""},
		{"trusting both halves of IPv4", "environment development\n\t\tip_classes {\n\t\t\ttrusted 0.0.0.0/1 128.0.0.0/1\n\t\t}", "warn:ip_classes.trust_everyone", ""},
		// Was no finding: the suspicious line was dead configuration (a trusted prefix wins).
		{"a suspicious prefix inside a trusted one", "environment development\n\t\tip_classes {\n\t\t\ttrusted 10.0.0.0/8 2001:db8::/32\n\t\t\tsuspicious 203.0.113.0/24 10.66.6.0/24 2001:db8:1::/48\n\t\t}", "warn:ip_classes.suspicious_in_trusted", ""},
		{"a trusted host inside a suspicious range", "environment development\n\t\tip_classes {\n\t\t\ttrusted 203.0.113.7\n\t\t\tsuspicious 203.0.113.0/24\n\t\t}", "", ""},
		{"trusting 0.0.0.0/8, which is nobody", "environment development\n\t\tip_classes {\n\t\t\ttrusted 0.0.0.0/8\n\t\t}", "", ""},
		{"unverified tls in production", "redis rediss://192.0.2.10:6379/0 {\n\t\t\ttls {\n\t\t\t\tinsecure_skip_verify\n\t\t\t}\n\t\t}", "", "hardening [redis.tls_insecure]: TLS certificate verification to Redis is off"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := testcaddy.TryStartCaddy(t, "{\n\thardening {\n\t\t"+tc.option+"\n\t}\n}\n")
			if tc.refuse != "" {
				if err == nil || !strings.Contains(err.Error(), tc.refuse) || !strings.Contains(err.Error(), "fix: ") {
					t.Fatalf("load error %v, want it to contain %q and a fix", err, tc.refuse)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(findingCodes(c), " "); got != tc.want {
				t.Fatalf("findings %q, want %q", got, tc.want)
			}
			for _, e := range c.Logs() {
				if strings.Contains(fmt.Sprint(e), goldenSecret) {
					t.Fatalf("a log line shows the password: %v", e)
				}
			}
		})
	}
}

func TestFindingsAreRecordedOnce(t *testing.T) {
	var s findingSet
	f := Finding{Code: "x", Severity: Warning, Module: "m", Message: "msg", Fix: "fix"}
	for i := 0; i < 3; i++ {
		if err := s.add(f, ""); err != nil {
			t.Fatal(err)
		}
	}
	if len(s.all()) != 1 {
		t.Fatalf("%d findings, want 1", len(s.all()))
	}
	f.Severity = Error
	if err := s.add(f, ""); err == nil || !strings.Contains(err.Error(), "m [x]: msg; fix: fix") {
		t.Fatalf("an error finding returned %v", err)
	}
}

func TestRedisSettingsRefusedAtLoad(t *testing.T) {
	for _, tc := range []struct{ name, redis, want string }{
		{"missing CA file", "redis rediss://127.0.0.1:6379/0 {\n\t\t\ttls {\n\t\t\t\tca_file /nonexistent/ca.pem\n\t\t\t}\n\t\t}", "redis: reading ca_file: open /nonexistent/ca.pem"},
		{"URL from an empty placeholder", "redis {env.HARDENING_TEST_UNSET_URL}", "redis: the URL {env.HARDENING_TEST_UNSET_URL} is empty once resolved; set the variable"},
		{"bad URL from a placeholder", "redis {env.HARDENING_TEST_BAD_URL}", `redis: "http://u:xxxxx@h:1": expected a redis://, rediss:// or unix:// URL`},
		// Showed the password: the error quoted the URL's options as written.
		{"URL options from a placeholder", "redis {env.HARDENING_TEST_QUERY_URL}", `redis: "redis://127.0.0.1:6379/0?password=xxxxx": URL options (?...) are not read; write them in the redis block instead: password {env.REDIS_PASSWORD}`},
		{"cluster from an empty placeholder", "redis {\n\t\t\tcluster {env.HARDENING_TEST_UNSET_NODES}\n\t\t}", "redis: cluster {env.HARDENING_TEST_UNSET_NODES} is empty once resolved; set the variable"},
		{"sentinels from an empty placeholder", "redis {\n\t\t\tsentinel m {env.HARDENING_TEST_UNSET_NODES}\n\t\t}", "redis: sentinel addresses {env.HARDENING_TEST_UNSET_NODES} are empty once resolved; set the variable"},
		// Was "sentinel needs the master name before the addresses": it did not say the name
		// came from a variable that is not set.
		{"sentinel master from an empty placeholder", "redis {\n\t\t\tsentinel {env.HARDENING_TEST_UNSET_MASTER} 127.0.0.1:26379\n\t\t}", "redis: the sentinel master name {env.HARDENING_TEST_UNSET_MASTER} is empty once resolved; set the variable"},
		// Were accepted: the client sent no password, and a Redis that needs one answered
		// NOAUTH (one startup warning, then every module in memory).
		{"password from an empty placeholder", "redis redis://127.0.0.1:6379/0 {\n\t\t\tpassword {env.HARDENING_TEST_UNSET_PASSWORD}\n\t\t}", "redis: password {env.HARDENING_TEST_UNSET_PASSWORD} is empty once resolved; set the variable (or the file), or leave password out when Redis needs none"},
		{"password from an empty file", "redis redis://127.0.0.1:6379/0 {\n\t\t\tpassword {file./dev/null}\n\t\t}", "redis: password {file./dev/null} is empty once resolved"},
		{"username from an empty placeholder", "redis redis://127.0.0.1:6379/0 {\n\t\t\tusername {env.HARDENING_TEST_UNSET_USER}\n\t\t\tpassword {env.HARDENING_TEST_BAD_URL}\n\t\t}", "redis: username {env.HARDENING_TEST_UNSET_USER} is empty once resolved"},
		// Were accepted: the URL's password placeholder resolved to nothing and the client sent
		// none (NOAUTH at startup, every module in memory), where the password field is refused.
		{"URL password from an empty placeholder", "redis redis://:{env.HARDENING_TEST_UNSET_PASSWORD}@127.0.0.1:6379/0", "redis: the URL's password {env.HARDENING_TEST_UNSET_PASSWORD} is empty once resolved; set the variable (or the file), or leave it out of the URL when Redis needs none"},
		{"URL user from an empty placeholder", "redis redis://{env.HARDENING_TEST_UNSET_USER}:{env.HARDENING_TEST_RAW_PASSWORD}@127.0.0.1:6379/0", "redis: the URL's username {env.HARDENING_TEST_UNSET_USER} is empty once resolved"},
		// Was "the path must be a database number 0-15": the password's / and # cut the URL.
		{"URL password that breaks the URL", "redis redis://:{env.HARDENING_TEST_RAW_PASSWORD}@127.0.0.1:6379/0", "redis: the URL's password {env.HARDENING_TEST_RAW_PASSWORD} does not fit in the URL as it is: percent-encode it (@ %40, : %3A, / %2F, ? %3F, # %23, % %25, space %20), or leave it out of the URL and give password {env.HARDENING_TEST_RAW_PASSWORD}"},
		{"key prefix from an empty placeholder", "redis redis://127.0.0.1:6379/0 {\n\t\t\tkey_prefix {env.HARDENING_TEST_UNSET_APP}\n\t\t}", "redis: key_prefix {env.HARDENING_TEST_UNSET_APP} is empty once resolved; set the variable, or leave key_prefix out (hardening:)"},
		{"key prefix with a space once resolved", "redis redis://127.0.0.1:6379/0 {\n\t\t\tkey_prefix {env.HARDENING_TEST_SPACED}\n\t\t}", `key_prefix "my app:" (from {env.HARDENING_TEST_SPACED}): expected at most 64 characters without braces or spaces`},
		{"sentinel password from an empty placeholder", "redis {\n\t\t\tsentinel m 127.0.0.1:26379\n\t\t\tsentinel_password {env.HARDENING_TEST_UNSET_PASSWORD}\n\t\t}", "redis: sentinel_password {env.HARDENING_TEST_UNSET_PASSWORD} is empty once resolved"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("HARDENING_TEST_BAD_URL", "http://u:"+goldenSecret+"@h:1")
			t.Setenv("HARDENING_TEST_QUERY_URL", "redis://127.0.0.1:6379/0?password="+goldenSecret)
			t.Setenv("HARDENING_TEST_RAW_PASSWORD", "p@ss/"+goldenSecret+"#x")
			t.Setenv("HARDENING_TEST_SPACED", "my app:")
			_, err := testcaddy.TryStartCaddy(t, "{\n\thardening {\n\t\tenvironment development\n\t\t"+tc.redis+"\n\t}\n}\n")
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "redis: redis:") {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
			if strings.Contains(err.Error(), goldenSecret) {
				t.Fatalf("the error shows the password: %v", err)
			}
		})
	}
}

func TestAccessorsForModules(t *testing.T) {
	r := testenv.StartRedis(t)
	c := testcaddy.StartCaddy(t, fmt.Sprintf("{\n\thardening {\n\t\tredis %s\n\t}\n}\n", r.URL(0)))
	app := activeApp(t)
	if app.KeyPrefix() != "hardening:" {
		t.Fatalf("default key prefix %q", app.KeyPrefix())
	}
	if len(app.Findings()) != 0 {
		t.Fatalf("findings on a loopback Redis in production: %v", app.Findings())
	}
	if err := c.Load(fmt.Sprintf("{\n\thardening {\n\t\tenvironment staging\n\t\tredis %s {\n\t\t\tkey_prefix edge:\n\t\t\tpassword literal\n\t\t}\n\t}\n}\n", r.URL(0))); err != nil {
		t.Fatal(err)
	}
	app = activeApp(t)
	if app.KeyPrefix() != "edge:" {
		t.Fatalf("key prefix %q, want edge:", app.KeyPrefix())
	}
	if f := app.Findings(); len(f) != 1 || f[0].Code != "redis.literal_password" || f[0].Config != "apps.hardening.redis.password" {
		t.Fatalf("findings %+v, want one redis.literal_password at apps.hardening.redis.password", f)
	}
}

// loadFailingAfterStart loads config 16 times with one more site on a port the test holds, so
// that every load fails when Caddy starts that server's listener. Caddy starts apps in random
// order: that ours never started before the failure is a chance of about 1 in 65,000.
func loadFailingAfterStart(t *testing.T, c *testcaddy.Caddy, config, addr string) {
	t.Helper()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	bad := config + fmt.Sprintf("http://%s {\n\tbind 127.0.0.1\n\trespond \"never\"\n}\n", busy.Addr())
	for i := 0; i < 16; i++ {
		if err := c.Load(bad); err == nil || !strings.Contains(err.Error(), "address already in use") {
			t.Fatalf("load %d: %v, want address already in use", i, err)
		}
	}
	waitAnswering(t, addr) // a failed configuration's server can take one connection as it stops
}

// TestRedisStartupCheckOfADroppedClientSaysNothing: a configuration whose load failed closes
// its new Redis client; the start-up check still in flight logged "redis unreachable at
// startup ... client is closed" about a Redis that was up, for a configuration that never
// served.
func TestRedisStartupCheckOfADroppedClientSaysNothing(t *testing.T) {
	r := testenv.StartRedis(t)
	client := redis.NewClient(&redis.Options{Addr: r.Addr})
	_ = client.Close()
	core, logs := observer.New(zapcore.DebugLevel)
	pingOnce(&sharedRedis{client: client}, zap.New(core))
	if logs.Len() != 0 {
		t.Fatalf("the check of a closed client logged %v", logs.All())
	}
}

// TestRedisAddressListsFromOnePlaceholder: `sentinel <master> {env.VAR}` and `cluster
// {env.VAR}` take several addresses from one variable, separated by spaces or commas, as
// `ip_classes` does; a deployment that keeps its Redis nodes in one variable
// (REDIS_SENTINELS="10.0.0.1:26379,10.0.0.2:26379") was refused with `sentinel address
// "...,...": expected host:port`.
func TestRedisAddressListsFromOnePlaceholder(t *testing.T) {
	master := testenv.StartRedis(t)
	sentinel := testenv.StartSentinel(t, master, "mymaster")
	t.Setenv("HARDENING_TEST_SENTINELS", fmt.Sprintf("%s, 127.0.0.1:%d", sentinel.Addr, testenv.FreePort(t)))
	testcaddy.StartCaddy(t, "{\n\thardening {\n\t\tenvironment development\n\t\tredis {\n\t\t\tsentinel mymaster {env.HARDENING_TEST_SENTINELS}\n\t\t}\n\t}\n}\n")
	app := activeApp(t)
	if got := app.redis.opts.SentinelAddrs; len(got) != 2 || got[0] != sentinel.Addr {
		t.Fatalf("sentinel addresses %q, want the two of the variable", got)
	}
	if err := app.RedisClient().Ping(context.Background()).Err(); err != nil {
		t.Fatalf("ping through the sentinels: %v", err)
	}

	t.Setenv("HARDENING_TEST_NODES", "10.0.0.1:6379,10.0.0.2:6379 10.0.0.3:6379")
	o := (&RedisConfig{Cluster: []string{"{env.HARDENING_TEST_NODES}", "10.0.0.4:6379"}}).options(caddy.NewReplacer())
	if got := strings.Join(o.ClusterAddrs, " "); got != "10.0.0.1:6379 10.0.0.2:6379 10.0.0.3:6379 10.0.0.4:6379" {
		t.Fatalf("cluster addresses %q", got)
	}
}

// TestDetectionBoundsInJSONAsInCaddyfile: the JSON config (and the admin API's PATCH) refuses
// the max_tracked the Caddyfile refuses: under 64, or over 100000000, which bounds nothing an
// attacker grows (one entry per client address).
func TestDetectionBoundsInJSONAsInCaddyfile(t *testing.T) {
	c := testcaddy.StartCaddy(t, "")
	for _, n := range []string{"10", "1000000000000"} {
		err := c.LoadJSON(`{"apps": {"hardening": {"detection": {"max_tracked": ` + n + `}}}}`)
		if err == nil || !strings.Contains(err.Error(), "detection: max_tracked "+n+": expected 64 to 100000000") {
			t.Errorf("max_tracked %s: err = %v", n, err)
		}
	}
	if err := c.LoadJSON(`{"apps": {"hardening": {"detection": {"max_tracked": 64}}}}`); err != nil {
		t.Fatal(err)
	}
	// Was accepted and left no probe path at all: the Caddyfile's probe_paths_replace needs one.
	err := c.LoadJSON(`{"apps": {"hardening": {"detection": {"probe_paths_replace": true}}}}`)
	if err == nil || !strings.Contains(err.Error(), "detection: probe_paths_replace replaces the built-in probe paths with probe_paths, and there are none") {
		t.Errorf("probe_paths_replace without probe_paths: err = %v", err)
	}
}

// TestUnclosedSecretPlaceholderInJSONIsRefused: a password written "{env.REDIS_PASSWORD"
// (the brace not closed) was accepted, and that text was sent to Redis as the password; the
// Caddyfile refuses it at its line, JSON at load.
func TestUnclosedSecretPlaceholderInJSONIsRefused(t *testing.T) {
	c := testcaddy.StartCaddy(t, "")
	err := c.LoadJSON(`{"apps": {"hardening": {"environment": "development", "redis": {"url": "redis://127.0.0.1:1", "password": "{env.REDIS_PASSWORD"}}}}`)
	if err == nil || !strings.Contains(err.Error(), "redis: password: the placeholder {env.REDIS_PASSWORD is not closed") {
		t.Errorf("unclosed password placeholder: err = %v", err)
	}
	err = c.LoadJSON(`{"apps": {"hardening": {"environment": "development", "redis": {"sentinel": {"master": "{env.REDIS_MASTER", "addresses": ["127.0.0.1:1"]}}}}}`)
	if err == nil || !strings.Contains(err.Error(), "redis: sentinel: the master name's placeholder {env.REDIS_MASTER is not closed") {
		t.Errorf("unclosed master placeholder: err = %v", err)
	}
}

// TestRedisTLSMistakesAtStartupSaySo: a TLS mismatch or an untrusted certificate was logged as
// "redis unreachable at startup" with only "EOF", "context deadline exceeded" or the x509
// error: the server answered, and the fix is in the configuration. Each now says what went
// wrong and what to change.
func TestRedisTLSMistakesAtStartupSaySo(t *testing.T) {
	files := testenv.WriteTLSFiles(t)
	tlsPort := testenv.FreePort(t)
	r := testenv.StartRedis(t, "--tls-port", strconv.Itoa(tlsPort), "--tls-cert-file", files.Cert,
		"--tls-key-file", files.Key, "--tls-ca-cert-file", files.CA, "--tls-auth-clients", "no")
	c := testcaddy.StartCaddy(t, "{\n\tadmin off\n}\n")
	// The startup ping waits dial_timeout + read_timeout + 500 ms (1.1 s by default). A
	// loaded machine took longer over a TLS handshake that the server does answer, and the
	// ping's deadline, not the server, ended it: "did not complete the TLS handshake" where
	// the certificate was refused (1 of 10 runs with three CPU burners on two cores). Where
	// the server answers, the timeouts are generous; only the plain port, which never
	// answers a handshake, keeps short ones, since its diagnosis is that deadline.
	const answers = "\t\t\tdial_timeout 10s\n\t\t\tread_timeout 10s\n"
	for _, tc := range []struct{ name, redis, want string }{
		{"plain client, TLS port", fmt.Sprintf("redis://127.0.0.1:%d/0 {\n%s\t\t}", tlsPort, answers), "redis closed the connection at startup, at 127.0.0.1:" + strconv.Itoa(tlsPort) + ", without an answer: a port that serves TLS only"},
		{"TLS client, plain port", fmt.Sprintf("rediss://%s/0 {\n\t\t\tdial_timeout 200ms\n\t\t\tread_timeout 200ms\n\t\t}", r.Addr), "redis did not complete the TLS handshake at startup"},
		{"untrusted certificate", fmt.Sprintf("rediss://127.0.0.1:%d/1 {\n%s\t\t}", tlsPort, answers), "redis's TLS certificate was refused at startup"},
		{"another name", fmt.Sprintf("rediss://127.0.0.1:%d/2 {\n%s\t\t\ttls {\n\t\t\t\tca_file %s\n\t\t\t\tserver_name other.example\n\t\t\t}\n\t\t}", tlsPort, answers, files.CA), "redis's TLS certificate was refused at startup"},
	} {
		if err := c.Load(fmt.Sprintf("{\n\tadmin off\n\thardening {\n\t\tenvironment development\n\t\tredis %s\n\t}\n}\n", tc.redis)); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		testenv.WaitFor(t, 30*time.Second, tc.name+": "+tc.want, func() bool {
			return len(testenv.Filter(c.Logs(), func(e testenv.LogEntry) bool { return strings.HasPrefix(e.Msg(), tc.want) })) > 0
		})
	}
	for _, e := range c.Logs() {
		if strings.HasPrefix(e.Msg(), "redis unreachable at startup") {
			t.Fatalf("a TLS mistake logged as unreachable: %v", e)
		}
	}
	// A good configuration of the same server connects.
	if err := c.Load(fmt.Sprintf("{\n\tadmin off\n\thardening {\n\t\tenvironment development\n\t\tredis rediss://127.0.0.1:%d/3 {\n%s\t\t\ttls {\n\t\t\t\tca_file %s\n\t\t\t}\n\t\t}\n\t}\n}\n", tlsPort, answers, files.CA)); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 30*time.Second, "redis connected", func() bool {
		return len(testenv.Filter(c.Logs(), func(e testenv.LogEntry) bool { return e.Msg() == "redis connected" })) > 0
	})
}
