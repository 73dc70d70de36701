package dashboard

import (
	"testing"
	"time"
)

// TestMergeAlignsGrids: an instance that sampled one bucket later moves the grid forward; each
// count stays at its own timestamp.
func TestMergeAlignsGrids(t *testing.T) {
	now := time.Unix(1795000000, 0)
	local := instanceDoc("a", now, 1, 10, "redis")
	later := instanceDoc("b", now.Add(5*time.Second), 2, 30, "memory")
	all := Merge(local, []Document{later})
	n := len(all.Timestamps)
	if n != Fine.Points || all.Timestamps[n-1] != now.Unix()+5 {
		t.Fatalf("grid: %d points ending %d", n, all.Timestamps[n-1])
	}
	v := all.RateLimit[0].Values
	if v[n-2] != 1 || v[n-1] != 2 {
		t.Fatalf("aligned counts: %v", v[n-3:])
	}
	if cpu := all.System.CPUPercent; cpu[n-2] != 10 || cpu[n-1] != 30 {
		t.Fatalf("aligned gauges: %v", cpu[n-3:])
	}
	if m := all.StoreMode.Values; *m[n-2] != "redis" || *m[n-1] != "memory" {
		t.Fatalf("modes: %v %v", *m[n-2], *m[n-1])
	}
	if all.Current.Status != "pass" || !all.Current.Ready || len(all.Instances) != 2 {
		t.Fatalf("current: %+v, instances %v", all.Current, all.Instances)
	}
}

// TestMergeKeepsTheGridAtNow: an instance whose buckets end hours ahead (a clock ahead, a
// tampered document), or off the grid's steps, moved the grid so that no bucket of the others
// fell in it; the grid now ends at most one bucket past now, on the local steps.
func TestMergeKeepsTheGridAtNow(t *testing.T) {
	now := time.Unix(1795000000, 0)
	local := instanceDoc("a", now, 1, 10, "redis")
	for _, c := range []struct {
		ahead time.Duration
		off   int64 // seconds off the grid's steps
	}{{2 * time.Hour, 0}, {0, 3}} {
		skew := c.ahead
		ahead := instanceDoc("b", now.Add(skew), 7, 30, "memory")
		for i := range ahead.Timestamps {
			ahead.Timestamps[i] += c.off
		}
		all := Merge(local, []Document{ahead})
		n := len(all.Timestamps)
		if last := all.Timestamps[n-1]; last > now.Unix()+5 || all.RateLimit[0].Values[n-1]+all.RateLimit[0].Values[n-2] != 1 {
			t.Fatalf("%s ahead: grid ends %d (now %d), counts %v; want this instance's count in a grid ending now",
				skew, last, now.Unix(), all.RateLimit[0].Values[n-3:])
		}
	}
}
