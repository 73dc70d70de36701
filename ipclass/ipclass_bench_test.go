package ipclass

import (
	"math/rand/v2"
	"net/netip"
	"runtime"
	"testing"
)

// BenchmarkClass10kPrefixes: one classification against 10,000 trusted and 10,000 suspicious
// prefixes, addresses drawn at random (most miss both lists: the slowest case).
func BenchmarkClass10kPrefixes(b *testing.B) {
	r := rand.New(rand.NewPCG(3, 4))
	c := Classifier{
		Trusted:    NewPrefixSet(randomPrefixes(r, 10_000)),
		Suspicious: NewPrefixSet(randomPrefixes(r, 10_000)),
		Detector:   NewDetector(Settings{}),
	}
	addrs := make([]netip.Addr, 1024)
	for i := range addrs {
		addrs[i] = randomAddr(r)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		_ = c.Class(addrs[i&1023])
	}
}

// BenchmarkDetectorFlood1M: one million distinct clients each send one signal into a detector
// capped at 200,000; reports the tracked count and the heap it holds.
func BenchmarkDetectorFlood1M(b *testing.B) {
	for b.Loop() {
		d, heapMiB := flood1M(SignalNotFound)
		tracked, _ := d.Counts()
		b.ReportMetric(float64(tracked), "tracked")
		b.ReportMetric(heapMiB, "heap-MiB")
	}
}

// BenchmarkDetectorBanFlood1M: one million distinct clients each detected at once (a
// traversal) into a detector capped at 200,000: the score table and the ban table fill, each
// to its bound; reports the bans held, the evicted ones and the heap both tables hold.
func BenchmarkDetectorBanFlood1M(b *testing.B) {
	for b.Loop() {
		d, heapMiB := flood1M(SignalTraversal)
		_, detected := d.Counts()
		b.ReportMetric(float64(detected), "bans")
		b.ReportMetric(float64(d.BansEvicted()), "evicted")
		b.ReportMetric(heapMiB, "heap-MiB")
	}
}

// flood1M sends one signal from each of one million distinct clients into a detector capped
// at the default max_tracked, and returns it with the heap it holds afterwards, in MiB.
func flood1M(sig Signal) (*Detector, float64) {
	d := NewDetector(Settings{MaxTracked: DefaultMaxTracked})
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	for i := range 1_000_000 {
		d.Signal(netip.AddrFrom4([4]byte{100, byte(i >> 16), byte(i >> 8), byte(i)}), sig)
	}
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	return d, float64(after.HeapAlloc-before.HeapAlloc) / (1 << 20)
}

// BenchmarkDetectorSignal: one signal from a new client, the table not full.
func BenchmarkDetectorSignal(b *testing.B) {
	d := NewDetector(Settings{})
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		d.Signal(netip.AddrFrom4([4]byte{100, 64, byte(i >> 8), byte(i)}), SignalNotFound)
	}
}

// BenchmarkProbeMatchOrdinary: an ordinary API path against the built-in probe list.
func BenchmarkProbeMatchOrdinary(b *testing.B) {
	m, err := NewProbeMatcher(DefaultProbePaths)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		_ = m.Match("/api/v1/users/123")
	}
}

// BenchmarkDetectorSignalIPv6: a traversal (a detection) from each /64 of one /48 after
// another: escalation counts each detection in its /48, then detects the /48.
func BenchmarkDetectorSignalIPv6(b *testing.B) {
	d := NewDetector(Settings{})
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		a := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, byte(i >> 16), byte(i >> 8), byte(i)})
		d.Signal(a, SignalTraversal)
	}
}
