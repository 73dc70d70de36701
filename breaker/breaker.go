package breaker

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"
)

// State is gobreaker's state: StateClosed, StateHalfOpen or StateOpen.
type State = gobreaker.State

// The states.
const (
	StateClosed   = gobreaker.StateClosed
	StateHalfOpen = gobreaker.StateHalfOpen
	StateOpen     = gobreaker.StateOpen
)

// StateName is the state as logs, metrics and health reports spell it.
func StateName(s State) string {
	switch s {
	case StateClosed:
		return "closed"
	case StateHalfOpen:
		return "half_open"
	}
	return "open"
}

// Errors Allow returns when it refuses a request.
var (
	ErrOpen            = gobreaker.ErrOpenState
	ErrTooManyRequests = gobreaker.ErrTooManyRequests
)

// Causes of a transition.
const (
	CauseLocal  = "local"  // this instance's own requests
	CauseShared = "shared" // another instance opened the shared breaker
)

// Transition is one state change, delivered to the listener in order.
type Transition struct {
	Name     string
	From, To State
	At       time.Time
	Cause    string
	// OpenUntil is when an open breaker turns half-open (zero unless To is open).
	OpenUntil time.Time
}

// transitionQueue bounds the transitions waiting for the listener; more are dropped (and
// counted): a breaker cannot change state faster than requests complete, so this only fills
// when the listener is stuck.
const transitionQueue = 64

var (
	errFailure  = errors.New("breaker: failure")
	errExcluded = errors.New("breaker: excluded")
	errForced   = errors.New("breaker: opened by the shared state")
)

// Breaker is one named circuit breaker. It is safe for concurrent use.
type Breaker struct {
	settings Settings
	cb       *gobreaker.TwoStepCircuitBreaker[struct{}]

	openUntil atomic.Int64 // unix nanoseconds; valid while open
	open      atomic.Bool  // the last transition was to open: Allow may refuse without the lock
	forcing   atomic.Bool  // a shared-state trip is in progress
	tripMu    sync.Mutex   // one forced trip at a time

	events   chan Transition
	listener atomic.Pointer[func(Transition)]
	dropped  atomic.Uint64
	quit     chan struct{}
	closed   sync.Once
	wg       sync.WaitGroup

	shared atomic.Pointer[syncer] // nil unless Share was called
}

// New returns a breaker with the given settings (zero fields take their defaults). Call Close
// when done with it.
func New(s Settings) (*Breaker, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	s = s.WithDefaults()
	b := &Breaker{settings: s, events: make(chan Transition, transitionQueue), quit: make(chan struct{})}
	st := gobreaker.Settings{
		Name:          s.Name,
		MaxRequests:   s.HalfOpenRequests,
		Interval:      s.Interval,
		Timeout:       s.OpenFor,
		ReadyToTrip:   b.readyToTrip,
		OnStateChange: b.onStateChange,
		IsExcluded:    func(err error) bool { return err == errExcluded },
	}
	if s.Interval > 0 {
		st.BucketPeriod = s.Interval / Buckets
	}
	b.cb = gobreaker.NewTwoStepCircuitBreaker[struct{}](st)
	b.wg.Add(1)
	go b.dispatch()
	return b, nil
}

// Settings are the breaker's settings, defaults filled in.
func (b *Breaker) Settings() Settings { return b.settings }

// Name is the breaker's name.
func (b *Breaker) Name() string { return b.settings.Name }

// Ticket is an admitted request's right to report its outcome, exactly once.
type Ticket struct{ done func(error) }

// Report tells the breaker how the request went.
func (t Ticket) Report(o Outcome) {
	switch o {
	case Success:
		t.done(nil)
	case Failure:
		t.done(errFailure)
	default:
		t.done(errExcluded)
	}
}

