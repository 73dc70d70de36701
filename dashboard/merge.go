package dashboard

import (
	"math"
	"sort"
	"time"
)

// storeModeRank orders store modes from healthy to degraded; the merged view shows the worst.
var storeModeRank = map[string]int{"redis": 1, "memory": 2, "memory-fallback": 3}

// Merge aggregates the documents of several instances (one range, local first) into the
// "all instances" view: counts are summed, gauges averaged over the instances that have a
// value, store modes show the most degraded one, tables are merged and bounded again.
func Merge(local Document, others []Document) Document {
	docs := append([]Document{local}, others...)
	out := local
	out.Scope = "all"
	out.Instances = nil
	for _, d := range docs {
		out.Instances = append(out.Instances, d.Instance)
	}
	// One grid of the local length, ending at the newest bucket any instance has sampled.
	step := int64(out.ResolutionSeconds)
	n := len(local.Timestamps)
	if n == 0 || step <= 0 {
		return out
	}
	last := local.Timestamps[n-1]
	// Another instance may have sampled the bucket after this one's newest (or the one after
	// the bucket now is in): its clock is a few seconds ahead at most. A bucket further ahead
	// is a clock hours ahead, or a tampered document; following it would move the grid past
	// now and every bucket of the other instances, this one's included, out of the view. Its
	// buckets past the limit are left out instead.
	limit := last + step
	if g := local.Generated.Unix(); !local.Generated.IsZero() {
		limit = max(limit, g-g%step+step)
	}
	for _, d := range others {
		if k := len(d.Timestamps); k > 0 && d.ResolutionSeconds == out.ResolutionSeconds && d.Timestamps[k-1] > last &&
			(d.Timestamps[k-1]-last)%step == 0 { // off the grid: only a tampered document
			last = min(d.Timestamps[k-1], limit)
		}
	}
	first := last - int64(n-1)*step
	out.Timestamps = make([]int64, n)
	for i := range out.Timestamps {
		out.Timestamps[i] = first + int64(i)*step
	}
	slot := func(ts int64) int {
		if ts < first || (ts-first)%step != 0 {
			return -1
		}
		i := int((ts - first) / step)
		if i >= n {
			return -1
		}
		return i
	}
	type pick func(d Document) []Labeled
	sumFamily := func(get pick) []Labeled {
		byKey := map[string]*Labeled{}
		var order []string
		for _, d := range docs {
			for _, s := range get(d) {
				k := mapKey(s.Labels)
				acc := byKey[k]
				if acc == nil {
					if len(byKey) >= MaxSeries {
						continue
					}
					acc = &Labeled{Labels: s.Labels, Values: make(Values, n)}
					byKey[k] = acc
					order = append(order, k)
				}
				for j, v := range s.Values {
					if j < len(d.Timestamps) {
						if i := slot(d.Timestamps[j]); i >= 0 && !math.IsNaN(v) {
							acc.Values[i] += v
						}
					}
				}
			}
		}
		res := make([]Labeled, 0, len(order))
		for _, k := range order {
			res = append(res, *byKey[k])
		}
		sortLabeled(res)
		return res
	}
	out.RateLimit = sumFamily(func(d Document) []Labeled { return d.RateLimit })
	out.PathBlocked = sumFamily(func(d Document) []Labeled { return d.PathBlocked })
	out.Detections = sumFamily(func(d Document) []Labeled { return d.Detections })
	out.CSPViolations = sumFamily(func(d Document) []Labeled { return d.CSPViolations })
	out.BreakerTransitions = sumFamily(func(d Document) []Labeled { return d.BreakerTransitions })

	mean := func(get func(d Document) Values) Values {
		sum, cnt := make([]float64, n), make([]int, n)
		for _, d := range docs {
			for j, v := range get(d) {
				if j < len(d.Timestamps) && !math.IsNaN(v) {
					if i := slot(d.Timestamps[j]); i >= 0 {
						sum[i] += v
						cnt[i]++
					}
				}
			}
		}
		res := nanValues(n)
		for i := range res {
			if cnt[i] > 0 {
				res[i] = sum[i] / float64(cnt[i])
			}
		}
		return res
	}
	out.System = SystemSeries{
		CPUPercent:  mean(func(d Document) Values { return d.System.CPUPercent }),
		MemoryBytes: mean(func(d Document) Values { return d.System.MemoryBytes }),
		Goroutines:  mean(func(d Document) Values { return d.System.Goroutines }),
	}
	var deps []string
	seenDep := map[string]bool{}
	for _, d := range docs {
		for _, dep := range d.Dependencies {
			if !seenDep[dep.Name] && len(deps) < MaxSeries {
				seenDep[dep.Name] = true
				deps = append(deps, dep.Name)
			}
		}
	}
	out.Dependencies = make([]DependencySeries, 0, len(deps))
	for _, name := range deps {
		find := func(d Document) *DependencySeries {
			for i := range d.Dependencies {
				if d.Dependencies[i].Name == name {
					return &d.Dependencies[i]
				}
			}
			return nil
		}
		out.Dependencies = append(out.Dependencies, DependencySeries{Name: name,
			Up: mean(func(d Document) Values {
				s := find(d)
				if s == nil {
					return nil
				}
				return s.Up
			}),
			LatencyMS: mean(func(d Document) Values {
				s := find(d)
				if s == nil {
					return nil
				}
				return s.LatencyMS
			}),
		})
	}
	modes := make([]*string, n)
	for _, d := range docs {
		for j, v := range d.StoreMode.Values {
			if v == nil || j >= len(d.Timestamps) {
				continue
			}
			if i := slot(d.Timestamps[j]); i >= 0 && (modes[i] == nil || storeModeRank[*v] > storeModeRank[*modes[i]]) {
				modes[i] = v
			}
		}
	}
	out.StoreMode = StateSeries{Values: modes}

	out.Totals = Totals{}
	sumTotals := func(get func(d Document) []Total) []Total {
		byKey := map[string]*Total{}
		var order []string
		for _, d := range docs {
			for _, t := range get(d) {
				k := mapKey(t.Labels)
				if byKey[k] == nil {
					if len(byKey) >= MaxSeries {
						continue
					}
					byKey[k] = &Total{Labels: t.Labels}
					order = append(order, k)
				}
				byKey[k].Count += t.Count
			}
		}
		res := make([]Total, 0, len(order))
		for _, k := range order {
			res = append(res, *byKey[k])
		}
		sortTotals(res)
		return res
	}
	out.Totals.RateLimit = sumTotals(func(d Document) []Total { return d.Totals.RateLimit })
	out.Totals.PathBlocked = sumTotals(func(d Document) []Total { return d.Totals.PathBlocked })
	out.Totals.Detections = sumTotals(func(d Document) []Total { return d.Totals.Detections })
	out.Totals.CSPViolations = sumTotals(func(d Document) []Total { return d.Totals.CSPViolations })

	out.Current = mergeCurrent(docs)
	out.TopLimited = mergeTop(docs)
	out.Suspicious = mergeSuspicious(docs)
	out.SuspiciousCount = len(out.Suspicious)
	for _, d := range docs {
		out.SuspiciousCount = max(out.SuspiciousCount, d.SuspiciousCount)
	}
	out.Events = mergeEvents(docs)
	return out
}

