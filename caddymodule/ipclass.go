package caddymodule

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/swarmsec/caddy-hardening/internal/redisconn"
	"github.com/swarmsec/caddy-hardening/ipclass"
)

// ipClassVarKey is the request variable that holds the client's class by name:
// {http.vars.ip_class}. A string, so that CEL (`expression {http.vars.ip_class} ==
// "suspicious"`) and every other reader of vars compare it as the name it prints as.
const ipClassVarKey = "ip_class"

// ipClassCacheKey holds the class itself, computed once per request. ClassOf trusts only this
// typed value: a config's `vars ip_class trusted` (a string, possibly from a header through
// `map`) must not make a client trusted.
const ipClassCacheKey = "hardening.ip_class"

// IPClassesConfig lists the static classes. An address in both lists is trusted. An IPv4
// client written as IPv6, mapped (::ffff:10.0.0.1) or translated by NAT64's well-known prefix
// (64:ff9b::a00:1), is in the IPv4 prefixes holding its IPv4 address.
type IPClassesConfig struct {
	// Trusted lists CIDR prefixes or single addresses (IPv4 or IPv6) whose clients are
	// trusted: never detected or reclassified, given the trusted limits, shown monitoring
	// details. A runtime placeholder such as {env.TRUSTED_CIDRS} is resolved at load and may
	// hold several prefixes separated by spaces or commas.
	Trusted []string `json:"trusted,omitempty"`

	// Suspicious lists prefixes whose clients are always suspicious (known abusive ranges).
	// Placeholders as for Trusted.
	Suspicious []string `json:"suspicious,omitempty"`
}

// DetectionConfig tunes the automatic detection of suspicious clients. Each signal a client
// sends (a probe path, a refused path, a 401/403/404 response, a 429) adds to its score; the
// score halves every Decay; a client whose score reaches Threshold is suspicious for BanFor,
// on every instance when Redis is configured. Trusted clients are never scored.
type DetectionConfig struct {
	// Threshold is the score that makes a client suspicious, at most 1000000. Default: 20.
	Threshold float64 `json:"threshold,omitempty"`

	// BanFor is how long a detected client stays suspicious: 1s to 10 years (3650d).
	// Default: 15m.
	BanFor caddy.Duration `json:"ban_for,omitempty"`

	// Decay is the score's half-life. Default: 10m.
	Decay caddy.Duration `json:"decay,omitempty"`

	// ProbePaths are request paths only scanners ask for (`/x` exact, `/x*` prefix, `*x`
	// suffix, `*x*` substring; ASCII case ignored), added to the built-in list: /.env*,
	// /.git/*, /.git, /.svn/*, /.hg/*, /.aws/*, /.ssh/*, /.htaccess, /.htpasswd, /.DS_Store,
	// /.vscode/*, /wp-admin*, /wp-login.php, /xmlrpc.php, /phpmyadmin*, /pma/*, /cgi-bin/*,
	// /server-status*, /vendor/phpunit/*, /boaform/*, /HNAP1*.
	ProbePaths []string `json:"probe_paths,omitempty"`

	// ProbePathsReplace makes ProbePaths replace the built-in list instead of extending it
	// (for an application that serves one of the built-in paths). ProbePaths must then list
	// one path at least; to score no probe, set Scores["probe"] to 0.
	ProbePathsReplace bool `json:"probe_paths_replace,omitempty"`

	// Scores per signal: probe (default 10), traversal (20), auth_failure (2, a 401 or 403
	// answering a request with credentials: an Authorization header, or a POST, PUT or PATCH;
	// a wrong monitoring key), not_found (1, a 404 of anything but a static resource or a routine path such as
	// /robots.txt and /.well-known/*),
	// rate_limited (3, a 429 from policy_rate_limit), malformed_path (2, a path path_guard
	// refused as malformed: invalid_utf8, path_params, encoded_slash, bad_encoding,
	// trailing_dot_space; traversal is
	// every other reason). 0 ignores a signal; at most 1000000.
	Scores map[string]float64 `json:"scores,omitempty"`

	// Bursts sets, for not_found, auth_failure and rate_limited (the answers readers get too),
	// how many distinct ones a client may send in a burst before they score: a leaky bucket per
	// client that holds Allowance of them and gives one back every Leak. A repeat (the same path
	// for not_found, the same Authorization header for auth_failure, among the client's last
	// 16) does not count. Default: not_found 10 and auth_failure 5, each with a leak of 10s;
	// rate_limited 30 with a leak of 2s.
	Bursts map[string]BurstConfig `json:"bursts,omitempty"`

	// MaxTracked bounds the clients with a score on each instance and, apart, the clients
	// banned (and the detections shared through Redis). A full score table evicts the least
	// useful entry of a sample, the lowest current score, and never a ban: no churn of fresh
	// addresses ends a ban early. A full ban table evicts the ban that ends first (counted in
	// caddy_hardening_detection_bans_evicted_total, the first one logged). Below about 90 % of
	// it nothing is evicted (the detector's shards hold at least 1024 entries each; a reload
	// that changes it re-spreads the kept entries over as many shards as the new value calls
	// for). 64 to 100000000. Default: 200000 (about 41 MiB of scores, 34 MiB of bans at most).
	MaxTracked int `json:"max_tracked,omitempty"`

	// Shadow logs and counts what would be detected without making anyone suspicious: use it
	// to tune the scores on real traffic before enforcing. Detections and bans made before or
	// meanwhile (admin API, other instances) are kept and apply once shadow is off; a client
	// found in shadow mode is detected by its next signal then.
	Shadow bool `json:"shadow,omitempty"`

	// IPv6Prefix is how many leading bits of an IPv6 address name a client for detection: the
	// scores, detections and bans of every address in a /64 are one client's, since a host
	// given a /64 can send from any address in it (and would shed a ban by taking the next
	// one). 128: each address alone. Instances sharing detections through Redis must agree
	// on it. A reload that changes it does not re-key the IPv6 scores and detections already
	// kept: they no longer match their clients (see README). Default: 64.
	IPv6Prefix int `json:"ipv6_prefix,omitempty"`

	// IPv6Escalate detects a wider IPv6 network as a whole once several of its clients are
	// detected: see IPv6EscalateConfig. Default: a /48 once 8 of its clients are.
	IPv6Escalate *IPv6EscalateConfig `json:"ipv6_escalate,omitempty"`

	// ScoreCrossSite scores the signals of requests a browser sent on behalf of another site
	// (Sec-Fetch-Site: cross-site or same-site) as any other. By default they score nothing:
	// any page can make its visitors' browsers request any path of this site (an <img> with a
	// traversal form, two probe paths, a burst of failing logins), and would otherwise get
	// every visitor banned. Such requests are refused as before; a scanner that writes the
	// header itself evades detection, not path_guard or the rate limits. Default: false.
	ScoreCrossSite bool `json:"score_cross_site,omitempty"`
}

