package dashboard

import (
	"math"
	"time"
)

// Resolution is one time scale of the series: Points buckets of Step each.
type Resolution struct {
	Name   string // the `range` query value
	Step   time.Duration
	Points int
}

// The two resolutions every series keeps.
var (
	Fine   = Resolution{Name: "15m", Step: 5 * time.Second, Points: 180}
	Coarse = Resolution{Name: "1h", Step: time.Minute, Points: 60}
)

// resolutions is indexed like series.rings.
var resolutions = [2]Resolution{Fine, Coarse}

// ParseRange returns the resolution named by a `range` query value ("" is 15m).
func ParseRange(s string) (Resolution, bool) {
	switch s {
	case "", Fine.Name:
		return Fine, true
	case Coarse.Name:
		return Coarse, true
	}
	return Resolution{}, false
}

// bucket is the index of the bucket t falls in (unix time / step).
func (r Resolution) bucket(t time.Time) int64 { return t.Unix() / int64(r.Step/time.Second) }

// Timestamps lists the start (unix seconds) of the Points buckets ending with the one t is in,
// oldest first.
func (r Resolution) Timestamps(t time.Time) []int64 {
	step := int64(r.Step / time.Second)
	last := r.bucket(t)
	out := make([]int64, r.Points)
	for i := range out {
		out[i] = (last - int64(r.Points-1-i)) * step
	}
	return out
}

// ring is a fixed array of buckets; slot i holds the bucket whose index is i modulo its
// length. A slot keeps the sum and the number of values added, so a counter reads the sum
// and a gauge the mean.
type ring struct {
	bucket []int64
	sum    []float64
	n      []uint32
}

func newRing(points int) ring {
	return ring{bucket: make([]int64, points), sum: make([]float64, points), n: make([]uint32, points)}
}

func (r *ring) add(b int64, v float64) {
	i := int(b % int64(len(r.bucket)))
	if r.bucket[i] != b {
		r.bucket[i], r.sum[i], r.n[i] = b, 0, 0
	}
	r.sum[i] += v
	r.n[i]++
}

// values writes the buckets ending with last into dst (len(dst) == the ring's length): the
// sum for a counter (0 when empty), the mean for a gauge (NaN when empty).
func (r *ring) values(last int64, gauge bool, dst []float64) {
	n := int64(len(r.bucket))
	for k := range dst {
		b := last - (n - 1) + int64(k)
		i := int(((b % n) + n) % n)
		switch {
		case r.bucket[i] != b || r.n[i] == 0:
			if gauge {
				dst[k] = math.NaN()
			} else {
				dst[k] = 0
			}
		case gauge:
			dst[k] = r.sum[i] / float64(r.n[i])
		default:
			dst[k] = r.sum[i]
		}
	}
}

// stateRing keeps one string per bucket, e.g. the store mode: the most degraded one seen in
// the bucket (storeModeRank), so a short fallback is not hidden by the recovery after it;
// among equals, the last.
type stateRing struct {
	bucket []int64
	val    []string
}

func newStateRing(points int) stateRing {
	return stateRing{bucket: make([]int64, points), val: make([]string, points)}
}

func (r *stateRing) set(b int64, v string) {
	i := int(b % int64(len(r.bucket)))
	if r.bucket[i] == b && storeModeRank[r.val[i]] > storeModeRank[v] {
		return
	}
	r.bucket[i], r.val[i] = b, v
}

func (r *stateRing) values(last int64) []*string {
	n := int64(len(r.bucket))
	out := make([]*string, n)
	for k := range out {
		b := last - (n - 1) + int64(k)
		i := int(((b % n) + n) % n)
		if r.bucket[i] == b && r.val[i] != "" {
			v := r.val[i]
			out[k] = &v
		}
	}
	return out
}
