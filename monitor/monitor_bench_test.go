package monitor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"
)

// BenchmarkStateRead is what a probe request costs per check: reading the cached state.
func BenchmarkStateRead(b *testing.B) {
	c, _ := NewCheck(Config{Name: "redis"}, &scripted{script: []Outcome{ok}})
	c.RunOnce(context.Background())
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			_ = c.State()
		}
	})
}

// BenchmarkHealthDocument builds and encodes /health for five checks and three reports.
func BenchmarkHealthDocument(b *testing.B) {
	var states []State
	for i := range 5 {
		c, _ := NewCheck(Config{Name: fmt.Sprint("dep", i)}, &scripted{script: []Outcome{{Status: Pass, Observed: []Observation{{Name: "backlog", Value: 3, Unit: "messages"}}}}})
		states = append(states, c.RunOnce(context.Background()))
	}
	reports := []Report{{Component: "breaker:a", Status: Pass, Time: time.Now()}, {Component: "breaker:b", Status: Warn},
		{Component: "ratelimit:store", Status: Pass, Observed: map[string]any{"mode": "redis"}}}
	b.ReportAllocs()
	for b.Loop() {
		v := Aggregate(states, reports, false)
		if _, err := json.Marshal(Document{Status: v.Status, Notes: v.Reasons, Checks: Checks(states, reports)}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRecordFailure is the bookkeeping of one failed run, redaction included.
func BenchmarkRecordFailure(b *testing.B) {
	c, _ := NewCheck(Config{Name: "db", Secrets: []string{"hunter2"}}, &scripted{script: []Outcome{ok}})
	out := Failed(errors.New("failed to connect to `user=app database=main`: 10.0.0.5:5432: dial error: connection refused"))
	b.ReportAllocs()
	for b.Loop() {
		c.record(out, time.Now(), time.Millisecond)
	}
}

// BenchmarkSystemSampleCached is /metrics's system part within the 1 s cache.
func BenchmarkSystemSampleCached(b *testing.B) {
	s := &SystemSampler{MaxAge: time.Hour}
	s.Sample(context.Background())
	b.ReportAllocs()
	for b.Loop() {
		s.Sample(context.Background())
	}
}

// BenchmarkSystemSampleFresh is one collection (gopsutil and ReadMemStats).
func BenchmarkSystemSampleFresh(b *testing.B) {
	s := &SystemSampler{MaxAge: time.Nanosecond}
	b.ReportAllocs()
	for b.Loop() {
		s.Sample(context.Background())
	}
}
