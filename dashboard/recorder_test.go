package dashboard

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"
)

var t0 = time.Unix(1795000000, 0).UTC() // a multiple of 60 s

func rl(policy, result string, v float64) Point {
	return Point{Labels: []Label{{"class", "default"}, {"policy", policy}, {"result", result}}, Value: v}
}

func snap(at time.Time, pts ...Point) Snapshot {
	return Snapshot{Time: at, Values: map[string][]Point{FamilyRateLimit: pts}}
}

func seriesOf(t *testing.T, w Window, family string, labels map[string]string) Values {
	t.Helper()
	for _, s := range w.Series[family] {
		if mapKey(s.Labels) == mapKey(labels) {
			return s.Values
		}
	}
	t.Fatalf("no %s series %v in %v", family, labels, w.Series[family])
	return nil
}

func TestCounterDeltasBaselineAndReset(t *testing.T) {
	r := NewRecorder()
	r.Record(snap(t0, rl("api", "allowed", 100)))                    // baseline: not a bucket
	r.Record(snap(t0.Add(5*time.Second), rl("api", "allowed", 103))) // +3
	r.Record(snap(t0.Add(7*time.Second), rl("api", "allowed", 104))) // +1, same bucket
	r.Record(snap(t0.Add(10*time.Second), rl("api", "allowed", 2),   // reset: +2
		rl("api", "denied", 5))) // born since the last sample: +5
	now := t0.Add(10 * time.Second)
	w := r.Window(Fine, now)
	if len(w.Timestamps) != 180 || w.Timestamps[179] != now.Unix() || w.Timestamps[0] != now.Unix()-179*5 {
		t.Fatalf("timestamps: %d, last %d, first %d", len(w.Timestamps), w.Timestamps[179], w.Timestamps[0])
	}
	allowed := seriesOf(t, w, FamilyRateLimit, map[string]string{"class": "default", "policy": "api", "result": "allowed"})
	if got := allowed[177:]; got[0] != 0 || got[1] != 4 || got[2] != 2 {
		t.Fatalf("allowed buckets = %v, want [0 4 2]", got)
	}
	denied := seriesOf(t, w, FamilyRateLimit, map[string]string{"class": "default", "policy": "api", "result": "denied"})
	if denied[179] != 5 {
		t.Fatalf("denied last bucket = %v, want 5", denied[179])
	}
	for _, tot := range w.Totals[FamilyRateLimit] {
		want := map[string]float64{"allowed": 2, "denied": 5}[tot.Labels["result"]]
		if tot.Count != want {
			t.Fatalf("total %v = %v, want %v", tot.Labels, tot.Count, want)
		}
	}
	// The coarse ring sums the minute.
	c := r.Window(Coarse, now)
	if len(c.Timestamps) != 60 {
		t.Fatalf("coarse points: %d", len(c.Timestamps))
	}
	if v := seriesOf(t, c, FamilyRateLimit, map[string]string{"class": "default", "policy": "api", "result": "allowed"})[59]; v != 6 {
		t.Fatalf("coarse allowed = %v, want 6", v)
	}
}

func TestZeroCountersMakeNoSeries(t *testing.T) {
	r := NewRecorder()
	r.Record(snap(t0, rl("api", "allowed", 0)))
	r.Record(snap(t0.Add(5*time.Second), rl("api", "allowed", 0)))
	if n := r.SeriesCount()[FamilyRateLimit]; n != 0 {
		t.Fatalf("%d series for a counter never incremented", n)
	}
}

func TestGaugesAverageAndNull(t *testing.T) {
	r := NewRecorder()
	for i, v := range []float64{10, 20} {
		r.Record(Snapshot{Time: t0.Add(time.Duration(i) * time.Second), Values: map[string][]Point{FamilyCPUPercent: {{Value: v}}},
			States: map[string]string{StateStoreMode: "redis"}})
	}
	r.Record(Snapshot{Time: t0.Add(10 * time.Second), States: map[string]string{StateStoreMode: "memory-fallback"}})
	r.Record(Snapshot{Time: t0.Add(11 * time.Second), States: map[string]string{StateStoreMode: "redis"}}) // the fallback stays visible
	w := r.Window(Fine, t0.Add(10*time.Second))
	var doc Document
	w.Fill(&doc)
	cpu := doc.System.CPUPercent
	if cpu[177] != 15 || !math.IsNaN(cpu[178]) || !math.IsNaN(cpu[179]) {
		t.Fatalf("cpu = %v", cpu[177:])
	}
	modes := doc.StoreMode.Values
	if modes[177] == nil || *modes[177] != "redis" || modes[178] != nil || *modes[179] != "memory-fallback" {
		t.Fatalf("modes: %v %v %v", modes[177], modes[178], modes[179])
	}
	raw, _ := json.Marshal(doc.System)
	if !strings.Contains(string(raw), `15,null,null]`) {
		t.Fatalf("gauges JSON: %s", raw[len(raw)-80:])
	}
	if len(doc.Dependencies) != 0 || len(doc.Timestamps) != 180 || len(doc.System.Goroutines) != 180 {
		t.Fatalf("empty families: %d deps, %d goroutines", len(doc.Dependencies), len(doc.System.Goroutines))
	}
}

