package dashboard

import (
	"sort"

	"github.com/swarmsec/caddy-hardening/internal/textcut"
)

// Bounds of what the all-instances view reads from Redis. A document is another process's
// word: a buggy or compromised instance, or anyone who can write to Redis, may put anything
// under a document's key, so Fetch reads at most maxDocBytes of one document (a local one is
// at most about 4 MB: 100 events of 16 clipped fields, escaped) and maxFetchBytes in all, and
// bound gives what it decoded the bounds a local document has.
const (
	maxDocBytes   = 8 << 20
	maxFetchBytes = 64 << 20
	maxLabels     = 8   // labels of one series (ratelimit has three)
	maxLabelText  = 128 // a label's name or value, a policy or breaker name
	maxMessage    = 512 // a degraded entry's message, a dependency's error
)

// validInstance reports whether s is an instance name as InstanceName makes one: it names a
// Redis key and is shown as the instance of what the document holds.
func validInstance(s string) bool {
	if s == "" || len(s) > maxInstanceName {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// short is attacker-reachable text made visible and cut to n bytes.
func short(s string, n int) string { return textcut.Cut(Visible(s), n) }

// bound makes d, a document read from Redis under instance's key, no larger than a local
// document can be: the instance is the one its key names, lists are cut to their local
// bounds, text is clipped and its hidden characters escaped as the events ring does.
func (d *Document) bound(instance string, res Resolution) {
	d.Instance = instance
	d.Instances = []string{instance}
	d.Admin = ""
	d.Timestamps = head(d.Timestamps, res.Points)
	n := len(d.Timestamps)
	d.SuspiciousCount = max(d.SuspiciousCount, 0)
	for _, fam := range []*[]Labeled{&d.RateLimit, &d.PathBlocked, &d.Detections, &d.CSPViolations, &d.BreakerTransitions} {
		*fam = head(*fam, MaxSeries)
		for i := range *fam {
			s := &(*fam)[i]
			s.Labels = boundLabels(s.Labels)
			s.Values = head(s.Values, n)
		}
	}
	for _, tot := range []*[]Total{&d.Totals.RateLimit, &d.Totals.PathBlocked, &d.Totals.Detections, &d.Totals.CSPViolations} {
		*tot = head(*tot, MaxSeries)
		for i := range *tot {
			(*tot)[i].Labels = boundLabels((*tot)[i].Labels)
		}
	}
	d.StoreMode.Values = head(d.StoreMode.Values, n)
	for i, v := range d.StoreMode.Values {
		if v != nil {
			s := short(*v, maxShortField)
			d.StoreMode.Values[i] = &s
		}
	}
	d.Dependencies = head(d.Dependencies, MaxSeries)
	for i := range d.Dependencies {
		x := &d.Dependencies[i]
		x.Name, x.Up, x.LatencyMS = short(x.Name, maxLabelText), head(x.Up, n), head(x.LatencyMS, n)
	}
	d.System = SystemSeries{CPUPercent: head(d.System.CPUPercent, n), MemoryBytes: head(d.System.MemoryBytes, n),
		Goroutines: head(d.System.Goroutines, n)}

	c := &d.Current
	c.Status = short(c.Status, maxShortField)
	c.Reasons = head(c.Reasons, MaxSeries)
	for i := range c.Reasons {
		c.Reasons[i] = short(c.Reasons[i], maxMessage)
	}
	c.Degraded = head(c.Degraded, MaxSeries)
	for i := range c.Degraded {
		g := &c.Degraded[i]
		g.Kind, g.Component, g.Message, g.Instance = short(g.Kind, maxShortField), short(g.Component, maxLabelText), short(g.Message, maxMessage), ""
	}
	c.Breakers = head(c.Breakers, MaxSeries)
	for i := range c.Breakers {
		b := &c.Breakers[i]
		b.Name, b.State, b.Instance = short(b.Name, maxLabelText), short(b.State, maxShortField), ""
	}
	c.Dependencies = head(c.Dependencies, MaxSeries)
	for i := range c.Dependencies {
		x := &c.Dependencies[i]
		x.Name, x.Status, x.Error, x.Instance = short(x.Name, maxLabelText), short(x.Status, maxShortField), short(x.Error, maxMessage), ""
	}
	d.TopLimited = head(d.TopLimited, TopTracked)
	for i := range d.TopLimited {
		l := &d.TopLimited[i]
		l.Policy, l.Key = short(l.Policy, maxLabelText), short(l.Key, maxShownKey)
	}
	d.Suspicious = head(d.Suspicious, MaxSuspicious)
	for i := range d.Suspicious {
		s := &d.Suspicious[i]
		s.IP, s.Signal, s.Unban = short(s.IP, maxShownKey), short(s.Signal, maxShortField), ""
	}
	d.Events = head(d.Events, MaxEvents)
	for i := range d.Events {
		ev := clip(d.Events[i])
		ev.Instance = instance
		d.Events[i] = ev
	}
}

// head is s cut to at most n entries.
func head[T any](s []T, n int) []T {
	if len(s) > n {
		return s[:n:n]
	}
	return s
}

// boundLabels keeps maxLabels of a series' labels (the first by name), clipped.
func boundLabels(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	out := make(map[string]string, min(len(m), maxLabels))
	for _, k := range head(names, maxLabels) {
		out[short(k, maxLabelText)] = short(m[k], maxLabelText)
	}
	return out
}
