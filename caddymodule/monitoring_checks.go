package caddymodule

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"golang.org/x/net/http/httpguts"

	"github.com/swarmsec/caddy-hardening/internal/redisconn"
	"github.com/swarmsec/caddy-hardening/monitor"
)

// The check types.
const (
	checkRedis    = "redis"
	checkPostgres = "postgres"
	checkHTTP     = "http"
	checkTCP      = "tcp"
	checkWorker   = "worker"
)

// minCheckInterval protects dependencies from a mistyped interval (1ms for 1m).
const minCheckInterval = 100 * time.Millisecond

// maxCheckInterval bounds a check's interval: a check run less often says nothing about the
// dependency now, and an interval near Go's longest duration wrapped negative once its ±10%
// jitter was added, so the check ran back to back in a loop.
const maxCheckInterval = time.Hour

var checkTypes = map[string]string{
	checkRedis:    "PING (every master of a Cluster); the hardening app's Redis unless `redis` gives a URL",
	checkPostgres: "SELECT 1 on one kept connection (SELECT pg_is_in_recovery() with a role)",
	checkHTTP:     "one request; expected status and optional body text; TLS verified",
	checkTCP:      "a TCP connection",
	checkWorker:   "a Celery-compatible queue over Redis: LLEN backlog and/or a heartbeat key's age",
}

// MonitorCheck is one dependency check. Which fields apply depends on Type (a field of another
// type is refused). String fields accept runtime placeholders (`{env.DATABASE_URL}`,
// `{file./run/secrets/db}`), resolved at load; prefer them to the Caddyfile's `{$VAR}`, which
// puts the secret in the JSON config.
type MonitorCheck struct {
	// Type is redis, postgres, http, tcp or worker.
	Type string `json:"type"`

	// Name identifies the check in /health ("<name>:responseTime"), logs and metrics.
	// Default: the type.
	Name string `json:"name,omitempty"`

	// Critical makes /ready answer 503 while the dependency is down. Default: false (a down
	// dependency turns /health to warn only).
	Critical bool `json:"critical,omitempty"`

	// Interval between two runs, with ±10% jitter; at least 100ms. Default: 10s.
	Interval caddy.Duration `json:"interval,omitempty"`

	// Timeout of one run; shorter than Interval. Default: 2s (half the interval if shorter).
	Timeout caddy.Duration `json:"timeout,omitempty"`

	// FailuresBeforeDown is how many consecutive failures mark the dependency down; one
	// success marks it up. Until its first success a dependency counts as down. 1 to 1000.
	// Default: 3.
	FailuresBeforeDown int `json:"failures_before_down,omitempty"`

	// Redis is the URL (redis://, rediss://, unix://) of the server a redis or worker check
	// talks to. Default: the hardening app's shared client (an error when there is none).
	Redis string `json:"redis,omitempty"`

	// DSN is the PostgreSQL connection string (URL or keyword/value) of a postgres check.
	DSN string `json:"dsn,omitempty"`

	// Role is what a postgres check requires of the server, asked with SELECT
	// pg_is_in_recovery() on the check's connection within its timeout: primary (not in
	// recovery: it takes writes; a hot standby or a demoted primary after a failover fails
	// the check), standby (in recovery: a read replica; a promoted one fails), or any.
	// Default: any (SELECT 1 only).
	Role string `json:"role,omitempty"`

	// URL of an http check: http:// or https://. TLS certificates are always verified.
	URL string `json:"url,omitempty"`

	// Method of an http check, in capitals (GET, HEAD, POST...). Default: GET.
	Method string `json:"method,omitempty"`

	// Expect lists the accepted statuses of an http check: codes (200) or classes (2xx).
	// Redirects are not followed. Default: 2xx.
	Expect []string `json:"expect,omitempty"`

	// BodyContains is text the first 64 KiB of an http check's response must contain; refused
	// with method HEAD (a HEAD answer has no body, so every run would fail).
	BodyContains string `json:"body_contains,omitempty"`

	// Headers are sent with an http check's request (Host, Authorization, ...); their values
	// are secrets to the outputs.
	Headers map[string]string `json:"headers,omitempty"`

	// CAFile is a PEM file of roots an https check trusts instead of the system's.
	CAFile string `json:"ca_file,omitempty"`

	// Address is the host:port a tcp check dials.
	Address string `json:"address,omitempty"`

	// Queue is the Redis list a worker check measures with LLEN (Celery's default queue is
	// `celery`).
	Queue string `json:"queue,omitempty"`

	// MaxBacklog is the longest acceptable queue. Default: 0, observed only.
	MaxBacklog int64 `json:"max_backlog,omitempty"`

	// OnBacklog is what a backlog over MaxBacklog reports: warn (the worker stays up) or fail
	// (counts as a failure). Default: warn.
	OnBacklog string `json:"on_backlog,omitempty"`

	// HeartbeatKey is a Redis key workers refresh with the current time (Unix seconds or
	// RFC 3339); missing, older than MaxAge, or more than MaxAge in the future (milliseconds
	// written as seconds) fails the check.
	HeartbeatKey string `json:"heartbeat_key,omitempty"`

	// MaxAge is the oldest acceptable heartbeat. Default: 60s.
	MaxAge caddy.Duration `json:"max_age,omitempty"`
}

