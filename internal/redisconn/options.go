// Package redisconn turns caddy-hardening's Redis settings into a go-redis client: standalone
// (redis://, rediss://, unix://), Sentinel or Cluster. It never puts a password into an error.
package redisconn

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/swarmsec/caddy-hardening/internal/credname"
)

// Mode is how the client reaches Redis.
type Mode string

// The three deployments go-redis's UniversalClient covers.
const (
	Standalone Mode = "standalone"
	Cluster    Mode = "cluster"
	Sentinel   Mode = "sentinel"
)

// Options says how to reach Redis. Exactly one of URL, ClusterAddrs or SentinelMaster is set.
type Options struct {
	URL string // redis://, rediss:// or unix://; standalone

	ClusterAddrs []string // host:port seeds; Cluster

	SentinelMaster   string   // master name; Sentinel
	SentinelAddrs    []string // host:port of the sentinels
	SentinelUsername string
	SentinelPassword string

	Username string // overrides the URL's user
	Password string // overrides the URL's password
	DB       *int   // overrides the URL's database; not allowed with Cluster

	TLS                bool // also implied by rediss://
	CAFile             string
	CertFile, KeyFile  string // client certificate for mutual TLS
	ServerName         string
	InsecureSkipVerify bool

	DialTimeout  time.Duration
	ReadTimeout  time.Duration
	WriteTimeout time.Duration
	PoolSize     int // 0: go-redis default (10 per CPU); at most MaxPoolSize
	MaxRetries   int // -1: no retries

	ClientName string // shown by CLIENT LIST
}

// Mode reports which deployment the options describe (Standalone when none is set;
// Validate rejects that).
func (o Options) Mode() Mode {
	switch {
	case len(o.ClusterAddrs) > 0:
		return Cluster
	case o.SentinelMaster != "" || len(o.SentinelAddrs) > 0:
		return Sentinel
	default:
		return Standalone
	}
}

// DefaultPort is the port go-redis dials for a redis:// or rediss:// URL without one.
const DefaultPort = "6379"

// MaxPoolSize bounds pool_size: go-redis allocates its idle list for PoolSize connections when
// it makes the client, so a pool of 10^9 would take 8 GB before any connection.
const MaxPoolSize = 100000

// MaxTimeout bounds dial_timeout, read_timeout and write_timeout. Every module bounds its own
// calls tighter (a rate-limit decision by store_timeout, at most 5s), so a longer one waits for
// nothing but a dead connection: a background goroutine (the startup ping, a subscriber) stays
// blocked on it, and the go-redis pool waits read_timeout + 1s for a free connection.
const MaxTimeout = 10 * time.Second

// MaxTimeoutWhy says why MaxTimeout, for error messages.
const MaxTimeoutWhy = "modules bound their own calls tighter, so a longer one only keeps a dead connection waiting"

// Validate checks the options without connecting. Its errors never contain a password.
func (o Options) Validate() error {
	set := 0
	for _, b := range []bool{o.URL != "", len(o.ClusterAddrs) > 0, o.SentinelMaster != "" || len(o.SentinelAddrs) > 0} {
		if b {
			set++
		}
	}
	if set != 1 {
		return errors.New("redis: give exactly one of a URL (standalone), cluster addresses, or a sentinel master with addresses")
	}
	switch o.Mode() {
	case Standalone:
		if _, err := parseURL(o.URL); err != nil {
			return err
		}
	case Cluster:
		if o.DB != nil && *o.DB != 0 {
			return errors.New("redis: Redis Cluster has only database 0; remove db")
		}
		if err := checkAddrs("cluster", o.ClusterAddrs); err != nil {
			return err
		}
	case Sentinel:
		if o.SentinelMaster == "" {
			return errors.New("redis: sentinel needs the master name before the addresses")
		}
		if len(o.SentinelAddrs) == 0 {
			return errors.New("redis: sentinel needs at least one sentinel address")
		}
		if err := checkAddrs("sentinel", o.SentinelAddrs); err != nil {
			return err
		}
	}
	if o.Mode() != Sentinel && (o.SentinelUsername != "" || o.SentinelPassword != "") {
		return errors.New("redis: sentinel_username and sentinel_password authenticate to the sentinels, and there are none; give the sentinel master and addresses, or username/password for the server itself")
	}
	if o.DB != nil && (*o.DB < 0 || *o.DB > 15) {
		return fmt.Errorf("redis: db %d out of range 0-15", *o.DB)
	}
	if (o.CertFile == "") != (o.KeyFile == "") {
		return errors.New("redis: cert_file and key_file go together")
	}
	for name, d := range map[string]time.Duration{"dial_timeout": o.DialTimeout, "read_timeout": o.ReadTimeout, "write_timeout": o.WriteTimeout} {
		if d < 0 {
			return fmt.Errorf("redis: %s must not be negative", name)
		}
		if d > MaxTimeout {
			return fmt.Errorf("redis: %s %v is longer than %v: %s", name, d, MaxTimeout, MaxTimeoutWhy)
		}
	}
	if o.PoolSize < 0 || o.PoolSize > MaxPoolSize {
		return fmt.Errorf("redis: pool_size must be 1 to %d (0: the default), got %d", MaxPoolSize, o.PoolSize)
	}
	if o.MaxRetries < -1 || o.MaxRetries > 10 {
		return fmt.Errorf("redis: max_retries must be -1 (none) to 10, got %d", o.MaxRetries)
	}
	return nil
}

