package dashboard

import (
	"math"
	"sort"
	"strings"
	"sync"
	"time"
)

// MaxSeries bounds the series of one family; label sets beyond the first MaxSeries-1 fold
// into one series whose label values are all Other.
const MaxSeries = 64

// Other is the label value of the folded series.
const Other = "other"

// Kind says how a family's samples become buckets.
type Kind uint8

const (
	// Counter samples are cumulative: a bucket holds the increase during it. A value below
	// the previous one is a reset (a restarted counter): the increase is the new value.
	Counter Kind = iota
	// Gauge samples are levels: a bucket holds their mean, null without samples.
	Gauge
)

// The families the dashboard records.
const (
	FamilyRateLimit          = "ratelimit"
	FamilyPathBlocked        = "path_blocked"
	FamilyDetections         = "detections"
	FamilyCSPViolations      = "csp_violations"
	FamilyBreakerTransitions = "breaker_transitions"
	FamilyDependencyUp       = "dependency_up"         // label name
	FamilyDependencyLatency  = "dependency_latency_ms" // label name
	FamilyCPUPercent         = "cpu_percent"
	FamilyMemoryBytes        = "memory_bytes"
	FamilyGoroutines         = "goroutines"
	StateStoreMode           = "store_mode"
)

var familyKinds = map[string]Kind{
	FamilyRateLimit: Counter, FamilyPathBlocked: Counter, FamilyDetections: Counter,
	FamilyCSPViolations: Counter, FamilyBreakerTransitions: Counter,
	FamilyDependencyUp: Gauge, FamilyDependencyLatency: Gauge,
	FamilyCPUPercent: Gauge, FamilyMemoryBytes: Gauge, FamilyGoroutines: Gauge,
}

// Label is one label of a point.
type Label struct{ Name, Value string }

// Point is one series' value in a snapshot: the cumulative count of a counter, the level of a
// gauge. Labels are sorted by name.
type Point struct {
	Labels []Label
	Value  float64
}

// Snapshot is what the feeds read at one sampling time.
type Snapshot struct {
	Time   time.Time
	Values map[string][]Point // by family; unknown families are ignored
	States map[string]string  // e.g. StateStoreMode; "" is no state
}

// Recorder turns snapshots into per-bucket series at both resolutions. Its memory is fixed:
// MaxSeries series per family, each two rings of Fine.Points and Coarse.Points buckets
// (about 5 KiB a series). Safe for concurrent use.
type Recorder struct {
	mu       sync.Mutex
	families map[string]*family
	states   map[string]*[2]stateRing
	based    bool // the first snapshot was the baseline
	last     time.Time
}

type family struct {
	kind   Kind
	index  map[string]*series // by label key; never more than MaxSeries entries
	series []*series          // in order of appearance
}

type series struct {
	labels  []Label
	last    float64 // a counter's last cumulative value
	seen    bool
	present bool // in the last snapshot
	rings   [2]ring
}

// NewRecorder returns an empty Recorder for the dashboard's families.
func NewRecorder() *Recorder {
	r := &Recorder{families: map[string]*family{}, states: map[string]*[2]stateRing{}}
	for name, k := range familyKinds {
		r.families[name] = &family{kind: k, index: map[string]*series{}}
	}
	return r
}

// Record adds a snapshot. The first one is the baseline: counters count from there.
func (r *Recorder) Record(s Snapshot) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var b [2]int64
	for i, res := range resolutions {
		b[i] = res.bucket(s.Time)
	}
	for name, f := range r.families {
		for _, se := range f.series {
			se.present = false // a series the snapshot lacks (its collector left /metrics) has no total
		}
		if pts, ok := s.Values[name]; ok {
			f.record(pts, b, r.based)
		}
	}
	for name, v := range s.States {
		st := r.states[name]
		if st == nil {
			if len(r.states) >= 8 { // a handful of named states: not attacker-grown
				continue
			}
			st = &[2]stateRing{newStateRing(Fine.Points), newStateRing(Coarse.Points)}
			r.states[name] = st
		}
		for i := range st {
			st[i].set(b[i], v)
		}
	}
	r.based = true
	r.last = s.Time
}

// record folds the points into this family's series (label sets beyond the bound go to the
// Other series, summed) and adds each series' increase (counter) or level (gauge).
func (f *family) record(pts []Point, b [2]int64, based bool) {
	type acc struct {
		s *series
		v float64
		n int
	}
	var buf [MaxSeries]acc
	accs := buf[:0]
	pos := map[*series]int{}
	for _, p := range pts {
		if f.kind == Counter && p.Value == 0 {
			if s := f.index[labelKey(p.Labels)]; s == nil {
				continue // a counter never incremented: no series yet
			}
		}
		s := f.lookup(p.Labels)
		i, ok := pos[s]
		if !ok {
			i = len(accs)
			pos[s] = i
			accs = append(accs, acc{s: s})
		}
		accs[i].v += p.Value
		accs[i].n++
	}
	for _, a := range accs {
		s := a.s
		if f.kind == Gauge {
			v := a.v / float64(a.n) // the folded series is the mean of its members
			for i := range s.rings {
				s.rings[i].add(b[i], v)
			}
			continue
		}
		delta := a.v - s.last
		switch {
		case !s.seen && !based:
			delta = 0 // baseline: what happened before the recorder started is not in a bucket
		case !s.seen:
			delta = a.v // a series born since the last sample
		case delta < 0:
			delta = a.v // reset
		}
		s.last, s.seen, s.present = a.v, true, true
		for i := range s.rings {
			s.rings[i].add(b[i], delta)
		}
	}
}