func (c *MonitorCheck) name() string {
	if c.Name != "" {
		return c.Name
	}
	return c.Type
}

// maxFailuresBeforeDown bounds failures_before_down, in the Caddyfile and in JSON alike.
const maxFailuresBeforeDown = 1000

// validate checks what can be checked before placeholders are resolved.
func (c *MonitorCheck) validate() error {
	if _, ok := checkTypes[c.Type]; !ok {
		return fmt.Errorf("monitoring: unknown check type %q; expected one of: redis, postgres, http, tcp, worker", c.Type)
	}
	name := c.name()
	if !validCheckName(name) {
		return fmt.Errorf("monitoring: check name %q: use letters, digits, '_', '-' and '.'", name)
	}
	for _, f := range []struct {
		field string
		set   bool
		types []string
	}{
		{"redis", c.Redis != "", []string{checkRedis, checkWorker}},
		{"dsn", c.DSN != "", []string{checkPostgres}},
		{"role", c.Role != "", []string{checkPostgres}},
		{"url", c.URL != "", []string{checkHTTP}},
		{"method", c.Method != "", []string{checkHTTP}},
		{"expect", len(c.Expect) > 0, []string{checkHTTP}},
		{"body_contains", c.BodyContains != "", []string{checkHTTP}},
		{"headers", len(c.Headers) > 0, []string{checkHTTP}},
		{"ca_file", c.CAFile != "", []string{checkHTTP}},
		{"address", c.Address != "", []string{checkTCP}},
		{"queue", c.Queue != "", []string{checkWorker}},
		{"max_backlog", c.MaxBacklog != 0, []string{checkWorker}},
		{"on_backlog", c.OnBacklog != "", []string{checkWorker}},
		{"heartbeat_key", c.HeartbeatKey != "", []string{checkWorker}},
		{"max_age", c.MaxAge != 0, []string{checkWorker}},
	} {
		// A field of another type would be ignored, with nothing said.
		if f.set && !slices.Contains(f.types, c.Type) {
			return fmt.Errorf("monitoring: check %s: %s applies to %s checks only, not %s", name, f.field, strings.Join(f.types, " and "), c.Type)
		}
	}
	interval, timeout := time.Duration(c.Interval), time.Duration(c.Timeout)
	if interval == 0 {
		interval = monitor.DefaultInterval
	}
	switch {
	case c.Interval < 0 || c.Timeout < 0:
		return fmt.Errorf("monitoring: check %s: interval and timeout must be positive", name)
	case interval < minCheckInterval:
		return fmt.Errorf("monitoring: check %s: interval %s is shorter than %s: a check that often is load on the dependency, not a health signal", name, interval, minCheckInterval)
	case interval > maxCheckInterval:
		return fmt.Errorf("monitoring: check %s: interval %s is longer than %s: a check run less often says nothing about the dependency now", name, interval, maxCheckInterval)
	case timeout != 0 && timeout >= interval:
		return fmt.Errorf("monitoring: check %s: timeout %s must be shorter than interval %s", name, timeout, interval)
	case c.FailuresBeforeDown < 0 || c.FailuresBeforeDown > maxFailuresBeforeDown:
		return fmt.Errorf("monitoring: check %s: failures_before_down %d: expected 1 to %d", name, c.FailuresBeforeDown, maxFailuresBeforeDown)
	case c.Method != "" && !validMethod(c.Method):
		return fmt.Errorf("monitoring: check %s: method: expected an HTTP method such as GET or HEAD, got %q", name, c.Method)
	}
	isPh := isPlaceholder // a placeholder is checked again once Provision resolves it
	switch c.Type {
	case checkPostgres:
		if c.DSN == "" {
			return fmt.Errorf("monitoring: postgres check %s needs a connection string (dsn)", name)
		}
		if !isPh(c.DSN) {
			if _, err := monitor.NewPostgresChecker(c.DSN); err != nil {
				return fmt.Errorf("monitoring: check %s: %v", name, err)
			}
		}
		if !validPostgresRole(c.Role) {
			return fmt.Errorf("monitoring: check %s: role: expected primary, standby or any, got %q", name, c.Role)
		}
	case checkHTTP:
		if !isPh(c.URL) {
			if _, err := monitor.ParseCheckURL(c.URL); err != nil {
				return fmt.Errorf("monitoring: check %s: %v", name, err)
			}
		}
		// A HEAD response has no body: the check would fail on every run.
		if c.BodyContains != "" && strings.EqualFold(c.Method, http.MethodHead) {
			return forOption("body", fmt.Errorf("monitoring: check %s: body: a HEAD response has no body, so the text is never found; use method GET (the default) or drop body", name))
		}
		for _, e := range c.Expect {
			if _, err := monitor.ParseStatusRange(e); err != nil {
				return fmt.Errorf("monitoring: check %s: expect: %v", name, err)
			}
		}
		// Go's client refuses to send such a header, so the check would fail on every run
		// and report the dependency down for a mistake in the configuration.
		for _, k := range slices.Sorted(maps.Keys(c.Headers)) {
			if !httpguts.ValidHeaderFieldName(k) {
				return fmt.Errorf("monitoring: check %s: header %q: expected a field name (letters, digits and !#$%%&'*+-.^_`|~)", name, k)
			}
			if ph, open := unclosedSecretPlaceholder(c.Headers[k]); open {
				return fmt.Errorf("monitoring: check %s: header %s: the placeholder %s is not closed (it would be sent as written); expected %s}", name, k, ph, ph)
			}
			if !httpguts.ValidHeaderFieldValue(c.Headers[k]) {
				return fmt.Errorf("monitoring: check %s: header %s: the value holds a control character (a line break?); expected one line of text", name, k)
			}
		}
	case checkTCP:
		if !isPh(c.Address) {
			if err := checkHostPort(c.Address); err != nil {
				return fmt.Errorf("monitoring: check %s: %v", name, err)
			}
		}
	case checkWorker:
		if c.Queue == "" && c.HeartbeatKey == "" {
			return fmt.Errorf("monitoring: worker check %s needs a queue, a heartbeat_key or both", name)
		}
		if c.OnBacklog != "" && c.OnBacklog != "warn" && c.OnBacklog != "fail" {
			return fmt.Errorf("monitoring: check %s: on_backlog: expected warn or fail, got %q", name, c.OnBacklog)
		}
		if c.MaxBacklog < 0 || c.MaxAge < 0 {
			return fmt.Errorf("monitoring: check %s: max_backlog and max_age must be positive", name)
		}
		// Each bound belongs to what it bounds: without it, the line would be ignored with
		// nothing said (a backlog that is not read, a heartbeat that is not checked).
		switch {
		case c.MaxBacklog != 0 && c.Queue == "":
			return forOption("max_backlog", fmt.Errorf("monitoring: check %s: max_backlog bounds the length of queue, and there is none; expected queue <list> beside it", name))
		case c.OnBacklog != "" && c.MaxBacklog == 0:
			return forOption("on_backlog", fmt.Errorf("monitoring: check %s: on_backlog says what a backlog over max_backlog reports, and there is no max_backlog; expected max_backlog <n> beside it", name))
		case c.MaxAge != 0 && c.HeartbeatKey == "":
			return forOption("max_age", fmt.Errorf("monitoring: check %s: max_age bounds the age of heartbeat_key, and there is none; expected heartbeat_key <key> beside it", name))
		}
	}
	if c.Redis != "" && !isPh(c.Redis) {
		if err := redisconn.CheckURL(c.Redis); err != nil {
			return fmt.Errorf("monitoring: check %s: %s", name, redisconn.Redact(err.Error()))
		}
	}
	return nil
}

