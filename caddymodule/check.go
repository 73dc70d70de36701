package caddymodule

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/caddyserver/caddy/v2"
)

// CheckReport is what `caddy hardening check` found in one configuration.
type CheckReport struct {
	// Environment is the one the configuration names (default production); empty, and null
	// in JSON, when the configuration was not loaded (its adapter refuses it, or its JSON does
	// not decode): no environment was read, so none is claimed.
	Environment Environment `json:"environment"`
	Findings    []Finding   `json:"findings"`
	Errors      int         `json:"errors"`
	Warnings    int         `json:"warnings"`
	Infos       int         `json:"infos"`
}

// MarshalJSON writes environment as null when the configuration was not loaded.
func (r CheckReport) MarshalJSON() ([]byte, error) {
	type report CheckReport // without this method
	var env *Environment
	if r.Environment != "" {
		env = &r.Environment
	}
	return json.Marshal(struct {
		Environment *Environment `json:"environment"`
		report
	}{env, report(r)})
}

// Failed reports whether the check should exit 1: on errors, and on warnings when strict.
func (r CheckReport) Failed(strict bool) bool { return r.Errors > 0 || strict && r.Warnings > 0 }

// checkHook captures the hardening app a validation provisions, so the check reads the
// findings its modules reported. It is off (nil list) except during CheckConfig.
var checkHook captureApps

type captureApps struct {
	mu   sync.Mutex
	on   bool
	apps []*App
}

// provisioned records a, and reports whether a check is running: then an Error finding is
// recorded without refusing the configuration, so that every module still provisions and
// reports, and the check lists every finding, not only those before the first error.
func (c *captureApps) provisioned(a *App) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.on {
		c.apps = append(c.apps, a)
	}
	return c.on
}

// checkRun serializes checks: the capture is process-wide.
var checkRun sync.Mutex

// CheckConfig loads and provisions the JSON configuration as `caddy validate` does (nothing
// is started, no port is bound, no background check runs, and what provisioning stores goes
// to a throwaway storage: throwawayStorage), then returns every finding: the
// ones modules report at provision, the whole-configuration checks (OnValidate), and the
// rules on Caddy's own settings (admin endpoint, literal secrets, missing security headers).
// An error finding of ours does not stop the check (the modules after it still report);
// any other refusal of Caddy's is one Error finding, config.invalid, with Caddy's message.
func CheckConfig(cfgJSON []byte) CheckReport {
	checkRun.Lock()
	defer checkRun.Unlock()

	var rep CheckReport
	var cfg *caddy.Config
	if err := caddy.StrictUnmarshalJSON(caddy.RemoveMetaFields(cfgJSON), &cfg); err != nil {
		rep.add(Finding{Code: "config.invalid", Severity: Error, Module: "caddy",
			Message: "the configuration does not decode: " + err.Error(), Fix: "fix the JSON (or the Caddyfile it was adapted from) where the message points"})
		return rep.finish()
	}
	var raw map[string]any
	_ = json.Unmarshal(cfgJSON, &raw)
	rep.Environment = configEnvironment(raw) // until the hardening app provisions

	restore, refused, err := throwawayStorage(cfg)
	switch {
	case refused != nil:
		rep.add(Finding{Code: "config.invalid", Severity: Error, Module: "caddy", Config: refused.at,
			Message: "Caddy refuses the configuration: " + refused.err.Error(),
			Fix:     "the message names the module and the setting; `caddy validate` gives the same error"})
		return rep.finish()
	case err != nil:
		rep.add(Finding{Code: "check.temp_storage", Severity: Error, Module: "caddy",
			Message: "the check provisions the configuration against a temporary storage, so that it writes nothing (such as the local CA's keys) into the configured one, and it cannot create one: " + err.Error(),
			Fix:     "point TMPDIR at a writable folder"})
		return rep.finish()
	}
	defer restore()

	checkHook.mu.Lock()
	checkHook.on, checkHook.apps = true, nil
	checkHook.mu.Unlock()
	err = caddy.Validate(cfg)
	checkHook.mu.Lock()
	apps := checkHook.apps
	checkHook.on, checkHook.apps = false, nil
	checkHook.mu.Unlock()

	ours := false // Caddy's refusal is one of our own error findings, already in the report
	for _, a := range apps {
		a.runValidations()
		rep.Environment = a.Env()
		for _, f := range a.Findings() {
			rep.add(f)
			ours = ours || err != nil && f.Severity == Error && strings.Contains(err.Error(), f.Error())
		}
	}
	if err != nil && !ours {
		rep.add(Finding{Code: "config.invalid", Severity: Error, Module: "caddy",
			Message: "Caddy refuses the configuration: " + err.Error(),
			Fix:     "the message names the module and the setting; `caddy validate` gives the same error"})
	}
	for _, f := range caddyFindings(cfg, raw, rep.Environment) {
		rep.add(f)
	}
	return rep.finish()
}

