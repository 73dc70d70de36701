package caddymodule

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/swarmsec/caddy-hardening/apikey"
	"github.com/swarmsec/caddy-hardening/internal/redisconn"
	"github.com/swarmsec/caddy-hardening/monitor"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("monitoring", parseMonitoring)
	httpcaddyfile.RegisterDirectiveOrder("monitoring", httpcaddyfile.After, "metrics")
}

func parseMonitoring(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	m := new(Monitoring)
	appRedis := caddyfileHasRedis(h)
	err := m.unmarshal(h.Dispenser, &appRedis)
	return m, err
}

// caddyfileHasRedis reports whether the Caddyfile's hardening global option configures redis.
func caddyfileHasRedis(h httpcaddyfile.Helper) bool {
	if opt, ok := h.Option("hardening").(httpcaddyfile.App); ok {
		var a App
		return json.Unmarshal(opt.Value, &a) == nil && a.Redis != nil
	}
	return false
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens:
//
//	monitoring {
//		check redis [<name>] [<redis-url>] [{
//			<common>
//		}]
//		check postgres <name> <dsn> [{
//			<common>
//			role primary|standby|any
//		}]
//		check http <name> <url> [{
//			<common>
//			method <method>
//			expect <status|class>...
//			body <text>
//			header <field> <value>
//			ca_file <pem>
//		}]
//		check tcp <name> <host:port> [{
//			<common>
//		}]
//		check worker <name> {
//			<common>
//			redis <redis-url>
//			queue <list>
//			max_backlog <n>
//			on_backlog warn|fail
//			heartbeat_key <key>
//			max_age <duration>
//		}
//		api_keys <sha256:digest|{env.VAR}|{file.path}>...
//		dashboard on|off
//	}
//
// where <common> is any of:
//
//	critical
//	interval <duration>
//	timeout <duration>
//	failures_before_down <n>
//
// `check redis` without a URL checks the hardening app's Redis; a single argument with `://`
// is a URL, otherwise a name.
//
// `role` makes a postgres check ask SELECT pg_is_in_recovery() and fail a server of the other
// role: `primary` fails a hot standby (a demoted primary after a failover), `standby` fails a
// primary (a promoted replica). Default: any (SELECT 1 only).
//
// `dashboard off` turns off the `dashboard` and `dashboard/data` routes (default: on).
//
// `check` and `api_keys` may be given several times (one check each; the digests add up);
// every other subdirective, of the block and of a check, once (a check's `expect` lines add
// up, and `header` once per field).
func (m *Monitoring) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	return m.unmarshal(d, nil)
}

// unmarshal reads the tokens; appRedis, when known (the HTTP Caddyfile adapter's global
// options), says whether the hardening app has a Redis for the checks that use it.
func (m *Monitoring) unmarshal(d *caddyfile.Dispenser, appRedis *bool) error {
	d.Next() // the directive name
	if d.NextArg() {
		return d.Errf("monitoring takes no arguments, only a block; got %q", d.Val())
	}
	seen := map[string]bool{}
	for d.NextBlock(0) {
		if err := strayBlock(d); err != nil {
			return err
		}
		name := d.Val()
		if seen[name] && name != "check" && name != "api_keys" {
			return d.Errf("monitoring: %s is given twice", name)
		}
		seen[name] = true
		switch name {
		case "check":
			at := *d
			c, err := parseCheck(d)
			if err != nil {
				return err
			}
			if appRedis != nil && !*appRedis && (c.Type == checkRedis || c.Type == checkWorker) && c.Redis == "" {
				return at.Errf("monitoring: %s check %s uses the hardening app's Redis, and none is configured: configure redis in the hardening global option or give the check a redis URL", c.Type, c.name())
			}
			for _, other := range m.Checks {
				if other.name() == c.name() {
					return d.Errf("monitoring: two checks are named %q; give each a distinct name", c.name())
				}
			}
			m.Checks = append(m.Checks, c)
		case "api_keys":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.Err("api_keys: expected one or more sha256:<64 hex digits> digests (from caddy hardening keygen)")
			}
			for _, a := range args {
				if isPlaceholder(a) {
					continue // {env.*}, {file.*}: resolved and checked at load
				}
				if _, err := apikey.ParseSet([]string{a}); err != nil {
					return d.WrapErr(err)
				}
			}
			m.APIKeys = append(m.APIKeys, args...)
		case "dashboard":
			// onOff names what it got (`got "disabled"`, `unexpected "now"`), as every other
			// on|off subdirective's error does.
			on, err := onOff(d, "dashboard")
			if err != nil {
				return err
			}
			if line := *d; d.NextBlock(d.Nesting()) {
				return line.Err("dashboard: expected on or off, not a block")
			}
			m.DisableDashboard = !on
		default:
			return d.Errf("unknown monitoring subdirective %q; expected check, api_keys or dashboard", d.Val())
		}
	}
	return nil
}

