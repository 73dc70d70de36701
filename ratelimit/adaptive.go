package ratelimit

import (
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// Load is one reading of a LoadSource.
type Load struct {
	// CPU is the share of the CPU this process may use that was busy since the previous
	// reading: 0 is idle, 1 is every allowed CPU busy (a container's quota, else the CPUs this
	// process may run on). A reading can exceed 1 slightly where the clocks of the usage
	// counter and the wall clock disagree.
	CPU float64
}

// LoadSource reads the machine's load. Adaptive calls Load once per sample, from one goroutine
// at a time.
type LoadSource interface {
	Load() (Load, error)
}

// AdaptiveOptions configures an Adaptive. The zero value of a field selects its default.
type AdaptiveOptions struct {
	// CPUTarget is the CPU utilisation (0..1 of the allowed CPU) above which limits shrink.
	// Default 0.75: below it a server still has headroom for bursts and its own work (TLS
	// handshakes, GC); limits shrink from there so the CPU never reaches saturation unchecked.
	// Must be in (0, 1).
	CPUTarget float64

	// MinFactor is the lowest factor: limits never shrink below this share of their
	// configured rate, so an overloaded server still admits its clients' fair share rather
	// than denying everyone. Default 0.25. Must be in (0, 1].
	MinFactor float64

	// InFlightTarget is the number of requests in flight (between Enter and Exit) above which
	// limits shrink, reaching MinFactor at twice the target. 0 ignores in-flight requests.
	InFlightTarget int

	// Interval is the sampling period of Start's goroutine. Default 1s.
	Interval time.Duration

	// Smoothing is the weight of a new sample in the exponentially weighted moving average of
	// each load signal, in (0, 1]; 1 disables smoothing. Default 0.3: a step in load moves the
	// average halfway in 2 samples and 90% in 7, so one busy second (a GC cycle, a burst of
	// TLS handshakes) cannot shrink limits, while sustained overload does within seconds.
	Smoothing float64

	// Source reads the CPU load. Default: NewSystemLoad, the CPU utilisation of this
	// process's cgroup relative to its quota.
	Source LoadSource

	// OnError, when set, is called by Start's goroutine with the error of a failed sample, so
	// the caller can log it. It must not block.
	OnError func(error)
}

// Adaptive computes the factor that adaptive rate limit policies multiply their rate by (see
// Limit.Scale): 1 while the server has headroom, shrinking towards MinFactor as it runs out,
// so an overloaded edge admits fewer requests instead of queueing them all.
//
// Load means two signals, each sampled every Interval:
//   - CPU: the busy share of the CPU this process may use. In a container that is the cgroup's
//     CPU quota, not the host's cores: a container allowed 1 CPU on a 32-core host is
//     saturated at 1 busy CPU, and the kernel throttles it there (requests then wait whole
//     scheduling periods), while the host looks 97% idle. The whole cgroup's usage is counted,
//     not only this process's, because the quota throttles the whole cgroup.
//   - In flight: requests between Enter and Exit (or Track and its done func). It rises when
//     upstreams or Redis slow down, before the CPU does.
//
// The factor rule: per signal, the factor is 1 while the smoothed load is at or below its
// target, then falls linearly to MinFactor, reached at load 1 for CPU and at twice the target
// for in-flight requests. The factor is the minimum over the signals, clamped to
// [MinFactor, 1].
//
// The smoothing (an EWMA with weight Smoothing) is applied to each load, not to the factor:
// the factor is flat at 1 below the target and so forgets how far below it the load was. With
// the load smoothed, a one-sample spike from an idle server stays below the target and changes
// nothing, while a server already near its target reacts within a sample or two; and each
// signal keeps its own history, whichever one currently sets the minimum. A load swinging
// between 0.5 and 1 every sample moves the factor between about 0.87 and 1 instead of between
// MinFactor and 1. The averages start at 0, so the work of starting up does not shrink
// limits. Recovery is as quick as the shrinking: when the load drops, its average falls below
// the target within one to three samples and the configured limits are back.
//
// A failed CPU reading counts as load 0 for that sample: load that cannot be measured is no
// evidence of overload, and the factor drifts back to 1, i.e. to the configured limits.
//
// Factor is a single atomic load, safe to call on every request.
type Adaptive struct {
	opts AdaptiveOptions

	factor   atomic.Uint64 // math.Float64bits of the current factor
	inFlight atomic.Int64
	exit     func() // a.Exit, bound once so Track does not allocate

	sampleMu    sync.Mutex // serialises Sample; guards the averages
	cpuAvg      float64
	inFlightAvg float64

	runMu sync.Mutex // guards stop and done (Start/Stop)
	stop  chan struct{}
	done  chan struct{}
}

// maxCPUReading bounds one CPU reading before it is averaged, so a bogus reading (a counter
// that jumped) cannot hold the average above 1 for long. Readings slightly above 1 are kept:
// they are how a saturated CPU is measured.
const maxCPUReading = 2

// NewAdaptive returns an Adaptive with factor 1. It samples only when Sample is called, or
// every Interval after Start.
func NewAdaptive(opts AdaptiveOptions) (*Adaptive, error) {
	if opts.CPUTarget == 0 {
		opts.CPUTarget = 0.75
	}
	if opts.MinFactor == 0 {
		opts.MinFactor = 0.25
	}
	if opts.Interval == 0 {
		opts.Interval = time.Second
	}
	if opts.Smoothing == 0 {
		opts.Smoothing = 0.3
	}
	switch {
	case !(opts.CPUTarget > 0 && opts.CPUTarget < 1):
		return nil, fmt.Errorf("adaptive: CPU target must be in (0, 1), got %v", opts.CPUTarget)
	case !(opts.MinFactor > 0 && opts.MinFactor <= 1):
		return nil, fmt.Errorf("adaptive: minimum factor must be in (0, 1], got %v", opts.MinFactor)
	case opts.InFlightTarget < 0:
		return nil, fmt.Errorf("adaptive: in-flight target must not be negative, got %d", opts.InFlightTarget)
	case opts.Interval < 0:
		return nil, fmt.Errorf("adaptive: interval must be positive, got %v", opts.Interval)
	case !(opts.Smoothing > 0 && opts.Smoothing <= 1):
		return nil, fmt.Errorf("adaptive: smoothing must be in (0, 1], got %v", opts.Smoothing)
	}
	if opts.Source == nil {
		src, err := NewSystemLoad()
		if err != nil {
			return nil, fmt.Errorf("adaptive: %w", err)
		}
		opts.Source = src
	}
	a := &Adaptive{opts: opts}
	a.exit = a.Exit
	a.factor.Store(math.Float64bits(1))
	return a, nil
}

// Factor is the current factor in [MinFactor, 1].
func (a *Adaptive) Factor() float64 { return math.Float64frombits(a.factor.Load()) }

// Enter counts a request in flight. Every Enter must be followed by one Exit.
func (a *Adaptive) Enter() { a.inFlight.Add(1) }

// Exit ends what Enter counted.
func (a *Adaptive) Exit() { a.inFlight.Add(-1) }

// Track counts a request in flight and returns the func that ends it (call it exactly once).
// It does not allocate.
func (a *Adaptive) Track() (done func()) {
	a.inFlight.Add(1)
	return a.exit
}

// Source is the LoadSource in use; the default's String says what it measures, for the log.
func (a *Adaptive) Source() LoadSource { return a.opts.Source }

// InFlight is the number of requests in flight now.
func (a *Adaptive) InFlight() int64 { return a.inFlight.Load() }

// Sample reads the load now, updates the averages and the factor, and returns the source's
// error (the CPU reading then counts as 0). Start calls it every Interval; tests call it
// directly.
func (a *Adaptive) Sample() error {
	a.sampleMu.Lock()
	defer a.sampleMu.Unlock()
	load, err := a.opts.Source.Load()
	cpu := 0.0
	if err == nil && load.CPU > 0 { // > 0 also drops NaN
		cpu = min(load.CPU, maxCPUReading)
	}
	inFlight := float64(max(a.inFlight.Load(), 0))

	s := a.opts.Smoothing
	a.cpuAvg = s*cpu + (1-s)*a.cpuAvg
	a.inFlightAvg = s*inFlight + (1-s)*a.inFlightAvg

	f := shrink(a.cpuAvg, a.opts.CPUTarget, 1, a.opts.MinFactor)
	if t := float64(a.opts.InFlightTarget); t > 0 {
		f = min(f, shrink(a.inFlightAvg, t, 2*t, a.opts.MinFactor))
	}
	a.factor.Store(math.Float64bits(min(max(f, a.opts.MinFactor), 1)))
	if err != nil {
		return fmt.Errorf("adaptive: reading the load: %w", err)
	}
	return nil
}

// shrink is 1 while load <= target, falling linearly to minFactor at load == full and staying
// there above it.
func shrink(load, target, full, minFactor float64) float64 {
	switch {
	case load <= target:
		return 1
	case load >= full:
		return minFactor
	}
	return 1 - (load-target)/(full-target)*(1-minFactor)
}

// Start samples every Interval in a goroutine until Stop. Calling Start while it runs does
// nothing.
func (a *Adaptive) Start() {
	a.runMu.Lock()
	defer a.runMu.Unlock()
	if a.stop != nil {
		return
	}
	a.stop, a.done = make(chan struct{}), make(chan struct{})
	go a.run(a.stop, a.done)
}

// Running reports whether Start's sampling goroutine runs.
func (a *Adaptive) Running() bool {
	a.runMu.Lock()
	defer a.runMu.Unlock()
	return a.stop != nil
}

// Stop ends Start's goroutine and waits for it, and sets the factor back to 1 with the
// averages cleared: a load nobody measures any more is not the load when Start is called
// again (minutes later, a reload adding an adaptive policy back would otherwise start from a
// stale high load and shrink limits for nothing). Calling Stop when it does not run does
// nothing; Start may be called again after it.
func (a *Adaptive) Stop() {
	a.runMu.Lock()
	defer a.runMu.Unlock()
	if a.stop == nil {
		return
	}
	close(a.stop)
	<-a.done
	a.stop, a.done = nil, nil
	a.sampleMu.Lock()
	a.cpuAvg, a.inFlightAvg = 0, 0
	a.factor.Store(math.Float64bits(1))
	a.sampleMu.Unlock()
}

func (a *Adaptive) run(stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	tick := time.NewTicker(a.opts.Interval)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
			if err := a.Sample(); err != nil && a.opts.OnError != nil {
				a.opts.OnError(err)
			}
		}
	}
}