// IPv6EscalateConfig makes a wider IPv6 network one detection: once Count distinct clients
// (networks of ipv6_prefix bits) of one network of Prefix bits are detected while the
// others' detections last, every address in that network is suspicious for ban_for, as one
// entry, and its other clients' signals take no entry of their own. A holder of a /48 has
// 65536 /64s, each a fresh client with a fresh allowance: without it, a scan spread over them
// was never stopped, and their detections could fill max_tracked. The cost is collateral: a
// /48 holds a site, or a hosting provider's block of customers, who are refused with the
// clients detected there. Instances sharing detections through Redis must agree on Prefix.
type IPv6EscalateConfig struct {
	// Prefix is the wider network's length in bits: 1 to 127, and shorter than ipv6_prefix.
	// Default: 48.
	Prefix int `json:"prefix,omitempty"`

	// Count is how many distinct detected clients of one network detect it: 2 to 16.
	// Default: 8.
	Count int `json:"count,omitempty"`

	// Off turns escalation off: every client is detected alone.
	Off bool `json:"off,omitempty"`
}

// Bounds of an escalation's count.
const (
	minEscalateCount = 2
	maxEscalateCount = ipclass.MaxEscalateCount
)

// BurstConfig is the burst allowance of one signal (see DetectionConfig.Bursts).
type BurstConfig struct {
	// Allowance is how many distinct signals a client may send in a burst without scoring: 0
	// to 10000. 0 turns the rule off for the signal: every one scores, repeats included.
	Allowance int `json:"allowance"`

	// Leak is how long the bucket takes to give one back: 100ms to 1h. Default: 10s (2s for
	// rate_limited).
	Leak caddy.Duration `json:"leak,omitempty"`
}