// TLSEnabled reports whether connections use TLS.
func (o Options) TLSEnabled() bool {
	return o.TLS || strings.HasPrefix(strings.ToLower(o.URL), "rediss://")
}

// Endpoints lists where the client connects (host:port or a socket path), without credentials:
// safe for logs.
func (o Options) Endpoints() []string {
	switch o.Mode() {
	case Cluster:
		return append([]string(nil), o.ClusterAddrs...)
	case Sentinel:
		return append([]string(nil), o.SentinelAddrs...)
	}
	if u, err := parseURL(o.URL); err == nil {
		if u.Scheme == "unix" {
			return []string{u.Path}
		}
		port := u.Port()
		if port == "" {
			port = DefaultPort // what go-redis dials
		}
		return []string{net.JoinHostPort(u.Hostname(), port)}
	}
	return []string{Redact(o.URL)}
}

// HasPassword reports whether any password is configured, in a field or in the URL.
func (o Options) HasPassword() bool {
	if o.Password != "" || o.SentinelPassword != "" {
		return true
	}
	u, err := parseURL(o.URL)
	if err != nil || u.User == nil {
		return false
	}
	_, ok := u.User.Password()
	return ok
}

// Fingerprint identifies the configuration: equal options share one client. It is a digest,
// so it can key a map without holding the password in clear.
func (o Options) Fingerprint() string {
	b, _ := json.Marshal(o) // plain fields only: cannot fail
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// CheckURL checks a URL that is all a setting takes (a monitoring check's redis): its errors
// say what such a URL can hold, where Validate's name the subdirectives of the hardening
// option's redis block.
func CheckURL(raw string) error {
	_, err := parseURLIn(raw, true)
	return err
}

func parseURL(raw string) (*url.URL, error) { return parseURLIn(raw, false) }

// parseURLIn parses and checks a URL; alone: the URL is the whole setting (CheckURL), with no
// redis block beside it to write options in.
func parseURLIn(raw string, alone bool) (*url.URL, error) {
	if !strings.Contains(raw, "://") && !strings.HasPrefix(raw, "unix:") {
		return nil, noScheme(raw)
	}
	u, err := url.Parse(raw)
	if err != nil {
		// url.Parse quotes the whole input, password included.
		return nil, fmt.Errorf("redis: %q is not a URL (expected redis://host:port/db, rediss://... or unix:///path)", redactURL(raw))
	}
	if u.RawQuery != "" {
		return nil, queryError(raw, u, alone)
	}
	switch u.Scheme {
	case "redis", "rediss":
		if u.Host == "" {
			return nil, fmt.Errorf("redis: %q has no host", Redact(raw))
		}
		if p := u.Port(); p != "" {
			if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
				return nil, fmt.Errorf("redis: %q has an invalid port", Redact(raw))
			}
		}
		if db := strings.Trim(u.Path, "/"); db != "" {
			if n, err := strconv.Atoi(db); err != nil || n < 0 || n > 15 {
				return nil, fmt.Errorf("redis: %q: the path must be a database number 0-15", Redact(raw))
			}
		}
	case "unix":
		if u.Path == "" {
			return nil, fmt.Errorf("redis: %q has no socket path", Redact(raw))
		}
	default:
		return nil, fmt.Errorf("redis: %q: %s", Redact(raw), schemeHint(u.Scheme, alone))
	}
	return u, nil
}

