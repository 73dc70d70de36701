//go:build ignore

// genfixture writes the dashboard fixtures data-15m.json and data-1h.json: one made-up hour
// of an edge under a small attack (a rate-limit burst, probes, a breaker that opens, Redis
// lost at the end so the limiter falls back to memory), in the exact shape of
// /dashboard/data (see /work/helpers/DASHBOARD.md, issue #10). Deterministic: run it again
// and the files do not change.
//
//	cd dashboard/page/testdata && go run genfixture.go
package main

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"time"
)

var end = time.Date(2026, 11, 28, 4, 0, 0, 0, time.UTC)

const fine = 720 // the hour at 5 s

type counter struct {
	labels map[string]any
	v      [fine]float64
}

func main() {
	rng := rand.New(rand.NewPCG(10, 10))
	noise := func(mean float64) float64 { return math.Max(0, math.Round(mean+rng.NormFloat64()*math.Sqrt(mean+1))) }
	wave := func(i int) float64 { return 1 + 0.35*math.Sin(float64(i)/40) }

	mk := func(labels map[string]any, f func(i int) float64) *counter {
		c := &counter{labels: labels}
		for i := range c.v {
			c.v[i] = f(i)
		}
		return c
	}
	burst := func(i, from, to int, n float64) float64 {
		if i >= from && i < to {
			return noise(n)
		}
		return 0
	}
	sparse := func(p float64, n float64) float64 {
		if rng.Float64() < p {
			return math.Max(1, noise(n))
		}
		return 0
	}
	ratelimit := []*counter{
		mk(map[string]any{"policy": "api", "class": "default", "result": "allowed"}, func(i int) float64 { return noise(30 * wave(i)) }),
		mk(map[string]any{"policy": "api", "class": "trusted", "result": "allowed"}, func(i int) float64 { return noise(6) }),
		mk(map[string]any{"policy": "api", "class": "default", "result": "denied"}, func(i int) float64 { return burst(i, 600, 640, 14) + sparse(0.03, 1) }),
		mk(map[string]any{"policy": "login", "class": "default", "result": "allowed"}, func(i int) float64 { return noise(2) }),
		mk(map[string]any{"policy": "login", "class": "suspicious", "result": "denied"}, func(i int) float64 { return burst(i, 610, 700, 2) + sparse(0.02, 1) }),
		// a result value the page does not know: it must still draw it
		mk(map[string]any{"policy": "api", "class": "default", "result": "shadow_denied"}, func(i int) float64 { return burst(i, 560, 575, 3) }),
	}
	pathBlocked := []*counter{
		mk(map[string]any{"reason": "dot_segment"}, func(i int) float64 { return burst(i, 590, 600, 2) + sparse(0.01, 1) }),
		mk(map[string]any{"reason": "encoded_slash"}, func(i int) float64 { return sparse(0.015, 1) }),
		mk(map[string]any{"reason": "double_encoding"}, func(i int) float64 { return burst(i, 586, 596, 1) + sparse(0.01, 1) }),
	}
	detections := []*counter{
		mk(map[string]any{"signal": "probe"}, func(i int) float64 { return burst(i, 585, 620, 3) + sparse(0.02, 1) }),
		mk(map[string]any{"signal": "traversal"}, func(i int) float64 { return burst(i, 590, 600, 2) }),
		mk(map[string]any{"signal": "rate_limited"}, func(i int) float64 { return burst(i, 600, 640, 4) }),
		mk(map[string]any{"signal": "auth_failure"}, func(i int) float64 { return sparse(0.01, 1) }),
	}
	csp := []*counter{
		mk(map[string]any{"directive": "script-src-elem"}, func(i int) float64 { return sparse(0.04, 1) }),
		mk(map[string]any{"directive": "style-src-attr"}, func(i int) float64 { return sparse(0.02, 2) }),
	}
	breakers := []*counter{
		mk(map[string]any{"breaker": "api", "to": "open"}, func(i int) float64 { return b2f(i == 650 || i == 664) }),
		mk(map[string]any{"breaker": "api", "to": "half-open"}, func(i int) float64 { return b2f(i == 662) }),
		mk(map[string]any{"breaker": "billing", "to": "open"}, func(i int) float64 { return b2f(i == 300) }),
		mk(map[string]any{"breaker": "billing", "to": "half-open"}, func(i int) float64 { return b2f(i == 312) }),
		mk(map[string]any{"breaker": "billing", "to": "closed"}, func(i int) float64 { return b2f(i == 313) }),
	}
	const lost = 680 // Redis unreachable from here on
	var cpu, mem, gor, redisLat, pgLat, redisUp, pgUp [fine]*float64
	var mode [fine]*string
	for i := 0; i < fine; i++ {
		load := 1.0
		if i >= 585 && i < 700 {
			load = 1.8
		}
		cpu[i] = ptr(math.Round((9+6*wave(i))*load*10+rng.NormFloat64()*8) / 10)
		mem[i] = ptr(math.Round(52e6 + 3e6*float64(i)/fine + rng.Float64()*1e6))
		gor[i] = ptr(math.Round(38 + 10*load + rng.Float64()*4))
		pgLat[i], pgUp[i] = ptr(math.Round((1.8+rng.Float64()*0.8)*100)/100), ptr(1)
		if i >= lost {
			redisUp[i] = ptr(0)
			mode[i] = sptr("memory-fallback")
		} else {
			redisLat[i], redisUp[i] = ptr(math.Round((0.35+rng.Float64()*0.2)*100)/100), ptr(1)
			mode[i] = sptr("redis")
		}
	}
	gauges := map[string]*[fine]*float64{"cpu": &cpu, "mem": &mem, "gor": &gor, "redisLat": &redisLat, "pgLat": &pgLat, "redisUp": &redisUp, "pgUp": &pgUp}

	for _, r := range []struct {
		name string
		res  int // seconds
		n    int
	}{{"15m", 5, 180}, {"1h", 60, 60}} {
		per := r.res / 5
		from := fine - r.n*per
		sumC := func(cs []*counter) []map[string]any {
			var out []map[string]any
			for _, c := range cs {
				vals := make([]float64, r.n)
				for b := range vals {
					for k := 0; k < per; k++ {
						vals[b] += c.v[from+b*per+k]
					}
				}
				m := map[string]any{}
				for k, v := range c.labels {
					m[k] = v
				}
				m["values"] = vals
				out = append(out, m)
			}
			return out
		}
		avg := func(g *[fine]*float64) []*float64 {
			out := make([]*float64, r.n)
			for b := range out {
				var s float64
				var n int
				for k := 0; k < per; k++ {
					if v := g[from+b*per+k]; v != nil {
						s += *v
						n++
					}
				}
				if n > 0 {
					out[b] = ptr(math.Round(s/float64(n)*100) / 100)
				}
			}
			return out
		}
		up := func(g *[fine]*float64) []*float64 {
			out := avg(g)
			for i, v := range out { // down in any part of the bucket is down
				if v != nil && *v < 1 {
					out[i] = ptr(0)
				}
			}
			return out
		}
		modes := make([]*string, r.n)
		for b := range modes {
			modes[b] = mode[from+b*per+per-1]
		}
		ts := make([]int64, r.n)
		for b := range ts {
			ts[b] = end.Add(-time.Duration((r.n-1-b)*r.res) * time.Second).Unix()
		}
		total := func(cs []*counter, before float64) []map[string]any {
			var out []map[string]any
			for i, c := range cs {
				var s float64
				for _, v := range c.v {
					s += v
				}
				m := map[string]any{}
				for k, v := range c.labels {
					m[k] = v
				}
				m["count"] = s + math.Round(before*float64(len(cs)-i))
				out = append(out, m)
			}
			return out
		}
		doc := map[string]any{
			"instance":            "caddy-7f9c",
			"instances":           []string{"caddy-7f9c"},
			"scope":               "local",
			"range":               r.name,
			"resolution_seconds":  r.res,
			"generated":           end.Format(time.RFC3339),
			"timestamps":          ts,
			"ratelimit":           sumC(ratelimit),
			"path_blocked":        sumC(pathBlocked),
			"detections":          sumC(detections),
			"csp_violations":      sumC(csp),
			"breaker_transitions": sumC(breakers),
			"store_mode":          map[string]any{"values": modes},
			"dependencies": []map[string]any{
				{"name": "redis", "up": up(gauges["redisUp"]), "latency_ms": avg(gauges["redisLat"])},
				{"name": "postgres", "up": up(gauges["pgUp"]), "latency_ms": avg(gauges["pgLat"])},
			},
			"system": map[string]any{"cpu_percent": avg(&cpu), "memory_bytes": avg(&mem), "goroutines": avg(&gor)},
			"current": map[string]any{
				"status": "warn", "ready": true,
				"reasons": []string{"redis: dial tcp 10.0.3.7:6379: connect: connection refused", "breaker api is open"},
				"degraded": []map[string]any{
					{"kind": "ratelimit_fallback", "component": "ratelimit:store", "message": "Redis unavailable: decisions in memory"},
					{"kind": "breaker_open", "component": "breaker:api", "message": "upstream api failing: requests answered 503 until it recovers"},
				},
				"breakers": []map[string]any{{"name": "api", "state": "open"}, {"name": "billing", "state": "closed"}},
				"dependencies": []map[string]any{
					{"name": "redis", "status": "down", "critical": false, "latency_ms": nil, "error": "dial tcp 10.0.3.7:6379: connect: connection refused"},
					{"name": "postgres", "status": "up", "critical": true, "latency_ms": 2.1, "error": ""},
				},
			},
			"totals": map[string]any{
				"ratelimit":      total(ratelimit, 500),
				"path_blocked":   total(pathBlocked, 3),
				"detections":     total(detections, 4),
				"csp_violations": total(csp, 2),
			},
			"top_limited": []map[string]any{
				{"policy": "api", "key": "203.0.113.9", "count": 412},
				{"policy": "api", "key": "198.51.100.23", "count": 96},
				{"policy": "login", "key": "203.0.113.9", "count": 88},
				{"policy": "api", "key": "sha256:9f86d081884c7d65", "count": 31},
				{"policy": "api", "key": "2001:db8::7", "count": 12},
			},
			"suspicious": []map[string]any{
				{"ip": "203.0.113.9", "score": 24.5, "signal": "rate_limited", "until": end.Add(58 * time.Minute).Format(time.RFC3339), "seconds_left": 3480, "shadow": false,
					"unban": "curl -X DELETE http://localhost:2019/hardening/ipclass/detected/203.0.113.9"},
				{"ip": "198.51.100.23", "score": 13, "signal": "probe", "until": end.Add(41 * time.Minute).Format(time.RFC3339), "seconds_left": 2460, "shadow": false,
					"unban": "curl -X DELETE http://localhost:2019/hardening/ipclass/detected/198.51.100.23"},
				{"ip": "2001:db8::7", "score": 10.2, "signal": "traversal", "until": end.Add(12 * time.Minute).Format(time.RFC3339), "seconds_left": 720, "shadow": true,
					"unban": "curl -X DELETE http://localhost:2019/hardening/ipclass/detected/2001:db8::7"},
			},
			"events": events(),
		}
		f, err := os.Create("data-" + r.name + ".json")
		if err != nil {
			panic(err)
		}
		enc := json.NewEncoder(f)
		enc.SetIndent("", " ")
		if err := enc.Encode(doc); err != nil {
			panic(err)
		}
		f.Close()
	}
}

