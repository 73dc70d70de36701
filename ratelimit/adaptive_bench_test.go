package ratelimit

import "testing"

// BenchmarkAdaptiveFactor is the per-request cost of reading the factor.
func BenchmarkAdaptiveFactor(b *testing.B) {
	a, err := NewAdaptive(AdaptiveOptions{Source: &fixedLoad{}})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		sum := 0.0
		for pb.Next() {
			sum += a.Factor()
		}
		_ = sum
	})
}

// BenchmarkAdaptiveTrack is the per-request cost of counting a request in flight.
func BenchmarkAdaptiveTrack(b *testing.B) {
	a, err := NewAdaptive(AdaptiveOptions{Source: &fixedLoad{}, InFlightTarget: 100})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			done := a.Track()
			done()
		}
	})
}
