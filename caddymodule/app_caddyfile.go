package caddymodule

import (
	"fmt"
	"maps"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"

	"github.com/swarmsec/caddy-hardening/internal/redisconn"
)

func init() {
	httpcaddyfile.RegisterGlobalOption("hardening", parseHardeningOption)
}

// appSubdirectives parses each subdirective of the `hardening` global option. The files of
// the modules that keep settings in the app add their own entries.
var appSubdirectives = map[string]func(d *caddyfile.Dispenser, a *App) error{
	"environment": parseEnvironment,
	"redis":       parseRedis,
	"features":    parseFeatures,
}

// repeatableSubdirectives may appear more than once (one `policy` block per policy).
var repeatableSubdirectives = map[string]bool{}

func parseHardeningOption(d *caddyfile.Dispenser, existing any) (any, error) {
	if existing != nil {
		d.Next() // the second block's name: the error points at it, not at line 0
		return nil, d.Err("the hardening global option is given twice; merge the blocks into one")
	}
	a := new(App)
	if err := a.UnmarshalCaddyfile(d); err != nil {
		return nil, err
	}
	return httpcaddyfile.App{Name: "hardening", Value: caddyconfig.JSON(a, nil)}, nil
}

// UnmarshalCaddyfile sets up the app from the `hardening` global option:
//
//	hardening {
//		environment production|staging|development
//		redis [<url>] {
//			cluster <host:port>...
//			sentinel <master> <host:port>...
//			sentinel_username <user>
//			sentinel_password <password>
//			username <user>
//			password <password>
//			db <0-15>
//			tls [{
//				ca_file <pem>
//				cert_file <pem>
//				key_file <pem>
//				server_name <name>
//				insecure_skip_verify
//			}]
//			key_prefix <prefix>
//			dial_timeout <duration>
//			read_timeout <duration>
//			write_timeout <duration>
//			pool_size <n>
//			max_retries <n>
//		}
//		features {
//			<feature> on|off
//		}
//		ip_classes {
//			trusted <cidr|ip>...
//			suspicious <cidr|ip>...
//		}
//		detection {
//			threshold <score>
//			ban_for <duration>
//			decay <duration>
//			probe_paths|probe_paths_replace <pattern>...
//			score <signal> <n> [<signal> <n>...]
//			burst not_found|auth_failure|rate_limited <allowance> [<leak>]
//			max_tracked <n>
//			shadow
//			ipv6_prefix <bits>
//			score_cross_site
//		}
//		policy <name> {
//			limit <n>/<period> [burst <n>]
//			trusted <n>/<period> [burst <n>] | unlimited | deny
//			suspicious <n>/<period> [burst <n>] | unlimited | deny
//			key <placeholders>
//			adaptive [on|off]
//			shadow [on|off]
//			ipv6_prefix <bits>
//		}
//		adaptive {
//			cpu_target <0..1>
//			min_factor <0..1>
//			inflight_target <n>
//			interval <duration>
//		}
//		rate_limit {
//			store redis|memory
//			max_keys <n>
//			store_timeout <duration>
//			on_store_failure fallback|allow|deny
//			leases on|off
//		}
//	}
//
// The URL is redis://, rediss:// or unix://. Give the URL, cluster or sentinel: exactly one.
func (a *App) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the option name
	if d.NextArg() {
		return d.Errf("hardening takes no arguments, only a block; got %q", d.Val())
	}
	seen := map[string]bool{}
	for d.NextBlock(0) {
		if err := strayBlock(d); err != nil {
			return err
		}
		name := d.Val()
		parse, ok := appSubdirectives[name]
		if !ok {
			return d.Errf("unknown hardening subdirective %q; expected one of: %s", name, strings.Join(sortedKeys(appSubdirectives), ", "))
		}
		if seen[name] && !repeatableSubdirectives[name] {
			return d.Errf("hardening: %s is given twice", name)
		}
		seen[name] = true
		if err := parse(d, a); err != nil {
			return err
		}
	}
	for _, check := range a.parseChecks {
		if err := check(); err != nil {
			return err
		}
	}
	return nil
}

func parseEnvironment(d *caddyfile.Dispenser, a *App) error {
	if !d.NextArg() {
		// {$HARDENING_ENV:production} set to "" (docker run -e HARDENING_ENV=) is no value:
		// Caddy takes the default only for an unset variable.
		return d.Err("environment: expected production, staging or development (a {$VAR} set to an empty value leaves it out: unset the variable, or give it a value)")
	}
	a.Environment = d.Val()
	if !isPlaceholder(a.Environment) {
		if _, err := ParseEnvironment(a.Environment); err != nil {
			return d.WrapErr(err)
		}
	}
	if d.NextArg() {
		return d.Errf("environment takes one value; unexpected %q", d.Val())
	}
	return nil
}

