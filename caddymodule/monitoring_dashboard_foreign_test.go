package caddymodule

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/swarmsec/caddy-hardening/dashboard"
	"github.com/swarmsec/caddy-hardening/internal/testcaddy"
	"github.com/swarmsec/caddy-hardening/internal/testenv"
)

// TestDashboardAllInstancesFutureClock: another instance whose clock is two hours ahead (or a
// tampered document) moved the all-instances grid into the future, so every bucket of the
// other instances, this one's included, fell outside it and the view showed no decisions.
// Its buckets past now are now left out; this instance's refusals stay in the view.
func TestDashboardAllInstancesFutureClock(t *testing.T) {
	r := testenv.StartRedis(t)
	key, digest := newKey(t)
	cf, addr := dashSite(t, "dash_future", "redis "+r.URL(0), "api_keys "+digest)
	testcaddy.StartCaddy(t, cf)
	waitSampled(t, addr, key)
	for i := 0; i < 3; i++ {
		sendAs(t, addr, "203.0.113.30", "/") // 2 allowed, 1 denied
	}
	denied := map[string]string{"policy": "dash_future", "result": "denied"}
	waitFor(t, "the refusal in the local series", func() bool {
		return sumSeries(dashData(t, addr, key, "").RateLimit, denied) == 1
	})
	now := time.Now()
	ahead := now.Add(2 * time.Hour)
	ts := dashboard.Fine.Timestamps(ahead)
	vals := make(dashboard.Values, len(ts))
	vals[len(vals)-1] = 5
	other := dashboard.Document{Instance: "edge-ahead", Instances: []string{"edge-ahead"}, Scope: "local", Range: "15m",
		ResolutionSeconds: 5, Generated: ahead, Timestamps: ts,
		RateLimit: []dashboard.Labeled{{Labels: map[string]string{"policy": "dash_future", "class": "untrusted", "result": "denied"}, Values: vals}}}
	c := redis.NewClient(&redis.Options{Addr: r.Addr})
	defer c.Close()
	if err := dashboard.Publish(context.Background(), c, activeApp(t).KeyPrefix(), "edge-ahead", map[string]dashboard.Document{"15m": other}, now); err != nil {
		t.Fatal(err)
	}
	all := dashData(t, addr, key, "?scope=all")
	last := all.Timestamps[len(all.Timestamps)-1]
	if len(all.Instances) != 2 || last > now.Unix()+10 || sumSeries(all.RateLimit, denied) != 1 {
		t.Fatalf("all view: instances %v, last bucket %s (now %s), %v denied; want this instance's refusal in a grid ending now",
			all.Instances, time.Unix(last, 0).UTC(), now.UTC(), sumSeries(all.RateLimit, denied))
	}
}