// adaptFailure is the report on a configuration its adapter refuses: one config.invalid error
// with the adapter's message (file and line for a Caddyfile).
func adaptFailure(err error) CheckReport {
	var rep CheckReport
	fix := "the message names the file and the line; `caddy adapt` gives the same error"
	if strings.Contains(err.Error(), "did you mean to use a config adapter") {
		// Read as JSON: a Caddyfile whose name does not say so (site.conf).
		fix = "for a Caddyfile whose name is not Caddyfile or *.caddyfile, give --adapter caddyfile"
	}
	rep.add(Finding{Code: "config.invalid", Severity: Error, Module: "caddy",
		Message: "Caddy refuses the configuration: " + err.Error(),
		Fix:     fix})
	return rep.finish()
}

func (r *CheckReport) add(f Finding) {
	for _, g := range r.Findings {
		if g == f {
			return
		}
	}
	r.Findings = append(r.Findings, f)
}

// finish orders the findings (errors first, then by code) and counts them.
func (r CheckReport) finish() CheckReport {
	rank := map[Severity]int{Error: 0, Warning: 1, Info: 2}
	sort.SliceStable(r.Findings, func(i, j int) bool {
		a, b := r.Findings[i], r.Findings[j]
		if rank[a.Severity] != rank[b.Severity] {
			return rank[a.Severity] < rank[b.Severity]
		}
		return a.Code < b.Code
	})
	r.Errors, r.Warnings, r.Infos = 0, 0, 0
	for _, f := range r.Findings {
		switch f.Severity {
		case Error:
			r.Errors++
		case Warning:
			r.Warnings++
		default:
			r.Infos++
		}
	}
	if r.Findings == nil {
		r.Findings = []Finding{}
	}
	return r
}

// configEnvironment reads apps.hardening.environment (placeholders resolved), default
// production, for configurations where no module provisioned the app.
func configEnvironment(raw map[string]any) Environment {
	s, _ := dig(raw, "apps", "hardening", "environment").(string)
	if s == "" {
		return Production
	}
	env, err := ParseEnvironment(caddy.NewReplacer().ReplaceKnown(s, ""))
	if err != nil {
		return Production
	}
	return env
}

