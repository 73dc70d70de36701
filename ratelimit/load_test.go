//go:build linux

package ratelimit

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// cgroupFS lays out /proc/self/cgroup and /sys/fs/cgroup files under a temporary root.
type cgroupFS struct {
	t    *testing.T
	root string
}

func newCgroupFS(t *testing.T, procSelfCgroup string) *cgroupFS {
	fs := &cgroupFS{t: t, root: t.TempDir()}
	fs.write("proc/self/cgroup", procSelfCgroup)
	return fs
}

func (fs *cgroupFS) write(rel, content string) {
	fs.t.Helper()
	file := filepath.Join(fs.root, rel)
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		fs.t.Fatal(err)
	}
	if err := os.WriteFile(file, []byte(content), 0o644); err != nil {
		fs.t.Fatal(err)
	}
}

// open builds the SystemLoad with numCPU CPUs and a fake clock that the returned func
// advances.
func (fs *cgroupFS) open(numCPU int) (*SystemLoad, func(time.Duration)) {
	fs.t.Helper()
	s, err := newSystemLoadAt(fs.root, numCPU)
	if err != nil {
		fs.t.Fatal(err)
	}
	now := time.Unix(1000, 0)
	s.now = func() time.Time { return now }
	s.lastWall = now
	return s, func(d time.Duration) { now = now.Add(d) }
}

func (fs *cgroupFS) mustLoad(s *SystemLoad) float64 {
	fs.t.Helper()
	l, err := s.Load()
	if err != nil {
		fs.t.Fatal(err)
	}
	return l.CPU
}

func wantCPU(t *testing.T, got, want float64) {
	t.Helper()
	if !near(got, want) {
		t.Fatalf("CPU %v, want %v", got, want)
	}
}

func wantDesc(t *testing.T, s *SystemLoad, parts ...string) {
	t.Helper()
	for _, p := range parts {
		if !strings.Contains(s.String(), p) {
			t.Fatalf("description %q lacks %q", s.String(), p)
		}
	}
}

const v2Stat = "usage_usec %d\nuser_usec 1\nsystem_usec 1\nnr_periods 0\n"

func usec(n int) string { return fmt.Sprintf(v2Stat, n) }

// cgroup v2 with a quota of half a CPU: 250 ms of CPU in 1 s is 50%.
func TestSystemLoadCgroupV2Quota(t *testing.T) {
	fs := newCgroupFS(t, "0::/kubepods/pod1/c1\n")
	fs.write("sys/fs/cgroup/cgroup.controllers", "cpu io memory\n")
	fs.write("sys/fs/cgroup/kubepods/pod1/c1/cpu.max", "50000 100000\n")
	fs.write("sys/fs/cgroup/kubepods/pod1/c1/cpu.stat", usec(1_000_000))
	s, advance := fs.open(4)
	wantDesc(t, s, "cgroup v2", "kubepods/pod1/c1", "quota 0.50")

	fs.write("sys/fs/cgroup/kubepods/pod1/c1/cpu.stat", usec(1_250_000))
	advance(time.Second)
	wantCPU(t, fs.mustLoad(s), 0.5)

	// The next reading covers only the time since the previous one.
	fs.write("sys/fs/cgroup/kubepods/pod1/c1/cpu.stat", usec(1_750_000))
	advance(time.Second)
	wantCPU(t, fs.mustLoad(s), 1)
}

// cgroup v2 without a quota ("max"): the allowed CPUs are runtime.NumCPU's.
func TestSystemLoadCgroupV2NoQuota(t *testing.T) {
	fs := newCgroupFS(t, "0::/system.slice/caddy.service\n")
	fs.write("sys/fs/cgroup/cgroup.controllers", "cpu\n")
	fs.write("sys/fs/cgroup/system.slice/caddy.service/cpu.max", "max 100000\n")
	fs.write("sys/fs/cgroup/system.slice/caddy.service/cpu.stat", usec(0))
	s, advance := fs.open(4)
	wantDesc(t, s, "cgroup v2", "no quota, 4 CPUs")

	fs.write("sys/fs/cgroup/system.slice/caddy.service/cpu.stat", usec(2_000_000))
	advance(time.Second)
	wantCPU(t, fs.mustLoad(s), 0.5)
}

