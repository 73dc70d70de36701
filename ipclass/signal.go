package ipclass

import (
	"fmt"
	"time"
)

// Signal is something a client did that raises its suspicion score.
type Signal uint8

// The signals modules report. Each has a configurable score (Settings.Scores).
const (
	// SignalProbe: a request for a scanner or honeypot path (/.env, /.git/, /wp-login.php ...).
	SignalProbe Signal = iota
	// SignalTraversal: a request path_guard refused as an attack form (traversal, ambiguous
	// encoding).
	SignalTraversal
	// SignalAuthFailure: a failed authentication: a 401 or 403 answering a request that
	// carried credentials, a wrong monitoring key. Counted past its Burst.
	SignalAuthFailure
	// SignalNotFound: a 404 answering a request for something other than a static resource
	// (StaticResource) or a routine path (RoutinePath). Counted past its Burst.
	SignalNotFound
	// SignalRateLimited: a 429 from the rate limiter.
	SignalRateLimited
	// SignalMalformedPath: a request path_guard refused as malformed, not as an attack form
	// (a Latin-1 link, ;jsessionid=, %2f, a stray %: pathguard.Reason.Malformed).
	SignalMalformedPath
	// SignalManual: an operator's ban through the admin API (no score).
	SignalManual
	// SignalShared: a detection another instance published through Redis (no score).
	SignalShared

	numScoredSignals = SignalMalformedPath + 1
)

var signalNames = [...]string{
	SignalProbe:         "probe",
	SignalTraversal:     "traversal",
	SignalAuthFailure:   "auth_failure",
	SignalNotFound:      "not_found",
	SignalRateLimited:   "rate_limited",
	SignalMalformedPath: "malformed_path",
	SignalManual:        "manual",
	SignalShared:        "shared",
}

// String is the signal's name in configuration, logs and metrics.
func (s Signal) String() string {
	if int(s) < len(signalNames) {
		return signalNames[s]
	}
	return fmt.Sprintf("signal(%d)", uint8(s))
}

// ParseSignal reads the name of a scored signal.
func ParseSignal(s string) (Signal, error) {
	for i := Signal(0); i < numScoredSignals; i++ {
		if signalNames[i] == s {
			return i, nil
		}
	}
	return 0, fmt.Errorf("unknown signal %q: expected probe, traversal, auth_failure, not_found, rate_limited or malformed_path", s)
}

// ScoredSignals lists the signals that carry a score, in order.
func ScoredSignals() []Signal {
	out := make([]Signal, numScoredSignals)
	for i := range out {
		out[i] = Signal(i)
	}
	return out
}

// Settings tune detection. The zero value of a field means its default.
type Settings struct {
	// Threshold is the score at which a client becomes suspicious. Default: 20.
	Threshold float64
	// BanFor is how long a detected client stays suspicious, at most MaxBanFor. Default: 15m.
	BanFor time.Duration
	// Decay is the score's half-life: without new signals a score halves every Decay.
	// Default: 10m.
	Decay time.Duration
	// Scores per signal. Defaults: probe 10, traversal 20, auth_failure 2, not_found 1,
	// rate_limited 3, malformed_path 2. A negative value means 0 (the signal is ignored).
	Scores map[Signal]float64
	// Bursts per signal (not_found, auth_failure and rate_limited only; see Burst): how many distinct
	// signals a client may send in a burst before they score. A signal left out has its
	// DefaultBursts entry; Allowance 0 turns the rule off for it.
	Bursts map[Signal]Burst
	// MaxTracked bounds the clients with a score or a detection. Default: 200000.
	MaxTracked int
	// Shadow reports what would be detected without making anyone suspicious: while it is on,
	// no detection or ban applies (they are kept, and apply again when it is off).
	Shadow bool
	// IPv6Prefix is how many leading bits of an IPv6 address name a client: its scores,
	// detections and bans are its network's, since a host given a /64 can send from any
	// address in it. 128: each address alone. Default: 64.
	IPv6Prefix int
	// IPv6Escalate is how many leading bits of an IPv6 address name the wider network that
	// is detected as a whole once EscalateCount of its clients are detected while the others'
	// detections last: everyone in it is then suspicious for BanFor, as one entry. Only a
	// length under IPv6Prefix escalates. Default: 48.
	IPv6Escalate int
	// EscalateCount is how many distinct detected clients of one wider network detect it: 2
	// to MaxEscalateCount. Default: 8. Negative: no escalation.
	EscalateCount int
}