// events are the newest first; two carry markup an attacker sent, which the page must show
// as text.
func events() []map[string]any {
	at := func(s int) string { return end.Add(-time.Duration(s) * time.Second).Format(time.RFC3339) }
	ev := func(s int, name, level, ip, class, uri string, fields map[string]any) map[string]any {
		return map[string]any{"time": at(s), "event": name, "level": level, "client_ip": ip, "ip_class": class, "uri": uri, "fields": fields}
	}
	return []map[string]any{
		ev(20, "breaker_state_changed", "warn", "", "", "", map[string]any{"breaker": "api", "from": "half-open", "to": "open"}),
		ev(55, "store_failover", "warn", "", "", "", map[string]any{"store": "redis", "error": "connection refused"}),
		ev(160, "rate_limit_exceeded", "info", "203.0.113.9", "suspicious", "/api/v1/orders?page=1", map[string]any{"policy": "api", "retry_after": 2}),
		ev(240, "ip_reclassified", "warn", "203.0.113.9", "suspicious", "/api/v1/orders", map[string]any{"signal": "rate_limited", "score": 24.5}),
		ev(300, "path_blocked", "warn", "198.51.100.23", "default", "/static/..%2f..%2fetc/passwd", map[string]any{"reason": "encoded_slash"}),
		ev(330, "path_blocked", "warn", "198.51.100.23", "default", "/%252e%252e/.env", map[string]any{"reason": "double_encoding"}),
		ev(345, "csp_violation", "info", "192.0.2.44", "default", "/checkout", map[string]any{"directive": "script-src-elem", "blocked": "https://evil.example/x.js"}),
		ev(380, "path_blocked", "warn", "2001:db8::7", "default", "/files/../../etc/passwd?q=<script>alert(document.domain)</script>", map[string]any{"reason": "dot_segment"}),
		ev(410, "monitoring_access_denied", "warn", "192.0.2.80", "default", "/api/monitoring/dashboard/data", map[string]any{"route": "data", "note": "<img src=x onerror=alert(1)>"}),
		ev(520, "ip_reclassified", "warn", "198.51.100.23", "suspicious", "/wp-login.php", map[string]any{"signal": "probe", "score": 13}),
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func ptr(v float64) *float64 { return &v }
func sptr(s string) *string  { return &s }
