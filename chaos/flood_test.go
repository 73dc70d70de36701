//go:build chaos

package chaos

import (
	"context"
	"flag"
	"fmt"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/swarmsec/caddy-hardening/internal/testenv"
	"github.com/swarmsec/caddy-hardening/ipclass"
	"github.com/swarmsec/caddy-hardening/ratelimit"
)

var floodN = flag.Int("flood", 0, "send TestFlood's requests from this many distinct client IPs (1000000 for the README figure); 0 skips it")

// The flood's small caps, and the RSS margin above baseline + caps × bytes per entry (Go's
// heap may reach twice its live size before a collection, hence the factor 2; the margin
// covers connection buffers and the runtime).
const (
	floodMaxKeys = 10000
	// floodMaxTracked is a multiple of the detector's 64 shards: each shard holds
	// ceil(max_tracked/64) clients, so another cap is exceeded by up to 63.
	floodMaxTracked = 10240
	floodRSSMargin  = 32 << 20
)

// TestFlood sends -flood requests, each from a new client address (X-Forwarded-For, trusted
// from loopback), to 404ing paths through the full stack with the rate limiter in memory:
// every request makes a rate-limit key (kept for minutes by the flood policy) and a detector
// entry. The in-memory rate-limit keys and the tracked clients never
// exceed their caps, and each instance's RSS stays under baseline + caps × measured bytes per
// entry + a margin.
func TestFlood(t *testing.T) {
	requireFlag(t, *floodN <= 0, "flood")
	n := int64(*floodN)
	redis := testenv.StartRedis(t)
	up := startUpstream(t)
	s := startStack(t, stackConfig{Redis: standaloneRedis(redis.Addr), Store: "memory", Upstream: up.Addr,
		MaxKeys: floodMaxKeys, MaxTracked: floodMaxTracked})

	// Warm up every instance (connections, pools, the first GC cycles) before the baseline.
	warm := &Load{Targets: s.urls, Workers: 24, Total: 3000, Next: func(i int64) Request {
		return Request{Instance: int(i % 3), Path: "/app/warm", ClientIP: fmt.Sprintf("198.18.0.%d", 1+i%100)}
	}}
	warm.Run(context.Background())
	baseline := make([]int64, len(s.procs))
	for i, p := range s.procs {
		baseline[i] = rssBytes(t, p.PID())
	}
	perKey, perTracked := bytesPerKey(), bytesPerTracked()
	caps := 2 * (floodMaxKeys*perKey + floodMaxTracked*perTracked)

	l := &Load{Targets: s.urls, Workers: 24, Total: n, Next: func(i int64) Request {
		return Request{Instance: int(i % 3), Path: "/flood/missing", ClientIP: floodIP(i)}
	}}
	statsCh := make(chan Stats, 1)
	start := time.Now()
	go func() { statsCh <- l.Run(context.Background()) }()

	peakRSS := make([]int64, len(s.procs))
	var peakKeys, peakTracked float64
	sample := func() {
		for i, p := range s.procs {
			peakRSS[i] = max(peakRSS[i], rssBytes(t, p.PID()))
			m := readMetrics(t, s.urls[i])
			peakKeys = max(peakKeys, m.gaugeWith("ratelimit_memory_keys", "policy", "flood"))
			peakTracked = max(peakTracked, m.gauge("detection_tracked_ips"))
		}
	}
	var st Stats
	for done := false; !done; {
		select {
		case st = <-statsCh:
			done = true
		case <-time.After(time.Second):
		}
		sample()
	}
	elapsed := time.Since(start)

	for code, c := range st.ByStatus {
		if code != 404 {
			t.Errorf("%d answers with status %d (0: transport error); want only the upstream's 404", c, code)
		}
	}
	if peakKeys > floodMaxKeys || peakKeys < 0 {
		t.Errorf("rate-limit keys in memory peaked at %v, cap %d (-1: gauge missing)", peakKeys, floodMaxKeys)
	}
	if peakTracked > floodMaxTracked || peakTracked < 0 {
		t.Errorf("tracked clients peaked at %v, cap %d (-1: gauge missing)", peakTracked, floodMaxTracked)
	}
	if perInstance := n / 3; perInstance > 2*floodMaxKeys && (peakKeys < floodMaxKeys/2 || peakTracked < floodMaxTracked/2) {
		t.Errorf("%d new clients per instance filled only %v keys and %v tracked clients: the flood did not reach the caps", perInstance, peakKeys, peakTracked)
	}
	before, after, limit := make([]float64, len(s.procs)), make([]float64, len(s.procs)), make([]float64, len(s.procs))
	for i := range s.procs {
		capRSS := baseline[i] + caps + floodRSSMargin
		before[i], after[i], limit[i] = mib(baseline[i]), mib(peakRSS[i]), mib(capRSS)
		if peakRSS[i] > capRSS {
			t.Errorf("instance %d: RSS peaked at %.1f MiB, over the cap %.1f MiB (baseline %.1f + caps %.1f + margin %d)",
				i, mib(peakRSS[i]), mib(capRSS), mib(baseline[i]), mib(caps), floodRSSMargin>>20)
		}
	}
	newFigures("flood").set("clients", n).set("seconds", elapsed.Round(time.Second).Seconds()).
		set("requests", st.Requests).set("5xx", st.Count5xx()).set("errors", st.ByStatus[0]).
		set("max_keys", floodMaxKeys).set("keys_peak", peakKeys).
		set("max_tracked", floodMaxTracked).set("tracked_peak", peakTracked).
		set("bytes_per_key", perKey).set("bytes_per_tracked", perTracked).
		set("rss_before_mib", before).set("rss_peak_mib", after).set("rss_cap_mib", limit).print(t)
}

// floodIP is the i-th flood client: 10.0.0.1 onwards, so a million fit well below the
// trusted monitoring client 10.255.0.1.
func floodIP(i int64) string {
	i++
	return fmt.Sprintf("10.%d.%d.%d", (i>>16)&0xff, (i>>8)&0xff, i&0xff)
}

// heapGrowth is the live heap fill adds, per entry, measured in this process.
func heapGrowth(entries int, fill func() any) int64 {
	var a, b runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&a)
	kept := fill()
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&b)
	runtime.KeepAlive(kept)
	return max(1, (int64(b.HeapAlloc)-int64(a.HeapAlloc))/int64(entries))
}

// bytesPerKey measures the in-memory rate-limit store's bytes per key.
func bytesPerKey() int64 {
	return heapGrowth(floodMaxKeys, func() any {
		m := ratelimit.NewMemoryStore(ratelimit.MemoryOptions{MaxKeys: floodMaxKeys})
		l := ratelimit.Limit{Rate: 10, Period: time.Hour, Burst: 10} // the flood policy
		for i := int64(0); i < floodMaxKeys; i++ {
			_, _ = m.Allow(context.Background(), "flood", floodIP(i), l)
		}
		return m
	})
}

// bytesPerTracked measures the detector's bytes per tracked client.
func bytesPerTracked() int64 {
	return heapGrowth(floodMaxTracked, func() any {
		d := ipclass.NewDetector(ipclass.Settings{MaxTracked: floodMaxTracked})
		for i := int64(0); i < floodMaxTracked; i++ {
			d.Signal(netip.MustParseAddr(floodIP(i)), ipclass.SignalNotFound)
		}
		return d
	})
}