// validPostgresRole reports whether role is a postgres check's role; empty is any.
func validPostgresRole(role string) bool {
	switch role {
	case "", "any", string(monitor.RolePrimary), string(monitor.RoleStandby):
		return true
	}
	return false
}

func validCheckName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' || r == '.') {
			return false
		}
	}
	return true
}

func checkHostPort(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		return fmt.Errorf("expected host:port, got %q", addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("expected a port from 1 to 65535 in %q", addr)
	}
	return nil
}

// checkPool keeps each distinct check running across config reloads: a reload that keeps a
// check's configuration keeps its schedule and history; the last configuration using it
// stops it. A changed check is a new one, which resumes the old one's result (liveChecks).
var checkPool = caddy.NewUsagePool()

type pooledCheck struct{ check *monitor.Check }

func (p *pooledCheck) Destruct() error {
	dropCheck(p.check)
	p.check.Stop()
	forgetCheckSeries(p.check.Config())
	return nil
}

// acquireCheck resolves placeholders and returns the check for this configuration: the running
// one when a running configuration has it, else a new one that starts with the configuration
// (App.OnStart; a configuration that is only validated never probes anything).
func acquireCheck(c *MonitorCheck, app *App, repl *caddy.Replacer) (*monitor.Check, string, error) {
	r := *c
	r.Name = c.name()
	for _, f := range []struct {
		field string
		value *string
	}{
		{"redis", &r.Redis}, {"dsn", &r.DSN}, {"url", &r.URL}, {"address", &r.Address}, {"ca_file", &r.CAFile},
		{"queue", &r.Queue}, {"heartbeat_key", &r.HeartbeatKey}, {"body_contains", &r.BodyContains},
	} {
		given := *f.value
		*f.value = repl.ReplaceKnown(given, "")
		// An unset variable would turn the field off: a redis check would probe the app's
		// Redis instead of the one named, a worker check would skip its queue.
		if given != "" && *f.value == "" {
			return nil, "", fmt.Errorf("monitoring: check %s: %s %s is empty once resolved; set the variable (or the file)", r.Name, f.field, given)
		}
	}
	if len(c.Headers) > 0 {
		r.Headers = make(map[string]string, len(c.Headers))
		for k, v := range c.Headers {
			r.Headers[k] = repl.ReplaceKnown(v, "")
		}
	}
	if err := r.validate(); err != nil { // again, with the values resolved
		return nil, "", err
	}
	useApp := (r.Type == checkRedis || r.Type == checkWorker) && r.Redis == ""
	if useApp && app.RedisClient() == nil {
		return nil, "", fmt.Errorf("monitoring: %s check %s uses the hardening app's Redis, and none is configured: configure redis in the hardening global option or give the check a redis URL", r.Type, r.Name)
	}
	raw, err := json.Marshal(r)
	if err != nil {
		return nil, "", err
	}
	sum := sha256.Sum256(raw)
	key := "monitor:" + hex.EncodeToString(sum[:])
	if useApp {
		key += ":" + app.redisKey // the same settings, the same shared client
	}
	val, _, err := checkPool.LoadOrNew(key, func() (caddy.Destructor, error) {
		check, err := newCheck(&r, app)
		if err != nil {
			return nil, err
		}
		adoptCheck(check)
		return &pooledCheck{check: check}, nil
	})
	if err != nil {
		return nil, "", err
	}
	return val.(*pooledCheck).check, key, nil
}