// lookup finds or creates the series of a label set; past the bound, the Other series.
func (f *family) lookup(labels []Label) *series {
	key := labelKey(labels)
	if s := f.index[key]; s != nil {
		return s
	}
	if len(f.index) >= MaxSeries-1 {
		other := make([]Label, len(labels))
		for i, l := range labels {
			other[i] = Label{Name: l.Name, Value: Other}
		}
		key = labelKey(other)
		if s := f.index[key]; s != nil {
			return s
		}
		if len(f.index) >= MaxSeries {
			return f.series[len(f.series)-1] // label names changed: the last series absorbs it
		}
		labels = other
	}
	s := &series{labels: append([]Label(nil), labels...), rings: [2]ring{newRing(Fine.Points), newRing(Coarse.Points)}}
	f.index[key] = s
	f.series = append(f.series, s)
	return s
}

func labelKey(labels []Label) string {
	var b strings.Builder
	for _, l := range labels {
		b.WriteString(l.Name)
		b.WriteByte('=')
		b.WriteString(l.Value)
		b.WriteByte(0xff)
	}
	return b.String()
}

// Window is the recorded data at one resolution, ending with the bucket of the last sample.
type Window struct {
	Resolution Resolution
	Timestamps []int64
	Series     map[string][]Labeled // by family
	Totals     map[string][]Total   // counter series of the last sample: their cumulative value
	States     map[string][]*string
}

// Window returns the series at res, ending with the bucket of now.
func (r *Recorder) Window(res Resolution, now time.Time) Window {
	r.mu.Lock()
	defer r.mu.Unlock()
	idx := 0
	if res == Coarse {
		idx = 1
	}
	last := res.bucket(now)
	w := Window{Resolution: res, Timestamps: res.Timestamps(now), Series: map[string][]Labeled{},
		Totals: map[string][]Total{}, States: map[string][]*string{}}
	for name, f := range r.families {
		out := make([]Labeled, 0, len(f.series))
		for _, s := range f.series {
			vals := make(Values, res.Points)
			s.rings[idx].values(last, f.kind == Gauge, vals)
			out = append(out, Labeled{Labels: labelMap(s.labels), Values: vals})
			if f.kind == Counter && s.present {
				w.Totals[name] = append(w.Totals[name], Total{Labels: labelMap(s.labels), Count: s.last})
			}
		}
		sortLabeled(out)
		w.Series[name] = out
		sortTotals(w.Totals[name])
	}
	for name, st := range r.states {
		w.States[name] = st[idx].values(last)
	}
	return w
}

// Last is the time of the last snapshot (zero before the first).
func (r *Recorder) Last() time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last
}

// SeriesCount is how many series the families hold (for the bounds test).
func (r *Recorder) SeriesCount() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]int{}
	for name, f := range r.families {
		out[name] = len(f.series)
	}
	return out
}

func labelMap(labels []Label) map[string]string {
	m := make(map[string]string, len(labels))
	for _, l := range labels {
		m[l.Name] = l.Value
	}
	return m
}

func mapKey(m map[string]string) string {
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, k := range names {
		b.WriteString(k + "=" + m[k] + "\xff")
	}
	return b.String()
}

func sortLabeled(s []Labeled) {
	sort.Slice(s, func(i, j int) bool { return mapKey(s[i].Labels) < mapKey(s[j].Labels) })
}

func sortTotals(s []Total) {
	sort.Slice(s, func(i, j int) bool { return mapKey(s[i].Labels) < mapKey(s[j].Labels) })
}

// Fill copies the window's series and totals into doc.
func (w Window) Fill(doc *Document) {
	doc.Range = w.Resolution.Name
	doc.ResolutionSeconds = int(w.Resolution.Step / time.Second)
	doc.Timestamps = w.Timestamps
	doc.RateLimit = nonNil(w.Series[FamilyRateLimit])
	doc.PathBlocked = nonNil(w.Series[FamilyPathBlocked])
	doc.Detections = nonNil(w.Series[FamilyDetections])
	doc.CSPViolations = nonNil(w.Series[FamilyCSPViolations])
	doc.BreakerTransitions = nonNil(w.Series[FamilyBreakerTransitions])
	doc.Totals = Totals{
		RateLimit: nonNil(w.Totals[FamilyRateLimit]), PathBlocked: nonNil(w.Totals[FamilyPathBlocked]),
		Detections: nonNil(w.Totals[FamilyDetections]), CSPViolations: nonNil(w.Totals[FamilyCSPViolations]),
	}
	doc.StoreMode = StateSeries{Values: w.States[StateStoreMode]}
	if doc.StoreMode.Values == nil {
		doc.StoreMode.Values = make([]*string, len(w.Timestamps))
	}
	latency := map[string]Values{}
	for _, s := range w.Series[FamilyDependencyLatency] {
		latency[s.Labels["name"]] = s.Values
	}
	doc.Dependencies = []DependencySeries{}
	for _, s := range w.Series[FamilyDependencyUp] {
		lat := latency[s.Labels["name"]]
		if lat == nil {
			lat = nanValues(len(w.Timestamps))
		}
		doc.Dependencies = append(doc.Dependencies, DependencySeries{Name: s.Labels["name"], Up: s.Values, LatencyMS: lat})
	}
	one := func(name string) Values {
		if s := w.Series[name]; len(s) > 0 {
			return s[0].Values
		}
		return nanValues(len(w.Timestamps))
	}
	doc.System = SystemSeries{CPUPercent: one(FamilyCPUPercent), MemoryBytes: one(FamilyMemoryBytes), Goroutines: one(FamilyGoroutines)}
}

func nanValues(n int) Values {
	v := make(Values, n)
	for i := range v {
		v[i] = math.NaN()
	}
	return v
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
