//go:build chaos

package chaos

import "testing"

// TestGrowthRules pins the soak's definition of sustained growth, so a leak cannot pass it
// and noise cannot fail it.
func TestGrowthRules(t *testing.T) {
	rss := []struct {
		mib  []float64
		grow bool
	}{
		{[]float64{40, 42, 41, 43, 42, 41, 42}, false},        // flat
		{[]float64{40, 45, 50, 55, 60, 65, 70}, true},         // steady leak
		{[]float64{40, 80, 41, 42, 40, 41, 43}, false},        // one spike
		{[]float64{40, 41, 42, 44, 45, 47, 49}, false},        // +20 % but under 8 MiB
		{[]float64{100, 101, 105, 110, 115, 118, 119}, false}, // +8 MiB but under 20 %
		{[]float64{40, 40, 60}, true},
		{[]float64{40, 60}, false}, // too few samples to tell
	}
	for _, c := range rss {
		if got, _ := rssGrows(c.mib); got != c.grow {
			t.Errorf("rssGrows(%v) = %v, want %v", c.mib, got, c.grow)
		}
	}
	gor := []struct {
		g    []int
		leak bool
	}{
		{[]int{30, 31, 30, 32, 31, 30, 31}, false},
		{[]int{30, 50, 70, 90, 110, 130, 150}, true},
		{[]int{30, 60, 90, 85, 110, 130, 150}, false}, // decreased once: load, not a leak
		{[]int{30, 40, 50, 60, 70}, false},            // +40 only
		{[]int{30, 30, 90, 90, 90, 90, 90}, true},     // +60 after the first third: counts as growth
		{[]int{30, 90, 90, 90, 90, 90, 90}, false},    // a step while pools fill, then a plateau
	}
	for _, c := range gor {
		if got, _ := goroutinesLeak(c.g); got != c.leak {
			t.Errorf("goroutinesLeak(%v) = %v, want %v", c.g, got, c.leak)
		}
	}
}