// A quota on an ancestor (a pod) binds when it is the tightest: that ancestor's usage is
// measured, since its quota throttles all its children together.
func TestSystemLoadCgroupV2AncestorQuota(t *testing.T) {
	fs := newCgroupFS(t, "0::/kubepods/pod1/c1\n")
	fs.write("sys/fs/cgroup/cgroup.controllers", "cpu\n")
	fs.write("sys/fs/cgroup/kubepods/cpu.max", "max 100000\n")
	fs.write("sys/fs/cgroup/kubepods/pod1/cpu.max", "200000 100000\n")
	fs.write("sys/fs/cgroup/kubepods/pod1/cpu.stat", usec(0))
	fs.write("sys/fs/cgroup/kubepods/pod1/c1/cpu.max", "300000 100000\n")
	fs.write("sys/fs/cgroup/kubepods/pod1/c1/cpu.stat", usec(0))
	s, advance := fs.open(8)
	wantDesc(t, s, "kubepods/pod1:", "quota 2.00")

	fs.write("sys/fs/cgroup/kubepods/pod1/cpu.stat", usec(1_000_000))
	fs.write("sys/fs/cgroup/kubepods/pod1/c1/cpu.stat", usec(100_000))
	advance(time.Second)
	wantCPU(t, fs.mustLoad(s), 0.5)
}

// A quota above the CPUs the process may run on is capped at those CPUs.
func TestSystemLoadQuotaAboveCPUs(t *testing.T) {
	fs := newCgroupFS(t, "0::/\n")
	fs.write("sys/fs/cgroup/cgroup.controllers", "cpu\n")
	fs.write("sys/fs/cgroup/cpu.max", "800000 100000\n")
	fs.write("sys/fs/cgroup/cpu.stat", usec(0))
	s, advance := fs.open(2)
	wantDesc(t, s, "quota 8.00 CPUs, 2.00 allowed")
	fs.write("sys/fs/cgroup/cpu.stat", usec(1_000_000))
	advance(time.Second)
	wantCPU(t, fs.mustLoad(s), 0.5)
}

// In a container without its own cgroup namespace, /proc/self/cgroup names the host's path,
// which does not exist under the container's /sys/fs/cgroup: the mount itself is the cgroup.
func TestSystemLoadCgroupV2HostPathInContainer(t *testing.T) {
	fs := newCgroupFS(t, "0::/docker/0123abcd\n")
	fs.write("sys/fs/cgroup/cgroup.controllers", "cpu\n")
	fs.write("sys/fs/cgroup/cpu.max", "100000 100000\n")
	fs.write("sys/fs/cgroup/cpu.stat", usec(0))
	s, advance := fs.open(4)
	wantDesc(t, s, "cgroup v2", "quota 1.00")
	fs.write("sys/fs/cgroup/cpu.stat", usec(300_000))
	advance(time.Second)
	wantCPU(t, fs.mustLoad(s), 0.3)
}

// cgroup v1 with cpu and cpuacct co-mounted and a quota of 1.5 CPUs.
func TestSystemLoadCgroupV1Quota(t *testing.T) {
	fs := newCgroupFS(t, "12:memory:/docker/x\n4:cpu,cpuacct:/docker/x\n1:name=systemd:/docker/x\n")
	dir := "sys/fs/cgroup/cpu,cpuacct/docker/x/"
	fs.write(dir+"cpu.cfs_quota_us", "150000\n")
	fs.write(dir+"cpu.cfs_period_us", "100000\n")
	fs.write(dir+"cpuacct.usage", "5000000000\n")
	s, advance := fs.open(4)
	wantDesc(t, s, "cgroup v1", "docker/x", "quota 1.50")
	fs.write(dir+"cpuacct.usage", "5750000000\n")
	advance(time.Second)
	wantCPU(t, fs.mustLoad(s), 0.5)
}

// A hybrid system (v1 controllers, v2 mounted at /sys/fs/cgroup/unified, like this kind of
// machine) uses v1, where the CPU controller and its quota are; quota -1 means none.
func TestSystemLoadCgroupV1Hybrid(t *testing.T) {
	fs := newCgroupFS(t, "2:cpuacct:/\n1:cpu:/\n0::/\n")
	fs.write("sys/fs/cgroup/unified/cgroup.controllers", "")
	fs.write("sys/fs/cgroup/unified/cpu.stat", usec(0))
	fs.write("sys/fs/cgroup/cpu/cpu.cfs_quota_us", "-1\n")
	fs.write("sys/fs/cgroup/cpu/cpu.cfs_period_us", "100000\n")
	fs.write("sys/fs/cgroup/cpuacct/cpuacct.usage", "0\n")
	s, advance := fs.open(2)
	wantDesc(t, s, "cgroup v1", "no quota, 2 CPUs")
	fs.write("sys/fs/cgroup/cpuacct/cpuacct.usage", "1000000000\n")
	advance(time.Second)
	wantCPU(t, fs.mustLoad(s), 0.5)
}

