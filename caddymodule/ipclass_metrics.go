package caddymodule

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/swarmsec/caddy-hardening/ipclass"
	"github.com/swarmsec/caddy-hardening/pathguard"
)

// Metrics of the IP classes, the detector and path_guard. Package-level so counts survive
// reloads; registered on each config's registry in App.Provision.
var (
	classifiedVec = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "hardening", Name: "ip_class_requests_total",
		Help: "Requests classified, by the client's IP class.",
	}, []string{"class"})
	classifiedRequests = [...]prometheus.Counter{
		ipclass.Default:    classifiedVec.WithLabelValues(ipclass.Default.String()),
		ipclass.Trusted:    classifiedVec.WithLabelValues(ipclass.Trusted.String()),
		ipclass.Suspicious: classifiedVec.WithLabelValues(ipclass.Suspicious.String()),
	}
	reclassified = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "hardening", Name: "ip_reclassified_total",
		Help: "Clients detected as suspicious on this instance, by the signal that made them cross the threshold (shadow: not applied).",
	}, []string{"signal", "shadow"})
	pathBlocked = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "hardening", Name: "path_blocked_total",
		Help: "Requests path_guard refused, by reason.",
	}, []string{"reason"})
	suspiciousBlocked = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "hardening", Name: "suspicious_blocked_total",
		Help: "Requests from suspicious clients path_guard refused (suspicious_action block).",
	})

	// currentDetector is the pooled detector the gauges read (there is one per process);
	// detectionOn says whether the running configuration detects: one with detection off
	// holds the detector (its bans apply again once detection is back) but makes nobody
	// suspicious, and the gauges read 0 meanwhile.
	currentDetector atomic.Pointer[ipclass.Detector]
	detectionOn     atomic.Bool
	trackedGauge    = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "caddy", Subsystem: "hardening", Name: "detection_tracked_ips",
		Help: "Clients the detector holds a score for (bounded by max_tracked; bans are apart, in detection_suspicious_ips).",
	}, func() float64 { t, _ := detectorCounts(); return float64(t) })
	detectedGauge = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "caddy", Subsystem: "hardening", Name: "detection_suspicious_ips",
		Help: "Clients currently suspicious by detection (local, operator and shared detections).",
	}, func() float64 { _, d := detectorCounts(); return float64(d) })
	bansEvictedCounter = prometheus.NewCounterFunc(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "hardening", Name: "detection_bans_evicted_total",
		Help: "Active bans the detector's full ban tables (max_tracked bans of clients, max_tracked/2 of wider IPv6 networks) evicted before their end, the one ending first each time.",
	}, func() float64 {
		if d := currentDetector.Load(); d != nil {
			return float64(d.BansEvicted())
		}
		return 0
	})
)

func init() {
	for _, r := range pathguard.Reasons {
		pathBlocked.WithLabelValues(string(r)) // export zeros, so rate() works from the start
	}
}

func detectorCounts() (int, int) {
	if d := currentDetector.Load(); d != nil && detectionOn.Load() {
		return recentDetectionCounts(d)
	}
	return 0, 0
}

// detectionCountsMaxAge is how old the detection counts that the health routes and the gauges
// report may be. Detector.Counts reads every entry and ban under their shards' locks (38 ms
// at 200,000 bans), and /ready, /health, /services and /metrics report them to anyone, as often
// as asked (probes are never refused): counted per request, a ban table filled by made-up
// clients made each probe cost that CPU and hold the locks the requests' detector calls take.
var detectionCountsMaxAge atomic.Int64 // nanoseconds; tests change it while Caddy serves

func init() { detectionCountsMaxAge.Store(int64(time.Second)) }

// detectionCounts is the last Detector.Counts and when it was read.
var detectionCounts struct {
	mu                sync.Mutex
	det               *ipclass.Detector // kept, so no later detector can have its address
	at                time.Time
	tracked, detected int
}

// recentDetectionCounts is det.Counts at most detectionCountsMaxAge old: at most one count a
// second runs, whatever the number of probes and scrapes; callers that come while it runs wait
// for it and share its result.
func recentDetectionCounts(det *ipclass.Detector) (tracked, detected int) {
	c := &detectionCounts
	c.mu.Lock()
	defer c.mu.Unlock()
	if now := time.Now(); c.det != det || now.Sub(c.at) >= time.Duration(detectionCountsMaxAge.Load()) {
		c.tracked, c.detected = det.Counts()
		c.det, c.at = det, now
	}
	return c.tracked, c.detected
}

func registerIPClassMetrics(reg *prometheus.Registry) error {
	for _, c := range []prometheus.Collector{classifiedVec, reclassified, pathBlocked, suspiciousBlocked, trackedGauge, detectedGauge, bansEvictedCounter} {
		if _, err := registerCollector(reg, c); err != nil {
			return err
		}
	}
	return nil
}