var statusRank = map[string]int{"pass": 0, "warn": 1, "fail": 2}

func mergeCurrent(docs []Document) Current {
	c := Current{Status: "pass", Ready: true, Reasons: []string{}, Degraded: []Degraded{}, Breakers: []BreakerState{}, Dependencies: []DependencyCurrent{}}
	for _, d := range docs {
		cur := d.Current
		if statusRank[cur.Status] > statusRank[c.Status] {
			c.Status = cur.Status
		}
		c.Ready = c.Ready && cur.Ready
		for _, r := range cur.Reasons {
			c.Reasons = append(c.Reasons, d.Instance+": "+r)
		}
		for _, g := range cur.Degraded {
			g.Instance = d.Instance
			c.Degraded = append(c.Degraded, g)
		}
		for _, b := range cur.Breakers {
			b.Instance = d.Instance
			c.Breakers = append(c.Breakers, b)
		}
		for _, dep := range cur.Dependencies {
			dep.Instance = d.Instance
			c.Dependencies = append(c.Dependencies, dep)
		}
	}
	return c
}

func mergeTop(docs []Document) []Limited {
	type k struct{ policy, key string }
	sum := map[k]uint64{}
	for _, d := range docs {
		for _, l := range d.TopLimited {
			sum[k{l.Policy, l.Key}] += l.Count
		}
	}
	out := make([]Limited, 0, len(sum))
	for key, c := range sum {
		out = append(out, Limited{Policy: key.policy, Key: key.key, Count: c})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Count != out[j].Count {
			return out[i].Count > out[j].Count
		}
		return out[i].Key < out[j].Key
	})
	if len(out) > TopShown {
		out = out[:TopShown]
	}
	return out
}

// MaxSuspicious bounds the suspicious clients shown.
const MaxSuspicious = 20

func mergeSuspicious(docs []Document) []Suspicious {
	best := map[string]Suspicious{}
	for _, d := range docs {
		for _, s := range d.Suspicious {
			if b, ok := best[s.IP]; !ok || s.Score > b.Score || (s.Score == b.Score && s.Until.After(b.Until)) {
				best[s.IP] = s
			}
		}
	}
	out := make([]Suspicious, 0, len(best))
	for _, s := range best {
		out = append(out, s)
	}
	SortSuspicious(out)
	if len(out) > MaxSuspicious {
		out = out[:MaxSuspicious]
	}
	return out
}

// SortSuspicious orders by score, then by the latest end of detection.
func SortSuspicious(s []Suspicious) {
	sort.Slice(s, func(i, j int) bool {
		if s[i].Score != s[j].Score {
			return s[i].Score > s[j].Score
		}
		if !s[i].Until.Equal(s[j].Until) {
			return s[i].Until.After(s[j].Until)
		}
		return s[i].IP < s[j].IP
	})
}

// mergeEvents keeps MaxEvents of the instances' events as one ring would: a name flooding one
// instance does not push out the other names.
func mergeEvents(docs []Document) []Event {
	var all []Event
	for _, d := range docs {
		for _, e := range d.Events {
			if e.Instance == "" {
				e.Instance = d.Instance
			}
			all = append(all, e)
		}
	}
	sort.SliceStable(all, func(i, j int) bool { return all[i].Time.Before(all[j].Time) })
	var ring Events
	for _, e := range all {
		ring.put(e)
	}
	return ring.Last()
}

// secondsLeft is the whole seconds until t (0 when past).
func secondsLeft(t, now time.Time) int64 { return max(0, int64(t.Sub(now)/time.Second)) }

// NewSuspicious fills a Suspicious row; unban is the admin API command that lifts it ("" for
// none).
func NewSuspicious(ip string, score float64, signal string, until time.Time, shadow bool, now time.Time, unban string) Suspicious {
	return Suspicious{IP: ip, Score: score, Signal: signal, Until: until.UTC(), SecondsLeft: secondsLeft(until, now),
		Shadow: shadow, Unban: unban}
}