// Allow admits a request (closed, or a free half-open probe slot) or refuses it with ErrOpen
// or ErrTooManyRequests. While open, it refuses without taking gobreaker's lock: a flood
// against an open breaker does not contend on it.
func (b *Breaker) Allow() (Ticket, error) {
	if b.open.Load() && time.Now().UnixNano() < b.openUntil.Load() {
		return Ticket{}, ErrOpen
	}
	done, err := b.cb.Allow()
	return Ticket{done}, err
}

// State is the current state. An open breaker whose time is up becomes half-open here.
func (b *Breaker) State() State { return b.cb.State() }

// Counts are gobreaker's counters of the current generation (window).
func (b *Breaker) Counts() gobreaker.Counts { return b.cb.Counts() }

// RetryAfter is the time until the open breaker lets a probe through, at least one second
// (the unit of Retry-After).
func (b *Breaker) RetryAfter(now time.Time) time.Duration {
	left := time.Duration(b.openUntil.Load() - now.UnixNano())
	if left < time.Second {
		return time.Second
	}
	return left
}

// OpenUntil is when the breaker, if open, turns half-open.
func (b *Breaker) OpenUntil() time.Time { return time.Unix(0, b.openUntil.Load()) }

// Listen sets the function that receives transitions, in order, on one goroutine that never
// holds the breaker's lock; nil stops delivery. It returns the previous listener.
func (b *Breaker) Listen(fn func(Transition)) func(Transition) {
	var prev *func(Transition)
	if fn == nil {
		prev = b.listener.Swap(nil)
	} else {
		prev = b.listener.Swap(&fn)
	}
	if prev == nil {
		return nil
	}
	return *prev
}

// Dropped is how many transitions were not delivered because the listener fell behind.
func (b *Breaker) Dropped() uint64 { return b.dropped.Load() }

// Close stops delivery and the shared-state synchronisation. The breaker still answers Allow.
func (b *Breaker) Close() {
	b.closed.Do(func() {
		close(b.quit)
		if s := b.shared.Load(); s != nil {
			s.stop()
		}
		b.wg.Wait()
	})
}

func (b *Breaker) readyToTrip(c gobreaker.Counts) bool {
	if b.forcing.Load() {
		return true
	}
	s := &b.settings
	if s.ConsecutiveFailures > 0 && c.ConsecutiveFailures >= s.ConsecutiveFailures {
		return true
	}
	done := c.TotalSuccesses + c.TotalFailures
	return s.FailureRatio > 0 && done >= s.MinRequests && float64(c.TotalFailures) >= s.FailureRatio*float64(done)
}

// onStateChange runs under gobreaker's lock: record, queue, return.
func (b *Breaker) onStateChange(name string, from, to State) {
	now := time.Now()
	t := Transition{Name: name, From: from, To: to, At: now, Cause: CauseLocal}
	if b.forcing.Load() {
		t.Cause = CauseShared
	}
	if to == StateOpen {
		t.OpenUntil = now.Add(b.settings.OpenFor)
		b.openUntil.Store(t.OpenUntil.UnixNano())
	}
	b.open.Store(to == StateOpen)
	if s := b.shared.Load(); s != nil && t.Cause == CauseLocal {
		s.observe(to)
	}
	select {
	case b.events <- t:
	default:
		b.dropped.Add(1)
	}
}

func (b *Breaker) dispatch() {
	defer b.wg.Done()
	for {
		select {
		case <-b.quit:
			return
		case t := <-b.events:
			if fn := b.listener.Load(); fn != nil {
				(*fn)(t)
			}
		}
	}
}

// forceOpen opens a closed or half-open breaker because the shared state says so. It returns
// false when it could not (every half-open slot busy): the caller retries later.
func (b *Breaker) forceOpen() bool {
	b.tripMu.Lock()
	defer b.tripMu.Unlock()
	b.forcing.Store(true)
	defer b.forcing.Store(false)
	for range 3 { // a concurrent success can reset the count between Allow and done
		if b.cb.State() == StateOpen {
			return true
		}
		done, err := b.cb.Allow()
		if err != nil {
			return err == ErrOpen
		}
		done(errForced)
	}
	return b.cb.State() == StateOpen
}
