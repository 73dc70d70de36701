package ratelimit

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/shirou/gopsutil/v4/cpu"
)

// SystemLoad is the LoadSource of a real server: the CPU utilisation of the cgroup this
// process runs in, relative to the CPU the cgroup may use.
//
// Utilisation = Δusage / (Δwall × allowed CPUs) between two readings, where usage is the
// cgroup's cumulative CPU time (cgroup v2 cpu.stat usage_usec, v1 cpuacct.usage) — the whole
// cgroup, every process of the container, since the quota throttles them together — and
// allowed CPUs is the tightest quota/period of the cgroup and its ancestors (v2 cpu.max, v1
// cpu.cfs_quota_us and cpu.cfs_period_us), at most runtime.NumCPU(); without a quota it is
// runtime.NumCPU(), which respects the CPU affinity (cpuset) of the process. Where the quota is
// set on an ancestor (a Kubernetes pod, a systemd slice), that ancestor's usage is measured.
//
// Where no cgroup can be read (not Linux, cgroups not mounted), it falls back to the host's
// busy CPU time over all its logical CPUs (gopsutil), which overstates the headroom of a
// container but is right for a server that owns its machine. String says which one is used.
type SystemLoad struct {
	desc  string
	usage func() (time.Duration, error) // cumulative busy CPU time of what is measured
	cpus  float64                       // CPUs the measured group may use
	now   func() time.Time

	mu        sync.Mutex // guards the previous reading
	lastUsage time.Duration
	lastWall  time.Time
}

// NewSystemLoad finds this process's cgroup (v2, then v1, then the host as a whole) and takes
// the first reading; the first Load covers the time since.
func NewSystemLoad() (*SystemLoad, error) {
	return newSystemLoadAt("/", runtime.NumCPU())
}

// newSystemLoadAt is NewSystemLoad with /proc and /sys under root (tests lay them out in a
// temporary directory) and numCPU for runtime.NumCPU().
func newSystemLoadAt(root string, numCPU int) (*SystemLoad, error) {
	var why []string
	if groups, err := readProcCgroup(filepath.Join(root, "proc/self/cgroup")); err != nil {
		why = append(why, err.Error())
	} else {
		for _, find := range []func(string, map[string]string, int) (*SystemLoad, error){cgroupV2, cgroupV1} {
			s, err := find(root, groups, numCPU)
			if err == nil {
				if err = s.start(); err == nil {
					return s, nil
				}
			}
			why = append(why, err.Error())
		}
	}
	s := hostLoad(numCPU)
	if err := s.start(); err != nil {
		why = append(why, err.Error())
		return nil, fmt.Errorf("no CPU load source: %s", strings.Join(why, "; "))
	}
	s.desc += " (no cgroup: " + strings.Join(why, "; ") + ")"
	return s, nil
}

// String says what is measured, for the log.
func (s *SystemLoad) String() string { return s.desc }

// Load returns the utilisation since the previous call (or since NewSystemLoad).
func (s *SystemLoad) Load() (Load, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	usage, err := s.usage()
	if err != nil {
		return Load{}, err
	}
	now := s.now()
	dUsage, dWall := usage-s.lastUsage, now.Sub(s.lastWall)
	s.lastUsage, s.lastWall = usage, now
	if dUsage < 0 || dWall <= 0 { // the counter was reset, or no time passed: no evidence
		return Load{}, nil
	}
	return Load{CPU: dUsage.Seconds() / (dWall.Seconds() * s.cpus)}, nil
}

// start takes the first reading.
func (s *SystemLoad) start() error {
	if s.now == nil {
		s.now = time.Now
	}
	usage, err := s.usage()
	if err != nil {
		return err
	}
	s.lastUsage, s.lastWall = usage, s.now()
	return nil
}