// Bounds of a burst; checkBurst applies them to the Caddyfile and JSON alike.
const (
	maxBurstAllowance = 10000
	minBurstLeak      = 100 * time.Millisecond
	maxBurstLeak      = time.Hour
)

// checkBurst returns the signal a burst is for; it refuses a signal that has none, and
// values outside the bounds.
func checkBurst(name string, b BurstConfig) (ipclass.Signal, error) {
	sig, err := ipclass.ParseSignal(name)
	if err != nil {
		return 0, fmt.Errorf("burst: %v", err)
	}
	if !sig.HasBurst() {
		return 0, fmt.Errorf("burst %s: only not_found, auth_failure and rate_limited have a burst (the other signals score at once)", name)
	}
	if b.Allowance < 0 || b.Allowance > maxBurstAllowance {
		return 0, fmt.Errorf("burst %s: allowance %d: expected 0 to %d", name, b.Allowance, maxBurstAllowance)
	}
	if l := time.Duration(b.Leak); l != 0 && (l < minBurstLeak || l > maxBurstLeak) {
		return 0, fmt.Errorf("burst %s: leak %v: expected %v to %v", name, l, minBurstLeak, maxBurstLeak)
	}
	return sig, nil
}

// detectorPool keeps the detector (scores and detections) across config reloads.
var detectorPool = caddy.NewUsagePool()

type pooledDetector struct{ *ipclass.Detector }

func (pooledDetector) Destruct() error { return nil }

// sharedBansPool keeps the Redis sync of detections across reloads, per Redis client.
var sharedBansPool = caddy.NewUsagePool()

type pooledSharedBans struct{ *ipclass.SharedBans }

func (p pooledSharedBans) Destruct() error {
	p.Stop()
	return nil
}