// DefaultScores are the scores of the signals unless configured.
var DefaultScores = map[Signal]float64{
	SignalProbe: 10, SignalTraversal: 20, SignalAuthFailure: 2, SignalNotFound: 1, SignalRateLimited: 3,
	// Low: one legacy link must not ban a client (and everyone behind its NAT); ten in a
	// burst do.
	SignalMalformedPath: 2,
}

// Defaults for Settings.
const (
	DefaultThreshold  = 20
	DefaultBanFor     = 15 * time.Minute
	DefaultDecay      = 10 * time.Minute
	DefaultMaxTracked = 200000
	DefaultIPv6Prefix = 64
	// DefaultIPv6Escalate and DefaultEscalateCount: eight detected /64s of one /48 (a site's
	// allocation, or a hosting provider's block of customers) detect the /48.
	DefaultIPv6Escalate  = 48
	DefaultEscalateCount = 8

	// MaxBanFor is the longest detection or ban: 10 years (3650d), "permanent" for any
	// practical purpose. A detection ends at a Unix time in nanoseconds, an int64 that
	// overflows in 2262: a longer ban (100000d) ended in the past and banned nobody.
	MaxBanFor = 3650 * 24 * time.Hour
)

type resolvedSettings struct {
	threshold  float64
	banFor     time.Duration
	decay      time.Duration
	scores     [numScoredSignals]float64
	bursts     [len(burstSignals)]bucket
	maxTracked int
	shadow     bool
	ipv6Bits   int
	escBits    int // 0: no escalation
	escCount   int
}

// Tracked is how many clients these settings track: MaxTracked, or DefaultMaxTracked when it
// is unset. Whatever else is bounded by max_tracked (the shared set) must use this, not the
// raw field, which is 0 when unset.
func (s Settings) Tracked() int { return s.resolve().maxTracked }

func (s Settings) resolve() resolvedSettings {
	r := resolvedSettings{threshold: s.Threshold, banFor: s.BanFor, decay: s.Decay, maxTracked: s.MaxTracked, shadow: s.Shadow, ipv6Bits: s.IPv6Prefix}
	if r.ipv6Bits <= 0 || r.ipv6Bits > 128 {
		r.ipv6Bits = DefaultIPv6Prefix
	}
	r.escBits, r.escCount = s.IPv6Escalate, s.EscalateCount
	if r.escBits <= 0 {
		r.escBits = DefaultIPv6Escalate
	}
	if r.escCount == 0 {
		r.escCount = DefaultEscalateCount
	}
	r.escCount = min(max(r.escCount, 2), MaxEscalateCount)
	if s.EscalateCount < 0 || r.escBits >= r.ipv6Bits {
		r.escBits, r.escCount = 0, 0
	}
	if r.threshold <= 0 {
		r.threshold = DefaultThreshold
	}
	if r.banFor <= 0 {
		r.banFor = DefaultBanFor
	}
	r.banFor = min(r.banFor, MaxBanFor)
	if r.decay <= 0 {
		r.decay = DefaultDecay
	}
	if r.maxTracked <= 0 {
		r.maxTracked = DefaultMaxTracked
	}
	for sig, v := range DefaultScores {
		r.scores[sig] = v
	}
	for sig, v := range s.Scores {
		if sig < numScoredSignals {
			r.scores[sig] = max(v, 0)
		}
	}
	for i, sig := range burstSignals {
		b, ok := s.Bursts[sig]
		if !ok {
			b = DefaultBursts[sig]
		}
		r.bursts[i] = resolveBurst(sig, b)
	}
	return r
}