func parseCheck(d *caddyfile.Dispenser) (*MonitorCheck, error) {
	line := *d // the check's line (with its import chain), for the rules judged once its block is read
	atCheck := func(err error) error { return line.WrapErr(err) }
	c := &MonitorCheck{}
	if !d.NextArg() {
		return nil, d.Err("check: expected a type: redis, postgres, http, tcp or worker")
	}
	c.Type = d.Val()
	if _, ok := checkTypes[c.Type]; !ok {
		return nil, d.Errf("check: unknown type %q; expected redis, postgres, http, tcp or worker", c.Type)
	}
	args := d.RemainingArgs()
	switch c.Type {
	case checkRedis:
		switch {
		case len(args) == 1 && strings.Contains(args[0], "://"):
			c.Redis = args[0]
		case len(args) == 1:
			c.Name = args[0]
		case len(args) == 2:
			c.Name, c.Redis = args[0], args[1]
		case len(args) > 2:
			return nil, d.Err("check redis: expected [<name>] [<redis-url>]")
		}
	case checkWorker:
		if len(args) != 1 {
			return nil, d.Err("check worker: expected a name, then a block with queue and/or heartbeat_key")
		}
		c.Name = args[0]
	default:
		what := map[string]string{checkPostgres: "<name> <dsn>", checkHTTP: "<name> <url>", checkTCP: "<name> <host:port>"}[c.Type]
		if len(args) != 2 {
			return nil, d.Errf("check %s: expected %s (an empty {$VAR} leaves the second out)", c.Type, what)
		}
		c.Name = args[0]
		switch c.Type {
		case checkPostgres:
			c.DSN = args[1]
		case checkHTTP:
			c.URL = args[1]
		case checkTCP:
			c.Address = args[1]
		}
	}
	if c.Name != "" && !validCheckName(c.Name) {
		return nil, d.Errf("check %s: name %q: use letters, digits, '_', '-' and '.' (at most 64)", c.Type, c.Name)
	}
	seen := map[string]bool{}
	lines := map[string]caddyfile.Dispenser{} // each option's line, for a rule between options
	var timeoutAt *caddyfile.Dispenser        // the timeout line, judged against the interval once the block is read
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		if err := strayBlock(d); err != nil {
			return nil, err
		}
		if opt := d.Val(); seen[opt] && opt != "expect" && opt != "header" {
			return nil, d.Errf("check %s: %s is given twice", c.name(), opt)
		}
		seen[d.Val()] = true
		lines[d.Val()] = *d
		if d.Val() == "timeout" {
			at := *d
			timeoutAt = &at
		}
		if err := parseCheckOption(d, c); err != nil {
			return nil, err
		}
	}
	if timeoutAt != nil {
		interval := time.Duration(c.Interval)
		if interval == 0 {
			interval = monitor.DefaultInterval
		}
		if time.Duration(c.Timeout) >= interval {
			return nil, timeoutAt.Errf("check %s: timeout %s must be shorter than interval %s", c.name(), time.Duration(c.Timeout), interval)
		}
	}
	if err := c.validate(); err != nil {
		// A rule between two options (body with method HEAD, on_backlog without max_backlog)
		// names the option to change: report it at that option's line.
		var oe *optionError
		if errors.As(err, &oe) {
			if at, ok := lines[oe.option]; ok {
				return nil, at.WrapErr(err)
			}
		}
		return nil, atCheck(err)
	}
	return c, nil
}

// checkOptionTypes says which check types take each type-specific subdirective.
var checkOptionTypes = map[string][]string{
	"method": {checkHTTP}, "expect": {checkHTTP}, "body": {checkHTTP}, "header": {checkHTTP}, "ca_file": {checkHTTP},
	"role":  {checkPostgres},
	"redis": {checkWorker}, "queue": {checkWorker}, "max_backlog": {checkWorker}, "on_backlog": {checkWorker},
	"heartbeat_key": {checkWorker}, "max_age": {checkWorker},
}

