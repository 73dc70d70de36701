package dashboard

import (
	"context"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/swarmsec/caddy-hardening/internal/testenv"
)

// instanceDoc is what one instance would publish: one allowed per bucket of its own, a CPU
// level, a top key and an event.
func instanceDoc(name string, now time.Time, allowed, cpu float64, mode string) Document {
	r := NewRecorder()
	r.Record(Snapshot{Time: now.Add(-5 * time.Second), Values: map[string][]Point{FamilyRateLimit: {rl("api", "allowed", 0)}}})
	r.Record(Snapshot{Time: now, Values: map[string][]Point{FamilyRateLimit: {rl("api", "allowed", allowed)}, FamilyCPUPercent: {{Value: cpu}}},
		States: map[string]string{StateStoreMode: mode}})
	d := Document{Instance: name, Instances: []string{name}, Scope: "local", Generated: now}
	r.Window(Fine, now).Fill(&d)
	d.TopLimited = []Limited{{Policy: "api", Key: "203.0.113.9", Count: uint64(allowed)}}
	d.Events = []Event{{Time: now, Event: "path_blocked", Level: "warn"}}
	d.Current = Current{Status: "pass", Ready: true}
	return d
}

func checkAggregate(t *testing.T, c redis.UniversalClient, prefix string) {
	t.Helper()
	ctx := context.Background()
	now := time.Unix(1795000000, 0)
	for i, name := range []string{"a", "b", "c"} {
		d := instanceDoc(name, now, float64(i+1), float64(10*(i+1)), []string{"redis", "memory-fallback", "redis"}[i])
		if err := Publish(ctx, c, prefix, name, map[string]Document{"15m": d}, now); err != nil {
			t.Fatalf("publish %s: %v", name, err)
		}
	}
	local := instanceDoc("a", now, 1, 10, "redis")
	others, err := Fetch(ctx, c, prefix, "15m", "a", now)
	if err != nil || len(others) != 2 {
		t.Fatalf("fetch: %d documents, %v", len(others), err)
	}
	all := Merge(local, others)
	if len(all.Instances) != 3 || all.Scope != "all" {
		t.Fatalf("instances %v scope %s", all.Instances, all.Scope)
	}
	if v := all.RateLimit[0].Values[179]; v != 6 {
		t.Fatalf("summed allowed = %v, want 6", v)
	}
	if all.Totals.RateLimit[0].Count != 6 {
		t.Fatalf("summed total = %v", all.Totals.RateLimit[0].Count)
	}
	if v := all.System.CPUPercent[179]; v != 20 || !math.IsNaN(all.System.CPUPercent[0]) {
		t.Fatalf("mean cpu = %v", v)
	}
	if m := all.StoreMode.Values[179]; m == nil || *m != "memory-fallback" {
		t.Fatalf("merged mode = %v, want the degraded one", m)
	}
	if len(all.TopLimited) != 1 || all.TopLimited[0].Count != 6 || len(all.Events) != 3 || all.Events[0].Instance == "" {
		t.Fatalf("tables: %+v %+v", all.TopLimited, all.Events)
	}
	// Every key has a TTL and one hash tag.
	ttl, err := c.TTL(ctx, prefix+"dash:{dash}:doc:15m:b").Result()
	if err != nil || ttl <= 0 || ttl > PublishTTL {
		t.Fatalf("doc TTL %v %v", ttl, err)
	}
}

func TestPublishAndAggregate(t *testing.T) {
	srv := testenv.StartRedis(t)
	c := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer c.Close()
	checkAggregate(t, c, "hardening:")
}

func TestPublishAndAggregateOverCluster(t *testing.T) {
	cl := testenv.StartCluster(t)
	c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: cl.Addrs()})
	defer c.Close()
	checkAggregate(t, c, "hardening:")
}

func TestInstancesAreBounded(t *testing.T) {
	srv := testenv.StartRedis(t)
	c := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer c.Close()
	ctx := context.Background()
	now := time.Unix(1795000000, 0)
	d := instanceDoc("x", now, 1, 1, "redis")
	for i := 0; i < MaxInstances+30; i++ {
		name := fmt.Sprint("i", i)
		d.Instance = name
		if err := Publish(ctx, c, "p:", name, map[string]Document{"15m": d}, now.Add(time.Duration(i)*time.Millisecond)); err != nil {
			t.Fatal(err)
		}
	}
	if n, _ := c.ZCard(ctx, "p:dash:{dash}:instances").Result(); n != MaxInstances {
		t.Fatalf("%d instances in the set, bound %d", n, MaxInstances)
	}
	got, err := Fetch(ctx, c, "p:", "15m", "", now.Add(time.Second))
	if err != nil || len(got) != MaxInstances {
		t.Fatalf("fetched %d, %v", len(got), err)
	}
	// An instance silent for longer than the TTL is no longer listed.
	if got, _ := Fetch(ctx, c, "p:", "15m", "", now.Add(2*PublishTTL)); len(got) != 0 {
		t.Fatalf("%d stale instances fetched", len(got))
	}
}

func TestInstanceName(t *testing.T) {
	t.Setenv(InstanceEnv, "pod-7f9c/../{x}")
	if got := InstanceName(); got != "pod-7f9c..x" {
		t.Fatalf("InstanceName = %q", got)
	}
}