// readProcCgroup parses /proc/self/cgroup ("id:controllers:path" per line) into the path of
// each controller; the cgroup v2 (unified) path is under "".
func readProcCgroup(file string) (map[string]string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	groups := map[string]string{}
	for line := range strings.Lines(string(b)) {
		parts := strings.SplitN(strings.TrimSpace(line), ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[0] == "0" && parts[1] == "" {
			groups[""] = parts[2]
			continue
		}
		for c := range strings.SplitSeq(parts[1], ",") {
			groups[c] = parts[2]
		}
	}
	return groups, nil
}

// cgroupDir is where cgroup path p of a hierarchy mounted at mount is. In a container without
// its own cgroup namespace /proc/self/cgroup names the host's path while the container's
// cgroup is mounted at mount itself: then p is "/".
func cgroupDir(mount, p string) string {
	if _, err := os.Stat(filepath.Join(mount, p)); err != nil {
		return "/"
	}
	return path.Clean("/" + p)
}

// tightestQuota walks cgroup path p and its ancestors and returns the smallest quota in CPUs
// that readQuota finds (0 when there is none) and the path it is set on (p when none).
func tightestQuota(p string, readQuota func(p string) (float64, error)) (float64, string, error) {
	best, at := 0.0, p
	for dir := p; ; dir = path.Dir(dir) {
		q, err := readQuota(dir)
		if err != nil {
			return 0, "", err
		}
		if q > 0 && (best == 0 || q < best) {
			best, at = q, dir
		}
		if dir == "/" {
			return best, at, nil
		}
	}
}

// depth is the number of levels of cgroup path p below the root.
func depth(p string) int {
	if p == "/" {
		return 0
	}
	return strings.Count(p, "/")
}

// allowedCPUs is the quota capped at numCPU, or numCPU without a quota.
func allowedCPUs(quota float64, numCPU int) float64 {
	if quota > 0 && quota < float64(numCPU) {
		return quota
	}
	return float64(numCPU)
}

func describe(kind, dir string, quota, cpus float64) string {
	if quota > 0 {
		return fmt.Sprintf("%s %s: quota %.2f CPUs, %.2f allowed", kind, dir, quota, cpus)
	}
	return fmt.Sprintf("%s %s: no quota, %.0f CPUs", kind, dir, cpus)
}

// cgroupV2 measures the unified hierarchy mounted at /sys/fs/cgroup (not a hybrid system's
// /sys/fs/cgroup/unified: there the CPU controller, and so the quota, is in v1).
func cgroupV2(root string, groups map[string]string, numCPU int) (*SystemLoad, error) {
	mount := filepath.Join(root, "sys/fs/cgroup")
	p, ok := groups[""]
	if !ok {
		return nil, errors.New("cgroup v2: not in /proc/self/cgroup")
	}
	if _, err := os.Stat(filepath.Join(mount, "cgroup.controllers")); err != nil {
		return nil, errors.New("cgroup v2: not mounted at /sys/fs/cgroup")
	}
	p = cgroupDir(mount, p)
	quota, at, err := tightestQuota(p, func(p string) (float64, error) {
		return readCPUMax(filepath.Join(mount, p, "cpu.max"))
	})
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(mount, at)
	cpus := allowedCPUs(quota, numCPU)
	return &SystemLoad{
		desc:  describe("cgroup v2", dir, quota, cpus),
		usage: func() (time.Duration, error) { return readUsageUsec(filepath.Join(dir, "cpu.stat")) },
		cpus:  cpus,
	}, nil
}

// readCPUMax parses cgroup v2 cpu.max ("max 100000" or "50000 100000") into CPUs; 0 means no
// quota, as does a missing file (the root cgroup has none).
func readCPUMax(file string) (float64, error) {
	b, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	} else if err != nil {
		return 0, err
	}
	fields := strings.Fields(string(b))
	if len(fields) == 0 || len(fields) > 2 {
		return 0, fmt.Errorf("%s: want \"quota period\", got %q", file, b)
	}
	if fields[0] == "max" {
		return 0, nil
	}
	period := 100000.0 // the kernel's default period, should the file ever omit it
	if len(fields) == 2 {
		if period, err = strconv.ParseFloat(fields[1], 64); err != nil || period <= 0 {
			return 0, fmt.Errorf("%s: bad period %q", file, fields[1])
		}
	}
	quota, err := strconv.ParseFloat(fields[0], 64)
	if err != nil || quota <= 0 {
		return 0, fmt.Errorf("%s: bad quota %q", file, fields[0])
	}
	return quota / period, nil
}

// readUsageUsec reads usage_usec of cgroup v2 cpu.stat.
func readUsageUsec(file string) (time.Duration, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "usage_usec "); ok {
			us, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil || us < 0 {
				return 0, fmt.Errorf("%s: bad usage_usec %q", file, strings.TrimSpace(v))
			}
			return time.Duration(us) * time.Microsecond, nil
		}
	}
	return 0, fmt.Errorf("%s: no usage_usec", file)
}