// provisionClasses builds the classifier from the static lists and the detection settings.
func (a *App) provisionClasses(ctx caddy.Context, repl *caddy.Replacer) error {
	a.classifier = new(ipclass.Classifier)
	if a.FeatureEnabled("ip_classes") && a.IPClasses != nil {
		var err error
		var trusted, suspicious []netip.Prefix
		if trusted, err = parsePrefixes(repl, a.IPClasses.Trusted, "trusted"); err != nil {
			return err
		}
		if suspicious, err = parsePrefixes(repl, a.IPClasses.Suspicious, "suspicious"); err != nil {
			return err
		}
		a.classifier.Trusted, a.classifier.Suspicious = ipclass.NewPrefixSet(trusted), ipclass.NewPrefixSet(suspicious)
		if in, by, more := suspiciousInTrusted(trusted, suspicious); more >= 0 {
			also := ""
			if more > 0 {
				also = fmt.Sprintf(" (and %d more suspicious prefixes)", more)
			}
			_ = a.Report(Finding{Code: "ip_classes.suspicious_in_trusted", Severity: Warning, Module: "hardening",
				Config:  "apps.hardening.ip_classes.suspicious",
				Message: fmt.Sprintf("suspicious %s lies in trusted %s%s: a trusted prefix wins over a suspicious one, so its clients are trusted", in, by, also),
				Fix:     "list the trusted networks around it instead of the wider one, or drop the suspicious line"})
		}
		if every := trustsEveryone(a.classifier.Trusted); every != "" {
			_ = a.Report(Finding{Code: "ip_classes.trust_everyone", Severity: Warning, Module: "hardening",
				Config:  "apps.hardening.ip_classes.trusted",
				Message: "the trusted prefixes cover every " + every + ": every such client gets the trusted limits and monitoring details",
				Fix:     "list only your own networks: office, VPN, the hosts of your workers"})
		}
	}
	if !a.FeatureEnabled("detection") {
		// Bans outlive a configuration without detection: it holds the detector a running one
		// made (it applies, scores and lists nothing meanwhile), so switching detection off and
		// on again by reloads keeps the bans in effect, as shadow mode does, and as the shared
		// set of Redis would bring them back. Nothing is made when there is none.
		if _, ok := detectorPool.References("detector"); ok {
			if _, _, err := detectorPool.LoadOrNew("detector", func() (caddy.Destructor, error) {
				return pooledDetector{ipclass.NewDetector(ipclass.Settings{})}, nil
			}); err != nil {
				return err
			}
			a.detectorHeld = true
		}
		a.OnStart(func() { liveDetection.started(a) })
		return nil
	}
	a.OnStart(func() { liveDetection.started(a) })
	cfg := a.Detection
	if cfg == nil {
		cfg = new(DetectionConfig)
	}
	settings, err := cfg.settings()
	if err != nil {
		return err
	}
	v, _, err := detectorPool.LoadOrNew("detector", func() (caddy.Destructor, error) {
		return pooledDetector{ipclass.NewDetector(settings)}, nil
	})
	if err != nil {
		return err
	}
	a.detectorHeld = true
	det := v.(pooledDetector).Detector
	a.classifier.Detector = det
	currentDetector.Store(det)
	// The first ban a full ban table evicts under this config is logged (once per config load:
	// caddy_hardening_detection_bans_evicted_total counts them all).
	logger, maxBans, logged := a.logger, settings.Tracked(), new(atomic.Bool)
	a.detection = &detectionSetup{settings: settings}
	a.detection.banEvicted = func(evicted ipclass.Detection) {
		if logged.CompareAndSwap(false, true) {
			logger.Warn("detection: the ban table is full: a new ban evicts the one ending first, before its end; caddy_hardening_detection_bans_evicted_total counts them (this line is logged once per config load)",
				zap.Int("max_tracked", maxBans), zap.String("evicted", det.DetectionString(evicted)),
				zap.Time("evicted_until", evicted.Until), zap.String("fix", "raise max_tracked, or ban for longer what must outlast a flood (an earlier end goes first)"))
		}
	}
	patterns := cfg.ProbePaths
	if !cfg.ProbePathsReplace {
		patterns = append(append([]string(nil), ipclass.DefaultProbePaths...), cfg.ProbePaths...)
	}
	if a.probes, err = ipclass.NewProbeMatcher(patterns); err != nil {
		return err
	}
	a.RegisterStatus("ipclass:detection", a.detectionStatus)
	if cfg.Shadow {
		_ = a.Report(Finding{Code: "detection.shadow", Severity: Warning, Module: "hardening", Config: "apps.hardening.detection.shadow",
			Message: "detection is in shadow mode: suspicious clients are logged, never reclassified",
			Fix:     "remove `shadow` once the ip_reclassified events look right"}, Production)
	}
	if client := a.RedisClient(); client != nil {
		// One sync per Redis client and bound, kept across reloads like the client itself: a
		// reload does not drop the subscription or the queue.
		// The resolved bound: settings.MaxTracked is 0 when unset, which kept one member.
		maxBans := settings.Tracked()
		a.sharedBansKey = fmt.Sprintf("%s|%s|%d", a.redisKey, a.KeyPrefix(), maxBans)
		logger, shared := a.logger, a.redis
		v, _, err := sharedBansPool.LoadOrNew(a.sharedBansKey, func() (caddy.Destructor, error) {
			s := ipclass.NewSharedBans(client, a.KeyPrefix(), det, maxBans, func(msg string, err error) {
				if err != nil {
					switch {
					case refusedCredentials(err):
						msg = "shared detections: Redis refused this client (credentials or ACL): detections stay local, and other instances' are not received, until it grants them"
					case redisFull(err):
						msg = "shared detections: Redis is full and refuses the shared set's write: " + fullRedisDetections + ", until it has room"
					case redisconn.ReadOnly(err):
						msg = "shared detections: Redis is a read-only replica and refuses the shared set's write: detections stay local, and other instances' are not received; give the primary's address"
					}
					log := logger.Warn
					if shared.startupReported() {
						// The startup check's warning told this failure, with its cause
						// and fix: one message for one misconfiguration.
						log = logger.Debug
					}
					log(msg, zap.String("error", redactSecrets(err.Error(), shared.opts)))
				} else {
					logger.Info(msg)
				}
			})
			return pooledSharedBans{s}, nil
		})
		if err != nil {
			return err
		}
		a.sharedBans, a.sharedBansHeld = v.(pooledSharedBans).SharedBans, true
		a.OnStart(a.sharedBans.Start) // not while only validating; a no-op when a reload kept it
	}
	return nil
}

// detectionSetup is what a configuration with detection gives the pooled detector once it
// starts: its settings, and what is told of a ban a full table evicts.
type detectionSetup struct {
	settings   ipclass.Settings
	banEvicted func(ipclass.Detection)
}

