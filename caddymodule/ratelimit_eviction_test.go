package caddymodule

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/swarmsec/caddy-hardening/internal/testcaddy"
	"github.com/swarmsec/caddy-hardening/internal/testenv"
)

// TestRedisEvictionStartsABucketAfresh: under an eviction policy (allkeys-lru here; every
// key the modules write has a TTL, so volatile-* policies evict them too) Redis may drop a
// rate-limit bucket to make room for another application's keys. The key then starts again
// with a full burst: the limit is looser for it (up to one burst more), never stricter, no
// request fails, and the store stays in Redis (an eviction is no failure). The README says so;
// this pins it.
func TestRedisEvictionStartsABucketAfresh(t *testing.T) {
	r := testenv.StartRedis(t, "--maxmemory", "4mb", "--maxmemory-policy", "allkeys-lru")
	block, url := site(t, "\tpolicy_rate_limit evict")
	testcaddy.StartCaddy(t, fmt.Sprintf("{\n\thardening {\n\t\tenvironment development\n\t\tredis %s\n\t\tpolicy evict {\n\t\t\tlimit 2/1h\n\t\t}\n\t}\n}\n%s", r.URL(0), block))
	bucket := "hardening:rl:{evict:127.0.0.1}"
	statuses := func(n int) []int {
		var out []int
		for range n {
			out = append(out, get(t, url).StatusCode)
		}
		return out
	}
	// One of the burst of 2 spent; a refused key would be answered from this instance's
	// denials until its retry time, without asking Redis, so it is left one.
	if got := fmt.Sprint(statuses(1)); got != "[200]" {
		t.Fatalf("before the eviction: %s, want [200]", got)
	}
	if n, err := r.Do("EXISTS", bucket); err != nil || n.(int64) != 1 {
		t.Fatalf("the bucket %s is not in Redis (%v, %v)", bucket, n, err)
	}
	// Another application fills Redis: the least recently used keys go, ours among them.
	junk := strings.Repeat("x", 64<<10)
	i := 0
	testenv.WaitFor(t, 30*time.Second, "Redis to evict the bucket", func() bool {
		for range 16 {
			if _, err := r.Do("SET", fmt.Sprintf("other-app:%d", i), junk); err != nil {
				t.Fatal(err)
			}
			i++
		}
		n, err := r.Do("EXISTS", bucket)
		return err == nil && n.(int64) == 0
	})
	got := statuses(3)
	for _, s := range got {
		if s >= http.StatusInternalServerError {
			t.Fatalf("after the eviction: %v; no request may fail", got)
		}
	}
	if fmt.Sprint(got) != "[200 200 429]" {
		t.Fatalf("after the eviction: %v, want the fresh burst [200 200 429] (3 in the hour of a 2/1h limit)", got)
	}
	if s := componentStatus(t, "ratelimit:store"); s.Status != HealthPass || s.Observed["mode"] != storeModeRedis {
		t.Fatalf("ratelimit:store %s %v: an eviction is no failure", s.Status, s.Observed)
	}
}
