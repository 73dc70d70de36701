package caddymodule

import (
	"sync/atomic"

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
		return d.Counts()
	}
	return 0, 0
}

func registerIPClassMetrics(reg *prometheus.Registry) error {
	for _, c := range []prometheus.Collector{classifiedVec, reclassified, pathBlocked, suspiciousBlocked, trackedGauge, detectedGauge, bansEvictedCounter} {
		if _, err := registerCollector(reg, c); err != nil {
			return err
		}
	}
	return nil
}