// liveDetection holds the live configurations; the newest one's detection settings apply to the pooled detector. Not at Provision: a reload
// that Caddy refuses (a later module fails to provision, another app to start) leaves the
// running configuration serving, and its settings must stay (a refused reload with `shadow`
// unbanned everyone; a lower max_tracked evicted bans for good). A configuration that
// started and is cleaned up before the one it replaced gives the detector back to that one.
var liveDetection = liveConfigs{settle: settleDetection}

// settleDetection applies the newest live configuration's detection: its settings and
// eviction logger, or, with detection off, nothing applied and the gauges at 0.
func settleDetection(apps []*App) {
	if len(apps) == 0 {
		detectionOn.Store(false)
		return
	}
	a := apps[len(apps)-1]
	if a.detection == nil {
		detectionOn.Store(false)
		return
	}
	det := a.classifier.Detector
	det.SetSettings(a.detection.settings)
	det.OnBanEvicted(a.detection.banEvicted)
	currentDetector.Store(det)
	detectionOn.Store(true)
}

// fullRedisDetections is what a Redis full at maxmemory (noeviction) does to shared
// detections: their messages still go out (PUBLISH needs no memory), the set is not written.
const fullRedisDetections = "detections still reach the instances running now, but are not shared with one that starts or reconnects meanwhile (it reads them from Redis)"

// detectionStatus reports the detector to the monitoring handler: warn while detections
// cannot be shared through Redis (they stay local).
func (a *App) detectionStatus() StatusReport {
	det := a.detector()
	tracked, detected := recentDetectionCounts(det)
	r := StatusReport{Component: "ipclass:detection", Type: "component", Status: HealthPass, Time: time.Now(),
		Observed: map[string]any{"tracked": tracked, "suspicious": detected, "bans_evicted": det.BansEvicted(), "shadow": det.Shadow(), "shared": a.sharedBans != nil}}
	if a.sharedBans != nil {
		if err := a.sharedBans.Failure(); err != nil {
			what := "detections are not shared between instances"
			if redisFull(err) {
				what = fullRedisDetections
			}
			r.Status, r.Output = HealthWarn, a.sharingFailure(err, what, true)
		}
	}
	return r
}

// sharingFailure says why a module's state is not shared (what: "detections are not shared
// between instances"): a Redis that answers but refuses (see redisRefusal) is named as such,
// anything else is an outage. channels: the module also publishes and subscribes under the
// key prefix.
func (a *App) sharingFailure(err error, what string, channels bool) string {
	if msg, ok := a.redisRefusal(err, what, channels); ok {
		return msg
	}
	return "Redis unreachable: " + what
}

// redisRefusal words a failure of a Redis that answers but refuses this client, which waiting
// does not end and the operator must fix: full at maxmemory (OOM), a read-only replica
// (READONLY), an ACL without a command, key or channel the module uses (NOPERM, or a script's
// call refused), a wrong password. It names the error and the change to make; ok is false for
// anything else (an outage).
func (a *App) redisRefusal(err error, what string, channels bool) (string, bool) {
	var opts redisconn.Options
	if a.redis != nil {
		opts = a.redis.opts
	}
	msg := redactSecrets(err.Error(), opts)
	switch {
	case redisFull(err):
		return fmt.Sprintf("Redis refused the write (%s): %s; it is full at maxmemory with the noeviction policy: raise maxmemory, or give it a volatile-* eviction policy", msg, what), true
	case redisconn.ReadOnly(err):
		return fmt.Sprintf("Redis refused the write (%s): %s; the address names a read-only replica: give the primary's address (or its Sentinels with sentinel, which follow a failover)", msg, what), true
	case !refusedCredentials(err):
		return "", false
	}
	fix := "check the username and password of the hardening option's redis"
	switch cmd := redisconn.RefusedCommand(err); {
	case cmd != "":
		fix = fmt.Sprintf("the ACL user needs the command %s (ACL SETUSER <user> +%s)", strings.ToUpper(cmd), cmd)
	case redisconn.ScriptRefused(err):
		// Redis does not name the command; of the modules' scripts only the rate limiter's
		// calls one outside @read, @write and @scripting.
		fix = "the ACL refuses a command the script calls: the rate limiter's calls TIME, which is in no category but @fast (ACL SETUSER <user> +time)"
	case strings.Contains(msg, "NOPERM"):
		p := a.KeyPrefix()
		needs, grant := "the keys ~"+p+"*", "~"+p+"*"
		if channels {
			needs, grant = needs+" and the channel &"+p+"*", grant+" &"+p+"*"
		}
		fix = fmt.Sprintf("the ACL user needs %s (ACL SETUSER <user> %s ...)", needs, grant)
	}
	return fmt.Sprintf("Redis refused this client (%s): %s; %s", msg, what, fix), true
}

