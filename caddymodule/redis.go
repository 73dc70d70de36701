package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/swarmsec/caddy-hardening/internal/redisconn"
)

// RedisConfig is the Redis connection every caddy-hardening module shares. Give exactly one of
// `url` (standalone), `cluster` or `sentinel`.
//
// String fields accept Caddy's runtime placeholders, resolved at load: `{env.REDIS_PASSWORD}`,
// `{file./run/secrets/redis_password}`. Prefer them to the Caddyfile's `{$VAR}`: that is
// substituted when the Caddyfile is adapted, so the secret would be stored in the JSON config,
// the admin API's GET /config/ and autosave.json. A username or password placeholder that
// resolves to nothing (an unset variable, an empty file), in its field or in the URL, is refused
// at load; so is one in the URL whose value is not percent-encoded as a URL needs.
type RedisConfig struct {
	// URL of a standalone server: `redis://[user:password@]host:port/db`, `rediss://...`
	// (TLS), or `unix:///path/to/redis.sock`. Query options (`?dial_timeout=1s`) are refused:
	// set the fields of this object instead.
	URL string `json:"url,omitempty"`

	// Cluster lists host:port seed nodes of a Redis Cluster (no scheme, no credentials: those
	// go in username and password).
	Cluster []string `json:"cluster,omitempty"`

	// Sentinel names the master and the sentinels that watch it.
	Sentinel *SentinelConfig `json:"sentinel,omitempty"`

	// Username for ACL authentication (Redis 6+); overrides the URL's.
	Username string `json:"username,omitempty"`

	// Password; overrides the URL's. Never logged.
	Password string `json:"password,omitempty"`

	// DB selects the database (0-15); overrides the URL's. Not with cluster.
	DB *int `json:"db,omitempty"`

	// TLS turns TLS on when present (`rediss://` does too) and configures it.
	TLS *RedisTLS `json:"tls,omitempty"`

	// KeyPrefix starts every key caddy-hardening writes, so one Redis can serve several
	// applications: at most 64 characters, no spaces, no braces once its placeholders
	// ({env.APP_NAME}:) are resolved. Default: `hardening:`.
	KeyPrefix *string `json:"key_prefix,omitempty"`

	// DialTimeout bounds connecting. Default: 500ms.
	DialTimeout caddy.Duration `json:"dial_timeout,omitempty"`

	// ReadTimeout bounds waiting for a reply; modules bound their own calls tighter.
	// Default: 100ms.
	ReadTimeout caddy.Duration `json:"read_timeout,omitempty"`

	// WriteTimeout bounds sending a command. Default: 100ms.
	WriteTimeout caddy.Duration `json:"write_timeout,omitempty"`

	// PoolSize is the number of connections per node, 1 to 100000. Default: 10 per CPU
	// (go-redis).
	PoolSize int `json:"pool_size,omitempty"`

	// MaxRetries retries a command after a network error; -1 never retries. An edge prefers
	// failing over to memory quickly to retrying. Default: 1.
	MaxRetries int `json:"max_retries,omitempty"`
}

// SentinelConfig locates a master through Redis Sentinel.
type SentinelConfig struct {
	// Master is the name the sentinels monitor.
	Master string `json:"master"`

	// Addresses lists the sentinels as host:port.
	Addresses []string `json:"addresses"`

	// Username for the sentinels, when they require one.
	Username string `json:"username,omitempty"`

	// Password for the sentinels, when they require one. Never logged.
	Password string `json:"password,omitempty"`
}

// RedisTLS configures TLS to Redis. Verification is on unless insecure_skip_verify is set.
type RedisTLS struct {
	// CAFile is a PEM bundle of CAs to trust instead of the system roots.
	CAFile string `json:"ca_file,omitempty"`

	// CertFile and KeyFile are a client certificate for mutual TLS.
	CertFile string `json:"cert_file,omitempty"`
	KeyFile  string `json:"key_file,omitempty"`

	// ServerName overrides the name verified in the server's certificate.
	ServerName string `json:"server_name,omitempty"`

	// InsecureSkipVerify turns certificate verification off. Refused in production.
	InsecureSkipVerify bool `json:"insecure_skip_verify,omitempty"`
}