// schemeHint says what to write instead of a URL scheme that other Redis clients read (Kombu's
// redis+sentinel:// and redis+socket://, a cluster URL) and this one does not.
func schemeHint(scheme string, alone bool) string {
	s := strings.ToLower(scheme)
	switch {
	case alone && strings.Contains(s, "sentinel"):
		return "Sentinel is not given as a URL, and this setting takes only a URL: leave it out to use the hardening option's Redis (with sentinel in its redis block), or give the master's own redis:// URL"
	case alone && strings.Contains(s, "cluster"):
		return "a Cluster is not given as a URL, and this setting takes only a URL: leave it out to use the hardening option's Redis (with cluster in its redis block), or give one node's redis:// URL"
	case strings.Contains(s, "sentinel"):
		return "Sentinel is not given as a URL; expected `sentinel <master> <host:port>...` in the redis block (sentinel_password for the sentinels', password for the master's)"
	case strings.Contains(s, "cluster"):
		return "a Cluster is not given as a URL; expected `cluster <host:port>...` in the redis block"
	case strings.Contains(s, "socket"):
		return "expected unix:///path/to/redis.sock for a socket"
	}
	return "expected a redis://, rediss:// or unix:// URL"
}

// noScheme is the error for an address written without redis://: with a plain host:port it
// says which URL to write.
func noScheme(raw string) error {
	if host, port, err := net.SplitHostPort(raw); err == nil && host != "" && port != "" && !strings.Contains(raw, "@") {
		return fmt.Errorf("redis: %q has no scheme; expected redis://%s (rediss:// for TLS)", raw, raw)
	}
	return fmt.Errorf("redis: %q has no scheme; expected a URL: redis://[user:password@]host:port/db, rediss://... (TLS) or unix:///path", redactAddr(raw))
}

// urlOptions says, for each query option that go-redis and other clients read from a URL,
// what to write in the redis block instead; an option whose value is shown in errors (not a
// secret) has "%s" where the value goes.
var urlOptions = map[string]string{
	"db":            "db %s",
	"dial_timeout":  "dial_timeout %s",
	"read_timeout":  "read_timeout %s",
	"write_timeout": "write_timeout %s",
	"pool_size":     "pool_size %s",
	"max_retries":   "max_retries %s",
	"username":      "username <user>",
	"password":      "password {env.REDIS_PASSWORD}",
	"skip_verify":   "tls { insecure_skip_verify } (refused in production)",
	"ssl_cert_reqs": "tls { ca_file <pem> } (trust the server's CA; insecure_skip_verify turns checking off, refused in production)",
	"master_name":   "sentinel <master> <host:port>...",
}

// blockOptions lists the redis block's subdirectives, for an option it has no counterpart for.
const blockOptions = "cluster, sentinel, sentinel_username, sentinel_password, username, password, db, tls, key_prefix, dial_timeout, read_timeout, write_timeout, pool_size, max_retries"

// queryError refuses URL options (?...): it shows only the values that are no secret, and
// says what to write in the redis block for each.
func queryError(raw string, u *url.URL, alone bool) error {
	base, _, _ := strings.Cut(raw, "?")
	var shown, hints, unknown []string
	for _, pair := range strings.Split(u.RawQuery, "&") {
		k, v, hasValue := strings.Cut(pair, "=")
		name, _ := url.QueryUnescape(k)
		name = strings.ToLower(name)
		hint, known := urlOptions[name]
		if !known && !hasValue { // ?<something>: the something itself may be a secret
			shown = append(shown, "xxxxx")
			unknown = append(unknown, "an option without a value")
			continue
		}
		if !known || name == "password" || name == "username" {
			v = "xxxxx" // an option of another client may hold a secret too
		}
		shown = append(shown, k+"="+v)
		switch {
		case !known:
			unknown = append(unknown, name)
		case strings.Contains(hint, "%s"):
			value, _ := url.QueryUnescape(v)
			if _, err := strconv.Atoi(value); err == nil && strings.HasSuffix(name, "_timeout") {
				value += "s" // go-redis reads a number without a unit as seconds
			}
			hints = append(hints, fmt.Sprintf(hint, value))
		default:
			hints = append(hints, hint)
		}
	}
	if alone {
		// No redis block beside this URL: what it can hold is the server, the credentials and
		// the db.
		return fmt.Errorf("redis: %q: URL options (?...) are not read, and this setting takes only a URL: credentials go in its user part, the password as a runtime placeholder (redis://:{env.REDIS_PASSWORD} then the host), the db in its path (/0); the check's timeout bounds its calls",
			Redact(base)+"?"+strings.Join(shown, "&"))
	}
	for _, name := range unknown {
		hints = append(hints, fmt.Sprintf("%s is no option here (the redis block has: %s)", name, blockOptions))
	}
	return fmt.Errorf("redis: %q: URL options (?...) are not read; write them in the redis block instead: %s",
		Redact(base)+"?"+strings.Join(shown, "&"), strings.Join(hints, "; "))
}

