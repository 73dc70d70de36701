package breaker

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"
)

// SharedStore keeps the shared state: gobreaker's SharedDataStore (Lock, Unlock, GetData,
// SetData). RedisStore is the implementation over Redis.
type SharedStore = gobreaker.SharedDataStore

// DefaultSyncInterval is how often a shared breaker reads the shared state.
const DefaultSyncInterval = 500 * time.Millisecond

// sharedStateKey is the key gobreaker v2's DistributedCircuitBreaker keeps its state under
// (TestSharedStateKeyIsGobreakers fails if a gobreaker upgrade changes it).
func sharedStateKey(name string) string { return "gobreaker:state:" + name }

// gobreakerMutexKey is the key the DistributedCircuitBreaker locks while it changes the state.
func gobreakerMutexKey(name string) string { return "gobreaker:mutex:" + name }

// Share keeps the breaker's open state in a store shared by every instance, through
// gobreaker's DistributedCircuitBreaker, without ever putting the store on a request's path:
//
//   - each instance counts its own requests and trips its own breaker by the Settings;
//   - a local trip is recorded in the shared breaker at once (a background goroutine);
//   - every `every`, each instance reads the shared state: when the shared breaker is open by
//     a trip this instance has not seen (told apart by the time it ends, which survives Redis
//     losing its data, unlike gobreaker's generation), its local breaker opens too (cause
//     "shared") until the shared breaker's open time is up, as does an instance's own trip once
//     recorded, so every instance half-opens and answers Retry-After alike; half-open probes
//     stay per instance, and a failed probe opens for OpenFor;
//   - a local recovery (half-open to closed) closes the shared breaker once its open time is up.
//
// The first synchronisation starts at once: Joined is closed when it has read the shared state
// (and opened the local breaker if the shared one is open) or failed to, so a caller can hold a
// new breaker back from traffic until it knows what the other instances decided.
//
// When the store fails, the breaker keeps deciding locally; onHealth is called with the error
// when the store becomes unreachable and with nil when it answers again. Share at most once.
func (b *Breaker) Share(store SharedStore, every time.Duration, onHealth func(error)) {
	if every <= 0 {
		every = DefaultSyncInterval
	}
	s := &syncer{b: b, store: store, every: every, onHealth: onHealth,
		wake: make(chan struct{}, 1), quit: make(chan struct{}), joined: make(chan struct{})}
	if !b.shared.CompareAndSwap(nil, s) {
		return
	}
	if b.State() == StateOpen {
		s.pendingTrip.Store(true)
	}
	go s.run()
}

// SharedHealth reports whether the last synchronisation with the store worked (true before
// the first one and for a breaker that is not shared) and the last error.
func (b *Breaker) SharedHealth() (shared, ok bool, lastErr string) {
	s := b.shared.Load()
	if s == nil {
		return false, true, ""
	}
	if e := s.lastErr.Load(); e != nil {
		return true, false, *e
	}
	return true, true, ""
}

// Joined is closed once a shared breaker's first synchronisation has read the shared state
// (an open shared breaker has opened this one by then) or failed to (the store did not
// answer: the breaker decides locally). It is closed at once for a breaker that is not shared.
func (b *Breaker) Joined() <-chan struct{} {
	if s := b.shared.Load(); s != nil {
		return s.joined
	}
	return closedChan
}

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// SyncNow asks the synchroniser to run now rather than at its next tick.
func (b *Breaker) SyncNow() {
	if s := b.shared.Load(); s != nil {
		s.poke()
	}
}

type syncer struct {
	b        *Breaker
	store    SharedStore
	every    time.Duration
	onHealth func(error)

	pendingTrip  atomic.Bool // a local trip not yet recorded in the shared breaker
	pendingClose atomic.Bool // a local recovery not yet recorded
	lastErr      atomic.Pointer[string]

	wake     chan struct{}
	quit     chan struct{}
	stopOnce sync.Once
	joined   chan struct{} // closed after the first read of the shared state (see Joined)
	joinOnce sync.Once

	// Owned by the run goroutine.
	dcb *gobreaker.DistributedCircuitBreaker[struct{}]
	// mutexHeld: the syncer holds gobreaker's mutex (withGobreakerMutex), so gobreaker's own
	// Lock and Unlock of it do nothing (gobreakerStore).
	mutexHeld bool
	// knownTrip is the expiry of the last shared opening this instance recorded or followed:
	// it identifies the trip. The generation does not: when Redis loses the state (a restart
	// without persistence, FLUSHALL, eviction), gobreaker counts generations from 0 again and
	// the next trip can carry one this instance has already seen. The expiry is the instant the
	// shared breaker opened plus open_for, written by gobreaker once, on opening, in the same
	// record as the state, so a new trip has a new one whatever Redis lost (two trips would
	// need the same nanosecond). Compared for equality, not order: instances' clocks may differ.
	// A random trip id would be a second key, written apart from the state, which Redis can
	// lose or keep independently of it.
	knownTrip time.Time
}

