package caddymodule

import (
	"math"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/swarmsec/caddy-hardening/monitor"
)

// servicesView is the /services answer for authorized clients.
type servicesView struct {
	Status       monitor.Status   `json:"status"`
	Ready        bool             `json:"ready"`
	Reasons      []string         `json:"reasons,omitempty"`
	Dependencies []monitor.Detail `json:"dependencies"`
	Components   []componentView  `json:"components"`
}

type componentView struct {
	Component string         `json:"component"`
	Type      string         `json:"type,omitempty"`
	Status    monitor.Status `json:"status"`
	Critical  bool           `json:"critical"`
	Output    string         `json:"output,omitempty"`
	Observed  map[string]any `json:"observed,omitempty"`
	Time      *time.Time     `json:"time,omitempty"`
}

func componentsView(reports []monitor.Report) []componentView {
	out := make([]componentView, len(reports))
	for i, r := range reports {
		out[i] = componentView{Component: r.Component, Type: r.Type, Status: r.Status, Critical: r.Critical,
			Output: r.Output, Observed: r.Observed}
		if !r.Time.IsZero() {
			t := r.Time.UTC()
			out[i].Time = &t
		}
	}
	return out
}

// metricsView is the /metrics answer for authorized clients.
type metricsView struct {
	Status   monitor.Status       `json:"status"`
	System   monitor.SystemStats  `json:"system"`
	Counters map[string][]counter `json:"counters"`
}

// counter is one series of a project collector: its labels and value (count and sum for a
// histogram).
type counter struct {
	Labels map[string]string `json:"labels,omitempty"`
	Value  *float64          `json:"value,omitempty"`
	Count  *uint64           `json:"count,omitempty"`
	Sum    *float64          `json:"sum,omitempty"`
}

// projectMetricPrefix starts the name of every caddy-hardening Prometheus series.
const projectMetricPrefix = "caddy_hardening_"

// projectCounters gathers the configuration's caddy_hardening_* series as JSON.
func projectCounters(reg *prometheus.Registry) map[string][]counter {
	out := map[string][]counter{}
	if reg == nil {
		return out
	}
	families, _ := reg.Gather() // a partial result is still worth showing
	for _, f := range families {
		if !strings.HasPrefix(f.GetName(), projectMetricPrefix) {
			continue
		}
		name := strings.TrimPrefix(f.GetName(), projectMetricPrefix)
		for _, m := range f.GetMetric() {
			c := counter{}
			if len(m.GetLabel()) > 0 {
				c.Labels = make(map[string]string, len(m.GetLabel()))
				for _, l := range m.GetLabel() {
					c.Labels[l.GetName()] = l.GetValue()
				}
			}
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				c.Value = finite(m.GetCounter().GetValue())
			case dto.MetricType_GAUGE:
				c.Value = finite(m.GetGauge().GetValue())
			case dto.MetricType_HISTOGRAM:
				n, s := m.GetHistogram().GetSampleCount(), m.GetHistogram().GetSampleSum()
				c.Count, c.Sum = &n, finite(s)
			default:
				c.Value = finite(m.GetUntyped().GetValue())
			}
			out[name] = append(out[name], c)
		}
		sort.SliceStable(out[name], func(i, j int) bool { return labelKey(out[name][i]) < labelKey(out[name][j]) })
	}
	return out
}

func finite(f float64) *float64 {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return nil // JSON has no NaN
	}
	return &f
}

func labelKey(c counter) string {
	keys := sortedKeys(c.Labels)
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(k + "=" + c.Labels[k] + ",")
	}
	return b.String()
}
