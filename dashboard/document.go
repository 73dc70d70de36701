package dashboard

import (
	"bytes"
	"encoding/json"
	"math"
	"sort"
	"strconv"
	"time"
)

// Document is the answer of /dashboard/data (see the contract in the issue): every series
// array has one value per entry of Timestamps, oldest first.
type Document struct {
	Instance          string    `json:"instance"`
	Instances         []string  `json:"instances"`
	Scope             string    `json:"scope"`
	Range             string    `json:"range"`
	ResolutionSeconds int       `json:"resolution_seconds"`
	Generated         time.Time `json:"generated"`
	Timestamps        []int64   `json:"timestamps"`

	RateLimit          []Labeled          `json:"ratelimit"`
	PathBlocked        []Labeled          `json:"path_blocked"`
	Detections         []Labeled          `json:"detections"`
	CSPViolations      []Labeled          `json:"csp_violations"`
	BreakerTransitions []Labeled          `json:"breaker_transitions"`
	StoreMode          StateSeries        `json:"store_mode"`
	Dependencies       []DependencySeries `json:"dependencies"`
	System             SystemSeries       `json:"system"`

	Current    Current      `json:"current"`
	Totals     Totals       `json:"totals"`
	TopLimited []Limited    `json:"top_limited"`
	Suspicious []Suspicious `json:"suspicious"`
	// SuspiciousCount is how many clients are detected (Suspicious shows the top
	// MaxSuspicious). Across instances, the largest count: those sharing bans hold the same.
	SuspiciousCount int `json:"suspicious_count"`
	// Admin is the admin endpoint the unban commands address (localhost:2019,
	// unix//run/caddy/admin.sock), "off" when the configuration turns the admin API off (no
	// command then), "" when it is not known.
	Admin  string  `json:"admin"`
	Events []Event `json:"events"`
}

// Values are one series' buckets. NaN (a gauge bucket without data) is JSON null.
type Values []float64

// MarshalJSON writes NaN as null.
func (v Values) MarshalJSON() ([]byte, error) {
	b := make([]byte, 0, 2+len(v)*4)
	b = append(b, '[')
	for i, f := range v {
		if i > 0 {
			b = append(b, ',')
		}
		if math.IsNaN(f) || math.IsInf(f, 0) {
			b = append(b, "null"...)
		} else {
			b = strconv.AppendFloat(b, f, 'f', -1, 64)
		}
	}
	return append(b, ']'), nil
}

// UnmarshalJSON reads null as NaN.
func (v *Values) UnmarshalJSON(b []byte) error {
	var raw []*float64
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	out := make(Values, len(raw))
	for i, p := range raw {
		if p == nil {
			out[i] = math.NaN()
		} else {
			out[i] = *p
		}
	}
	*v = out
	return nil
}

// Labeled is one counter series: its Prometheus labels as flat members, and `values`.
type Labeled struct {
	Labels map[string]string
	Values Values
}

// MarshalJSON writes {"<label>": "<value>", ..., "values": [...]}.
func (l Labeled) MarshalJSON() ([]byte, error) {
	return flatJSON(l.Labels, "values", l.Values)
}

// UnmarshalJSON reads the flat form.
func (l *Labeled) UnmarshalJSON(b []byte) error {
	labels, raw, err := readFlat(b, "values")
	if err != nil {
		return err
	}
	l.Labels = labels
	l.Values = nil
	if raw != nil {
		return json.Unmarshal(raw, &l.Values)
	}
	return nil
}

// Total is one counter series' cumulative value at the last sample.
type Total struct {
	Labels map[string]string
	Count  float64
}

// MarshalJSON writes {"<label>": "<value>", ..., "count": n}.
func (t Total) MarshalJSON() ([]byte, error) { return flatJSON(t.Labels, "count", t.Count) }

// UnmarshalJSON reads the flat form.
func (t *Total) UnmarshalJSON(b []byte) error {
	labels, raw, err := readFlat(b, "count")
	if err != nil {
		return err
	}
	t.Labels, t.Count = labels, 0
	if raw != nil {
		return json.Unmarshal(raw, &t.Count)
	}
	return nil
}