func parseFeatures(d *caddyfile.Dispenser, a *App) error {
	if d.NextArg() {
		return d.Errf("features takes a block of '<feature> on|off' lines; unexpected %q", d.Val())
	}
	a.Features = map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		if err := strayBlock(d); err != nil {
			return err
		}
		name := d.Val()
		if err := checkFeature(name); err != nil {
			return d.WrapErr(err)
		}
		if _, dup := a.Features[name]; dup {
			return d.Errf("feature %s is given twice", name)
		}
		on, err := onOff(d, name)
		if err != nil {
			return err
		}
		a.Features[name] = on
	}
	return nil
}

func onOff(d *caddyfile.Dispenser, name string) (bool, error) {
	if !d.NextArg() {
		return false, d.Errf("%s: expected on or off", name)
	}
	v := d.Val()
	if d.NextArg() {
		return false, d.Errf("%s: expected only on or off; unexpected %q", name, d.Val())
	}
	switch v {
	case "on":
		return true, nil
	case "off":
		return false, nil
	}
	return false, d.Errf("%s: expected on or off, got %q", name, v)
}

func parseRedis(d *caddyfile.Dispenser, a *App) error {
	r := new(RedisConfig)
	line := *d // the `redis` token, to report whole-block errors at its line
	if d.NextArg() {
		r.URL = d.Val()
	}
	if d.NextArg() {
		return d.Errf("redis takes one URL; unexpected %q", d.Val())
	}
	seen := map[string]caddyfile.Dispenser{} // each subdirective's line, for the rules below
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		if err := strayBlock(d); err != nil {
			return err
		}
		name := d.Val()
		if _, twice := seen[name]; twice {
			return d.Errf("redis: %s is given twice", name)
		}
		seen[name] = *d
		if err := parseRedisSubdirective(d, r, name); err != nil {
			return err
		}
	}
	if _, ok := seen["sentinel"]; !ok {
		for _, name := range []string{"sentinel_username", "sentinel_password"} {
			if at, ok := seen[name]; ok {
				return at.Errf("redis: %s authenticates to the sentinels, and there are none; expected sentinel <master> <host:port>... beside it, or username/password for the server itself", name)
			}
		}
	}
	if r.URL == "" && len(r.Cluster) == 0 && r.Sentinel == nil {
		return line.Err("redis: expected a URL (redis://host:port/db, rediss://..., unix:///path) or a block with cluster or sentinel")
	}
	// Two sources of one connection, and db with cluster, are reported at the line that
	// added the second, or db: the one to remove (the checks below would say the redis line).
	cluster, inCluster := seen["cluster"]
	sentinel, inSentinel := seen["sentinel"]
	switch {
	case inCluster && inSentinel:
		later := sentinel
		if cluster.Line() > sentinel.Line() {
			later = cluster
		}
		return later.Err("redis: give exactly one of a URL (standalone), cluster addresses, or a sentinel master with addresses")
	case r.URL != "" && (inCluster || inSentinel):
		at := cluster
		if inSentinel {
			at = sentinel
		}
		return at.Err("redis: give exactly one of a URL (standalone), cluster addresses, or a sentinel master with addresses")
	}
	if db, ok := seen["db"]; ok && inCluster {
		return db.Err("redis: Redis Cluster has only database 0; remove db")
	}
	// Validate what adapt time can know; values with runtime placeholders are checked at load.
	if err := adaptTimeCheck(r); err != nil {
		return line.WrapErr(err)
	}
	a.Redis = r
	return nil
}