// CheckAddrs checks that each of addrs is host:port with a port from 1 to 65535; what names
// them in the error (cluster, sentinel).
func CheckAddrs(what string, addrs []string) error { return checkAddrs(what, addrs) }

func checkAddrs(what string, addrs []string) error {
	for _, a := range addrs {
		if strings.Contains(a, "://") || strings.Contains(a, "@") {
			return addrWithCredentials(what, a)
		}
		host, port, err := net.SplitHostPort(a)
		if err != nil || host == "" {
			return fmt.Errorf("redis: %s address %q: expected host:port", what, a)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("redis: %s address %q: invalid port", what, a)
		}
	}
	return nil
}

// addrWithCredentials refuses a cluster or sentinel address written as a URL or with a user
// and password (as node-redis's cluster rootNodes or go-redis's ParseClusterURL take them),
// naming the host:port to write and where the credentials go.
func addrWithCredentials(what, a string) error {
	rest := a
	if i := strings.Index(rest, "://"); i >= 0 {
		rest = rest[i+3:]
	}
	if i := strings.LastIndex(rest, "@"); i >= 0 {
		rest = rest[i+1:]
	}
	rest, _, _ = strings.Cut(rest, "/")
	shown := Redact(a)
	if !strings.Contains(a, "://") {
		shown = redactAddr(a)
	}
	creds := "username and password"
	if what == "sentinel" {
		creds = "sentinel_username and sentinel_password"
	}
	return fmt.Errorf("redis: %s address %q: expected host:port without a scheme or credentials (%s; give %s as subdirectives, TLS with tls)",
		what, shown, rest, creds)
}

// Redact hides the password of anything shaped like scheme://user:password@host, also when the
// string is not a valid URL, and the values of URL options whose name says they are a secret
// (?password=...). Other strings come back unchanged.
func Redact(s string) string {
	scheme := strings.Index(s, "://")
	if scheme < 0 {
		return s
	}
	return queryOption.ReplaceAllStringFunc(s[:scheme+3]+redactAddr(s[scheme+3:]), func(opt string) string {
		name, _, _ := strings.Cut(opt[1:], "=")
		if !credname.Is(name) {
			return opt
		}
		return opt[:1] + name + "=xxxxx"
	})
}

// redactURL is Redact for a string that is one URL: every option value is hidden, not only
// those named as secrets.
func redactURL(s string) string {
	base, query, ok := strings.Cut(Redact(s), "?")
	if !ok {
		return base
	}
	var pairs []string
	for _, pair := range strings.Split(query, "&") {
		k, _, _ := strings.Cut(pair, "=")
		pairs = append(pairs, k+"=xxxxx")
	}
	return base + "?" + strings.Join(pairs, "&")
}

// redactAddr hides the password of user:password@host.
func redactAddr(s string) string {
	at := strings.LastIndex(s, "@")
	if at < 0 {
		return s
	}
	user, _, hasPassword := strings.Cut(s[:at], ":")
	if !hasPassword {
		return s
	}
	return user + ":xxxxx" + s[at:]
}

// queryOption is a URL option in a string (?password=..., &auth_token=...): its value ends at
// the next option, quote, space or fragment. Redact hides the values of those credname.Is names.
var queryOption = regexp.MustCompile(`[?&][^=&?"'\s#]*=[^&"'\s#]*`)