func TestOldBucketsAreForgotten(t *testing.T) {
	r := NewRecorder()
	r.Record(snap(t0, rl("api", "allowed", 0)))
	r.Record(snap(t0.Add(5*time.Second), rl("api", "allowed", 7)))
	// 15 minutes later the slot is reused: the old bucket must read 0, not 7.
	later := t0.Add(5*time.Second + 15*time.Minute)
	w := r.Window(Fine, later)
	for i, v := range seriesOf(t, w, FamilyRateLimit, map[string]string{"class": "default", "policy": "api", "result": "allowed"}) {
		if v != 0 {
			t.Fatalf("bucket %d = %v after 15 minutes", i, v)
		}
	}
}

// TestFixedMemory records many distinct label sets: every family stays at MaxSeries series,
// and the folded series carries the rest of the counts.
func TestFixedMemory(t *testing.T) {
	r := NewRecorder()
	const sets = 5000
	mk := func(v float64) Snapshot {
		s := Snapshot{Time: t0, Values: map[string][]Point{}}
		for i := 0; i < sets; i++ {
			s.Values[FamilyPathBlocked] = append(s.Values[FamilyPathBlocked], Point{Labels: []Label{{"reason", fmt.Sprint("r", i)}}, Value: v})
			s.Values[FamilyDependencyUp] = append(s.Values[FamilyDependencyUp], Point{Labels: []Label{{"name", fmt.Sprint("d", i)}}, Value: 1})
		}
		return s
	}
	r.Record(mk(0))
	s := mk(1)
	s.Time = t0.Add(5 * time.Second)
	r.Record(s)
	for name, n := range r.SeriesCount() {
		if n > MaxSeries {
			t.Fatalf("family %s holds %d series, bound %d", name, n, MaxSeries)
		}
	}
	if n := r.SeriesCount()[FamilyPathBlocked]; n != MaxSeries {
		t.Fatalf("path_blocked holds %d series, want %d", n, MaxSeries)
	}
	w := r.Window(Fine, s.Time)
	sum := 0.0
	for _, l := range w.Series[FamilyPathBlocked] {
		sum += l.Values[179]
	}
	if sum != sets {
		t.Fatalf("the folded family counts %v, want %d", sum, sets)
	}
	other := seriesOf(t, w, FamilyPathBlocked, map[string]string{"reason": Other})
	if other[179] != sets-(MaxSeries-1) {
		t.Fatalf("other = %v, want %d", other[179], sets-(MaxSeries-1))
	}
}

func TestLabeledJSONRoundTrip(t *testing.T) {
	in := []Labeled{{Labels: map[string]string{"policy": "api", "result": "denied"}, Values: Values{1, math.NaN(), 2.5}}}
	raw, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if string(raw) != `[{"policy":"api","result":"denied","values":[1,null,2.5]}]` {
		t.Fatalf("JSON: %s", raw)
	}
	var out []Labeled
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatal(err)
	}
	if out[0].Labels["policy"] != "api" || out[0].Values[0] != 1 || !math.IsNaN(out[0].Values[1]) {
		t.Fatalf("decoded: %+v", out)
	}
	tot, _ := json.Marshal(Total{Labels: map[string]string{"reason": "traversal"}, Count: 3})
	if string(tot) != `{"reason":"traversal","count":3}` {
		t.Fatalf("total JSON: %s", tot)
	}
}

func BenchmarkRecord(b *testing.B) {
	r := NewRecorder()
	var pts []Point
	for _, p := range []string{"api", "public", "auth"} {
		for _, c := range []string{"default", "trusted", "suspicious"} {
			for _, res := range []string{"allowed", "denied", "shadow_denied", "unlimited"} {
				pts = append(pts, Point{Labels: []Label{{"class", c}, {"policy", p}, {"result", res}}, Value: 1})
			}
		}
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		for j := range pts {
			pts[j].Value++
		}
		r.Record(Snapshot{Time: t0.Add(time.Duration(i) * 5 * time.Second), Values: map[string][]Point{FamilyRateLimit: pts}})
	}
}

// TestTotalsOnlyForSampledSeries: a counter the last snapshot lacks (its collector left the
// configuration's registry) keeps its buckets but shows no total, like /metrics.
func TestTotalsOnlyForSampledSeries(t *testing.T) {
	r := NewRecorder()
	r.Record(snap(t0, rl("api", "allowed", 0)))
	r.Record(snap(t0.Add(5*time.Second), rl("api", "allowed", 4)))
	r.Record(Snapshot{Time: t0.Add(10 * time.Second)}) // no ratelimit family at all
	w := r.Window(Fine, t0.Add(10*time.Second))
	if len(w.Totals[FamilyRateLimit]) != 0 {
		t.Fatalf("totals for an absent collector: %+v", w.Totals[FamilyRateLimit])
	}
	if v := seriesOf(t, w, FamilyRateLimit, map[string]string{"class": "default", "policy": "api", "result": "allowed"}); v[178] != 4 {
		t.Fatalf("the recorded bucket is gone: %v", v[177:])
	}
	r.Record(snap(t0.Add(15*time.Second), rl("api", "allowed", 6)))
	w = r.Window(Fine, t0.Add(15*time.Second))
	if len(w.Totals[FamilyRateLimit]) != 1 || w.Totals[FamilyRateLimit][0].Count != 6 {
		t.Fatalf("totals after the collector is back: %+v", w.Totals[FamilyRateLimit])
	}
}