// observe runs under the breaker's lock on a local transition.
func (s *syncer) observe(to State) {
	switch to {
	case StateOpen:
		s.pendingClose.Store(false)
		s.pendingTrip.Store(true)
		s.poke()
	case StateClosed:
		s.pendingTrip.Store(false)
		s.pendingClose.Store(true)
		s.poke()
	}
}

func (s *syncer) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// stop ends the goroutine after its current step (a step waits at most recordLockWait for each
// lock another instance holds; nobody waits for it) and closes the store if it can be closed.
func (s *syncer) stop() {
	s.stopOnce.Do(func() {
		close(s.quit)
		if c, ok := s.store.(interface{ Close() }); ok {
			c.Close()
		}
	})
}

func (s *syncer) run() {
	t := time.NewTicker(s.every)
	defer t.Stop()
	s.sync()
	s.join() // the first sync failed before it could read: decide locally
	for {
		select {
		case <-s.quit:
			return
		case <-t.C:
		case <-s.wake:
		}
		s.sync()
	}
}

func (s *syncer) sync() {
	s.setHealth(s.syncOnce(time.Now()))
}

// join closes joined, once (a syncer made without Share has none).
func (s *syncer) join() {
	s.joinOnce.Do(func() {
		if s.joined != nil {
			close(s.joined)
		}
	})
}

func (s *syncer) syncOnce(now time.Time) error {
	raw, err := s.read()
	if err != nil {
		return err
	}
	// Follow a trip before anything that may wait for a lock (up to recordLockWait each):
	// a breaker that has just started (an instance joining, a reload that replaced it) and
	// whose callers wait for Joined must see an open shared breaker after one read.
	s.follow(raw, now)
	s.join()
	if s.dcb == nil || raw == nil {
		settings := gobreaker.Settings{
			Name:        s.b.Name(),
			MaxRequests: 1,
			Timeout:     s.b.settings.OpenFor,
			// Each failure recorded here is one instance's trip.
			ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= 1 },
		}
		err = s.withGobreakerMutex(func() (err error) {
			s.dcb, err = newDistributedBreaker(gobreakerStore{s}, settings)
			return err
		})
		if err != nil {
			s.dcb = nil
			return err
		}
	}
	if s.pendingTrip.Load() {
		if err := s.record(errFailure); err != nil {
			return err
		}
		s.pendingTrip.Store(false)
		if raw, err = s.read(); err != nil {
			return err
		}
		if raw != nil && raw.State == StateOpen {
			// Our own trip, or one it joined: nothing to follow, but the local breaker's
			// open time ends with the shared breaker's (whose began when it was recorded,
			// or earlier when it was another instance's), so that every instance half-opens
			// and answers Retry-After alike.
			s.knownTrip = raw.Expiry
			if s.b.State() == StateOpen {
				s.b.openUntilShared(raw.Expiry)
			}
		}
	}
	if s.pendingClose.Load() {
		switch err := s.record(nil); {
		case errors.Is(err, gobreaker.ErrOpenState):
			// The shared open time is not up yet: record the recovery at a later tick.
		case err != nil:
			return err
		default:
			s.pendingClose.Store(false)
		}
	}
	s.follow(raw, now)
	return nil
}

// follow opens the local breaker when the shared one is open by a trip this instance has not
// seen yet.
func (s *syncer) follow(raw *gobreaker.SharedState, now time.Time) {
	if raw != nil && raw.State == StateOpen && raw.Expiry.After(now) && !raw.Expiry.Equal(s.knownTrip) {
		if s.b.openUntilShared(raw.Expiry) {
			s.knownTrip = raw.Expiry
		}
	}
}

// record runs one synthetic request with the given result through the shared breaker.
// gobreaker's own refusals are not store errors, and a trip refused because the shared breaker
// is open already (another instance tripped first) is recorded: it joined that trip.
func (s *syncer) record(result error) error {
	// gobreaker v2.4.0's Execute reads the shared state before it takes its own lock, so two
	// instances recording at once (one's trip, another's recovery) can each write over what
	// the other wrote, and a lost trip is never followed. Holding a lock of ours around it
	// makes each record read what the previous one wrote.
	unlock, err := s.lock("records:" + s.b.Name())
	if err != nil {
		return err
	}
	defer unlock()
	err = s.withGobreakerMutex(func() error {
		_, err := s.dcb.Execute(func() (struct{}, error) { return struct{}{}, result })
		return err
	})
	switch {
	case err == nil || err == result || errors.Is(err, gobreaker.ErrTooManyRequests):
		return nil
	case result != nil && errors.Is(err, gobreaker.ErrOpenState):
		return nil
	}
	return err
}