const (
	defaultKeyPrefix    = "hardening:"
	defaultDialTimeout  = 500 * time.Millisecond
	defaultReadTimeout  = 100 * time.Millisecond
	defaultWriteTimeout = 100 * time.Millisecond
	redisClientName     = "caddy-hardening"
)

// options resolves placeholders with repl and applies the defaults.
func (c *RedisConfig) options(repl *caddy.Replacer) redisconn.Options {
	r := func(s string) string { return repl.ReplaceKnown(s, "") }
	o := redisconn.Options{
		URL:          r(c.URL),
		Username:     r(c.Username),
		Password:     r(c.Password),
		DB:           c.DB,
		DialTimeout:  orDefault(time.Duration(c.DialTimeout), defaultDialTimeout),
		ReadTimeout:  orDefault(time.Duration(c.ReadTimeout), defaultReadTimeout),
		WriteTimeout: orDefault(time.Duration(c.WriteTimeout), defaultWriteTimeout),
		PoolSize:     c.PoolSize,
		MaxRetries:   c.MaxRetries,
		ClientName:   redisClientName,
	}
	if o.MaxRetries == 0 {
		o.MaxRetries = 1
	}
	o.ClusterAddrs = resolveList(repl, c.Cluster)
	if s := c.Sentinel; s != nil {
		o.SentinelMaster = r(s.Master)
		o.SentinelAddrs = resolveList(repl, s.Addresses)
		o.SentinelUsername, o.SentinelPassword = r(s.Username), r(s.Password)
	}
	if t := c.TLS; t != nil {
		o.TLS = true
		o.CAFile, o.CertFile, o.KeyFile = r(t.CAFile), r(t.CertFile), r(t.KeyFile)
		o.ServerName, o.InsecureSkipVerify = r(t.ServerName), t.InsecureSkipVerify
	}
	return o
}

// checkEmptyCredentials refuses a username or password given as a placeholder that resolves to
// nothing (an unset or empty variable, an empty file), as the URL, cluster and sentinel fields
// are refused: sent as no password at all, it would fall back to the URL's or to none, and a
// Redis that needs one would answer NOAUTH to every command while Caddy ran from memory.
func (c *RedisConfig) checkEmptyCredentials(o redisconn.Options) error {
	fields := []struct{ name, given, resolved string }{
		{"username", c.Username, o.Username},
		{"password", c.Password, o.Password},
	}
	if s := c.Sentinel; s != nil {
		if ph, open := unclosedSecretPlaceholder(s.Master); open {
			return fmt.Errorf("redis: sentinel: the master name's placeholder %s is not closed (it would be used as written); expected %s}", ph, ph)
		}
		fields = append(fields,
			struct{ name, given, resolved string }{"sentinel_username", s.Username, o.SentinelUsername},
			struct{ name, given, resolved string }{"sentinel_password", s.Password, o.SentinelPassword})
	}
	for _, f := range fields {
		if ph, open := unclosedSecretPlaceholder(f.given); open {
			return fmt.Errorf("redis: %s: the placeholder %s is not closed (it would be sent as written); expected %s}", f.name, ph, ph)
		}
		if f.given != "" && f.resolved == "" {
			return fmt.Errorf("redis: %s %s is empty once resolved; set the variable (or the file), or leave %s out when Redis needs none", f.name, f.given, f.name)
		}
	}
	return nil
}

// checkURLCredentials refuses a URL whose username or password is a runtime placeholder
// (redis://:{env.REDIS_PASSWORD}@host:6379/0) when that resolves to nothing, as the username
// and password fields are, and when its value does not fit in a URL as it is: an @, /, ? or #
// in it cuts the URL elsewhere (another host, a database path), which read as a wrong port or
// database, not as the password. resolved is the URL once every placeholder is replaced.
func (c *RedisConfig) checkURLCredentials(repl *caddy.Replacer, resolved string) error {
	user, password, hasPassword, ok := urlUserinfo(c.URL)
	if !ok {
		return nil
	}
	parsed, perr := url.Parse(resolved)
	for _, part := range []struct{ name, given string }{{"username", user}, {"password", password}} {
		if !isPlaceholder(part.given) {
			continue
		}
		value := repl.ReplaceKnown(part.given, "")
		if value == "" {
			return fmt.Errorf("redis: the URL's %s %s is empty once resolved; set the variable (or the file), or leave it out of the URL when Redis needs none", part.name, part.given)
		}
		var got string
		if perr == nil && parsed.User != nil {
			got = parsed.User.Username()
			if pw, set := parsed.User.Password(); part.name == "password" {
				got = pw
			} else if set && !hasPassword { // one placeholder for user:password
				got += ":" + pw
			}
		}
		if want, err := url.PathUnescape(value); perr != nil || err != nil || got != want {
			return fmt.Errorf("redis: the URL's %s %s does not fit in the URL as it is: percent-encode it (@ %%40, : %%3A, / %%2F, ? %%3F, # %%23, %% %%25, space %%20), or leave it out of the URL and give %s %s",
				part.name, part.given, part.name, part.given)
		}
	}
	return nil
}