func parseRedisSubdirective(d *caddyfile.Dispenser, r *RedisConfig, name string) error {
	switch name {
	case "cluster":
		r.Cluster = d.RemainingArgs()
		if len(r.Cluster) == 0 {
			return d.Err("cluster: expected one or more host:port seed addresses")
		}
		if err := checkLiteralAddrs("cluster", r.Cluster); err != nil {
			return d.WrapErr(err)
		}
	case "sentinel":
		args := d.RemainingArgs()
		if len(args) < 2 {
			return d.Err("sentinel: expected the master name, then one or more sentinel host:port addresses")
		}
		if r.Sentinel == nil {
			r.Sentinel = new(SentinelConfig)
		}
		if ph, open := unclosedSecretPlaceholder(args[0]); open {
			return d.Errf("sentinel: the master name's placeholder %s is not closed (it would be used as written); expected %s}", ph, ph)
		}
		r.Sentinel.Master, r.Sentinel.Addresses = args[0], args[1:]
		if err := checkLiteralAddrs("sentinel", r.Sentinel.Addresses); err != nil {
			return d.WrapErr(err)
		}
	case "sentinel_username", "sentinel_password":
		v, err := credentialArg(d, name, "a user name or a password ({env.*} or {file.*} for a password)")
		if err != nil {
			return err
		}
		if r.Sentinel == nil {
			r.Sentinel = new(SentinelConfig)
		}
		if name == "sentinel_username" {
			r.Sentinel.Username = v
		} else {
			r.Sentinel.Password = v
		}
	case "username":
		v, err := credentialArg(d, name, "an ACL user name")
		if err != nil {
			return err
		}
		r.Username = v
	case "password":
		v, err := credentialArg(d, name, "a password, e.g. {env.REDIS_PASSWORD}")
		if err != nil {
			return err
		}
		r.Password = v
	case "key_prefix":
		v, err := wantArg(d, name, "a prefix such as hardening:")
		if err != nil {
			return err
		}
		if ph, open := unclosedSecretPlaceholder(v); open {
			return d.Errf("key_prefix: the placeholder %s is not closed; expected %s}", ph, ph)
		}
		if err := checkKeyPrefix(withoutRuntimePlaceholders(v), ""); err != nil {
			return d.WrapErr(err)
		}
		r.KeyPrefix = &v
	case "db":
		n, err := intArg(d, name, 0, 15)
		if err != nil {
			return err
		}
		r.DB = &n
	case "pool_size":
		n, err := intArg(d, name, 1, redisconn.MaxPoolSize)
		if err != nil {
			return err
		}
		r.PoolSize = n
	case "max_retries":
		n, err := intArg(d, name, -1, 10)
		if err != nil {
			return err
		}
		if n == 0 {
			n = -1 // "0 retries" in the Caddyfile; in JSON 0 means the default
		}
		r.MaxRetries = n
	case "dial_timeout", "read_timeout", "write_timeout":
		dur, err := durationArg(d, name)
		if err != nil {
			return err
		}
		if dur > redisconn.MaxTimeout {
			return d.Errf("%s %s: at most %s (%s)", name, dur, redisconn.MaxTimeout, redisconn.MaxTimeoutWhy)
		}
		target := map[string]*caddy.Duration{"dial_timeout": &r.DialTimeout, "read_timeout": &r.ReadTimeout, "write_timeout": &r.WriteTimeout}[name]
		*target = caddy.Duration(dur)
	case "tls":
		return parseRedisTLS(d, r)
	default:
		return d.Errf("unknown redis subdirective %q; expected one of: cluster, sentinel, sentinel_username, sentinel_password, username, password, db, tls, key_prefix, dial_timeout, read_timeout, write_timeout, pool_size, max_retries", name)
	}
	return nil
}

func parseRedisTLS(d *caddyfile.Dispenser, r *RedisConfig) error {
	if d.NextArg() {
		return d.Errf("tls takes no arguments, only an optional block; unexpected %q", d.Val())
	}
	t := new(RedisTLS)
	line := *d // the tls token, for the rule below
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		if err := strayBlock(d); err != nil {
			return err
		}
		name := d.Val()
		if seen[name] {
			return d.Errf("redis tls: %s is given twice", name)
		}
		seen[name] = true
		switch name {
		case "ca_file", "cert_file", "key_file", "server_name":
			v, err := wantArg(d, name, map[string]string{"ca_file": "a PEM file", "cert_file": "a PEM file",
				"key_file": "a PEM file", "server_name": "a host name"}[name])
			if err != nil {
				return err
			}
			*map[string]*string{"ca_file": &t.CAFile, "cert_file": &t.CertFile, "key_file": &t.KeyFile, "server_name": &t.ServerName}[name] = v
		case "insecure_skip_verify":
			if err := noValue(d, name); err != nil {
				return err
			}
			t.InsecureSkipVerify = true
		default:
			return d.Errf("unknown redis tls subdirective %q; expected one of: ca_file, cert_file, key_file, server_name, insecure_skip_verify", name)
		}
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		return line.Err("redis tls: cert_file and key_file go together (a client certificate and its key); expected both, or neither")
	}
	r.TLS = t
	return nil
}

// checkLiteralAddrs checks the addresses written without placeholders (a Caddyfile {$VAR}
// is one by now) at their own line; placeholders are checked at load.
func checkLiteralAddrs(what string, items []string) error {
	var literal []string
	for _, it := range items {
		if !isPlaceholder(it) {
			literal = append(literal, it)
		}
	}
	return redisconn.CheckAddrs(what, resolveList(caddy.NewReplacer(), literal))
}

