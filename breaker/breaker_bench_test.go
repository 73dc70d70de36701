package breaker

import (
	"testing"
	"time"
)

// BenchmarkAllowReport is the closed-state cost a request pays: Allow, then Report.
func BenchmarkAllowReport(b *testing.B) {
	br, err := New(Settings{Name: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	defer br.Close()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			tk, err := br.Allow()
			if err != nil {
				b.Fatal(err)
			}
			tk.Report(Success)
		}
	})
}

// BenchmarkAllowOpen is the cost of refusing a request while open.
func BenchmarkAllowOpen(b *testing.B) {
	br, err := New(Settings{Name: "bench", ConsecutiveFailures: 1, OpenFor: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	defer br.Close()
	tk, _ := br.Allow()
	tk.Report(Failure)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := br.Allow(); err == nil {
				b.Fatal("admitted while open")
			}
			_ = br.RetryAfter(time.Now())
		}
	})
}

func BenchmarkClassify(b *testing.B) {
	s, _ := ParseStatuses(nil)
	c := Classifier{Statuses: s, SlowThreshold: time.Second}
	b.ReportAllocs()
	for b.Loop() {
		if o, _ := c.Classify(Result{Status: 200, Latency: time.Millisecond}); o != Success {
			b.Fatal(o)
		}
	}
}