// urlUserinfo splits the user:password@ of a URL as written, placeholders included (url.Parse
// refuses braces there): the first colon outside braces separates them; hasPassword is false
// without one (a single placeholder may then hold both).
func urlUserinfo(raw string) (user, password string, hasPassword, ok bool) {
	_, rest, found := strings.Cut(raw, "://")
	at := strings.LastIndex(rest, "@")
	if !found || at < 0 {
		return "", "", false, false
	}
	info, depth := rest[:at], 0
	for i, r := range info {
		switch r {
		case '{':
			depth++
		case '}':
			depth--
		case ':':
			if depth == 0 {
				return info[:i], info[i+1:], true, true
			}
		}
	}
	return info, "", false, true
}

// keyPrefix resolves the key prefix's placeholders ({env.APP}:) and checks the result. A
// placeholder that resolves to nothing is refused: the keys would go without a prefix, among
// those of every other application of that Redis.
func (c *RedisConfig) keyPrefix(repl *caddy.Replacer) (string, error) {
	if c.KeyPrefix == nil {
		return defaultKeyPrefix, nil
	}
	given := *c.KeyPrefix
	p := repl.ReplaceKnown(given, "")
	if p == given {
		return p, checkKeyPrefix(p, "")
	}
	if p == "" {
		return "", fmt.Errorf("redis: key_prefix %s is empty once resolved; set the variable, or leave key_prefix out (%s)", given, defaultKeyPrefix)
	}
	return p, checkKeyPrefix(p, given)
}

// checkKeyPrefix checks a key prefix; from is what it was resolved from, if anything.
func checkKeyPrefix(p, from string) error {
	if len(p) > 64 || strings.ContainsAny(p, "{} \t\r\n") {
		if from != "" {
			from = " (from " + from + ")"
		}
		return fmt.Errorf("key_prefix %q%s: expected at most 64 characters without braces or spaces (braces would break Cluster hash tags; {env.*} and {file.*} are resolved at load)", p, from)
	}
	return nil
}

// runtimePlaceholder is an {env.*} or {file.*} placeholder, resolved when Caddy loads the config.
var runtimePlaceholder = regexp.MustCompile(`\{(env|file)\.[^{}]+\}`)

// withoutRuntimePlaceholders drops the {env.*} and {file.*} placeholders of s, to check what is
// written around them before they are resolved.
func withoutRuntimePlaceholders(s string) string {
	return runtimePlaceholder.ReplaceAllString(s, "")
}