// adaptTimeCheck validates the connection settings. A value with a runtime placeholder is
// unknown until load, where it is checked: here it stands in as a valid value of its kind, so
// the rules that hold whatever it resolves to (db with cluster, sentinel credentials without
// sentinels, the timeouts) still meet the Caddyfile's line.
func adaptTimeCheck(r *RedisConfig) error {
	stand := func(s, valid string) string {
		if isPlaceholder(s) {
			return valid
		}
		return s
	}
	c := *r
	c.URL = stand(r.URL, "redis://placeholder:6379")
	c.Cluster = make([]string, len(r.Cluster))
	for i, a := range r.Cluster {
		c.Cluster[i] = stand(a, "placeholder:6379")
	}
	if s := r.Sentinel; s != nil {
		cs := *s
		cs.Master = stand(s.Master, "placeholder")
		cs.Addresses = make([]string, len(s.Addresses))
		for i, a := range s.Addresses {
			cs.Addresses[i] = stand(a, "placeholder:26379")
		}
		c.Sentinel = &cs
	}
	o := c.options(caddy.NewReplacer())
	o.CAFile, o.CertFile, o.KeyFile = "", "", "" // files are read at load, on the machine that runs Caddy
	return o.Validate()
}

// noValue checks that a flag subdirective (shadow, critical, ...) has no value after it.
func noValue(d *caddyfile.Dispenser, name string) error {
	if d.NextArg() {
		return d.Errf("%s takes no value; unexpected %q", name, d.Val())
	}
	return nil
}

// wantArg reads the one value of the subdirective name; want says what is expected there
// ("an integer from 1 to 10"), for the error when the line has none.
func wantArg(d *caddyfile.Dispenser, name, want string) (string, error) {
	if !d.NextArg() {
		return "", d.Errf("%s: expected %s", name, want)
	}
	v := d.Val()
	if d.NextArg() {
		return "", d.Errf("%s takes one value; unexpected %q", name, d.Val())
	}
	return v, nil
}

// credentialArg is a user name or password: an empty one (`password ""`) is refused, as one
// from a placeholder that resolves to nothing is at load, since it would send no credential and
// fall back to the URL's or to none.
func credentialArg(d *caddyfile.Dispenser, name, want string) (string, error) {
	v, err := wantArg(d, name, want)
	if err == nil && v == "" {
		err = d.Errf("%s is empty: expected %s (leave the line out to send none)", name, want)
	}
	if ph, open := unclosedSecretPlaceholder(v); err == nil && open {
		err = d.Errf("%s: the placeholder %s is not closed (it would be sent as written); expected %s}", name, ph, ph)
	}
	return v, err
}

func intArg(d *caddyfile.Dispenser, name string, lo, hi int) (int, error) {
	v, err := wantArg(d, name, fmt.Sprintf("an integer from %d to %d", lo, hi))
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		return 0, d.Errf("%s: expected an integer from %d to %d, got %q", name, lo, hi, v)
	}
	return n, nil
}

// durationArg reads one positive duration argument.
func durationArg(d *caddyfile.Dispenser, name string) (time.Duration, error) {
	v, err := wantArg(d, name, "a positive duration such as 500ms, 2s or 15m")
	if err != nil {
		return 0, err
	}
	dur, err := caddy.ParseDuration(v)
	if err != nil && durationOverflows(v) {
		return 0, d.Errf("%s: %q is too long: %s", name, v, durationLimit)
	}
	if err != nil || dur <= 0 {
		return 0, d.Errf("%s: expected a positive duration such as 500ms, 2s or 15m, got %q", name, v)
	}
	return dur, nil
}

// durationSyntax is what caddy.ParseDuration reads: numbers with units, days included.
var durationSyntax = regexp.MustCompile(`^[-+]?(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h|d))+$`)

// durationLimit says why a well-written duration does not parse.
const durationLimit = "Go durations stop at about 292 years (2562047h)"

// durationOverflows reports whether v is written as a duration but does not fit one: Go says
// only "invalid duration", which reads as a typo.
func durationOverflows(v string) bool {
	_, err := caddy.ParseDuration(v)
	return err != nil && durationSyntax.MatchString(v)
}

func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}

// Interface guard.
var _ caddyfile.Unmarshaler = (*App)(nil)

// finiteNumber parses a decimal number, refusing NaN and the infinities (which ParseFloat
// accepts, and which JSON cannot hold: the whole option would adapt to null).
func finiteNumber(v string) (float64, bool) {
	f, err := strconv.ParseFloat(v, 64)
	return f, err == nil && !math.IsNaN(f) && !math.IsInf(f, 0)
}