// minTracked and maxTracked bound max_tracked, in the Caddyfile and in JSON alike: beyond
// maxTracked the bound holds nothing an attacker grows (one entry per client address).
const (
	minTracked = 64
	maxTracked = 100_000_000
)

// maxScore bounds a signal's score and the threshold: a client's score is a sum of signals,
// and scores near the float64 limit would add up to +Inf, which no decay brings back.
const maxScore = 1000000

func (c *DetectionConfig) settings() (ipclass.Settings, error) {
	s := ipclass.Settings{Threshold: c.Threshold, BanFor: time.Duration(c.BanFor), Decay: time.Duration(c.Decay),
		MaxTracked: c.MaxTracked, Shadow: c.Shadow, IPv6Prefix: c.IPv6Prefix, Scores: map[ipclass.Signal]float64{}}
	if c.IPv6Prefix < 0 || c.IPv6Prefix > 128 {
		return s, fmt.Errorf("detection: ipv6_prefix: expected 1 to 128 bits, got %d", c.IPv6Prefix)
	}
	if e := c.IPv6Escalate; e != nil {
		bits := c.IPv6Prefix
		if bits == 0 {
			bits = ipclass.DefaultIPv6Prefix
		}
		switch {
		case e.Off && (e.Prefix != 0 || e.Count != 0):
			return s, fmt.Errorf("detection: ipv6_escalate: off takes no prefix or count")
		case e.Off:
			s.EscalateCount = -1
		case e.Prefix < 0 || e.Prefix > 127 || e.Prefix != 0 && e.Prefix >= bits || e.Prefix == 0 && ipclass.DefaultIPv6Escalate >= bits:
			return s, fmt.Errorf("detection: ipv6_escalate: prefix %d: expected a length shorter than ipv6_prefix (/%d), such as 48", e.Prefix, bits)
		case e.Count != 0 && (e.Count < minEscalateCount || e.Count > maxEscalateCount):
			return s, fmt.Errorf("detection: ipv6_escalate: count %d: expected %d to %d", e.Count, minEscalateCount, maxEscalateCount)
		default:
			s.IPv6Escalate, s.EscalateCount = e.Prefix, e.Count
		}
	}
	if c.Threshold < 0 || c.BanFor < 0 || c.Decay < 0 || c.MaxTracked < 0 {
		return s, fmt.Errorf("detection: threshold, ban_for, decay and max_tracked must not be negative")
	}
	// Replacing the built-ins with nothing would end probe detection with nothing said; the
	// Caddyfile's probe_paths_replace needs one path at least, and so does JSON.
	if c.ProbePathsReplace && len(c.ProbePaths) == 0 {
		return s, fmt.Errorf("detection: probe_paths_replace replaces the built-in probe paths with probe_paths, and there are none; expected the paths to use in probe_paths (or scores.probe 0 to score no probe)")
	}
	if c.MaxTracked != 0 && (c.MaxTracked < minTracked || c.MaxTracked > maxTracked) {
		return s, fmt.Errorf("detection: max_tracked %d: expected %d to %d", c.MaxTracked, minTracked, maxTracked)
	}
	if c.Threshold > maxScore {
		return s, fmt.Errorf("detection: threshold %v: at most %d", c.Threshold, maxScore)
	}
	for name, d := range map[string]caddy.Duration{"ban_for": c.BanFor, "decay": c.Decay} {
		if d != 0 && time.Duration(d) < time.Second {
			return s, fmt.Errorf("detection: %s %v is shorter than 1s (scores decay in steps of a second)", name, time.Duration(d))
		}
	}
	if err := checkBanForMax(time.Duration(c.BanFor)); err != nil {
		return s, fmt.Errorf("detection: %v", err)
	}
	for name, v := range c.Scores {
		sig, err := ipclass.ParseSignal(name)
		if err != nil {
			return s, fmt.Errorf("detection: %v", err)
		}
		if v < 0 || v > maxScore {
			return s, fmt.Errorf("detection: score %s %v: expected 0 to %d", name, v, maxScore)
		}
		s.Scores[sig] = v
	}
	for name, b := range c.Bursts {
		sig, err := checkBurst(name, b)
		if err != nil {
			return s, fmt.Errorf("detection: %v", err)
		}
		if s.Bursts == nil {
			s.Bursts = map[ipclass.Signal]ipclass.Burst{}
		}
		s.Bursts[sig] = ipclass.Burst{Allowance: b.Allowance, Leak: time.Duration(b.Leak)}
	}
	return s, nil
}

