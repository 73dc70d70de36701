// Package chaos proves the whole edge under faults: three Caddy instances sharing Redis, in
// front of an upstream, under a bounded load while Redis, the network to it or the upstream
// fail. The scenarios are tests behind the build tag `chaos` (see README.md); this file is
// the load generator they share.
package chaos

import (
	"context"
	"io"
	"maps"
	"net/http"
	"slices"
	"sync"
	"time"
)

// Request is one request the load sends: to which instance, which path, as which client.
type Request struct {
	Instance int    // index into Load.Targets
	Path     string // e.g. /rl/x
	ClientIP string // sent as X-Forwarded-For (Caddy trusts it from loopback); "" for none
}

// Result is one answer (Status 0: a transport error).
type Result struct {
	Request
	Status     int
	RetryAfter string
	Sent       time.Time
	Latency    time.Duration
}

// Load sends requests at a fixed rate from a fixed number of workers: a bounded open loop. A
// tick that finds every worker busy is counted as Skipped, never queued, so a slow server
// cannot grow the generator's memory.
type Load struct {
	Targets []string              // base URLs, one per instance: http://127.0.0.1:PORT
	Rate    int                   // requests per second in all; 0: each worker sends back to back
	Workers int                   // concurrent requests at most
	Next    func(i int64) Request // the i-th request
	// Total, when positive, stops the load after that many requests.
	Total int64
	// OnResult, when set, sees every result (called under the stats lock, one at a time).
	OnResult func(Result)
	// MaxLatencies bounds the latencies kept for percentiles. Default: 1,000,000.
	MaxLatencies int

	mu    sync.Mutex
	stats Stats
}

// Stats are the load's counts so far.
type Stats struct {
	Requests   int64
	Skipped    int64
	ByStatus   map[int]int64
	ByInstance []map[int]int64
	latencies  []time.Duration
}

// Run sends requests until ctx ends (or Total were sent) and returns the counts.
func (l *Load) Run(ctx context.Context) Stats {
	l.stats = Stats{ByStatus: map[int]int64{}, ByInstance: make([]map[int]int64, len(l.Targets))}
	for i := range l.stats.ByInstance {
		l.stats.ByInstance[i] = map[int]int64{}
	}
	if l.MaxLatencies == 0 {
		l.MaxLatencies = 1_000_000
	}
	client := &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: l.Workers, MaxConnsPerHost: l.Workers,
			DisableCompression: true},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	defer client.CloseIdleConnections()
	work := make(chan int64)
	var wg sync.WaitGroup
	for w := 0; w < l.Workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				l.send(ctx, client, l.Next(i))
			}
		}()
	}
	var i int64
	if l.Rate <= 0 {
	closedLoop:
		for ; l.Total <= 0 || i < l.Total; i++ {
			select {
			case work <- i:
			case <-ctx.Done():
				break closedLoop
			}
		}
	} else {
		tick := time.NewTicker(time.Second / time.Duration(l.Rate))
		defer tick.Stop()
	openLoop:
		for {
			select {
			case <-ctx.Done():
				break openLoop
			case <-tick.C:
				if l.Total > 0 && i >= l.Total {
					break openLoop
				}
				select {
				case work <- i:
					i++
				default:
					l.mu.Lock()
					l.stats.Skipped++
					l.mu.Unlock()
				}
			}
		}
	}
	close(work)
	wg.Wait()
	return l.Snapshot()
}

func (l *Load) send(ctx context.Context, client *http.Client, r Request) {
	req, _ := http.NewRequestWithContext(context.WithoutCancel(ctx), http.MethodGet, l.Targets[r.Instance]+r.Path, nil)
	if r.ClientIP != "" {
		req.Header.Set("X-Forwarded-For", r.ClientIP)
	}
	res := Result{Request: r, Sent: time.Now()}
	resp, err := client.Do(req)
	if err == nil {
		res.Status = resp.StatusCode
		res.RetryAfter = resp.Header.Get("Retry-After")
		_, _ = io.Copy(io.Discard, resp.Body) // read to the end so the connection is reused
		resp.Body.Close()
	}
	res.Latency = time.Since(res.Sent)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.stats.Requests++
	l.stats.ByStatus[res.Status]++
	l.stats.ByInstance[r.Instance][res.Status]++
	if len(l.stats.latencies) < l.MaxLatencies {
		l.stats.latencies = append(l.stats.latencies, res.Latency)
	}
	if l.OnResult != nil {
		l.OnResult(res)
	}
}

// Snapshot copies the counts so far.
func (l *Load) Snapshot() Stats {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.stats
	s.ByStatus = maps.Clone(s.ByStatus)
	s.ByInstance = make([]map[int]int64, len(l.stats.ByInstance))
	for i, m := range l.stats.ByInstance {
		s.ByInstance[i] = maps.Clone(m)
	}
	s.latencies = slices.Clone(l.stats.latencies)
	return s
}

// Count5xx is how many answers were 5xx.
func (s Stats) Count5xx() int64 {
	var n int64
	for st, c := range s.ByStatus {
		if st >= 500 {
			n += c
		}
	}
	return n
}

// Percentile is the latency below which p (0..1) of the kept latencies fall.
func (s Stats) Percentile(p float64) time.Duration {
	if len(s.latencies) == 0 {
		return 0
	}
	l := slices.Clone(s.latencies)
	slices.Sort(l)
	i := int(p * float64(len(l)-1))
	return l[i]
}