func flatJSON(labels map[string]string, key string, v any) ([]byte, error) {
	names := make([]string, 0, len(labels))
	for k := range labels {
		if k != key {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	var b bytes.Buffer
	b.WriteByte('{')
	for _, k := range names {
		kj, _ := json.Marshal(k)
		vj, _ := json.Marshal(labels[k])
		b.Write(kj)
		b.WriteByte(':')
		b.Write(vj)
		b.WriteByte(',')
	}
	kj, _ := json.Marshal(key)
	b.Write(kj)
	b.WriteByte(':')
	vj, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	b.Write(vj)
	b.WriteByte('}')
	return b.Bytes(), nil
}

func readFlat(b []byte, key string) (map[string]string, json.RawMessage, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, nil, err
	}
	labels := make(map[string]string, len(m))
	for k, v := range m {
		if k == key {
			continue
		}
		var s string
		if json.Unmarshal(v, &s) == nil {
			labels[k] = s
		}
	}
	return labels, m[key], nil
}

// Totals are the counters' cumulative values at the last sample: the values Prometheus'
// /metrics shows for the same series.
type Totals struct {
	RateLimit     []Total `json:"ratelimit"`
	PathBlocked   []Total `json:"path_blocked"`
	Detections    []Total `json:"detections"`
	CSPViolations []Total `json:"csp_violations"`
}

// StateSeries is a string per bucket (null without data), e.g. the rate limiter's store mode.
type StateSeries struct {
	Values []*string `json:"values"`
}

// DependencySeries is one monitoring check over time: up (0..1, the share of samples up) and
// its check latency in milliseconds.
type DependencySeries struct {
	Name      string `json:"name"`
	Up        Values `json:"up"`
	LatencyMS Values `json:"latency_ms"`
}

// SystemSeries are the process's resources over time.
type SystemSeries struct {
	CPUPercent  Values `json:"cpu_percent"`
	MemoryBytes Values `json:"memory_bytes"`
	Goroutines  Values `json:"goroutines"`
}

// Current is the state now.
type Current struct {
	Status       string              `json:"status"`
	Ready        bool                `json:"ready"`
	Reasons      []string            `json:"reasons"`
	Degraded     []Degraded          `json:"degraded"`
	Breakers     []BreakerState      `json:"breakers"`
	Dependencies []DependencyCurrent `json:"dependencies"`
}

// The kinds of Degraded entries.
const (
	DegradedRateLimitFallback = "ratelimit_fallback"
	DegradedBreakerOpen       = "breaker_open"
	DegradedDependencyDown    = "dependency_down"
	DegradedComponentFail     = "component_fail"
	// DegradedInstancesUnread: the all-instances view could not read every other instance's
	// data from Redis, so it shows fewer instances than publish.
	DegradedInstancesUnread = "instances_unread"
	// DegradedInstanceNameShared: another process publishes to Redis under this instance's
	// name, so the two overwrite each other's documents.
	DegradedInstanceNameShared = "instance_name_shared"
)

// Degraded is one reason the edge is degraded, for the page's banner.
type Degraded struct {
	Kind      string `json:"kind"`
	Component string `json:"component"`
	Message   string `json:"message"`
	Instance  string `json:"instance,omitempty"`
}

// BreakerState is one breaker's state now.
type BreakerState struct {
	Name     string `json:"name"`
	State    string `json:"state"`
	Instance string `json:"instance,omitempty"`
}

// DependencyCurrent is one monitoring check's state now.
type DependencyCurrent struct {
	Name      string   `json:"name"`
	Status    string   `json:"status"`
	Critical  bool     `json:"critical"`
	LatencyMS *float64 `json:"latency_ms"`
	Error     string   `json:"error,omitempty"`
	Instance  string   `json:"instance,omitempty"`
}

// Limited is one row of the top rate-limited keys. Count is approximate (space-saving).
type Limited struct {
	Policy string `json:"policy"`
	Key    string `json:"key"`
	Count  uint64 `json:"count"`
}

// Suspicious is one detected client.
type Suspicious struct {
	IP          string    `json:"ip"`
	Score       float64   `json:"score"`
	Signal      string    `json:"signal"`
	Until       time.Time `json:"until"`
	SecondsLeft int64     `json:"seconds_left"`
	Shadow      bool      `json:"shadow"`
	// Unban is the shell command that lifts the detection through the admin API of the
	// instance serving the document; "" when it has none (see Document.Admin).
	Unban string `json:"unban"`
}
