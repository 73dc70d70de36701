// Package breaker is a circuit breaker for HTTP upstreams and external services, built on
// sony/gobreaker's two-step breaker: a request asks Allow, runs, then reports its Outcome. It
// adds what an HTTP edge needs around gobreaker: failure classification (error, status, slow,
// client cancellation), the time until half-open for Retry-After, ordered state-change
// notifications delivered outside the breaker's lock, and state shared across instances through
// gobreaker's distributed breaker (see Share).
package breaker

import (
	"errors"
	"fmt"
	"regexp"
	"time"
)

// Defaults of Settings fields left at zero.
const (
	DefaultConsecutiveFailures = 5
	DefaultMinRequests         = 10
	DefaultInterval            = time.Minute
	DefaultOpenFor             = 30 * time.Second
	DefaultHalfOpenRequests    = 1
	// Buckets is how many buckets the rolling window of a failure ratio is cut into.
	Buckets = 10
)

// MaxNameLength bounds a breaker name: it goes into Redis keys and metric labels.
const MaxNameLength = 64

var validName = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)

// Settings are a breaker's trip rules. The zero value of a field means its default. When
// both ConsecutiveFailures and FailureRatio are set, the breaker opens on whichever rule
// fires first; when neither is set, it opens after DefaultConsecutiveFailures failures in a
// row.
type Settings struct {
	// Name identifies the breaker: letters, digits, '.', '_' and '-', at most 64 bytes.
	Name string
	// ConsecutiveFailures opens the breaker after this many failures in a row.
	ConsecutiveFailures uint32
	// FailureRatio (0 < r <= 1) opens the breaker when failures/requests over the rolling
	// Interval reach it, once at least MinRequests requests were counted in that window.
	FailureRatio float64
	// MinRequests is the number of requests in the window before FailureRatio applies.
	MinRequests uint32
	// Interval is the rolling window of FailureRatio, cut into Buckets buckets (default
	// DefaultInterval with a ratio). When set, ConsecutiveFailures also forgets failures older
	// than the window; when zero without a ratio, consecutive failures are never forgotten.
	Interval time.Duration
	// OpenFor is how long the breaker stays open before it lets probes through (half-open).
	OpenFor time.Duration
	// HalfOpenRequests is how many probes the half-open breaker admits; that many successes
	// in a row close it, one failure opens it again.
	HalfOpenRequests uint32
}

// WithDefaults is s with its zero fields set to their defaults: the settings in effect.
func (s Settings) WithDefaults() Settings {
	if s.ConsecutiveFailures == 0 && s.FailureRatio == 0 {
		s.ConsecutiveFailures = DefaultConsecutiveFailures
	}
	if s.MinRequests == 0 {
		s.MinRequests = DefaultMinRequests
	}
	if s.Interval == 0 && s.FailureRatio > 0 {
		s.Interval = DefaultInterval // a ratio needs a window; consecutive failures do not
	}
	if s.OpenFor == 0 {
		s.OpenFor = DefaultOpenFor
	}
	if s.HalfOpenRequests == 0 {
		s.HalfOpenRequests = DefaultHalfOpenRequests
	}
	return s
}

// Validate reports the first invalid setting, as a *SettingError (except for the name).
func (s Settings) Validate() error {
	if err := ValidateName(s.Name); err != nil {
		return err
	}
	switch {
	case s.FailureRatio < 0 || s.FailureRatio > 1 || s.FailureRatio != s.FailureRatio:
		return &SettingError{"failure_ratio", fmt.Sprintf("must be in (0, 1], got %v", s.FailureRatio)}
	case s.Interval < 0:
		return &SettingError{"interval", fmt.Sprintf("must be positive, got %s", s.Interval)}
	case s.OpenFor < 0:
		return &SettingError{"open_for", fmt.Sprintf("must be positive, got %s", s.OpenFor)}
	case s.Interval > 0 && s.Interval < MinInterval:
		return &SettingError{"interval", fmt.Sprintf("must be at least %s (%d buckets of 1ms), got %s", MinInterval, Buckets, s.Interval)}
	}
	return nil
}

// MinInterval is the shortest rolling window: Buckets buckets of a millisecond.
const MinInterval = Buckets * time.Millisecond

// SettingError is an invalid setting, named as configured (interval, open_for, ...), so a
// configuration adapter can point at the line that set it.
type SettingError struct {
	Setting string
	Msg     string // "must be ..., got ..."
}

func (e *SettingError) Error() string { return e.Setting + " " + e.Msg }

// ValidateName checks a breaker name.
func ValidateName(name string) error {
	if name == "" {
		return errors.New("a breaker needs a name")
	}
	if len(name) > MaxNameLength || !validName.MatchString(name) {
		return fmt.Errorf("breaker name %q: use at most %d letters, digits, '.', '_' or '-'", name, MaxNameLength)
	}
	return nil
}
