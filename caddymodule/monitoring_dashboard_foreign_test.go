package caddymodule

import (
	"context"
	"fmt"
	"strings"
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

// TestDashboardAllInstancesBoundsForeignDocuments: the all-instances view took what Redis
// held as it was: a document of any size read whole, events without the ring's clipping and
// escaping (a bidi override shown as such, a 100 KB URI), the instance name a document
// claims, lists of any length. A document is now read only up to a bound (a larger one is
// left out and reported in the banner), and what is read gets the bounds of a local one.
func TestDashboardAllInstancesBoundsForeignDocuments(t *testing.T) {
	r := testenv.StartRedis(t)
	key, digest := newKey(t)
	cf, addr := dashSite(t, "dash_foreign", "redis "+r.URL(0), "api_keys "+digest)
	testcaddy.StartCaddy(t, cf)
	now := time.Now()
	prefix := activeApp(t).KeyPrefix()
	ts := dashboard.Fine.Timestamps(now)
	other := dashboard.Document{Instance: "edge-a", Instances: []string{"edge-a"}, Scope: "local", Range: "15m",
		ResolutionSeconds: 5, Generated: now, Timestamps: ts}
	for i := 0; i < 5000; i++ {
		other.Current.Reasons = append(other.Current.Reasons, fmt.Sprintf("reason %d", i))
		other.Current.Degraded = append(other.Current.Degraded, dashboard.Degraded{Kind: "component_fail", Component: fmt.Sprintf("c%d", i), Message: "down"})
	}
	labels := map[string]string{"result": "denied"}
	for i := 0; i < 1000; i++ {
		labels[fmt.Sprintf("l%d", i)] = strings.Repeat("v", 100)
	}
	other.RateLimit = []dashboard.Labeled{{Labels: labels, Values: make(dashboard.Values, len(ts))}}
	other.Events = []dashboard.Event{{Time: now, Event: "path_blocked", Level: "warn", ClientIP: "192.0.2.50",
		URI: "/\u202egnp.exe" + strings.Repeat("a", 100000), Fields: map[string]string{"reason": "x\u202ey"}}}
	c := redis.NewClient(&redis.Options{Addr: r.Addr})
	defer c.Close()
	ctx := context.Background()
	// edge-a's document claims to be edge-b's, with hidden characters.
	other.Instance = "edge-b\u202e"
	if err := dashboard.Publish(ctx, c, prefix, "edge-a", map[string]dashboard.Document{"15m": other}, now); err != nil {
		t.Fatal(err)
	}
	// edge-huge publishes 20 MB.
	if err := dashboard.Publish(ctx, c, prefix, "edge-huge", map[string]dashboard.Document{"15m": {Instance: "edge-huge"}}, now); err != nil {
		t.Fatal(err)
	}
	huge := `{"instance":"edge-huge","current":{"reasons":["` + strings.Repeat("x", 20<<20) + `"]}}`
	if err := c.Set(ctx, prefix+"dash:{dash}:doc:15m:edge-huge", huge, time.Hour).Err(); err != nil {
		t.Fatal(err)
	}

	all := dashData(t, addr, key, "?scope=all")
	if len(all.Instances) != 2 || all.Instances[1] != "edge-a" {
		t.Fatalf("instances %q: want this one and edge-a (the name its key holds), edge-huge left out", all.Instances)
	}
	if n := len(all.Current.Reasons); n > dashboard.MaxSeries {
		t.Fatalf("%d reasons from one document", n)
	}
	unread := 0
	for _, g := range all.Current.Degraded {
		if g.Kind == dashboard.DegradedInstancesUnread {
			unread++
		} else if g.Instance != "edge-a" {
			t.Fatalf("degraded entry of instance %q", g.Instance)
		}
	}
	if n := len(all.Current.Degraded); n > dashboard.MaxSeries+1 || unread != 1 {
		t.Fatalf("%d degraded entries, %d instances_unread; want them bounded and the huge document reported", n, unread)
	}
	for _, s := range all.RateLimit {
		if len(s.Labels) > 8 {
			t.Fatalf("a series with %d labels", len(s.Labels))
		}
	}
	var ev *dashboard.Event
	for i := range all.Events {
		if all.Events[i].Instance == "edge-a" {
			ev = &all.Events[i]
		}
	}
	if ev == nil {
		t.Fatalf("edge-a's event missing: %+v", all.Events)
	}
	if len(ev.URI) > dashboard.MaxEventURI || !strings.HasPrefix(ev.URI, `/\u202Egnp.exe`) || ev.Fields["reason"] != `x\u202Ey` {
		t.Fatalf("event from Redis: uri %d bytes %.40q, fields %q; want it clipped, hidden characters escaped", len(ev.URI), ev.URI, ev.Fields)
	}
}
