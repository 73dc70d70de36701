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
	cb       atomic.Pointer[local] // the gobreaker in use (see local)

	openUntil atomic.Int64 // unix nanoseconds; valid while open
	open      atomic.Bool  // the last transition was to open: Allow may refuse without the lock

	// stateMu orders the transitions the listener gets: a reported transition of the current
	// local breaker, and a replacement of it (openUntilShared, a follower's hand-over). It is
	// taken under a gobreaker lock (onStateChange), never the other way round.
	stateMu sync.Mutex
	state   State // the last reported state (under stateMu)

	events   chan Transition
	listener atomic.Pointer[func(Transition)]
	dropped  atomic.Uint64
	quit     chan struct{}
	closed   sync.Once
	wg       sync.WaitGroup

	shared atomic.Pointer[syncer] // nil unless Share was called
}

// local is one gobreaker two-step breaker. gobreaker's open time (its Settings.Timeout) is
// fixed when it is made, so a breaker that follows a shared trip, which ends at the shared
// breaker's time and not OpenFor from now, gets a local of its own (a follower) made with the
// time left; when the follower leaves half-open, a local with OpenFor takes over. A replaced
// local's late reports (requests admitted before) and transitions are ignored.
type local struct {
	cb       *gobreaker.TwoStepCircuitBreaker[struct{}]
	forcing  atomic.Bool // a forced trip is in progress: readyToTrip says yes
	follower bool        // its open time is a shared trip's
}

// New returns a breaker with the given settings (zero fields take their defaults). Call Close
// when done with it.
func New(s Settings) (*Breaker, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	s = s.WithDefaults()
	b := &Breaker{settings: s, events: make(chan Transition, transitionQueue), quit: make(chan struct{})}
	b.cb.Store(b.newLocal(s.OpenFor, false))
	b.wg.Add(1)
	go b.dispatch()
	return b, nil
}

// newLocal makes a closed gobreaker with the breaker's settings and open time openFor.
func (b *Breaker) newLocal(openFor time.Duration, follower bool) *local {
	s := &b.settings
	l := &local{follower: follower}
	st := gobreaker.Settings{
		Name:          s.Name,
		MaxRequests:   s.HalfOpenRequests,
		Interval:      s.Interval,
		Timeout:       openFor,
		ReadyToTrip:   func(c gobreaker.Counts) bool { return l.forcing.Load() || b.readyToTrip(c) },
		OnStateChange: func(_ string, from, to State) { b.onStateChange(l, from, to) },
		IsExcluded:    func(err error) bool { return err == errExcluded },
	}
	if s.Interval > 0 {
		st.BucketPeriod = s.Interval / Buckets
	}
	l.cb = gobreaker.NewTwoStepCircuitBreaker[struct{}](st)
	return l
}

// trip opens a local breaker nobody else uses yet (its transition is not reported: it is not
// the current one).
func (l *local) trip() {
	l.forcing.Store(true)
	defer l.forcing.Store(false)
	if done, err := l.cb.Allow(); err == nil {
		done(errForced) // a fresh breaker is closed: readyToTrip says yes
	}
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
	done, err := b.cb.Load().cb.Allow()
	return Ticket{done}, err
}

// State is the current state. An open breaker whose time is up becomes half-open here.
func (b *Breaker) State() State { return b.cb.Load().cb.State() }

// Counts are gobreaker's counters of the current generation (window).
func (b *Breaker) Counts() gobreaker.Counts { return b.cb.Load().cb.Counts() }

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
	s := &b.settings
	if s.ConsecutiveFailures > 0 && c.ConsecutiveFailures >= s.ConsecutiveFailures {
		return true
	}
	done := c.TotalSuccesses + c.TotalFailures
	return s.FailureRatio > 0 && done >= s.MinRequests && float64(c.TotalFailures) >= s.FailureRatio*float64(done)
}

// onStateChange runs under l's gobreaker lock: record, queue, return. A follower that leaves
// half-open hands over to a local with OpenFor (closed, or open from now if its probe failed).
func (b *Breaker) onStateChange(l *local, from, to State) {
	var next *local
	if l.follower && from == StateHalfOpen {
		next = b.newLocal(b.settings.OpenFor, false)
		if to == StateOpen {
			next.trip()
		}
	}
	b.stateMu.Lock()
	defer b.stateMu.Unlock()
	if b.cb.Load() != l {
		return // replaced: its requests and transitions no longer count
	}
	if next != nil {
		b.cb.Store(next)
	}
	now := time.Now()
	until := time.Time{}
	if to == StateOpen {
		until = now.Add(b.settings.OpenFor)
	}
	b.report(Transition{Name: b.settings.Name, From: from, To: to, At: now, Cause: CauseLocal, OpenUntil: until})
}

// report records and queues a transition of the current local breaker. Called under stateMu.
func (b *Breaker) report(t Transition) {
	b.state = t.To
	if t.To == StateOpen {
		b.openUntil.Store(t.OpenUntil.UnixNano())
	}
	b.open.Store(t.To == StateOpen)
	if s := b.shared.Load(); s != nil && t.Cause == CauseLocal {
		s.observe(t.To)
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

// openUntilShared opens the breaker because the shared state says so, until the shared
// breaker's open time is up (until), whatever its state: a follower local breaker made with
// the time left replaces the current one, so that it half-opens when the shared breaker does.
// A breaker already open until then is left alone. It returns false when until has passed.
func (b *Breaker) openUntilShared(until time.Time) bool {
	left := time.Until(until)
	if left <= 0 {
		return false
	}
	b.stateMu.Lock()
	unchanged := b.state == StateOpen && b.openUntil.Load() == until.UnixNano()
	b.stateMu.Unlock()
	if unchanged {
		return true
	}
	f := b.newLocal(left, true)
	f.trip()
	b.stateMu.Lock()
	defer b.stateMu.Unlock()
	b.cb.Store(f)
	from := b.state
	if from == StateOpen {
		// Open already (by its own trip, or an earlier shared one): only the time changes.
		b.openUntil.Store(until.UnixNano())
		return true
	}
	b.report(Transition{Name: b.settings.Name, From: from, To: StateOpen, At: time.Now(), Cause: CauseShared, OpenUntil: until})
	return true
}