// newCheck builds the checker of a resolved check configuration.
func newCheck(r *MonitorCheck, app *App) (*monitor.Check, error) {
	cfg := monitor.Config{Name: r.Name, Type: r.Type, Critical: r.Critical, Interval: time.Duration(r.Interval),
		Timeout: time.Duration(r.Timeout), FailuresBeforeDown: r.FailuresBeforeDown, ComponentType: "component"}
	timeout := time.Duration(r.Timeout)
	if timeout == 0 {
		timeout = monitor.DefaultTimeout
	}
	var checker monitor.Checker
	switch r.Type {
	case checkRedis, checkWorker:
		client, conn, owned, target, err := checkRedisClient(r, app, timeout)
		if err != nil {
			return nil, err
		}
		cfg.Target, cfg.ComponentType = target, "datastore"
		cfg.Secrets = append(cfg.Secrets, redisSecrets(r.Redis)...)
		if r.Type == checkRedis {
			checker = monitor.RedisChecker{Client: client, Conn: conn}
		} else {
			cfg.ComponentType = "component"
			maxAge := time.Duration(r.MaxAge)
			if maxAge == 0 {
				maxAge = time.Minute
			}
			backlog := monitor.Warn
			if r.OnBacklog == "fail" {
				backlog = monitor.Fail
			}
			checker = monitor.WorkerChecker{Client: client, Conn: conn, Queue: r.Queue, MaxBacklog: r.MaxBacklog,
				BacklogStatus: backlog, HeartbeatKey: r.HeartbeatKey, MaxAge: maxAge}
		}
		if owned {
			checker = closingChecker{Checker: checker, client: client}
		}
	case checkPostgres:
		p, err := monitor.NewPostgresChecker(r.DSN)
		if err != nil {
			return nil, fmt.Errorf("monitoring: check %s: %v", r.Name, err)
		}
		cfg.Target, cfg.ComponentType, cfg.Secrets = p.Target(), "datastore", p.Secrets()
		if r.Role != "any" {
			p.Role = monitor.PostgresRole(r.Role) // validated: "", primary or standby
		}
		checker = p
	case checkHTTP:
		opts := monitor.HTTPOptions{Method: r.Method, URL: r.URL, BodyContains: r.BodyContains, CAFile: r.CAFile, Header: http.Header{}}
		for _, e := range r.Expect {
			sr, _ := monitor.ParseStatusRange(e) // validated
			opts.Expect = append(opts.Expect, sr)
		}
		for k, v := range r.Headers {
			opts.Header.Set(k, v)
			cfg.Secrets = append(cfg.Secrets, v)
		}
		h, err := monitor.NewHTTPChecker(opts)
		if err != nil {
			return nil, fmt.Errorf("monitoring: check %s: %v", r.Name, err)
		}
		cfg.Target = monitor.SafeTarget(r.URL)
		checker = h
	case checkTCP:
		cfg.Target = r.Address
		checker = monitor.TCPChecker{Address: r.Address}
	}
	check, err := monitor.NewCheck(cfg, checker)
	if err != nil {
		return nil, err
	}
	check.OnResult = func(s monitor.State, changed bool) {
		observeCheck(s)
		if !changed {
			return
		}
		// The current default logger: a pooled check outlives the configuration that made it.
		logger := caddy.Log().Named("http.handlers.monitoring")
		fields := []zap.Field{zap.String("check", s.Name), zap.String("type", s.Type), zap.Bool("critical", s.Critical)}
		if s.Up {
			logger.Info("dependency up", fields...)
		} else {
			logger.Warn("dependency down", append(fields, zap.String("error", s.Output), zap.Int("consecutive_failures", s.ConsecutiveFailures))...)
		}
	}
	return check, nil
}

