package page

import (
	"bytes"
	"encoding/json"
	"os"
	"testing"
	"time"
)

// dashData is the JSON of /dashboard/data as the contract (issue #10) writes it; the fixtures
// are decoded with unknown fields refused, so a fixture that drifts from it fails here.
type dashData struct {
	Instance           string     `json:"instance"`
	Instances          []string   `json:"instances"`
	Scope              string     `json:"scope"`
	Range              string     `json:"range"`
	ResolutionSeconds  int        `json:"resolution_seconds"`
	Generated          time.Time  `json:"generated"`
	Timestamps         []int64    `json:"timestamps"`
	RateLimit          []labelled `json:"ratelimit"`
	PathBlocked        []labelled `json:"path_blocked"`
	Detections         []labelled `json:"detections"`
	CSPViolations      []labelled `json:"csp_violations"`
	BreakerTransitions []labelled `json:"breaker_transitions"`
	StoreMode          struct {
		Values []*string `json:"values"`
	} `json:"store_mode"`
	Dependencies []struct {
		Name      string     `json:"name"`
		Up        []*float64 `json:"up"`
		LatencyMS []*float64 `json:"latency_ms"`
	} `json:"dependencies"`
	System struct {
		CPUPercent  []*float64 `json:"cpu_percent"`
		MemoryBytes []*float64 `json:"memory_bytes"`
		Goroutines  []*float64 `json:"goroutines"`
	} `json:"system"`
	Current struct {
		Status   string   `json:"status"`
		Ready    bool     `json:"ready"`
		Reasons  []string `json:"reasons"`
		Degraded []struct {
			Kind      string `json:"kind"`
			Component string `json:"component"`
			Message   string `json:"message"`
		} `json:"degraded"`
		Breakers []struct {
			Name  string `json:"name"`
			State string `json:"state"`
		} `json:"breakers"`
		Dependencies []struct {
			Name      string   `json:"name"`
			Status    string   `json:"status"`
			Critical  bool     `json:"critical"`
			LatencyMS *float64 `json:"latency_ms"`
			Error     string   `json:"error"`
		} `json:"dependencies"`
	} `json:"current"`
	Totals struct {
		RateLimit     []labelled `json:"ratelimit"`
		PathBlocked   []labelled `json:"path_blocked"`
		Detections    []labelled `json:"detections"`
		CSPViolations []labelled `json:"csp_violations"`
	} `json:"totals"`
	TopLimited []struct {
		Policy string `json:"policy"`
		Key    string `json:"key"`
		Count  int64  `json:"count"`
	} `json:"top_limited"`
	Suspicious []struct {
		IP          string    `json:"ip"`
		Score       float64   `json:"score"`
		Signal      string    `json:"signal"`
		Until       time.Time `json:"until"`
		SecondsLeft int64     `json:"seconds_left"`
		Shadow      bool      `json:"shadow"`
		Unban       string    `json:"unban"`
	} `json:"suspicious"`
	Events []struct {
		Time     time.Time      `json:"time"`
		Event    string         `json:"event"`
		Level    string         `json:"level"`
		ClientIP string         `json:"client_ip"`
		IPClass  string         `json:"ip_class"`
		URI      string         `json:"uri"`
		Fields   map[string]any `json:"fields"`
	} `json:"events"`
}

// labelled is one series (values) or one total (count) with its labels.
type labelled struct {
	Policy    string    `json:"policy,omitempty"`
	Class     string    `json:"class,omitempty"`
	Result    string    `json:"result,omitempty"`
	Reason    string    `json:"reason,omitempty"`
	Signal    string    `json:"signal,omitempty"`
	Directive string    `json:"directive,omitempty"`
	Breaker   string    `json:"breaker,omitempty"`
	To        string    `json:"to,omitempty"`
	Values    []float64 `json:"values,omitempty"`
	Count     float64   `json:"count,omitempty"`
}

func (l labelled) sum() float64 {
	var s float64
	for _, v := range l.Values {
		s += v
	}
	return s
}

func loadFixture(t testing.TB, name string) *dashData {
	t.Helper()
	raw, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	d := new(dashData)
	if err := dec.Decode(d); err != nil {
		t.Fatalf("%s does not follow the contract: %v", name, err)
	}
	return d
}

func TestFixturesFollowTheContract(t *testing.T) {
	for _, c := range []struct {
		file, rng string
		res, n    int
	}{{"data-15m.json", "15m", 5, 180}, {"data-1h.json", "1h", 60, 60}} {
		d := loadFixture(t, c.file)
		if d.Range != c.rng || d.ResolutionSeconds != c.res || len(d.Timestamps) != c.n || d.Scope != "local" {
			t.Fatalf("%s: range %s, resolution %d, %d timestamps, scope %s", c.file, d.Range, d.ResolutionSeconds, len(d.Timestamps), d.Scope)
		}
		for i, ts := range d.Timestamps {
			if ts%int64(c.res) != 0 || (i > 0 && ts-d.Timestamps[i-1] != int64(c.res)) {
				t.Fatalf("%s: timestamp %d (%d) is not aligned to %d s", c.file, i, ts, c.res)
			}
		}
		if last := time.Unix(d.Timestamps[c.n-1], 0); last.After(d.Generated) {
			t.Fatalf("%s: the last bucket %s is after generated %s", c.file, last, d.Generated)
		}
		lengths := map[string]int{"store_mode": len(d.StoreMode.Values), "cpu": len(d.System.CPUPercent),
			"memory": len(d.System.MemoryBytes), "goroutines": len(d.System.Goroutines)}
		for fam, list := range map[string][]labelled{"ratelimit": d.RateLimit, "path_blocked": d.PathBlocked,
			"detections": d.Detections, "csp_violations": d.CSPViolations, "breaker_transitions": d.BreakerTransitions} {
			for _, s := range list {
				lengths[fam+" "+s.Policy+s.Reason+s.Signal+s.Directive+s.Breaker+s.To+s.Result] = len(s.Values)
			}
		}
		for _, dep := range d.Dependencies {
			lengths["up "+dep.Name], lengths["latency "+dep.Name] = len(dep.Up), len(dep.LatencyMS)
		}
		for name, l := range lengths {
			if l != c.n {
				t.Errorf("%s: %s has %d values, want %d", c.file, name, l, c.n)
			}
		}
		kinds := map[string]bool{"ratelimit_fallback": true, "breaker_open": true, "dependency_down": true, "component_fail": true}
		for _, g := range d.Current.Degraded {
			if !kinds[g.Kind] {
				t.Errorf("%s: degraded kind %q is not in the contract", c.file, g.Kind)
			}
		}
		// totals are cumulative: never below what the range shows
		for i, s := range d.RateLimit {
			if tot := d.Totals.RateLimit[i]; tot.Policy != s.Policy || tot.Class != s.Class || tot.Result != s.Result || tot.Count < s.sum() {
				t.Errorf("%s: total %+v below the range's %v", c.file, tot, s.sum())
			}
		}
	}
}