// v1Mount is where cgroup v1 controller c is mounted: alone or co-mounted with its partner.
func v1Mount(root, c string) (string, error) {
	for _, name := range []string{c, "cpu,cpuacct", "cpuacct,cpu"} {
		dir := filepath.Join(root, "sys/fs/cgroup", name)
		if _, err := os.Stat(dir); err == nil {
			return dir, nil
		}
	}
	return "", fmt.Errorf("cgroup v1: %s controller not mounted", c)
}

// cgroupV1 measures cpuacct.usage against the cfs quota of the cpu controller.
func cgroupV1(root string, groups map[string]string, numCPU int) (*SystemLoad, error) {
	cpuPath, ok1 := groups["cpu"]
	acctPath, ok2 := groups["cpuacct"]
	if !ok1 || !ok2 {
		return nil, errors.New("cgroup v1: no cpu and cpuacct controllers in /proc/self/cgroup")
	}
	cpuMount, err := v1Mount(root, "cpu")
	if err != nil {
		return nil, err
	}
	acctMount, err := v1Mount(root, "cpuacct")
	if err != nil {
		return nil, err
	}
	cpuPath = cgroupDir(cpuMount, cpuPath)
	acctPath = cgroupDir(acctMount, acctPath)
	quota, at, err := tightestQuota(cpuPath, func(p string) (float64, error) {
		return readCFSQuota(filepath.Join(cpuMount, p))
	})
	if err != nil {
		return nil, err
	}
	// The usage is measured where the quota is set: the same number of levels up.
	for range depth(cpuPath) - depth(at) {
		acctPath = path.Dir(acctPath)
	}
	dir := filepath.Join(acctMount, acctPath)
	cpus := allowedCPUs(quota, numCPU)
	return &SystemLoad{
		desc:  describe("cgroup v1", dir, quota, cpus),
		usage: func() (time.Duration, error) { return readCPUAcctUsage(filepath.Join(dir, "cpuacct.usage")) },
		cpus:  cpus,
	}, nil
}

// readCFSQuota reads cpu.cfs_quota_us / cpu.cfs_period_us of a v1 cgroup dir in CPUs; 0 means
// no quota (-1, or the files are missing).
func readCFSQuota(dir string) (float64, error) {
	quota, err := readInt(filepath.Join(dir, "cpu.cfs_quota_us"))
	if errors.Is(err, os.ErrNotExist) || (err == nil && quota < 0) {
		return 0, nil
	} else if err != nil {
		return 0, err
	}
	period, err := readInt(filepath.Join(dir, "cpu.cfs_period_us"))
	if err != nil {
		return 0, err
	}
	if quota == 0 || period <= 0 {
		return 0, fmt.Errorf("cgroup v1 %s: bad quota %d / period %d", dir, quota, period)
	}
	return float64(quota) / float64(period), nil
}

// readCPUAcctUsage reads cgroup v1 cpuacct.usage (nanoseconds).
func readCPUAcctUsage(file string) (time.Duration, error) {
	ns, err := readInt(file)
	if err != nil {
		return 0, err
	}
	if ns < 0 {
		return 0, fmt.Errorf("%s: negative usage %d", file, ns)
	}
	return time.Duration(ns), nil
}

func readInt(file string) (int64, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0, err
	}
	v, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", file, err)
	}
	return v, nil
}

// hostLoad measures the busy time of every logical CPU of the host (gopsutil): not
// container-aware, the last resort.
func hostLoad(numCPU int) *SystemLoad {
	cpus := float64(numCPU)
	if n, err := cpu.Counts(true); err == nil && n > 0 {
		cpus = float64(n)
	}
	return &SystemLoad{
		desc: fmt.Sprintf("host: %.0f CPUs", cpus),
		usage: func() (time.Duration, error) {
			t, err := cpu.Times(false)
			if err != nil {
				return 0, err
			}
			if len(t) == 0 {
				return 0, errors.New("host CPU times: none reported")
			}
			// Guest time is already counted in User; iowait is idle time.
			busy := t[0].User + t[0].Nice + t[0].System + t[0].Irq + t[0].Softirq + t[0].Steal
			return time.Duration(busy * float64(time.Second)), nil
		},
		cpus: cpus,
	}
}