// checkRedisClient is the app's shared client, or a client of the check's own (owned: the
// check closes it), with the options it was built from.
func checkRedisClient(r *MonitorCheck, app *App, timeout time.Duration) (redis.UniversalClient, redisconn.Options, bool, string, error) {
	if r.Redis == "" {
		eps := app.redis.opts.Endpoints()
		target := "hardening app redis"
		if len(eps) > 0 {
			target = eps[0]
		}
		return app.RedisClient(), app.redis.opts, false, target, nil
	}
	opts := redisconn.Options{URL: r.Redis, DialTimeout: timeout, ReadTimeout: timeout, WriteTimeout: timeout,
		PoolSize: 2, MaxRetries: -1, ClientName: "caddy-hardening-monitor"}
	client, err := redisconn.New(opts)
	if err != nil {
		return nil, opts, false, "", fmt.Errorf("monitoring: check %s: %s", r.Name, redisconn.Redact(err.Error()))
	}
	target := ""
	if eps := opts.Endpoints(); len(eps) > 0 {
		target = eps[0]
	}
	return client, opts, true, target, nil
}

// redisSecrets is the password of a Redis URL, to redact.
func redisSecrets(raw string) []string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return nil
	}
	if pw, ok := u.User.Password(); ok && pw != "" {
		return []string{pw}
	}
	return nil
}