// checkBanForMax refuses a ban longer than ipclass.MaxBanFor, whichever way it is given
// (Caddyfile, JSON, admin API): past it the ban's end overflows and nobody is banned.
func checkBanForMax(d time.Duration) error {
	if d > ipclass.MaxBanFor {
		return fmt.Errorf("ban_for %v is longer than 10 years (3650d), the longest ban", d)
	}
	return nil
}

// parsePrefixes resolves placeholders in the list, splits what they hold, and parses each
// entry.
func parsePrefixes(repl *caddy.Replacer, list []string, class string) ([]netip.Prefix, error) {
	var prefixes []netip.Prefix
	for _, s := range resolveList(repl, list) {
		p, err := ipclass.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("ip_classes %s: %v", class, err)
		}
		prefixes = append(prefixes, p)
	}
	return prefixes, nil
}

// suspiciousInTrusted finds the suspicious prefixes that lie in a trusted one: dead lines,
// since a trusted prefix wins. It returns the first with the trusted prefix holding it and
// how many more there are (-1: none). A trusted prefix inside a suspicious one is the
// intended exception (a partner's host in a range otherwise refused), not reported.
func suspiciousInTrusted(trusted, suspicious []netip.Prefix) (in, by netip.Prefix, more int) {
	more = -1
	for _, s := range suspicious {
		for _, t := range trusted {
			if t.Bits() <= s.Bits() && t.Contains(s.Addr()) {
				if more++; more == 0 {
					in, by = s, t
				}
				break
			}
		}
	}
	return in, by, more
}

// ClassOf is the client's IP class, computed once per request from Caddy's client IP (so
// trusted_proxies are respected) and cached in the request's vars as {http.vars.ip_class}.
func (a *App) ClassOf(r *http.Request) ipclass.Class {
	// One context lookup for the vars table (a walk up Caddy's context chain), then plain map
	// operations: this runs on every request.
	vars, _ := r.Context().Value(caddyhttp.VarsCtxKey).(map[string]any)
	if c, ok := vars[ipClassCacheKey].(ipclass.Class); ok {
		return c
	}
	c := ipclass.Default
	if a.classifier != nil {
		if addr, ok := parseClientIP(vars); ok {
			c = a.classifier.Class(addr)
		}
	}
	if c == ipclass.Trusted && earlyData(r) {
		// An address not verified yet is trusted with nothing (a spoofed one would get the
		// trusted rate-limit row, monitoring details): default until the handshake completes.
		// A suspicious one stays suspicious: claiming it only refuses the sender.
		c = ipclass.Default
	}
	classifiedRequests[c].Inc()
	if vars != nil {
		vars[ipClassCacheKey] = c
		vars[ipClassVarKey] = c.String() // a constant: no allocation
	}
	return c
}

// clientAddr is Caddy's client IP for the request: the peer, or the forwarded client when the
// peer is one of the server's trusted_proxies.
func clientAddr(r *http.Request) (netip.Addr, bool) {
	vars, _ := r.Context().Value(caddyhttp.VarsCtxKey).(map[string]any)
	return parseClientIP(vars)
}

func parseClientIP(vars map[string]any) (netip.Addr, bool) {
	s, _ := vars[caddyhttp.ClientIPVarKey].(string)
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, false
	}
	return a.WithZone("").Unmap(), true
}

