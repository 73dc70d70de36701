package ratelimit

import (
	"errors"
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/swarmsec/caddy-hardening/internal/testenv"
)

// fixedLoad is a LoadSource whose CPU reading the test sets; it counts the readings.
type fixedLoad struct {
	cpu   atomic.Uint64 // math.Float64bits
	err   atomic.Pointer[error]
	reads atomic.Int64
}

func (f *fixedLoad) set(cpu float64) { f.cpu.Store(math.Float64bits(cpu)) }

func (f *fixedLoad) Load() (Load, error) {
	f.reads.Add(1)
	if e := f.err.Load(); e != nil {
		return Load{}, *e
	}
	return Load{CPU: math.Float64frombits(f.cpu.Load())}, nil
}

func newTestAdaptive(t *testing.T, opts AdaptiveOptions) (*Adaptive, *fixedLoad) {
	t.Helper()
	src := &fixedLoad{}
	opts.Source = src
	a, err := NewAdaptive(opts)
	if err != nil {
		t.Fatal(err)
	}
	return a, src
}

func sample(t *testing.T, a *Adaptive, n int) {
	t.Helper()
	for range n {
		if err := a.Sample(); err != nil {
			t.Fatal(err)
		}
	}
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

func TestAdaptiveDefaults(t *testing.T) {
	a, _ := newTestAdaptive(t, AdaptiveOptions{})
	o := a.opts
	if o.CPUTarget != 0.75 || o.MinFactor != 0.25 || o.InFlightTarget != 0 || o.Interval != time.Second || o.Smoothing != 0.3 {
		t.Fatalf("defaults: %+v", o)
	}
	if f := a.Factor(); f != 1 {
		t.Fatalf("a new Adaptive's factor is %v, want 1", f)
	}

	// Without a Source, the system's is used.
	sys, err := NewAdaptive(AdaptiveOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := sys.Source().(*SystemLoad); !ok {
		t.Fatalf("default source is %T, want *SystemLoad", sys.Source())
	}
	if err := sys.Sample(); err != nil {
		t.Fatalf("sampling the system: %v", err)
	}
}

func TestAdaptiveRejectsBadOptions(t *testing.T) {
	for name, o := range map[string]AdaptiveOptions{
		"CPU target 1":         {CPUTarget: 1},
		"CPU target negative":  {CPUTarget: -0.1},
		"CPU target NaN":       {CPUTarget: math.NaN()},
		"min factor above 1":   {MinFactor: 1.5},
		"min factor negative":  {MinFactor: -1},
		"in-flight negative":   {InFlightTarget: -1},
		"interval negative":    {Interval: -time.Second},
		"smoothing above 1":    {Smoothing: 1.1},
		"smoothing negative":   {Smoothing: -0.3},
		"min factor NaN":       {MinFactor: math.NaN()},
		"smoothing NaN":        {Smoothing: math.NaN()},
		"CPU target above one": {CPUTarget: 2},
	} {
		o.Source = &fixedLoad{}
		if _, err := NewAdaptive(o); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// With smoothing off, the factor is the documented linear rule of the CPU reading.
func TestAdaptiveCPURule(t *testing.T) {
	a, src := newTestAdaptive(t, AdaptiveOptions{Smoothing: 1})
	for _, c := range []struct{ cpu, want float64 }{
		{0, 1}, {0.5, 1}, {0.75, 1}, // at or below the target
		{0.875, 0.625}, // halfway from target to 1: halfway from 1 to MinFactor
		{0.95, 0.4},
		{1, 0.25}, {1.3, 0.25}, // saturated
		{math.NaN(), 1}, {-1, 1}, // nonsense readings count as idle
	} {
		src.set(c.cpu)
		sample(t, a, 1)
		if f := a.Factor(); !near(f, c.want) {
			t.Errorf("CPU %v: factor %v, want %v", c.cpu, f, c.want)
		}
	}
}

// A saturated CPU shrinks the factor to MinFactor over several samples, never increasing on
// the way, and one busy sample from idle changes nothing; idle again restores 1.
func TestAdaptiveShrinksAndRecovers(t *testing.T) {
	a, src := newTestAdaptive(t, AdaptiveOptions{})
	src.set(1.2) // a saturated container reads a little above 1
	sample(t, a, 1)
	if f := a.Factor(); f != 1 {
		t.Fatalf("one busy sample from idle: factor %v, want 1 (smoothed)", f)
	}
	prev, n := 1.0, 1
	for ; a.Factor() > 0.25 && n < 50; n++ {
		sample(t, a, 1)
		if f := a.Factor(); f > prev {
			t.Fatalf("sample %d: factor rose from %v to %v under constant load", n, prev, f)
		}
		prev = a.Factor()
	}
	if f := a.Factor(); f != 0.25 {
		t.Fatalf("after %d saturated samples the factor is %v, want MinFactor 0.25", n, f)
	}

	src.set(0)
	n = 0
	for ; a.Factor() < 1 && n < 50; n++ {
		sample(t, a, 1)
		if f := a.Factor(); f < prev {
			t.Fatalf("idle sample %d: factor fell from %v to %v", n, prev, f)
		}
		prev = a.Factor()
	}
	if f := a.Factor(); f != 1 {
		t.Fatalf("after %d idle samples the factor is %v, want 1", n, f)
	}
}

// A load swinging around the target every sample moves the factor much less than it would
// unsmoothed (1 to MinFactor and back).
func TestAdaptiveDampsSwings(t *testing.T) {
	a, src := newTestAdaptive(t, AdaptiveOptions{})
	lo, hi := 1.0, 0.0
	for i := range 40 {
		src.set([]float64{0.5, 1.0}[i%2])
		sample(t, a, 1)
		if i >= 20 { // past the warm-up from 0
			lo, hi = min(lo, a.Factor()), max(hi, a.Factor())
		}
	}
	if hi-lo > 0.2 || lo == hi {
		t.Fatalf("the factor swings between %v and %v; want a swing in (0, 0.2]", lo, hi)
	}
}

// A reading of exactly 1 brings the factor as close to MinFactor as the EWMA gets.
func TestAdaptiveFullCPUApproachesMin(t *testing.T) {
	a, src := newTestAdaptive(t, AdaptiveOptions{MinFactor: 0.5})
	src.set(1)
	sample(t, a, 30)
	if f := a.Factor(); f < 0.5 || f > 0.51 {
		t.Fatalf("factor %v after 30 samples at CPU 1, want within 0.01 above 0.5", f)
	}
}

// In-flight requests shrink the factor from the target to MinFactor at twice the target;
// Track and Enter/Exit count the same way.
func TestAdaptiveInFlightRule(t *testing.T) {
	a, _ := newTestAdaptive(t, AdaptiveOptions{Smoothing: 1, InFlightTarget: 10})
	var dones []func()
	for _, c := range []struct {
		inFlight int
		want     float64
	}{{10, 1}, {15, 0.625}, {20, 0.25}, {30, 0.25}} {
		for a.InFlight() < int64(c.inFlight) {
			if len(dones)%2 == 0 {
				dones = append(dones, a.Track())
			} else {
				a.Enter()
				dones = append(dones, a.Exit)
			}
		}
		sample(t, a, 1)
		if f := a.Factor(); !near(f, c.want) {
			t.Errorf("%d in flight: factor %v, want %v", c.inFlight, f, c.want)
		}
	}
	for _, done := range dones {
		done()
	}
	if n := a.InFlight(); n != 0 {
		t.Fatalf("in flight after every done: %d", n)
	}
	sample(t, a, 1)
	if f := a.Factor(); f != 1 {
		t.Fatalf("nothing in flight: factor %v, want 1", f)
	}
}

// InFlightTarget 0 ignores in-flight requests.
func TestAdaptiveInFlightIgnoredByDefault(t *testing.T) {
	a, _ := newTestAdaptive(t, AdaptiveOptions{Smoothing: 1})
	for range 1000 {
		a.Enter()
	}
	sample(t, a, 1)
	if f := a.Factor(); f != 1 {
		t.Fatalf("factor %v with in-flight ignored, want 1", f)
	}
}

// The factor is the minimum over the signals.
func TestAdaptiveMinimumOfSignals(t *testing.T) {
	a, src := newTestAdaptive(t, AdaptiveOptions{Smoothing: 1, InFlightTarget: 10})
	src.set(0.875) // CPU alone: 0.625
	for range 12 { // in flight alone: 1 - 0.2*0.75 = 0.85
		a.Enter()
	}
	sample(t, a, 1)
	if f := a.Factor(); !near(f, 0.625) {
		t.Fatalf("factor %v, want the CPU's 0.625", f)
	}
	for range 6 { // 18 in flight: 1 - 0.8*0.75 = 0.4
		a.Enter()
	}
	sample(t, a, 1)
	if f := a.Factor(); !near(f, 0.4) {
		t.Fatalf("factor %v, want the in-flight 0.4", f)
	}
}

// A failed reading is returned and counts as idle, so limits drift back to the configured ones.
func TestAdaptiveSourceError(t *testing.T) {
	a, src := newTestAdaptive(t, AdaptiveOptions{Smoothing: 1})
	src.set(1)
	sample(t, a, 1)
	if f := a.Factor(); f != 0.25 {
		t.Fatalf("factor %v, want 0.25", f)
	}
	broken := errors.New("cgroup gone")
	src.err.Store(&broken)
	if err := a.Sample(); !errors.Is(err, broken) {
		t.Fatalf("Sample returned %v, want the source's error", err)
	}
	if f := a.Factor(); f != 1 {
		t.Fatalf("factor %v after a failed reading, want 1", f)
	}
}

// Start samples in the background and reports errors to OnError; Start and Stop are
// idempotent, Stop waits for the goroutine (no reading after it returns), and Start works again
// after Stop.
func TestAdaptiveStartStop(t *testing.T) {
	src := &fixedLoad{}
	src.set(1.2)
	var errs atomic.Int64
	a, err := NewAdaptive(AdaptiveOptions{Source: src, Interval: time.Millisecond, OnError: func(error) { errs.Add(1) }})
	if err != nil {
		t.Fatal(err)
	}
	a.Stop() // not running: nothing to do
	a.Start()
	a.Start()
	waitFor(t, "the factor to reach MinFactor", func() bool { return a.Factor() == 0.25 })
	broken := errors.New("cgroup gone")
	src.err.Store(&broken)
	waitFor(t, "OnError", func() bool { return errs.Load() > 0 })
	a.Stop()
	a.Stop()
	reads := src.reads.Load()
	time.Sleep(20 * time.Millisecond) // 20 intervals: a goroutine left running would read
	if n := src.reads.Load(); n != reads {
		t.Fatalf("%d readings after Stop returned", n-reads)
	}

	src.err.Store(nil)
	a.Start()
	waitFor(t, "sampling after a restart", func() bool { return src.reads.Load() > reads })
	waitFor(t, "the factor to reach MinFactor again", func() bool { return a.Factor() == 0.25 })
	// A stopped sampler measures nothing: the factor goes back to 1 rather than holding the
	// last load until a later Start (a reload adding an adaptive policy back, maybe hours on).
	a.Stop()
	if f := a.Factor(); f != 1 {
		t.Fatalf("factor %v after Stop, want 1", f)
	}
}

// waitFor polls cond for up to 10 s: a bound on a hung goroutine, not a timing assertion.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testenv.WaitFor(t, 10*time.Second, what, cond)
}

// Factor, Track and Sample may run at once (go test -race).
func TestAdaptiveConcurrent(t *testing.T) {
	a, src := newTestAdaptive(t, AdaptiveOptions{InFlightTarget: 4})
	src.set(0.9)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 1000 {
				done := a.Track()
				if f := a.Factor(); f < 0.25 || f > 1 {
					t.Errorf("factor %v out of [0.25, 1]", f)
				}
				done()
			}
		})
	}
	wg.Go(func() {
		for range 200 {
			_ = a.Sample()
		}
	})
	wg.Wait()
	if n := a.InFlight(); n != 0 {
		t.Fatalf("in flight after all done: %d", n)
	}
}

func TestAdaptiveHotPathDoesNotAllocate(t *testing.T) {
	a, _ := newTestAdaptive(t, AdaptiveOptions{})
	if n := testing.AllocsPerRun(1000, func() {
		done := a.Track()
		_ = a.Factor()
		done()
	}); n != 0 {
		t.Fatalf("Track + Factor + done allocate %v times", n)
	}
}