// v1 with the quota on an ancestor: the ancestor's usage is measured, in the cpuacct
// hierarchy mounted separately.
func TestSystemLoadCgroupV1AncestorQuota(t *testing.T) {
	fs := newCgroupFS(t, "3:cpuacct:/kubepods/pod1/c1\n2:cpu:/kubepods/pod1/c1\n")
	fs.write("sys/fs/cgroup/cpu/kubepods/pod1/cpu.cfs_quota_us", "50000\n")
	fs.write("sys/fs/cgroup/cpu/kubepods/pod1/cpu.cfs_period_us", "100000\n")
	fs.write("sys/fs/cgroup/cpu/kubepods/pod1/c1/cpu.cfs_quota_us", "-1\n")
	fs.write("sys/fs/cgroup/cpu/kubepods/pod1/c1/cpu.cfs_period_us", "100000\n")
	fs.write("sys/fs/cgroup/cpuacct/kubepods/pod1/cpuacct.usage", "0\n")
	fs.write("sys/fs/cgroup/cpuacct/kubepods/pod1/c1/cpuacct.usage", "0\n")
	s, advance := fs.open(4)
	wantDesc(t, s, "cpuacct/kubepods/pod1:", "quota 0.50")
	fs.write("sys/fs/cgroup/cpuacct/kubepods/pod1/cpuacct.usage", "400000000\n")
	advance(time.Second)
	wantCPU(t, fs.mustLoad(s), 0.8)
}

// Files that cannot be parsed are an error of that cgroup version, and the next source is
// used, saying why.
func TestSystemLoadMalformedFallsBack(t *testing.T) {
	for _, cpuMax := range []string{"", "abc 100000", "50000 0", "1 2 3", "-5 100000"} {
		fs := newCgroupFS(t, "0::/\n")
		fs.write("sys/fs/cgroup/cgroup.controllers", "cpu\n")
		fs.write("sys/fs/cgroup/cpu.max", cpuMax)
		fs.write("sys/fs/cgroup/cpu.stat", usec(0))
		groups, err := readProcCgroup(filepath.Join(fs.root, "proc/self/cgroup"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cgroupV2(fs.root, groups, 2); err == nil {
			t.Errorf("cpu.max %q accepted", cpuMax)
		}
		s, _ := fs.open(2)
		wantDesc(t, s, "host:", "cpu.max")
	}

	fs := newCgroupFS(t, "0::/\n")
	fs.write("sys/fs/cgroup/cgroup.controllers", "cpu\n")
	fs.write("sys/fs/cgroup/cpu.stat", "user_usec 5\n")
	s, _ := fs.open(2)
	wantDesc(t, s, "host:", "no usage_usec")
}

// Without /proc/self/cgroup (not Linux, or no /proc) the host's CPU times are used.
func TestSystemLoadNoCgroupUsesHost(t *testing.T) {
	s, err := newSystemLoadAt(t.TempDir(), runtime.NumCPU())
	if err != nil {
		t.Fatal(err)
	}
	wantDesc(t, s, "host:")
	if l, err := s.Load(); err != nil || l.CPU < 0 {
		t.Fatalf("host load %+v, %v", l, err)
	}
}

// A usage counter that went backwards (the cgroup was recreated) reads as 0, not negative,
// and the next reading is measured from the new value.
func TestSystemLoadCounterReset(t *testing.T) {
	fs := newCgroupFS(t, "0::/\n")
	fs.write("sys/fs/cgroup/cgroup.controllers", "cpu\n")
	fs.write("sys/fs/cgroup/cpu.stat", usec(9_000_000))
	s, advance := fs.open(1)
	fs.write("sys/fs/cgroup/cpu.stat", usec(100_000))
	advance(time.Second)
	wantCPU(t, fs.mustLoad(s), 0)
	fs.write("sys/fs/cgroup/cpu.stat", usec(600_000))
	advance(time.Second)
	wantCPU(t, fs.mustLoad(s), 0.5)

	// A reading that fails is an error, not a number.
	if err := os.Remove(filepath.Join(fs.root, "sys/fs/cgroup/cpu.stat")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load(); err == nil {
		t.Fatal("Load of a vanished cpu.stat did not fail")
	}
}

// On this machine: burning every CPU for a while reads as busy, and never far above 1.
func TestSystemLoadRealMachine(t *testing.T) {
	s, err := NewSystemLoad()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("source: %s", s)
	idle, err := s.Load()
	if err != nil {
		t.Fatal(err)
	}

	var stop atomic.Bool
	var wg sync.WaitGroup
	for range runtime.NumCPU() {
		wg.Go(func() {
			x := uint64(1)
			for !stop.Load() {
				for range 10000 {
					x = x*6364136223846793005 + 1442695040888963407
				}
			}
			_ = x
		})
	}
	time.Sleep(500 * time.Millisecond)
	busy, err := s.Load()
	stop.Store(true)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("CPU before: %.3f, while burning %d goroutines: %.3f", idle.CPU, runtime.NumCPU(), busy.CPU)
	// Loose bounds: the machine is shared, and the counters and the wall clock are read at
	// slightly different instants.
	if busy.CPU < 0.25 || busy.CPU > 1.5 {
		t.Fatalf("CPU while burning every CPU reads %.3f, want in [0.25, 1.5]", busy.CPU)
	}
}