func dig(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

// caddyFindings are the rules on the rest of the configuration: Caddy's admin endpoint, a
// site without security_headers in production, and secrets written in any module's settings.
func caddyFindings(cfg *caddy.Config, raw map[string]any, env Environment) []Finding {
	var out []Finding
	if f, ok := adminFinding(cfg); ok {
		out = append(out, f)
	}
	if env == Production && dig(raw, "apps", "http", "servers") != nil && !hasHandler(raw, "security_headers") {
		out = append(out, Finding{Code: "headers.absent", Severity: Warning, Module: "caddy", Config: "apps.http.servers",
			Message: "production without security_headers: no HSTS, no Content-Security-Policy, no clickjacking or MIME-sniffing protection",
			Fix:     "add `security_headers` to each site (the strict preset is the default)"})
	}
	out = append(out, literalSecrets(raw, "")...)
	return out
}

// adminFinding warns when Caddy's admin API listens beyond loopback: it has no
// authentication and can replace the whole configuration, or read its secrets.
func adminFinding(cfg *caddy.Config) (Finding, bool) {
	if cfg.Admin == nil || cfg.Admin.Disabled || cfg.Admin.Listen == "" {
		return Finding{}, false // the default, localhost:2019
	}
	addr, err := caddy.ParseNetworkAddress(cfg.Admin.Listen)
	if err != nil || addr.IsUnixNetwork() || addr.IsFdNetwork() || loopbackHost(addr.Host) {
		return Finding{}, false
	}
	return Finding{Code: "admin.public", Severity: Warning, Module: "caddy", Config: "admin.listen",
		Message: "Caddy's admin endpoint listens on " + cfg.Admin.Listen + ", beyond loopback: it has no authentication, and whoever reaches it can read the configuration (with its secrets) and replace it",
		Fix:     "keep the default (admin localhost:2019), use a Unix socket (admin unix//run/caddy/admin.sock), or `admin off`; for remote management use the `remote` admin with client certificates"}, true
}

func loopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(strings.Trim(h, "[]"))
	return err == nil && ip.IsLoopback()
}

// hasHandler reports whether any route, at any depth, holds the handler.
func hasHandler(v any, name string) bool {
	switch t := v.(type) {
	case map[string]any:
		if t["handler"] == name {
			return true
		}
		for _, c := range t {
			if hasHandler(c, name) {
				return true
			}
		}
	case []any:
		for _, c := range t {
			if hasHandler(c, name) {
				return true
			}
		}
	}
	return false
}

// secretKeys are the JSON field (or header) names whose value is a credential.
var secretKeys = map[string]bool{"password": true, "passwd": true, "secret": true, "client_secret": true,
	"token": true, "api_key": true, "apikey": true, "authorization": true, "proxy-authorization": true,
	"x-api-key": true, "private_key": true}

// literalSecrets finds credentials written as values rather than runtime placeholders, in
// every module's settings except the ones our modules check themselves (the hardening app,
// monitoring). Hashes (bcrypt, argon2, sha256: digests) are not secrets.
func literalSecrets(v any, path string) []Finding {
	var out []Finding
	switch t := v.(type) {
	case map[string]any:
		if path == "apps.hardening" || t["handler"] == "monitoring" {
			return nil
		}
		for _, k := range sortedKeys(t) {
			p := k
			if path != "" {
				p = path + "." + k
			}
			if secretKeys[strings.ToLower(k)] && literalSecret(t[k]) {
				out = append(out, Finding{Code: "config.literal_secret", Severity: Warning, Module: "caddy", Config: p,
					Message: "a credential is written in the configuration: it is kept in the JSON config, the admin API's GET /config/ and autosave.json (a Caddyfile {$VAR} is substituted at adapt time, so it counts as written)",
					Fix:     "use a runtime placeholder resolved at load: {env.NAME} or {file./run/secrets/name}"})
				continue
			}
			out = append(out, literalSecrets(t[k], p)...)
		}
	case []any:
		for i, c := range t {
			out = append(out, literalSecrets(c, path+"."+strconv.Itoa(i))...)
		}
	}
	return out
}

func literalSecret(v any) bool {
	switch t := v.(type) {
	case string:
		s := strings.TrimSpace(t)
		if s == "" || isPlaceholder(s) /* "Bearer {env.TOKEN}" included */ || strings.HasPrefix(s, "sha256:") || strings.HasPrefix(s, "$2") || strings.HasPrefix(s, "$argon2") {
			return false
		}
		return true
	case []any: // header values
		for _, e := range t {
			if literalSecret(e) {
				return true
			}
		}
	}
	return false
}

// formatFinding is the text form: severity, code, where; then what and how to fix.
func formatFinding(f Finding) string {
	where := f.Module
	if f.Config != "" {
		where += ", at " + f.Config
	}
	return fmt.Sprintf("%-7s %s (%s)\n        %s\n        fix: %s\n", strings.ToUpper(string(f.Severity)), f.Code, where, f.Message, f.Fix)
}