func parseCheckOption(d *caddyfile.Dispenser, c *MonitorCheck) error {
	opt := d.Val()
	if types, ok := checkOptionTypes[opt]; ok && types[0] != c.Type {
		return d.Errf("check %s: %s applies to %s checks only", c.Type, opt, types[0])
	}
	var err error
	switch opt {
	case "critical":
		if err := noValue(d, opt); err != nil {
			return err
		}
		c.Critical = true
	case "interval", "timeout", "max_age":
		var dur time.Duration
		if dur, err = durationArg(d, opt); err != nil {
			return err
		}
		switch opt {
		case "interval":
			c.Interval = caddy.Duration(dur)
		case "timeout":
			c.Timeout = caddy.Duration(dur)
		default:
			c.MaxAge = caddy.Duration(dur)
		}
		if opt == "interval" && dur < minCheckInterval {
			return d.Errf("check %s: interval %s is shorter than %s", c.name(), dur, minCheckInterval)
		}
		if opt == "interval" && dur > maxCheckInterval {
			return d.Errf("check %s: interval %s is longer than %s (a check run less often says nothing about the dependency now)", c.name(), dur, maxCheckInterval)
		}
	case "failures_before_down":
		c.FailuresBeforeDown, err = intArg(d, opt, 1, maxFailuresBeforeDown)
	case "method":
		if c.Method, err = wantArg(d, opt, "an HTTP method such as GET or HEAD"); err == nil && !validMethod(c.Method) {
			err = d.Errf("method: expected an HTTP method such as GET or HEAD, got %q", c.Method)
		}
	case "expect":
		args := d.RemainingArgs()
		if len(args) == 0 {
			return d.Err("expect: expected one or more statuses (200) or classes (2xx)")
		}
		for _, a := range args {
			if _, err := monitor.ParseStatusRange(a); err != nil {
				return d.Errf("expect: %v", err)
			}
		}
		c.Expect = append(c.Expect, args...)
	case "body":
		if c.BodyContains, err = wantArg(d, opt, "the text the response must contain"); err == nil && c.BodyContains == "" {
			return d.Err("body: expected the text the response must contain, not an empty one (which checks nothing)")
		}
	case "header":
		var name, value string
		if !d.Args(&name, &value) || d.NextArg() {
			return d.Err("header: expected <field> <value>")
		}
		if c.Headers == nil {
			c.Headers = map[string]string{}
		}
		if ph, open := unclosedSecretPlaceholder(value); open {
			return d.Errf("header %s: the placeholder %s is not closed (it would be sent as written); expected %s}", name, ph, ph)
		}
		if _, twice := c.Headers[http.CanonicalHeaderKey(name)]; twice {
			return d.Errf("check %s: header %s is given twice", c.name(), http.CanonicalHeaderKey(name))
		}
		c.Headers[http.CanonicalHeaderKey(name)] = value
	case "ca_file":
		c.CAFile, err = wantArg(d, opt, "a PEM file of root certificates")
	case "redis":
		if c.Redis, err = wantArg(d, opt, "a URL (redis://, rediss://, unix://)"); err == nil && !isPlaceholder(c.Redis) {
			if verr := redisconn.CheckURL(c.Redis); verr != nil {
				err = d.Errf("monitoring: check %s: %s", c.name(), redisconn.Redact(verr.Error()))
			}
		}
	case "queue":
		c.Queue, err = wantArg(d, opt, "the name of the queue's list, e.g. celery")
	case "heartbeat_key":
		c.HeartbeatKey, err = wantArg(d, opt, "the key your workers write, e.g. celery:heartbeat")
	case "max_backlog":
		var n int
		n, err = intArg(d, opt, 1, 1<<30)
		c.MaxBacklog = int64(n)
	case "role":
		if c.Role, err = wantArg(d, opt, "primary, standby or any"); err == nil && (c.Role == "" || !validPostgresRole(c.Role)) {
			err = d.Errf("role: expected primary, standby or any, got %q", c.Role)
		}
	case "on_backlog":
		if c.OnBacklog, err = wantArg(d, opt, "warn or fail"); err == nil && c.OnBacklog != "warn" && c.OnBacklog != "fail" {
			err = d.Errf("on_backlog: expected warn or fail, got %q", c.OnBacklog)
		}
	default:
		return d.Errf("check %s: unknown subdirective %q; expected critical, interval, timeout, failures_before_down%s", c.Type, opt, typeOptions(c.Type))
	}
	return err
}

func typeOptions(typ string) string {
	var names []string
	for _, name := range sortedKeys(checkOptionTypes) {
		if checkOptionTypes[name][0] == typ {
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		return ""
	}
	return ", " + strings.Join(names, ", ")
}

func validMethod(m string) bool {
	if m == "" {
		return false
	}
	for _, r := range m {
		if r < 'A' || r > 'Z' {
			return false
		}
	}
	return true
}

// Interface guard.
var _ caddyfile.Unmarshaler = (*Monitoring)(nil)
