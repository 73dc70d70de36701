package caddymodule

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/swarmsec/caddy-hardening/ipclass"
)

func init() {
	appSubdirectives["ip_classes"] = parseIPClasses
	appSubdirectives["detection"] = parseDetection
}

// parseIPClasses reads
//
//	ip_classes {
//		trusted    <cidr|ip>...
//		suspicious <cidr|ip>...
//	}
//
// A line may repeat; {$VAR} (adapt time) and {env.VAR} (load time) may hold several prefixes.
// A line with no prefix at all is accepted and adds nothing: `trusted {$TRUSTED_CIDRS}` with
// the variable empty or unset is a legitimate deployment (no trusted network).
func parseIPClasses(d *caddyfile.Dispenser, a *App) error {
	if d.NextArg() {
		return d.Errf("ip_classes takes a block of 'trusted|suspicious <cidr>...' lines; unexpected %q", d.Val())
	}
	cfg := new(IPClassesConfig)
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		if err := strayBlock(d); err != nil {
			return err
		}
		var target *[]string
		switch class := d.Val(); class {
		case "trusted":
			target = &cfg.Trusted
		case "suspicious":
			target = &cfg.Suspicious
		default:
			return d.Errf("ip_classes: unknown class %q; expected trusted or suspicious (every other client is default)", class)
		}
		for d.NextArg() {
			v := d.Val()
			for _, s := range strings.FieldsFunc(v, func(r rune) bool { return r == ',' }) {
				if !isPlaceholder(s) {
					if _, err := ipclass.ParsePrefix(s); err != nil {
						return d.Errf("ip_classes %s: %v", d.Val(), err)
					}
				}
				*target = append(*target, s)
			}
		}
	}
	a.IPClasses = cfg
	return nil
}

// parseDetection reads
//
//	detection {
//		threshold <score>
//		ban_for <duration>
//		decay <duration>
//		probe_paths <pattern>...
//		probe_paths_replace <pattern>...
//		score <signal> <n> [<signal> <n>...]
//		burst not_found|auth_failure|rate_limited <allowance> [<leak>]
//		max_tracked <n>
//		shadow
//		ipv6_prefix <bits>
//		ipv6_escalate <bits> <count> | off
//		score_cross_site
//	}
//
// Signals: probe, traversal, auth_failure, not_found, rate_limited, malformed_path. `burst`
// may repeat, once per signal; an allowance of 0 turns the rule off for the signal.
// `ipv6_escalate 48 8` (the default) detects a /48 once 8 of its clients (ipv6_prefix
// networks) are detected; its bits must be fewer than ipv6_prefix's.
func parseDetection(d *caddyfile.Dispenser, a *App) error {
	if d.NextArg() {
		return d.Errf("detection takes a block; unexpected %q", d.Val())
	}
	cfg := new(DetectionConfig)
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		if err := strayBlock(d); err != nil {
			return err
		}
		name := d.Val()
		if seen[name] && name != "score" && name != "probe_paths" && name != "burst" {
			return d.Errf("detection: %s is given twice", name)
		}
		seen[name] = true
		switch name {
		case "threshold":
			v, err := wantArg(d, name, fmt.Sprintf("a positive score such as 20, at most %d", maxScore))
			if err != nil {
				return err
			}
			f, ok := finiteNumber(v)
			if !ok || f <= 0 || f > maxScore {
				return d.Errf("threshold: expected a positive score such as 20, at most %d, got %q", maxScore, v)
			}
			cfg.Threshold = f
		case "ban_for", "decay":
			dur, err := durationArg(d, name)
			if err != nil {
				return err
			}
			if dur < time.Second {
				return d.Errf("detection: %s %v is shorter than 1s (scores decay in steps of a second)", name, dur)
			}
			if err := checkBanForMax(dur); name == "ban_for" && err != nil {
				return d.Errf("detection: %v", err)
			}
			*map[string]*caddy.Duration{"ban_for": &cfg.BanFor, "decay": &cfg.Decay}[name] = caddy.Duration(dur)
		case "probe_paths", "probe_paths_replace":
			if seen["probe_paths"] && seen["probe_paths_replace"] {
				return d.Err("detection: give probe_paths (added to the built-ins) or probe_paths_replace (instead of them), not both")
			}
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.Errf("%s: expected one or more paths such as /.env or /wp-admin*", name)
			}
			if _, err := ipclass.NewProbeMatcher(args); err != nil {
				return d.Errf("%s: %v", name, err)
			}
			cfg.ProbePaths = append(cfg.ProbePaths, args...)
			cfg.ProbePathsReplace = name == "probe_paths_replace"
		case "score":
			args := d.RemainingArgs()
			if len(args) == 0 || len(args)%2 != 0 {
				return d.Err("score: expected '<signal> <n>' pairs, e.g. score probe 10 traversal 20")
			}
			if cfg.Scores == nil {
				cfg.Scores = map[string]float64{}
			}
			for i := 0; i < len(args); i += 2 {
				if _, err := ipclass.ParseSignal(args[i]); err != nil {
					return d.Errf("score: %v", err)
				}
				f, ok := finiteNumber(args[i+1])
				if !ok || f < 0 || f > maxScore {
					return d.Errf("score %s: expected a score from 0 to %d, got %q", args[i], maxScore, args[i+1])
				}
				if _, dup := cfg.Scores[args[i]]; dup {
					return d.Errf("score %s is given twice", args[i])
				}
				cfg.Scores[args[i]] = f
			}
		case "burst":
			if err := parseBurst(d, cfg); err != nil {
				return err
			}
		case "max_tracked":
			n, err := intArg(d, name, minTracked, maxTracked)
			if err != nil {
				return err
			}
			cfg.MaxTracked = n
		case "shadow":
			if err := noValue(d, name); err != nil {
				return err
			}
			cfg.Shadow = true
		case "score_cross_site":
			if err := noValue(d, name); err != nil {
				return err
			}
			cfg.ScoreCrossSite = true
		case "ipv6_prefix":
			n, err := intArg(d, "detection ipv6_prefix", 1, 128)
			if err != nil {
				return err
			}
			if e := cfg.IPv6Escalate; e != nil && !e.Off && e.Prefix >= n {
				return d.Errf("detection ipv6_prefix %d: ipv6_escalate %d above must be shorter; give ipv6_escalate fewer bits, or ipv6_escalate off", n, e.Prefix)
			}
			cfg.IPv6Prefix = n
		case "ipv6_escalate":
			if err := parseEscalate(d, cfg); err != nil {
				return err
			}
		default:
			return d.Errf("unknown detection subdirective %q; expected threshold, ban_for, decay, probe_paths, probe_paths_replace, score, burst, max_tracked, shadow, ipv6_prefix, ipv6_escalate or score_cross_site", name)
		}
	}
	a.Detection = cfg
	return nil
}