// withGobreakerMutex runs fn, a call of gobreaker's DistributedCircuitBreaker, holding
// gobreaker's mutex, which it takes itself. gobreaker v2.4.0 takes it in a loop that retries any
// error every 500 ms for 5 s: a Redis that refuses writes (full at maxmemory, a read-only
// replica, an ACL without write grants) or that went away was asked ten times per sync, and the
// breaker's health said "deciding locally" only 5 s later. Taken here, a refusal ends the sync
// at once; only another instance holding the mutex is waited for.
func (s *syncer) withGobreakerMutex(fn func() error) error {
	unlock, err := s.lock(gobreakerMutexKey(s.b.Name()))
	if err != nil {
		return err
	}
	defer unlock()
	s.mutexHeld = true
	defer func() { s.mutexHeld = false }()
	return fn()
}

// gobreakerStore is the store gobreaker is given: while the syncer holds gobreaker's mutex,
// gobreaker's own Lock and Unlock of it do nothing (the syncer releases it).
type gobreakerStore struct{ s *syncer }

func (g gobreakerStore) Lock(key string) error {
	if g.s.mutexHeld && key == gobreakerMutexKey(g.s.b.Name()) {
		return nil
	}
	return g.s.store.Lock(key)
}

func (g gobreakerStore) Unlock(key string) error {
	if g.s.mutexHeld && key == gobreakerMutexKey(g.s.b.Name()) {
		return nil
	}
	return g.s.store.Unlock(key)
}

func (g gobreakerStore) GetData(key string) ([]byte, error)    { return g.s.store.GetData(key) }
func (g gobreakerStore) SetData(key string, data []byte) error { return g.s.store.SetData(key, data) }

// lock takes one of the breaker's locks in the store (the record lock, a key of its own beside
// gobreaker's, or gobreaker's mutex), waiting while another instance holds it; it gives up at
// once on any other error, and after recordLockWait: the sync is tried again at the next tick.
func (s *syncer) lock(key string) (unlock func(), err error) {
	deadline := time.Now().Add(recordLockWait)
	for {
		err := s.store.Lock(key)
		if err == nil {
			return func() { _ = s.store.Unlock(key) }, nil
		}
		if !errors.Is(err, errLocked) || time.Now().After(deadline) {
			return nil, err
		}
		select {
		case <-s.quit:
			return nil, err
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// recordLockWait bounds the wait for a lock another instance holds (a few Redis round trips).
const recordLockWait = time.Second

// maxSharedState bounds what is read from the store: gobreaker's state is a few hundred bytes.
const maxSharedState = 64 << 10

func (s *syncer) read() (*gobreaker.SharedState, error) {
	data, err := s.store.GetData(sharedStateKey(s.b.Name()))
	if err != nil {
		return nil, err
	}
	if len(data) == 0 {
		return nil, nil
	}
	if len(data) > maxSharedState {
		return nil, errors.New("shared breaker state is larger than 64 KiB")
	}
	var st gobreaker.SharedState
	if err := json.Unmarshal(data, &st); err != nil {
		return nil, err
	}
	return &st, nil
}

func (s *syncer) setHealth(err error) {
	if err == nil {
		if s.lastErr.Swap(nil) != nil && s.onHealth != nil {
			s.onHealth(nil)
		}
		return
	}
	msg := err.Error()
	if s.lastErr.Swap(&msg) == nil && s.onHealth != nil {
		s.onHealth(err)
	}
}

// newDistributedBreaker is gobreaker.NewDistributedCircuitBreaker without its crash. In
// v2.4.0 the constructor unlocks its Redis mutex through its named result, which it has set
// to nil when reading or writing the shared state failed after the lock was taken (Redis gone
// in between, a state that is not its JSON): the nil dereference panicked in the syncer's goroutine and
// took the whole Caddy process down. Here that failure is an error like any other store
// failure, and the mutex is released (it also expires on its own, lockTTL).
func newDistributedBreaker(store SharedStore, settings gobreaker.Settings) (dcb *gobreaker.DistributedCircuitBreaker[struct{}], err error) {
	defer func() {
		if p := recover(); p != nil {
			_ = store.Unlock(gobreakerMutexKey(settings.Name))
			dcb, err = nil, fmt.Errorf("shared breaker state of %q could not be read or written (gobreaker: %v)", settings.Name, p)
		}
	}()
	return gobreaker.NewDistributedCircuitBreaker[struct{}](store, settings)
}