// Signal reports a suspicious behaviour of the request's client to the detector (the signal
// API modules call: path_guard for probes, refused paths and 4xx responses, policy_rate_limit
// for 429s, monitoring for wrong keys). A detection is logged as an ip_reclassified event,
// counted, shared through Redis, and takes effect for the client's next request.
func (a *App) Signal(ctx caddy.Context, r *http.Request, sig ipclass.Signal) {
	if a.classifier == nil || a.classifier.Detector == nil || signalsOff(r) {
		return
	}
	if crossSite(r) && (a.Detection == nil || !a.Detection.ScoreCrossSite) {
		return
	}
	if earlyData(r) {
		return // the address is not verified yet: a spoofed one would score against its owner
	}
	addr, ok := clientAddr(r)
	if !ok {
		return
	}
	det, hit := a.classifier.Signal(addr, sig, signalKey(r, sig))
	if !hit {
		return
	}
	reclassified.WithLabelValues(sig.String(), boolLabel(det.Shadow)).Inc()
	level := zapcore.WarnLevel
	if det.Shadow {
		level = zapcore.InfoLevel
	}
	a.SecurityEvent(ctx, r, level, EventIPReclassified, map[string]any{
		"ip": a.classifier.Detector.DetectionString(det), "from": a.ClassOf(r).String(), "to": ipclass.Suspicious.String(),
		"signal": sig.String(), "score": det.Score, "until": det.Until.UTC().Format("2006-01-02T15:04:05Z07:00"),
		"shadow": det.Shadow,
	})
	if !det.Shadow && a.sharedBans != nil {
		a.sharedBans.Publish(det)
	}
}

// signalsOffKey marks a request that a path_guard with `signals off` passed on: nothing on
// the rest of its route reports its client to the detector.
type signalsOffKey struct{}

func withSignalsOff(r *http.Request) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), signalsOffKey{}, true))
}

func signalsOff(r *http.Request) bool {
	off, _ := r.Context().Value(signalsOffKey{}).(bool)
	return off
}

// crossSite reports whether a browser sent r for a page of another site (Fetch Metadata): an
// <img>, <script>, <iframe>, form or link there, which that page's author chose, not the
// visitor. same-origin and none (typed, bookmarked) are the visitor's own requests.
func crossSite(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "cross-site", "same-site":
		return true
	}
	return false
}

// earlyData reports whether r arrived as TLS early data (a 0-RTT request of HTTP/3, which Caddy
// accepts by default): the handshake has not completed, so the client's address is not
// verified. A QUIC client's first flight may carry any source address (one it does not own;
// the answer goes there), and the request is served before any packet comes back. Caddy's
// remote_ip and client_ip matchers answer such requests 425 Too Early; nothing may be scored
// against, or granted to, an address taken from them.
func earlyData(r *http.Request) bool {
	return r.TLS != nil && !r.TLS.HandshakeComplete
}

// signalKey names what a signal with a burst was about, so that a repeat does not count
// (ipclass.Burst): a 404 by its path (a page polling a missing URL), a failed authentication
// by its credentials (an expired token sent again; a guesser sends new ones). A form login's
// credentials are in the body, out of reach: "", every one counts.
func signalKey(r *http.Request, sig ipclass.Signal) string {
	switch sig {
	case ipclass.SignalNotFound:
		return r.URL.Path
	case ipclass.SignalAuthFailure:
		return r.Header.Get("Authorization")
	}
	return ""
}

// IsProbe reports whether the decoded path is one of the configured probe paths.
func (a *App) IsProbe(path string) bool { return a.probes.Match(path) }

func boolLabel(b bool) string {
	if b {
		return "true"
	}
	return "false"
}

// lastIPv4 and lastIPv6 are the highest address of each family.
var (
	lastIPv4 = netip.MustParseAddr("255.255.255.255")
	lastIPv6 = netip.MustParseAddr("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")
)

// trustsEveryone names the address families whose whole space the trusted set holds (its
// lowest and highest address: 0.0.0.0/0, ::/0, or halves that add up to them), "" for none.
// IPv4 and IPv6 are apart: ::/0 holds no IPv4 client (an IPv4-mapped address is unmapped), so
// the warning said "every address" of a list that trusted every IPv6 client and no IPv4 one;
// and 0.0.0.0/8 holds 0.0.0.0 without covering anyone.
func trustsEveryone(trusted *ipclass.PrefixSet) string {
	v4 := trusted.Contains(netip.IPv4Unspecified()) && trusted.Contains(lastIPv4)
	v6 := trusted.Contains(netip.IPv6Unspecified()) && trusted.Contains(lastIPv6)
	switch {
	case v4 && v6:
		return "IPv4 and IPv6 address (0.0.0.0/0, ::/0)"
	case v4:
		return "IPv4 address (0.0.0.0/0)"
	case v6:
		return "IPv6 address (::/0)"
	}
	return ""
}
