package monitor

import (
	"context"
	"errors"
	"os"
	"runtime"
	"sync"
	"time"

	"github.com/shirou/gopsutil/v4/cpu"
	"github.com/shirou/gopsutil/v4/load"
	"github.com/shirou/gopsutil/v4/mem"
	"github.com/shirou/gopsutil/v4/process"
)

// processStart is when this package was loaded: the process's uptime origin.
var processStart = time.Now()

// SystemStats are the host's and the process's resources and Go runtime figures. A figure the
// platform cannot give is left at zero and named in Errors.
type SystemStats struct {
	Time          time.Time `json:"time"`
	UptimeSeconds float64   `json:"uptime_seconds"`
	Host          struct {
		CPUPercent        float64 `json:"cpu_percent"`
		CPUs              int     `json:"cpus"`
		MemoryTotal       uint64  `json:"memory_total_bytes"`
		MemoryUsed        uint64  `json:"memory_used_bytes"`
		MemoryUsedPercent float64 `json:"memory_used_percent"`
		Load1             float64 `json:"load1"`
		Load5             float64 `json:"load5"`
		Load15            float64 `json:"load15"`
	} `json:"host"`
	Process struct {
		PID        int32   `json:"pid"`
		CPUPercent float64 `json:"cpu_percent"`
		RSS        uint64  `json:"rss_bytes"`
		OpenFDs    int32   `json:"open_fds"`
	} `json:"process"`
	Runtime struct {
		Version            string  `json:"go_version"`
		Goroutines         int     `json:"goroutines"`
		HeapAlloc          uint64  `json:"heap_alloc_bytes"`
		HeapSys            uint64  `json:"heap_sys_bytes"`
		NumGC              uint32  `json:"gc_count"`
		GCPauseTotalSecond float64 `json:"gc_pause_total_seconds"`
		GCPauseLastSecond  float64 `json:"gc_pause_last_seconds"`
		GOMAXPROCS         int     `json:"gomaxprocs"`
	} `json:"runtime"`
	Errors []string `json:"errors,omitempty"`
}

// SystemSampler collects SystemStats at most once per MaxAge, so any request rate costs at most
// one collection (ReadMemStats stops the world briefly) per MaxAge.
type SystemSampler struct {
	MaxAge time.Duration // default 1s

	mu   sync.Mutex
	last SystemStats
	proc *process.Process
}

// Sample returns cached stats younger than MaxAge, or collects new ones.
func (s *SystemSampler) Sample(ctx context.Context) SystemStats {
	maxAge := s.MaxAge
	if maxAge == 0 {
		maxAge = time.Second
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	if !s.last.Time.IsZero() && now.Sub(s.last.Time) < maxAge {
		return s.last
	}
	st := SystemStats{Time: now, UptimeSeconds: now.Sub(processStart).Round(time.Millisecond).Seconds()}
	fail := func(what string, err error) { st.Errors = append(st.Errors, what+": "+err.Error()) }

	st.Host.CPUs = runtime.NumCPU()
	if p, err := cpu.PercentWithContext(ctx, 0, false); err != nil || len(p) == 0 {
		fail("cpu", errOr(err))
	} else {
		st.Host.CPUPercent = round2(p[0])
	}
	if m, err := mem.VirtualMemoryWithContext(ctx); err != nil {
		fail("memory", err)
	} else {
		st.Host.MemoryTotal, st.Host.MemoryUsed, st.Host.MemoryUsedPercent = m.Total, m.Used, round2(m.UsedPercent)
	}
	if l, err := load.AvgWithContext(ctx); err != nil {
		fail("load", err)
	} else {
		st.Host.Load1, st.Host.Load5, st.Host.Load15 = l.Load1, l.Load5, l.Load15
	}
	s.sampleProcess(ctx, &st, fail)

	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	st.Runtime.Version = runtime.Version()
	st.Runtime.Goroutines = runtime.NumGoroutine()
	st.Runtime.HeapAlloc, st.Runtime.HeapSys = ms.HeapAlloc, ms.HeapSys
	st.Runtime.NumGC = ms.NumGC
	st.Runtime.GCPauseTotalSecond = time.Duration(ms.PauseTotalNs).Seconds()
	if ms.NumGC > 0 {
		st.Runtime.GCPauseLastSecond = time.Duration(ms.PauseNs[(ms.NumGC+255)%256]).Seconds()
	}
	st.Runtime.GOMAXPROCS = runtime.GOMAXPROCS(0)
	s.last = st
	return st
}

func (s *SystemSampler) sampleProcess(ctx context.Context, st *SystemStats, fail func(string, error)) {
	if s.proc == nil {
		p, err := process.NewProcessWithContext(ctx, int32(os.Getpid()))
		if err != nil {
			fail("process", err)
			return
		}
		s.proc = p
	}
	st.Process.PID = s.proc.Pid
	if c, err := s.proc.PercentWithContext(ctx, 0); err != nil {
		fail("process cpu", err)
	} else {
		st.Process.CPUPercent = round2(c)
	}
	if m, err := s.proc.MemoryInfoWithContext(ctx); err != nil {
		fail("process memory", err)
	} else {
		st.Process.RSS = m.RSS
	}
	if n, err := s.proc.NumFDsWithContext(ctx); err != nil {
		fail("open fds", err)
	} else {
		st.Process.OpenFDs = n
	}
}

func round2(f float64) float64 { return float64(int64(f*100+0.5)) / 100 }

// errOr is err, or errNoFigure when a call succeeded without a figure.
func errOr(err error) error {
	if err != nil {
		return err
	}
	return errNoFigure
}

var errNoFigure = errors.New("no figure")