// closingChecker closes the check's own Redis client when the check stops.
type closingChecker struct {
	monitor.Checker
	client redis.UniversalClient
}

func (c closingChecker) Close() error { return c.client.Close() }

// literalSecrets names the fields of a check that hold a secret written in the configuration
// (a `{$VAR}` counts: it is substituted at adapt time, so the JSON config holds the value): a
// DSN or Redis URL with a password, an http check's URL with a password or a credential-like
// query parameter, and headers that carry credentials (Authorization, Cookie, and names with
// key, token, secret, password or auth in them).
func (c *MonitorCheck) literalSecrets() []string {
	var fields []string
	if c.DSN != "" && !isPlaceholder(c.DSN) {
		if p, err := monitor.NewPostgresChecker(c.DSN); err == nil && p.Secrets()[0] != "" {
			fields = append(fields, "dsn")
		}
	}
	if c.Redis != "" && !isPlaceholder(c.Redis) && len(redisSecrets(c.Redis)) > 0 {
		fields = append(fields, "redis")
	}
	if c.URL != "" && !isPlaceholder(c.URL) && urlHoldsSecret(c.URL) {
		fields = append(fields, "url")
	}
	for _, k := range sortedKeys(c.Headers) {
		if credentialName(k) && !isPlaceholder(c.Headers[k]) {
			fields = append(fields, "headers."+k)
		}
	}
	return fields
}

// credentialName reports whether a header or query parameter name says it carries a
// credential.
func credentialName(name string) bool {
	n := strings.ToLower(name)
	if n == "authorization" || n == "cookie" || n == "proxy-authorization" {
		return true
	}
	for _, w := range []string{"key", "token", "secret", "password", "passwd", "auth", "signature"} {
		if strings.Contains(n, w) {
			return true
		}
	}
	return false
}

// urlHoldsSecret reports whether a URL carries a password or a credential-like query
// parameter.
func urlHoldsSecret(raw string) bool {
	u, err := url.Parse(raw)
	if err != nil {
		return false
	}
	if u.User != nil {
		if pw, ok := u.User.Password(); ok && pw != "" {
			return true
		}
	}
	for name, vals := range u.Query() {
		for _, v := range vals {
			if credentialName(name) && v != "" && !isPlaceholder(v) {
				return true
			}
		}
	}
	return false
}

// literalSecretFix is the fix of monitoring.literal_secret for a field.
func literalSecretFix(field string) string {
	switch field {
	case "dsn":
		return "use a runtime placeholder for the DSN: {env.DATABASE_URL} or {file./run/secrets/db_url}"
	case "redis":
		return "use a runtime placeholder for the Redis URL: {env.REDIS_URL} or {file./run/secrets/redis_url}"
	case "url":
		return "use a runtime placeholder for the URL or its secret part: {env.<NAME>} (or {file./run/secrets/<name>}); better, send the credential in a header read the same way"
	case "headers.Authorization":
		return `put the token in a runtime placeholder: header Authorization "Bearer {env.<NAME>}" (or {file./run/secrets/<name>})`
	}
	return "put the value in a runtime placeholder: header " + strings.TrimPrefix(field, "headers.") + ` "{env.<NAME>}" (or {file./run/secrets/<name>})`
}

// reportLiteralSecrets records a warning finding per secret written in the configuration, at
// its full place in the JSON config (so it runs once the whole configuration is provisioned).
func (m *Monitoring) reportLiteralSecrets(ctx caddy.Context, app *App) {
	at := handlerConfigPath(ctx, m)
	if at != "" {
		at += "."
	}
	for i, c := range m.Checks {
		for _, field := range c.literalSecrets() {
			_ = app.Report(Finding{Code: "monitoring.literal_secret", Severity: Warning, Module: "http.handlers.monitoring",
				Config:  fmt.Sprintf("%schecks.%d.%s", at, i, field),
				Message: fmt.Sprintf("check %s: a password or token is written in the configuration: it is kept in the JSON config, the admin API's GET /config/ and autosave.json (a Caddyfile {$VAR} is substituted before that, so it counts as written)", c.name()),
				Fix:     literalSecretFix(field)},
				Production, Staging)
		}
	}
}