// parseBurst reads `burst <signal> <allowance> [<leak>]` into cfg.Bursts.
func parseBurst(d *caddyfile.Dispenser, cfg *DetectionConfig) error {
	args := d.RemainingArgs()
	if len(args) < 2 || len(args) > 3 {
		return d.Err("burst: expected '<signal> <allowance> [<leak>]', e.g. burst not_found 10 10s")
	}
	name := args[0]
	if _, dup := cfg.Bursts[name]; dup {
		return d.Errf("burst %s is given twice", name)
	}
	n, err := strconv.Atoi(args[1])
	if errors.Is(err, strconv.ErrRange) {
		return d.Errf("burst %s: allowance %s is too large: expected 0 to %d", name, args[1], maxBurstAllowance)
	}
	if err != nil {
		return d.Errf("burst %s: expected an allowance from 0 to %d, got %q", name, maxBurstAllowance, args[1])
	}
	b := BurstConfig{Allowance: n}
	if len(args) == 3 {
		leak, err := caddy.ParseDuration(args[2])
		if err != nil && durationOverflows(args[2]) {
			return d.Errf("burst %s: leak %q is too long: at most %v", name, args[2], maxBurstLeak)
		}
		if err != nil || leak <= 0 {
			return d.Errf("burst %s: expected a leak such as 10s, got %q", name, args[2])
		}
		b.Leak = caddy.Duration(leak)
	}
	if _, err := checkBurst(name, b); err != nil {
		return d.Err(err.Error())
	}
	if cfg.Bursts == nil {
		cfg.Bursts = map[string]BurstConfig{}
	}
	cfg.Bursts[name] = b
	return nil
}

// parseEscalate reads `ipv6_escalate <bits> <count>` or `ipv6_escalate off`.
func parseEscalate(d *caddyfile.Dispenser, cfg *DetectionConfig) error {
	const want = "ipv6_escalate: expected '<bits> <count>', e.g. ipv6_escalate 48 8 (a /48 once 8 of its clients are detected), or off"
	args := d.RemainingArgs()
	if len(args) == 1 && args[0] == "off" {
		cfg.IPv6Escalate = &IPv6EscalateConfig{Off: true}
		return nil
	}
	if len(args) != 2 {
		return d.Err(want)
	}
	bits := cfg.IPv6Prefix
	if bits == 0 {
		bits = ipclass.DefaultIPv6Prefix
	}
	prefix, err := strconv.Atoi(strings.TrimPrefix(args[0], "/"))
	if err != nil || prefix < 1 || prefix >= bits {
		return d.Errf("ipv6_escalate: prefix %q: expected 1 to %d bits, shorter than ipv6_prefix (/%d)", args[0], bits-1, bits)
	}
	count, err := strconv.Atoi(args[1])
	if err != nil || count < minEscalateCount || count > maxEscalateCount {
		return d.Errf("ipv6_escalate: count %q: expected %d to %d detected clients", args[1], minEscalateCount, maxEscalateCount)
	}
	cfg.IPv6Escalate = &IPv6EscalateConfig{Prefix: prefix, Count: count}
	return nil
}