func orDefault(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// literalSecrets names the JSON fields that hold a password as a literal value rather than a
// runtime placeholder.
func (c *RedisConfig) literalSecrets() []string {
	var fields []string
	literal := func(s string) bool { return s != "" && !isPlaceholder(s) }
	if literal(c.Password) {
		fields = append(fields, "password")
	}
	if c.Sentinel != nil && literal(c.Sentinel.Password) {
		fields = append(fields, "sentinel.password")
	}
	// The URL's password part as written: a placeholder elsewhere in it (the host) does not
	// make a password beside it any less written.
	if _, password, _, ok := urlUserinfo(c.URL); ok && literal(password) {
		fields = append(fields, "url")
	}
	return fields
}

func init() {
	redis.SetLogger(redisLogger{})
}

// redisLogger sends go-redis's own messages (dial failures, sentinel master changes) to Caddy's
// log as JSON at DEBUG, instead of plain lines on stderr. Modules log the events that matter
// (fallback to memory, recovery) themselves. go-redis's logger is process-wide, so messages of
// other plugins that use go-redis come here too; hence the neutral logger name.
type redisLogger struct{}

func (redisLogger) Printf(_ context.Context, format string, v ...any) {
	caddy.Log().Named("go-redis").Debug(redisconn.Redact(fmt.Sprintf(format, v...)))
}

// redisPool shares one client per distinct configuration across config reloads: on
// `caddy reload` the new config takes a reference before the old one drops its own, so the
// connections stay open; the last user closes the client.
var redisPool = caddy.NewUsagePool()

// sharedRedis is a pooled client.
type sharedRedis struct {
	client redis.UniversalClient
	opts   redisconn.Options

	// The startup check (pingOnce) of a new client: checked is closed when it ended, and
	// startupErr is what it found wrong (nil when Redis answered and is configured as it is).
	checked    chan struct{}
	startupErr error
	checkedAt  time.Time
}

// Destruct closes the client when its last user is gone.
func (s *sharedRedis) Destruct() error { return s.client.Close() }

// startupReported reports whether a failure a module meets now was already told by the
// startup check's warning: the check failed, and ended (or ends, waiting for it at most its
// own timeout, up to 2 s) less than startupGrace ago. A module that fails at startup on the same
// misconfiguration (shared detections: the same wrong password) then logs at DEBUG, so the
// operator reads one warning, the check's, which names the cause, the address and the fix.
func (s *sharedRedis) startupReported() bool {
	if s.checked == nil {
		return false
	}
	// Waited for at most 2 s: the caller is a module's goroutine, which stopping Caddy waits
	// for, and a check with long timeouts (10s dial and read) would hold it 20 s.
	wait := min(s.pingTimeout(), 2*time.Second)
	select {
	case <-s.checked:
	case <-time.After(wait):
		return false
	}
	return s.startupErr != nil && time.Since(s.checkedAt) < startupGrace
}

// startupGrace is how long after the startup check a module's failure is taken as the one it
// reported: the modules' first calls come within a second of the start.
const startupGrace = 5 * time.Second

func (s *sharedRedis) pingTimeout() time.Duration {
	return s.opts.DialTimeout + s.opts.ReadTimeout + 500*time.Millisecond
}

// acquireRedis returns the pooled client for opts, creating it on first use. A new client
// pings once in the background and logs whether Redis answered: an unreachable Redis never
// stops Caddy, modules fall back to memory.
func acquireRedis(opts redisconn.Options, logger *zap.Logger) (*sharedRedis, string, error) {
	shared, key, loaded, err := loadRedis(opts)
	if err != nil {
		return nil, "", err
	}
	if !loaded {
		go pingOnce(shared, logger)
	}
	return shared, key, nil
}

// loadRedis takes a reference to the pooled client for opts, creating it (without dialling)
// on first use; loaded reports that it existed. Release it with redisPool.Delete(key).
func loadRedis(opts redisconn.Options) (shared *sharedRedis, key string, loaded bool, err error) {
	key = opts.Fingerprint()
	val, loaded, err := redisPool.LoadOrNew(key, func() (caddy.Destructor, error) {
		client, err := redisconn.New(opts)
		if err != nil {
			return nil, err
		}
		return &sharedRedis{client: client, opts: opts, checked: make(chan struct{})}, nil
	})
	if err != nil {
		return nil, "", false, err
	}
	return val.(*sharedRedis), key, loaded, nil
}

// pingOnce is the startup check of a new client: one PING, and for a URL, whether the server
// is a Cluster node. Its warning is the one message of a misconfigured Redis: what failed, at
// which address, and (field fix) what to change; the modules that meet the same failure at
// startup leave the telling to it (startupReported).
func pingOnce(s *sharedRedis, logger *zap.Logger) {
	defer func() {
		s.checkedAt = time.Now()
		if s.checked != nil {
			close(s.checked)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), s.pingTimeout())
	defer cancel()
	start := time.Now()
	err := s.client.Ping(ctx).Err()
	if err == nil && s.opts.Mode() == redisconn.Standalone {
		// A URL names one server: a Cluster node, or a read-only replica (a URL not updated
		// after a failover), answers PING and refuses what the modules do.
		if clusterEnabled(ctx, s.client) {
			err = errClusterNode
		} else if role := redisconn.ReplicaRole(ctx, s.client); role != "" {
			err = errReplica
		}
	}
	fields := []zap.Field{
		zap.String("mode", string(s.opts.Mode())),
		zap.Strings("addresses", s.opts.Endpoints()),
		zap.Bool("tls", s.opts.TLSEnabled()),
	}
	if errors.Is(err, redis.ErrClosed) {
		return // the configuration was dropped (its load failed) before Redis answered
	}
	if err == nil {
		logger.Info("redis connected", append(fields, zap.Duration("ping", time.Since(start)))...)
		return
	}
	s.startupErr = err
	at := strings.Join(s.opts.Endpoints(), ", ")
	var msg, fix string
	switch err {
	case errClusterNode:
		msg = "redis is a Cluster node at startup, at " + at + ", but is given as one server (a URL): commands on keys of other nodes' slots are refused (MOVED); modules use in-memory state for those"
		fix = redisconn.ClusterNodeFix
	case errReplica:
		msg = "redis is a read-only replica at startup, at " + at + ": it answers reads and refuses every write (READONLY); modules use in-memory state until the configuration is fixed"
		fix = "give the primary's address (or its Sentinels with sentinel, which follow a failover)"
	default:
		d := redisconn.Diagnose(err, s.opts)
		sep := " "
		if !strings.HasPrefix(d.Hint, "(") {
			sep = ", "
		}
		msg = d.Summary + " at startup, at " + at + sep + d.Hint + "; modules use in-memory state until " + startupUntil(d.Cause)
		fix = d.Fix
		if d.Cause == redisconn.UnknownMaster {
			lctx, lcancel := context.WithTimeout(context.Background(), s.pingTimeout())
			if names, lerr := redisconn.SentinelMasters(lctx, s.opts); lerr == nil {
				known := "none"
				if len(names) > 0 {
					known = strings.Join(names, ", ")
				}
				fix += "; the sentinels monitor: " + known
			}
			lcancel()
		}
	}
	logger.Warn(msg, append(fields, zap.String("error", redactSecrets(err.Error(), s.opts)), zap.String("fix", fix))...)
}

// errClusterNode is the startup check's finding that a URL names a node of a Cluster.
var errClusterNode = errors.New("the server is a Cluster node (cluster_enabled:1)")

// errReplica is the startup check's finding that a URL names a read-only replica.
var errReplica = errors.New("the server is a read-only replica (HELLO role replica)")

// clusterEnabled reports whether the server says it is a Cluster node (INFO cluster); false
// when it does not answer that (an ACL without INFO).
func clusterEnabled(ctx context.Context, c redis.UniversalClient) bool {
	info, err := c.Info(ctx, "cluster").Result()
	return err == nil && strings.Contains(info, "cluster_enabled:1")
}

// startupUntil ends the startup warning of a cause: what modules wait for.
func startupUntil(c redisconn.Cause) string {
	switch c {
	case redisconn.Credentials:
		return "it accepts them"
	case redisconn.MissingDB:
		return "it accepts it"
	case redisconn.Certificate:
		return "it verifies"
	case redisconn.UnknownMaster:
		return "one does"
	case redisconn.NotCluster, redisconn.ClusterNode:
		return "the configuration is fixed"
	}
	return "it answers" // the outages, a TLS mismatch, a closed connection
}

// refusedCredentials reports whether Redis refused the client's credentials or its ACL refused
// the command (see redisconn.RefusedCredentials).
func refusedCredentials(err error) bool { return redisconn.RefusedCredentials(err) }

// redisFull reports whether Redis refused a write at maxmemory (noeviction): see redisconn.Full.
func redisFull(err error) bool { return redisconn.Full(err) }

// redactSecrets removes every configured password from an error text.
func redactSecrets(msg string, o redisconn.Options) string {
	msg = redisconn.Redact(msg)
	for _, secret := range []string{o.Password, o.SentinelPassword} {
		if secret != "" {
			msg = strings.ReplaceAll(msg, secret, "xxxxx")
		}
	}
	return msg
}
