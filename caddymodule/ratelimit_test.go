package caddymodule

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/swarmsec/caddy-hardening/internal/testcaddy"
	"github.com/swarmsec/caddy-hardening/internal/testenv"
	"github.com/swarmsec/caddy-hardening/ipclass"
	"github.com/swarmsec/caddy-hardening/ratelimit"
)

// hammer sends n requests from `clients` goroutines and counts the responses by status.
func hammer(t *testing.T, url string, clients, n int, headers ...string) map[int]int {
	t.Helper()
	var mu sync.Mutex
	counts := map[int]int{}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(n) {
				r := getReply(t, url, headers...)
				mu.Lock()
				counts[r.status]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return counts
}

// TestRateLimitAdmitsExactlyTheBurst: 50 concurrent clients on one key admit exactly the
// burst; every other answer is the 429 problem, and the upstream never sees it.
func TestRateLimitAdmitsExactlyTheBurst(t *testing.T) {
	block, url := site(t, "\tpolicy_rate_limit login")
	testcaddy.StartCaddy(t, `{
	hardening {
		policy login {
			limit 7/1h burst 7
		}
	}
}
`+block)
	counts := hammer(t, url, 50, 200)
	if counts[200] != 7 || counts[429] != 193 {
		t.Fatalf("statuses %v; want exactly 7 admitted and 193 refused", counts)
	}
}

// TestRateLimitResponses checks the header fields of admitted and refused requests and the
// refusal's problem body.
func TestRateLimitResponses(t *testing.T) {
	block, url := site(t, "\tpolicy_rate_limit login")
	testcaddy.StartCaddy(t, `{
	hardening {
		policy login {
			limit 2/1m burst 2
		}
	}
}
`+block)
	first := getReply(t, url)
	if first.status != 200 || first.body != "ok" {
		t.Fatalf("first request: %d %q", first.status, first.body)
	}
	if got := first.header.Get("RateLimit-Policy"); got != `"login";q=2;w=60` {
		t.Fatalf("RateLimit-Policy %q", got)
	}
	if got := first.header.Get("RateLimit"); got != `"login";r=1;t=30` {
		t.Fatalf("RateLimit %q (one request of two spent: 30 s to replenish)", got)
	}
	getReply(t, url)
	refused := getReply(t, url)
	if refused.status != 429 {
		t.Fatalf("third request: %d, want 429", refused.status)
	}
	if ct := refused.header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("Content-Type %q", ct)
	}
	retry, err := strconv.Atoi(refused.header.Get("Retry-After"))
	if err != nil || retry < 29 || retry > 30 {
		t.Fatalf("Retry-After %q, want 30 s (one interval) or just under", refused.header.Get("Retry-After"))
	}
	var body map[string]any
	if err := json.Unmarshal([]byte(refused.body), &body); err != nil {
		t.Fatalf("body %q: %v", refused.body, err)
	}
	if body["status"] != 429.0 || body["policy"] != "login" || body["retry_after"] != float64(retry) ||
		body["title"] != "Too Many Requests" || body["type"] != "about:blank" || body["detail"] == "" {
		t.Fatalf("problem body %v", body)
	}
	if got := refused.header.Get("RateLimit"); !strings.HasPrefix(got, `"login";r=0;t=`) {
		t.Fatalf("a refusal carries RateLimit with r=0; got %q", got)
	}
	if refused.header.Get("Content-Length") != strconv.Itoa(len(refused.body)) {
		t.Fatalf("Content-Length %q for a body of %d bytes", refused.header.Get("Content-Length"), len(refused.body))
	}
	if refused.header.Get("Cache-Control") != "no-store" {
		t.Fatal("a refusal must not be cached")
	}
}

// TestRateLimitRouteOverrides: the directive's block changes the key, the status, the message
// and hides the header fields.
func TestRateLimitRouteOverrides(t *testing.T) {
	block, url := site(t, `	policy_rate_limit login {
		key {header.X-API-Key}
		status 503
		message "come back later"
		headers off
	}`)
	testcaddy.StartCaddy(t, `{
	hardening {
		policy login {
			limit 1/1h
		}
	}
}
`+block)
	if r := getReply(t, url, "X-API-Key: alpha"); r.status != 200 || r.header.Get("RateLimit") != "" || r.header.Get("RateLimit-Policy") != "" {
		t.Fatalf("alpha's first request: %d, headers %v (headers off)", r.status, r.header)
	}
	r := getReply(t, url, "X-API-Key: alpha")
	if r.status != 503 || !strings.Contains(r.body, `"detail":"come back later"`) || r.header.Get("Retry-After") == "" {
		t.Fatalf("alpha's second request: %d %q", r.status, r.body)
	}
	if r := getReply(t, url, "X-API-Key: beta"); r.status != 200 {
		t.Fatalf("beta has its own bucket: %d", r.status)
	}
	// Without the header the key falls back to the client IP: one more bucket, not a shared one.
	if r := getReply(t, url); r.status != 200 {
		t.Fatalf("no key header: %d", r.status)
	}
	if r := getReply(t, url); r.status != 503 {
		t.Fatalf("no key header, second request: %d (the client IP's bucket)", r.status)
	}
}

// TestRateLimitKeyFallbackIsItsOwnBucket: a request whose key template comes out empty is
// limited by its client IP in a bucket no template value can name. A header equal to a
// victim's address (or to the mark and the address) does not drain the victim's bucket, and
// a composite key whose parts are all missing falls back too instead of being one global
// bucket. Clients are named by X-Forwarded-For from the trusted loopback proxy.
func TestRateLimitKeyFallbackIsItsOwnBucket(t *testing.T) {
	base := proxiedCaddy(t, `		policy single {
			limit 1/1h
			key {header.X-API-Key}
		}
		policy composite {
			limit 1/1h
			key "{header.X-Tenant}:{header.X-User}"
		}`, `	handle /single {
		policy_rate_limit single
		respond "ok"
	}
	handle /composite {
		policy_rate_limit composite
		respond "ok"
	}`)
	status := func(path string, headers ...string) int { return getReply(t, base+path, headers...).status }

	// The attacker spends the buckets named like the victims' fallback keys.
	for _, key := range []string{"10.9.0.1", "@10.9.0.2"} {
		for range 2 {
			status("/single", "X-Forwarded-For: 10.9.0.66", "X-API-Key: "+key)
		}
	}
	if got := status("/single", "X-API-Key: 10.9.0.1", "X-Forwarded-For: 10.9.0.66"); got != 429 {
		t.Fatalf("the attacker's key is limited: got %d, want 429", got)
	}
	for _, victim := range []string{"10.9.0.1", "10.9.0.2"} {
		if got := status("/single", "X-Forwarded-For: "+victim); got != 200 {
			t.Fatalf("victim %s without the header: %d; a header value named its bucket", victim, got)
		}
		if got := status("/single", "X-Forwarded-For: "+victim); got != 429 {
			t.Fatalf("victim %s's second request: %d; want its own bucket limited", victim, got)
		}
	}

	// Three clients without tenant or user: three buckets, not one ":" bucket.
	for _, ip := range []string{"10.9.1.1", "10.9.1.2", "10.9.1.3"} {
		if got := status("/composite", "X-Forwarded-For: "+ip); got != 200 {
			t.Fatalf("client %s without tenant and user: %d; the empty composite key was shared", ip, got)
		}
	}
	if got := status("/composite", "X-Forwarded-For: 10.9.1.1"); got != 429 {
		t.Fatalf("client 10.9.1.1's second request: %d, want 429 from its own bucket", got)
	}
	// A tenant and a user name a bucket of their own, whoever sends them.
	if got := status("/composite", "X-Forwarded-For: 10.9.1.1", "X-Tenant: t", "X-User: u"); got != 200 {
		t.Fatalf("t:u's first request: %d", got)
	}
	if got := status("/composite", "X-Forwarded-For: 10.9.1.2", "X-Tenant: t", "X-User: u"); got != 429 {
		t.Fatalf("t:u from another address: %d, want 429 (one bucket per key)", got)
	}
}

// TestRateLimitKeyOfTheSiteAndAMissingHeaderFallsBack: a key whose client part is missing falls
// back to the client IP even where the template also names the site or the route ({host},
// {method}, {path}, {env.*}): those are the same for every anonymous client, and were one
// bucket that the first of them drained for all the others.
func TestRateLimitKeyOfTheSiteAndAMissingHeaderFallsBack(t *testing.T) {
	t.Setenv("RL_TEST_REGION", "eu")
	base := proxiedCaddy(t, `		policy bysite {
			limit 1/1h
			key "{host}:{method}:{path}:{env.RL_TEST_REGION}:{header.X-API-Key}"
		}`, `	policy_rate_limit bysite
	respond "ok"`)
	status := func(headers ...string) int { return getReply(t, base+"/v1/chat", headers...).status }
	for _, ip := range []string{"10.9.2.1", "10.9.2.2"} {
		if got := status("X-Forwarded-For: " + ip); got != 200 {
			t.Fatalf("anonymous client %s: %d; the key without its API key was one bucket for every anonymous client", ip, got)
		}
	}
	if got := status("X-Forwarded-For: 10.9.2.1"); got != 429 {
		t.Fatalf("anonymous client 10.9.2.1's second request: %d, want 429 from its own bucket", got)
	}
	// An API key names its bucket, whoever sends it.
	if got := status("X-Forwarded-For: 10.9.2.1", "X-API-Key: k"); got != 200 {
		t.Fatalf("key k's first request: %d", got)
	}
	if got := status("X-Forwarded-For: 10.9.2.3", "X-API-Key: k"); got != 429 {
		t.Fatalf("key k from another address: %d, want 429 (one bucket per key)", got)
	}
}

// TestRateLimitRouteKeyHasItsOwnBuckets: a route that overrides its policy's key has buckets of
// its own. A header value equal to a victim's address, on a route keyed by the header, does not
// drain the victim's bucket on the policy's client-IP routes (nor the other way round); two
// routes with the same override share their buckets.
func TestRateLimitRouteKeyHasItsOwnBuckets(t *testing.T) {
	base := proxiedCaddy(t, `		policy login {
			limit 1/1h
		}
		policy tenant {
			limit 1/1h
			key {header.X-K}
		}`, `	handle /ip {
		policy_rate_limit login
		respond "ok"
	}
	handle /hdr {
		policy_rate_limit login {
			key {header.X-K}
		}
		respond "ok"
	}
	handle /hdr2 {
		policy_rate_limit login {
			key {header.X-K}
		}
		respond "ok"
	}
	handle /tenant {
		policy_rate_limit tenant
		respond "ok"
	}
	handle /tenant-ip {
		policy_rate_limit tenant {
			key {client_ip}
		}
		respond "ok"
	}`)
	want := func(path string, code int, headers ...string) {
		t.Helper()
		if got := getReply(t, base+path, headers...).status; got != code {
			t.Fatalf("%s %v: %d, want %d", path, headers, got, code)
		}
	}
	// The attacker (10.9.2.66) spends the header buckets named like the victims' addresses.
	want("/hdr", 200, "X-Forwarded-For: 10.9.2.66", "X-K: 10.9.2.1")
	want("/hdr", 429, "X-Forwarded-For: 10.9.2.66", "X-K: 10.9.2.1")
	want("/hdr2", 429, "X-Forwarded-For: 10.9.2.67", "X-K: 10.9.2.1") // the same template: one bucket
	want("/tenant", 200, "X-Forwarded-For: 10.9.2.66", "X-K: 10.9.2.2")
	want("/tenant", 429, "X-Forwarded-For: 10.9.2.66", "X-K: 10.9.2.2")
	// The victims' own buckets are untouched.
	want("/ip", 200, "X-Forwarded-For: 10.9.2.1")
	want("/ip", 429, "X-Forwarded-For: 10.9.2.1")
	want("/tenant-ip", 200, "X-Forwarded-For: 10.9.2.2")
	want("/tenant-ip", 429, "X-Forwarded-For: 10.9.2.2")

	// Each set of buckets has its own store: the policy's (the address) and the route's.
	keys := memoryKeySeries(t)
	hdr, ip := routeBucketSet("login", "{http.request.header.X-K}"), routeBucketSet("tenant", "{http.vars.client_ip}")
	if len(keys) != 4 || keys["login"] != 1 || keys["tenant"] != 1 || keys[hdr] != 1 || keys[ip] != 1 {
		t.Fatalf("ratelimit_memory_keys by policy: %v, want 1 in each of login, tenant, %s and %s", keys, hdr, ip)
	}

	// A request without the header falls back to its address in the route's own set: it does
	// not spend the address's bucket under the policy's key, nor another route's fallback.
	want("/hdr", 200, "X-Forwarded-For: 10.9.2.3")
	want("/hdr", 429, "X-Forwarded-For: 10.9.2.3")
	want("/ip", 200, "X-Forwarded-For: 10.9.2.3")
}

// TestRateLimitRouteKeyFloodEvictsNoPolicyBucket: a flood of header values on a route that
// overrides the key fills that route's store only; the policy's drained client-IP bucket on
// its other route stays drained.
func TestRateLimitRouteKeyFloodEvictsNoPolicyBucket(t *testing.T) {
	base := proxiedCaddy(t, `		rate_limit {
			max_keys 64
		}
		policy login {
			limit 1/1h
		}`, `	handle /login {
		policy_rate_limit login
		respond "ok"
	}
	handle /api {
		policy_rate_limit login {
			key {header.X-API-Key}
		}
		respond "ok"
	}`)
	victim := "X-Forwarded-For: 10.9.3.1"
	if getReply(t, base+"/login", victim).status != 200 || getReply(t, base+"/login", victim).status != 429 {
		t.Fatal("the login bucket did not drain")
	}
	for i := range 500 {
		if got := getReply(t, base+"/api", "X-Forwarded-For: 10.9.3.66", fmt.Sprintf("X-API-Key: k%d", i)).status; got != 200 {
			t.Fatalf("flood request %d: %d", i, got)
		}
	}
	if got := getReply(t, base+"/login", victim).status; got != 429 {
		t.Fatalf("after a flood of header keys on /api, /login for the drained client: %d, want 429", got)
	}
}

// classesConfig runs a policy with one row per class; clients are named by X-Forwarded-For
// from the trusted loopback proxy.
const classesConfig = `{
	servers {
		trusted_proxies static 127.0.0.1/32
	}
	hardening {
		ip_classes {
			trusted 10.0.0.0/8
			suspicious 192.0.2.0/24
		}
		policy tiers {
			limit 3/1h
			trusted 6/1h
			suspicious 1/1h
		}
		policy closed {
			limit 2/1h
			trusted unlimited
			suspicious deny
		}
	}
}
`

// TestRateLimitRowPerClass: trusted, default and suspicious clients each get their row;
// unlimited and deny rows do what they say.
func TestRateLimitRowPerClass(t *testing.T) {
	port := testenv.FreePort(t)
	testcaddy.StartCaddy(t, classesConfig+fmt.Sprintf(`http://127.0.0.1:%d {
	bind 127.0.0.1
	handle /closed {
		policy_rate_limit closed
		respond "ok"
	}
	handle {
		policy_rate_limit tiers
		respond "ok"
	}
}
`, port))
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	admitted := func(path, ip string) int {
		n := 0
		for range 12 {
			if getReply(t, url+path, "X-Forwarded-For: "+ip).status == 200 {
				n++
			}
		}
		return n
	}
	for _, c := range []struct {
		ip   string
		want int
	}{{"10.1.2.3", 6}, {"203.0.113.9", 3}, {"192.0.2.7", 1}} {
		if got := admitted("", c.ip); got != c.want {
			t.Errorf("%s: %d admitted of 12, want %d", c.ip, got, c.want)
		}
	}
	if got := admitted("closed", "10.9.9.9"); got != 12 {
		t.Errorf("trusted unlimited: %d of 12", got)
	}
	if got := admitted("closed", "192.0.2.99"); got != 0 {
		t.Errorf("suspicious deny: %d of 12", got)
	}
	if r := getReply(t, url+"closed", "X-Forwarded-For: 10.9.9.9"); r.header.Get("RateLimit") != "" {
		t.Errorf("an unlimited row sends no RateLimit fields: %q", r.header.Get("RateLimit"))
	}
	if got := rateLimitCount(t, "tiers", "suspicious", "denied"); got < 11 {
		t.Errorf("metric: %v suspicious refusals, want at least 11", got)
	}
}

// TestRateLimitSpoofedForwardedForSharesThePeersBucket: without trusted_proxies, a client
// that sends X-Forwarded-For is still limited by its own address.
func TestRateLimitSpoofedForwardedForSharesThePeersBucket(t *testing.T) {
	block, url := site(t, "\tpolicy_rate_limit login")
	testcaddy.StartCaddy(t, "{\n\thardening {\n\t\tpolicy login {\n\t\t\tlimit 3/1h\n\t\t}\n\t}\n}\n"+block)
	admitted := 0
	for i := range 10 {
		if getReply(t, url, fmt.Sprintf("X-Forwarded-For: 198.51.100.%d", i)).status == 200 {
			admitted++
		}
	}
	if admitted != 3 {
		t.Fatalf("%d admitted with 10 spoofed addresses; want 3 (the peer's bucket)", admitted)
	}
}

// TestRateLimitShadowNeverRefuses: a shadow policy admits everything but counts and logs what
// it would have refused.
func TestRateLimitShadowNeverRefuses(t *testing.T) {
	block, url := site(t, "\tpolicy_rate_limit trial")
	c := startWithEvents(t, `{
	hardening {
		detection {
			threshold 3
			burst rate_limited 0
		}
		policy trial {
			limit 2/1h
			shadow
		}
	}
}
`+block, EventRateLimited)
	before := rateLimitCount(t, "trial", "default", "shadow_denied")
	for range 6 {
		if r := getReply(t, url); r.status != 200 {
			t.Fatalf("a shadow policy refused: %d", r.status)
		}
	}
	if got := rateLimitCount(t, "trial", "default", "shadow_denied") - before; got != 4 {
		t.Fatalf("shadow_denied counted %v, want 4", got)
	}
	logs := securityLogs(c, EventRateLimited)
	if len(logs) == 0 || logs[0]["shadow"] != true || logs[0].Level() != "info" {
		t.Fatalf("want an info event with shadow=true, got %v", logs)
	}
	if ev := recordedEvents(EventRateLimited); len(ev) == 0 {
		t.Fatal("no Caddy event rate_limit_exceeded")
	}
	if activeApp(t).classOfAddr(netip.MustParseAddr("127.0.0.1")) != ipclass.Default {
		t.Fatal("shadow refusals must not raise the detection score (one rate_limited signal reaches the threshold)")
	}
}

// TestRateLimitRefusalEventsAreSampled: a flood of refusals writes a few events, each with the
// number of refusals it stands for, not a line per request.
func TestRateLimitRefusalEventsAreSampled(t *testing.T) {
	block, url := site(t, "\tpolicy_rate_limit login")
	c := testcaddy.StartCaddy(t, `{
	hardening {
		policy login {
			limit 1/1h
			key {header.X-API-Key}
		}
	}
}
`+block)
	getReply(t, url, "X-API-Key: secret-key-1")
	start := time.Now()
	for range 300 {
		getReply(t, url, "X-API-Key: secret-key-1")
	}
	elapsed := time.Since(start)
	logs := securityLogs(c, EventRateLimited)
	maxEvents := int(elapsed/refusalEventGap) + 1
	if len(logs) == 0 || len(logs) > maxEvents {
		t.Fatalf("%d events for 300 refusals in %v; want 1..%d", len(logs), elapsed, maxEvents)
	}
	if logs[0]["refusals"] != 1.0 || logs[0].Str("policy") != "login" || logs[0].Level() != "warn" {
		t.Fatalf("first event %v", logs[0])
	}
	for _, e := range logs {
		if strings.Contains(fmt.Sprint(e), "secret-key-1") {
			t.Fatalf("an event shows the API key: %v", e)
		}
		if e.Str("key_sha256") == "" {
			t.Fatalf("an event without the key's digest: %v", e)
		}
	}
	// Without the header, the bucket is the client's address (@<ip>): named as it is.
	time.Sleep(refusalEventGap)
	getReply(t, url)
	getReply(t, url)
	logs = securityLogs(c, EventRateLimited)
	if last := logs[len(logs)-1]; last.Str("key") != "@127.0.0.1" || last.Str("key_sha256") != "" {
		t.Fatalf("the fallback bucket's event: %v, want key @127.0.0.1", last)
	}
}

// TestRateLimitSignalsTheDetector: refusals raise the client's score until it is suspicious.
func TestRateLimitSignalsTheDetector(t *testing.T) {
	block, url := site(t, "\tpolicy_rate_limit login")
	testcaddy.StartCaddy(t, `{
	hardening {
		detection {
			threshold 9
			score rate_limited 3
			burst rate_limited 0
		}
		policy login {
			limit 1/1h
		}
	}
}
`+block)
	for range 4 {
		getReply(t, url)
	}
	if got := activeApp(t).classOfAddr(netip.MustParseAddr("127.0.0.1")); got != ipclass.Suspicious {
		t.Fatalf("after three refusals (score 9) the client is %v, want suspicious", got)
	}
}

// TestRateLimitSharedBucketScoresNoOne: a refusal of a bucket other clients share (a global
// key, a header value anyone may send) does not score the client it refuses: one client that
// drains the bucket must not get every other client of it classified suspicious. A refusal of
// the client's own bucket (its address in the template, or the @<ip> fallback) still does.
func TestRateLimitSharedBucketScoresNoOne(t *testing.T) {
	base := proxiedCaddy(t, `		detection {
			threshold 9
			score rate_limited 3
			burst rate_limited 0
		}
		policy everyone {
			limit 1/1h
			key everyone
		}
		policy tenant {
			limit 1/1h
			key {header.X-Tenant}
		}
		policy own {
			limit 1/1h
			key {client_ip}:{header.X-Tenant}
		}`, `	handle /global {
		policy_rate_limit everyone
		respond "ok"
	}
	handle /tenant {
		policy_rate_limit tenant
		respond "ok"
	}
	handle /own {
		policy_rate_limit own
		respond "ok"
	}`)
	classOf := func(ip string) ipclass.Class { return activeApp(t).classOfAddr(netip.MustParseAddr(ip)) }
	getReply(t, base+"/global", "X-Forwarded-For: 10.9.3.1") // the first client drains the buckets
	getReply(t, base+"/tenant", "X-Forwarded-For: 10.9.3.1", "X-Tenant: acme")
	for range 6 {
		if got := getReply(t, base+"/global", "X-Forwarded-For: 10.9.3.2").status; got != 429 {
			t.Fatalf("the drained global bucket answered %d", got)
		}
		if got := getReply(t, base+"/tenant", "X-Forwarded-For: 10.9.3.3", "X-Tenant: acme").status; got != 429 {
			t.Fatalf("the drained tenant bucket answered %d", got)
		}
	}
	for _, ip := range []string{"10.9.3.2", "10.9.3.3"} {
		if got := classOf(ip); got != ipclass.Default {
			t.Fatalf("%s, refused six times from a bucket another client drained, is %v; want default", ip, got)
		}
	}
	// Its own buckets: the template with its address, and the fallback of an empty header.
	for range 4 {
		getReply(t, base+"/own", "X-Forwarded-For: 10.9.3.4", "X-Tenant: acme")
		getReply(t, base+"/tenant", "X-Forwarded-For: 10.9.3.5")
	}
	for _, ip := range []string{"10.9.3.4", "10.9.3.5"} {
		if got := classOf(ip); got != ipclass.Suspicious {
			t.Fatalf("%s, refused three times from its own bucket (score 9), is %v; want suspicious", ip, got)
		}
	}
}

// fixedLoad is an injected CPU reading.
type fixedLoad struct{ cpu atomic.Value }

func (f *fixedLoad) Load() (ratelimit.Load, error) {
	return ratelimit.Load{CPU: f.cpu.Load().(float64)}, nil
}

// TestRateLimitAdaptiveLogsItsLoadSource: a configuration with an adaptive policy says once
// what CPU load the factor follows (the cgroup, or the host where none can be read); nothing
// said it, so an operator could not tell whether the container's quota was measured.
func TestRateLimitAdaptiveLogsItsLoadSource(t *testing.T) {
	block, url := site(t, "\tpolicy_rate_limit heavy\n\tpolicy_rate_limit api_intensive")
	// min_factor 0.3: settings of its own, so no other test's limiter (which logged already)
	// is taken over.
	c := testcaddy.StartCaddy(t, `{
	hardening {
		adaptive {
			interval 10s
			min_factor 0.3
		}
		policy heavy {
			limit 8/1h
			adaptive
		}
	}
}
`+block)
	getReply(t, url)
	said := testenv.Filter(c.Logs(), func(e testenv.LogEntry) bool { return e.Str("cpu_load") != "" })
	if len(said) != 1 || said[0].Level() != "info" || !strings.HasPrefix(said[0].Str("cpu_load"), "cgroup v") && !strings.HasPrefix(said[0].Str("cpu_load"), "host") {
		t.Fatalf("want one INFO line naming the CPU load adaptive policies follow, got %v", said)
	}
}

// TestRateLimitAdaptiveShrinksUnderLoad: an injected full CPU shrinks an adaptive policy to
// min_factor of its burst; recovery restores it.
func TestRateLimitAdaptiveShrinksUnderLoad(t *testing.T) {
	load := new(fixedLoad)
	load.cpu.Store(2.0) // a reading above 1 (saturated, throttled) drives the average past 1 quickly
	adaptiveLoadSource = load
	t.Cleanup(func() { adaptiveLoadSource = nil })
	block, url := site(t, "\tpolicy_rate_limit heavy")
	testcaddy.StartCaddy(t, `{
	hardening {
		adaptive {
			cpu_target 0.5
			min_factor 0.25
			interval 10s
		}
		policy heavy {
			limit 8/1h
			key {header.X-Client}
			adaptive
		}
	}
}
`+block)
	lim := activeApp(t).limiter
	for range 30 { // the smoothed load converges to 1
		if err := lim.adaptive.Sample(); err != nil {
			t.Fatal(err)
		}
	}
	if f := lim.adaptive.Factor(); f != 0.25 {
		t.Fatalf("factor %v under full load, want min_factor 0.25", f)
	}
	if f := adaptiveFactorMetric(t); f != 0.25 {
		t.Fatalf("caddy_hardening_ratelimit_adaptive_factor %v under full load, want 0.25", f)
	}
	count := func(client string) int {
		n := 0
		for range 10 {
			if getReply(t, url, "X-Client: "+client).status == 200 {
				n++
			}
		}
		return n
	}
	if got := count("a"); got != 2 {
		t.Fatalf("%d admitted under load, want 2 (8 x 0.25)", got)
	}
	if r := getReply(t, url, "X-Client: z"); r.header.Get("RateLimit-Policy") != `"heavy";q=2;w=3600` {
		t.Fatalf("RateLimit-Policy under load: %q, want 2 per hour: the quota shrinks, the window stays", r.header.Get("RateLimit-Policy"))
	}
	load.cpu.Store(0.0)
	for range 30 {
		_ = lim.adaptive.Sample()
	}
	if f := lim.adaptive.Factor(); f != 1 {
		t.Fatalf("factor %v after recovery, want 1", f)
	}
	if f := adaptiveFactorMetric(t); f != 1 {
		t.Fatalf("caddy_hardening_ratelimit_adaptive_factor %v after recovery, want 1", f)
	}
	if got := count("b"); got != 8 {
		t.Fatalf("%d admitted after recovery, want 8", got)
	}
}

// TestRateLimitFeatureOff: with the rate_limit feature off the handler passes everything.
func TestRateLimitFeatureOff(t *testing.T) {
	block, url := site(t, "\tpolicy_rate_limit login")
	testcaddy.StartCaddy(t, "{\n\thardening {\n\t\tfeatures {\n\t\t\trate_limit off\n\t\t}\n\t\tpolicy login {\n\t\t\tlimit 1/1h\n\t\t}\n\t}\n}\n"+block)
	for range 3 {
		if r := getReply(t, url); r.status != 200 || r.header.Get("RateLimit") != "" {
			t.Fatalf("feature off: %d %v", r.status, r.header)
		}
	}
}

// TestRateLimitBadJSONIsRefused: what the Caddyfile adapter cannot catch is refused at load.
func TestRateLimitBadJSONIsRefused(t *testing.T) {
	c := testcaddy.StartCaddy(t, "")
	for _, tc := range []struct{ json, want string }{
		{`{"apps":{"http":{"servers":{"s":{"listen":["127.0.0.1:0"],"routes":[{"handle":[{"handler":"policy_rate_limit","policy":"nope"}]}]}}}}}`,
			`unknown policy "nope"; expected one of: api, api_intensive, authentication, default, public`},
		{`{"apps":{"hardening":{"policies":{"x":{"limit":{"rate":-1}}}}}}`, `rate limit policy "x", limit row: rate must be positive`},
		{`{"apps":{"hardening":{"policies":{"x":{"limit":{"rate":5},"key":"{foo}"}}}}}`, `unknown placeholder {foo}`},
		// The limit row is a rate, as in the Caddyfile: unlimited and deny are class rows.
		{`{"apps":{"hardening":{"policies":{"x":{"limit":{"unlimited":true}}}}}}`, `rate limit policy "x", limit row: expected a rate; unlimited and deny are for the trusted and suspicious rows`},
		{`{"apps":{"hardening":{"policies":{"api":{"limit":{"deny":true}}}}}}`, `rate limit policy "api", limit row: expected a rate; unlimited and deny are for the trusted and suspicious rows`},
		// A row is a rate, unlimited or deny: one that says two of them is refused, not read as one.
		{`{"apps":{"hardening":{"policies":{"x":{"limit":{"rate":5},"suspicious":{"rate":1,"deny":true}}}}}}`, `rate limit policy "x", suspicious row: deny takes no rate, per or burst`},
		{`{"apps":{"hardening":{"policies":{"x":{"limit":{"rate":5},"trusted":{"burst":9,"unlimited":true}}}}}}`, `rate limit policy "x", trusted row: unlimited takes no rate, per or burst`},
		{`{"apps":{"hardening":{"policies":{"Bad Name":{"limit":{"rate":5}}}}}}`, `rate limit policy "Bad Name": a name is lowercase`},
		{`{"apps":{"hardening":{"policies":{"x":{"limit":{"rate":5},"ipv6_prefix":129}}}}}`, `rate limit policy "x": ipv6_prefix: expected 1 to 128 bits, got 129`},
		{`{"apps":{"hardening":{"rate_limit":{"on_store_failure":"panic"}},"http":{"servers":{"s":{"listen":["127.0.0.1:0"],"routes":[{"handle":[{"handler":"policy_rate_limit","policy":"api"}]}]}}}}}`,
			`on_store_failure: expected fallback, allow or deny`},
		{`{"apps":{"hardening":{"adaptive":{"interval":1000000}},"http":{"servers":{"s":{"listen":["127.0.0.1:0"],"routes":[{"handle":[{"handler":"policy_rate_limit","policy":"api"}]}]}}}}}`,
			`adaptive interval 1ms is shorter than 100ms`},
		{`{"apps":{"hardening":{"rate_limit":{"max_keys":-1}},"http":{"servers":{"s":{"listen":["127.0.0.1:0"],"routes":[{"handle":[{"handler":"policy_rate_limit","policy":"api"}]}]}}}}}`,
			`rate_limit max_keys: expected a positive number (0 for the default 200000), got -1`},
		{`{"apps":{"hardening":{"rate_limit":{"store_timeout":-1}},"http":{"servers":{"s":{"listen":["127.0.0.1:0"],"routes":[{"handle":[{"handler":"policy_rate_limit","policy":"api"}]}]}}}}}`,
			`rate_limit store_timeout: expected a positive duration of at most 5s (0 for the default 50ms), got -1ns`},
		// Was accepted: the refusal's detail showed the template, "slow down {client_ip".
		{`{"apps":{"http":{"servers":{"s":{"listen":["127.0.0.1:0"],"routes":[{"handle":[{"handler":"policy_rate_limit","policy":"api","message":"slow down {client_ip"}]}]}}}}}`,
			`policy_rate_limit message "slow down {client_ip": a '{' is not closed; expected each placeholder closed`},
		// Was accepted: every request could wait 1000000h for Redis.
		{`{"apps":{"hardening":{"rate_limit":{"store_timeout":"1000000h"}},"http":{"servers":{"s":{"listen":["127.0.0.1:0"],"routes":[{"handle":[{"handler":"policy_rate_limit","policy":"api"}]}]}}}}}`,
			`rate_limit store_timeout: expected a positive duration of at most 5s (0 for the default 50ms), got 1000000h0m0s`},
	} {
		if err := c.LoadJSON(tc.json); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s:\n  err = %v\n  want %q", tc.json, err, tc.want)
		}
	}
}

// TestBuiltinPoliciesPerEnvironment: built-in policies exist without configuration, scale up in
// development, and a policy block with a built-in name changes only what it sets.
func TestBuiltinPoliciesPerEnvironment(t *testing.T) {
	prod, err := resolvePolicies(map[string]*PolicyConfig{"authentication": {Limit: row(10, time.Minute, 0)}}, Production)
	if err != nil {
		t.Fatal(err)
	}
	auth := prod["authentication"]
	if got := auth.rows[ipclass.Default].String(); got != "10/1m burst 10" {
		t.Errorf("overridden limit row: %s", got)
	}
	if got := auth.rows[ipclass.Trusted].String(); got != "50/1m burst 50" {
		t.Errorf("the built-in trusted row stays: %s", got)
	}
	// Built-in class rows kept under a user's limit never turn the classes round.
	inv, err := resolvePolicies(map[string]*PolicyConfig{"api": {Limit: row(2, time.Minute, 0)}, "authentication": {Limit: row(500, time.Minute, 0)},
		"api_intensive": {Limit: row(1, time.Minute, 0), Suspicious: row(5, time.Minute, 0)}}, Production)
	if err != nil {
		t.Fatal(err)
	}
	if got := inv["api"].rows[ipclass.Suspicious].String(); got != "2/1m burst 2" {
		t.Errorf("api with limit 2/1m: suspicious %s, want the limit row, not the built-in 20/1m", got)
	}
	if got := inv["authentication"].rows[ipclass.Trusted].String(); got != "500/1m burst 500" {
		t.Errorf("authentication with limit 500/1m: trusted %s, want the limit row, not the built-in 50/1m", got)
	}
	if got := inv["api_intensive"].rows[ipclass.Suspicious].String(); got != "5/1m burst 5" {
		t.Errorf("a suspicious row the user wrote stays as written: %s", got)
	}
	// Part by part: api's built-in suspicious row (20/1m burst 5) under 100/1m burst 2 keeps
	// its lower rate and takes the smaller burst; public's trusted row stays unlimited.
	parts, err := resolvePolicies(map[string]*PolicyConfig{"api": {Limit: row(100, time.Minute, 2)}}, Production)
	if err != nil {
		t.Fatal(err)
	}
	if got := parts["api"].rows[ipclass.Suspicious].String(); got != "20/1m burst 2" {
		t.Errorf("api with limit 100/1m burst 2: suspicious %s, want 20/1m burst 2", got)
	}
	if !prod["api_intensive"].adaptive || prod["public"].rows[ipclass.Trusted].kind != rowUnlimited {
		t.Error("api_intensive is adaptive and public trusts trusted clients without limit")
	}
	dev, err := resolvePolicies(nil, Development)
	if err != nil {
		t.Fatal(err)
	}
	if got := dev["authentication"].rows[ipclass.Default].String(); got != "50/1m burst 50" {
		t.Errorf("development authentication: %s, want 10 x production", got)
	}
}

// rateLimitCount reads the decisions counter of a policy, class and result.
func rateLimitCount(t *testing.T, policy, class, result string) float64 {
	t.Helper()
	return testutil.ToFloat64(rateLimitDecisions.WithLabelValues(policy, class, result))
}

// TestRateLimitBucketsSurviveAReload: a reload that keeps the limiter's settings keeps every
// bucket (the limiter lives in a UsagePool), even when the policy's numbers change.
func TestRateLimitBucketsSurviveAReload(t *testing.T) {
	block, url := site(t, "\tpolicy_rate_limit login")
	cfg := func(limit string) string {
		return "{\n\thardening {\n\t\tpolicy login {\n\t\t\tlimit " + limit + "\n\t\t}\n\t}\n}\n" + block
	}
	c := testcaddy.StartCaddy(t, cfg("2/1h"))
	getReply(t, url)
	getReply(t, url)
	if r := getReply(t, url); r.status != 429 {
		t.Fatalf("third request: %d", r.status)
	}
	before := activeApp(t).limiter
	if err := c.Load(cfg("2/1h burst 4")); err != nil {
		t.Fatal(err)
	}
	if activeApp(t).limiter != before {
		t.Fatal("the reload built a new limiter: buckets were lost")
	}
	// The bucket still holds the two requests spent: a burst of 4 leaves room for 2 more, where
	// a fresh bucket would admit 4.
	admitted := 0
	for range 4 {
		if getReply(t, url).status == 200 {
			admitted++
		}
	}
	if admitted != 2 {
		t.Fatalf("%d admitted after the reload to burst 4; want 2 (the bucket survived)", admitted)
	}

	// Tuning the store or the load factor (a new limiter) keeps the in-memory buckets too.
	tuned := "{\n\thardening {\n\t\tpolicy login {\n\t\t\tlimit 2/1h burst 4\n\t\t}\n\t\trate_limit {\n\t\t\tstore_timeout 80ms\n\t\t}\n\t\tadaptive {\n\t\t\tcpu_target 0.6\n\t\t}\n\t}\n}\n" + block
	if err := c.Load(tuned); err != nil {
		t.Fatal(err)
	}
	if activeApp(t).limiter == before {
		t.Fatal("the tuned settings did not make a new limiter: the test proves nothing")
	}
	if r := getReply(t, url); r.status != 429 {
		t.Fatalf("after a reload that tuned store_timeout and cpu_target: %d, want 429 (the bucket kept)", r.status)
	}
}

// TestRateLimitRaisedLimitAppliesAtOnce: a reload that raises a limit gives a client that
// drained its bucket under the old one a drained bucket of the new one, not the old one's
// wait: before, after 1/1h was raised to 100/1m, the client was refused for 59 minutes with
// RateLimit-Policy q=100;w=60 and t=3541.
func TestRateLimitRaisedLimitAppliesAtOnce(t *testing.T) {
	block, url := site(t, "\tpolicy_rate_limit login")
	cfg := func(limit string) string {
		return "{\n\thardening {\n\t\tpolicy login {\n\t\t\tlimit " + limit + "\n\t\t}\n\t}\n}\n" + block
	}
	c := testcaddy.StartCaddy(t, cfg("1/1h"))
	getReply(t, url)
	if r := getReply(t, url); r.status != 429 {
		t.Fatalf("second request under 1/1h: %d, want 429", r.status)
	}
	if err := c.Load(cfg("100/1m")); err != nil {
		t.Fatal(err)
	}
	r := getReply(t, url)
	if r.status == 429 && (r.header.Get("Retry-After") != "1" || !slices.Equal(r.header.Values("RateLimit"), []string{`"login";r=0;t=1`})) {
		t.Fatalf("after the raise to 100/1m: 429 with Retry-After %q and RateLimit %q; want at most one interval (0.6 s) to wait", r.header.Get("Retry-After"), r.header.Values("RateLimit"))
	}
	// A client that waits the Retry-After it was given is admitted.
	time.Sleep(time.Second)
	if r := getReply(t, url); r.status != 200 {
		t.Fatalf("after waiting Retry-After: %d, RateLimit %q; want 200", r.status, r.header.Values("RateLimit"))
	}
}

// TestRateLimitPolicyFieldKeepsItsWindow: RateLimit-Policy states the quota per the
// configured window; an adaptive factor shrinks the quota, and stretches the window only where
// the quota would round to 0.
func TestRateLimitPolicyFieldKeepsItsWindow(t *testing.T) {
	for _, tc := range []struct {
		base   ratelimit.Limit
		factor float64
		want   string
	}{
		{ratelimit.Limit{Rate: 5, Period: time.Minute, Burst: 5}, 1, `"p";q=5;w=60`},
		{ratelimit.Limit{Rate: 10, Period: 500 * time.Millisecond, Burst: 1}, 1, `"p";q=20;w=1`},
		{ratelimit.Limit{Rate: 60, Period: time.Minute, Burst: 20}, 0.25, `"p";q=15;w=60`},
		{ratelimit.Limit{Rate: 8, Period: time.Hour, Burst: 8}, 0.5, `"p";q=4;w=3600`},
		{ratelimit.Limit{Rate: 1, Period: time.Hour, Burst: 1}, 0.25, `"p";q=1;w=14400`},
	} {
		rr := rowReplies{quotedName: `"p"`, base: tc.base}
		if got := rr.policyValue(tc.base.Scale(tc.factor)); got != tc.want {
			t.Errorf("%+v at factor %v: %s, want %s", tc.base, tc.factor, got, tc.want)
		}
	}
}

// TestRateLimitSeveralPoliciesListEachOne: two policy_rate_limit lines in one route each
// apply, and the RateLimit fields list both policies (one member each), the refusal included.
func TestRateLimitSeveralPoliciesListEachOne(t *testing.T) {
	block, url := site(t, "\tpolicy_rate_limit minute\n\tpolicy_rate_limit hour")
	testcaddy.StartCaddy(t, `{
	hardening {
		policy minute {
			limit 5/1m
		}
		policy hour {
			limit 2/1h
		}
	}
}
`+block)
	r := getReply(t, url)
	if got := r.header.Values("RateLimit-Policy"); !slices.Equal(got, []string{`"minute";q=5;w=60`, `"hour";q=2;w=3600`}) {
		t.Fatalf("RateLimit-Policy %q; want both policies", got)
	}
	if got := r.header.Values("RateLimit"); len(got) != 2 || !strings.HasPrefix(got[0], `"minute";r=4;`) || !strings.HasPrefix(got[1], `"hour";r=1;`) {
		t.Fatalf("RateLimit %q; want both policies' remaining", got)
	}
	getReply(t, url)
	r = getReply(t, url) // the hour's third: refused by it
	if got := r.header.Values("RateLimit"); r.status != 429 || len(got) != 2 || !strings.HasPrefix(got[1], `"hour";r=0;`) {
		t.Fatalf("refusal: %d, RateLimit %q; want 429 listing both, hour at r=0", r.status, got)
	}
}

// TestRateLimitRetryAfterWaitsForEveryPolicy: when the second of two stacked policies refuses
// a request the first admitted with its last unit, Retry-After (and the body's retry_after) is
// when both admit again, never before the first policy's t (draft-ietf-httpapi-ratelimit-
// headers-10, section 6). Before, it was the second's alone: a client that waited it was
// refused by the first, and scored for that refusal.
func TestRateLimitRetryAfterWaitsForEveryPolicy(t *testing.T) {
	block, url := site(t, `	handle /shown {
		policy_rate_limit hourly
		policy_rate_limit minute
	}
	handle /quiet {
		policy_rate_limit hourly2 {
			headers off
		}
		policy_rate_limit minute2
	}
	handle /dry {
		policy_rate_limit hourly3
		policy_rate_limit minute3
	}`)
	testcaddy.StartCaddy(t, `{
	hardening {
		policy hourly {
			limit 2/1h
		}
		policy minute {
			limit 1/1m
		}
		policy hourly2 {
			limit 2/1h
		}
		policy minute2 {
			limit 1/1m
		}
		policy hourly3 {
			limit 2/1h
			shadow
		}
		policy minute3 {
			limit 1/1m
		}
	}
}
`+block)
	for _, path := range []string{"shown", "quiet"} {
		if r := getReply(t, url+path); r.status != 200 {
			t.Fatalf("/%s first request: %d, want 200", path, r.status)
		}
		r := getReply(t, url+path) // the hour's last unit, then the minute refuses
		if r.status != 429 {
			t.Fatalf("/%s second request: %d, want 429 from the minute's policy", path, r.status)
		}
		retry, _ := strconv.Atoi(r.header.Get("Retry-After"))
		// The hour's next unit comes back 30 min after its two were spent, whether the hour's
		// fields are shown (hourly) or hidden (hourly2, headers off).
		if retry < 1700 {
			t.Errorf("/%s: Retry-After %d with RateLimit %q: the first policy admits nothing for 30 min, so a client that waits it is refused again", path, retry, r.header.Values("RateLimit"))
		}
		if path == "shown" {
			if got := r.header.Values("RateLimit"); len(got) != 2 || !strings.HasPrefix(got[0], `"hourly";r=0;t=`) {
				t.Fatalf("RateLimit %q; want the hour at r=0 first", got)
			} else if ht, _ := strconv.Atoi(strings.TrimPrefix(got[0], `"hourly";r=0;t=`)); retry < ht {
				t.Errorf("Retry-After %d is before the hour's t=%d", retry, ht)
			}
		}
		var body struct {
			RetryAfter int `json:"retry_after"`
		}
		if err := json.Unmarshal([]byte(r.body), &body); err != nil || body.RetryAfter != retry {
			t.Errorf("/%s: body %q (%v): retry_after should equal Retry-After %d", path, r.body, err, retry)
		}
	}
	// A shadow policy refuses nothing, so it holds back no Retry-After either.
	getReply(t, url+"dry")
	if r := getReply(t, url+"dry"); r.status != 429 || r.header.Get("Retry-After") != "60" {
		t.Errorf("/dry: %d, Retry-After %q; want 429 with the minute's 60: a shadow policy's bucket changes no refusal", r.status, r.header.Get("Retry-After"))
	}
}

// TestRateLimitSamePolicyTwiceDecidesOnce: a request that passes two policy_rate_limit
// handlers of one policy (a site-wide line and the same policy again in a handle block, or a
// snippet imported twice) spends one request of its bucket, not two, and the RateLimit fields
// list the policy once. A route's own key is another set of buckets and still decides.
func TestRateLimitSamePolicyTwiceDecidesOnce(t *testing.T) {
	block, url := site(t, "\tpolicy_rate_limit login\n\thandle /x {\n\t\tpolicy_rate_limit login\n\t\tpolicy_rate_limit login {\n\t\t\tkey {header.X-User}\n\t\t}\n\t\trespond \"x\"\n\t}")
	testcaddy.StartCaddy(t, `{
	hardening {
		policy login {
			limit 4/1h
		}
	}
}
`+block)
	for i := range 4 {
		r := getReply(t, url+"x", "X-User: alice")
		if r.status != 200 {
			t.Fatalf("request %d: %d, want 200: a policy of 4 an hour admits 4", i+1, r.status)
		}
		// The client-IP set, then X-User's, told apart by its partition key.
		got := r.header.Values("RateLimit-Policy")
		if len(got) != 2 || got[0] != `"login";q=4;w=3600` || !strings.HasPrefix(got[1], `"login";q=4;w=3600;pk=:`) {
			t.Fatalf("request %d: RateLimit-Policy %q; want the client-IP buckets once, X-User's once with a pk", i+1, got)
		}
		rl := r.header.Values("RateLimit")
		if len(rl) != 2 || !strings.HasPrefix(rl[0], fmt.Sprintf(`"login";r=%d;`, 3-i)) || pkOf(rl[0]) != "" || pkOf(rl[1]) != pkOf(got[1]) {
			t.Fatalf("request %d: RateLimit %q; want r=%d first, then X-User's with the pk of its RateLimit-Policy member", i+1, rl, 3-i)
		}
	}
	if r := getReply(t, url+"x", "X-User: bob"); r.status != 429 {
		t.Fatalf("fifth request: %d, want 429", r.status)
	}
}

// TestRateLimitMessagePlaceholders: a message with placeholders is expanded for each refusal
// (Caddyfile shorthands included) and JSON-escaped, so a request value cannot break the body.
func TestRateLimitMessagePlaceholders(t *testing.T) {
	block, url := site(t, `	policy_rate_limit login {
		message "slow down {client_ip}, {path}"
	}`)
	testcaddy.StartCaddy(t, "{\n\thardening {\n\t\tpolicy login {\n\t\t\tlimit 1/1h\n\t\t}\n\t}\n}\n"+block)
	getReply(t, url+`x%22%3C`)
	r := getReply(t, url+`x%22%3C`)
	var body map[string]any
	if err := json.Unmarshal([]byte(r.body), &body); err != nil || r.status != 429 {
		t.Fatalf("refusal %d %q: %v", r.status, r.body, err)
	}
	if got := body["detail"]; got != `slow down 127.0.0.1, /x"<` {
		t.Fatalf("detail %q, want the client IP and the path filled in", got)
	}
	if !strings.Contains(r.body, `\u003c`) || body["policy"] != "login" || body["retry_after"] == nil {
		t.Fatalf("body %s: want the path escaped and the other members kept", r.body)
	}
}

// TestRateLimitShadowDenyRowAndMappedAddresses: a shadow policy refuses nothing, not even
// from a `deny` row; it counts shadow_denied. And an IPv4 client written as IPv6
// (::ffff:a.b.c.d) has its IPv4 address's bucket, not a second one.
func TestRateLimitShadowDenyRowAndMappedAddresses(t *testing.T) {
	base := proxiedCaddy(t, `		ip_classes {
			suspicious 203.0.113.0/24
		}
		policy shadowdeny {
			limit 1/1h
			suspicious deny
			shadow
		}
		policy mapped {
			limit 1/1h
		}`, `	handle /shadow {
		policy_rate_limit shadowdeny
		respond "ok"
	}
	handle /mapped {
		policy_rate_limit mapped
		respond "ok"
	}`)
	before := rateLimitCount(t, "shadowdeny", "suspicious", "shadow_denied")
	for range 3 {
		if r := getReply(t, base+"/shadow", "X-Forwarded-For: 203.0.113.77"); r.status != 200 {
			t.Fatalf("a shadow policy's deny row refused: %d", r.status)
		}
	}
	if got := rateLimitCount(t, "shadowdeny", "suspicious", "shadow_denied") - before; got != 3 {
		t.Fatalf("shadow_denied counted %v times, want 3", got)
	}
	if r := getReply(t, base+"/mapped", "X-Forwarded-For: 198.51.100.7"); r.status != 200 {
		t.Fatalf("first request: %d", r.status)
	}
	if r := getReply(t, base+"/mapped", "X-Forwarded-For: ::ffff:198.51.100.7"); r.status != 429 {
		t.Fatalf("the same client written as IPv6: %d, want 429 from its one bucket", r.status)
	}
}

// TestRateLimitIPv6ClientsKeyedByNetwork: an IPv6 client's bucket is its /64 by default, so
// addresses taken from one network share it; ipv6_prefix changes the width (128: each address),
// the fallback of an empty key template uses it too, and another network has its own bucket.
func TestRateLimitIPv6ClientsKeyedByNetwork(t *testing.T) {
	base := proxiedCaddy(t, `		policy net64 {
			limit 1/1h
		}
		policy exact {
			limit 1/1h
			ipv6_prefix 128
		}
		policy net48 {
			limit 1/1h
			ipv6_prefix 48
		}
		policy bykey {
			limit 1/1h
			key {header.X-API-Key}
		}
		policy composite {
			limit 1/1h
			key {client_ip}:{header.X-User}
		}`, `	handle /composite {
		policy_rate_limit composite
		respond "ok"
	}
	handle /net64 {
		policy_rate_limit net64
		respond "ok"
	}
	handle /exact {
		policy_rate_limit exact
		respond "ok"
	}
	handle /net48 {
		policy_rate_limit net48
		respond "ok"
	}
	handle /bykey {
		policy_rate_limit bykey
		respond "ok"
	}`)
	want := func(path, ip string, code int) {
		t.Helper()
		if got := getReply(t, base+path, "X-Forwarded-For: "+ip).status; got != code {
			t.Fatalf("%s from %s: %d, want %d", path, ip, got, code)
		}
	}
	for _, path := range []string{"/net64", "/bykey"} {
		want(path, "2001:db8:1:2::1", 200)
		want(path, "2001:db8:1:2:ffff::9", 429) // the same /64
		want(path, "2001:db8:1:3::1", 200)      // the next /64
	}
	// {client_ip} inside a composite key is the client's network too.
	wantAs := func(ip, user string, code int) {
		t.Helper()
		if got := getReply(t, base+"/composite", "X-Forwarded-For: "+ip, "X-User: "+user).status; got != code {
			t.Fatalf("/composite from %s as %s: %d, want %d", ip, user, got, code)
		}
	}
	wantAs("2001:db8:1:2::1", "alice", 200)
	wantAs("2001:db8:1:2::7", "alice", 429) // the same /64, the same user
	wantAs("2001:db8:1:2::7", "bob", 200)
	wantAs("2001:db8:1:3::1", "alice", 200)
	want("/exact", "2001:db8:1:2::1", 200)
	want("/exact", "2001:db8:1:2::2", 200)
	want("/exact", "2001:db8:1:2::1", 429)
	want("/net48", "2001:db8:1:2::1", 200)
	want("/net48", "2001:db8:1:ff::1", 429) // the same /48
	want("/net48", "2001:db8:2::1", 200)
	// IPv4 clients are still one bucket per address.
	want("/net64", "198.51.100.1", 200)
	want("/net64", "198.51.100.2", 200)
}

// proxiedCaddy starts a Caddy whose server trusts the loopback proxy, so that a test names its
// clients with X-Forwarded-For, with the hardening block's body and the site's body given, and
// returns the site's base URL.
func proxiedCaddy(t *testing.T, hardening, site string) string {
	t.Helper()
	port := testenv.FreePort(t)
	testcaddy.StartCaddy(t, fmt.Sprintf("{\n\tservers {\n\t\ttrusted_proxies static 127.0.0.1/32\n\t}\n\thardening {\n%s\n\t}\n}\nhttp://127.0.0.1:%d {\n\tbind 127.0.0.1\n%s\n}\n",
		hardening, port, site))
	return fmt.Sprintf("http://127.0.0.1:%d", port)
}

// TestKeyClientPart: which placeholders of a key template name a client, where the template
// also names the site or the route; a template of one kind only has none.
func TestKeyClientPart(t *testing.T) {
	for _, tc := range []struct{ key, want string }{
		{"{http.request.host}:{http.request.header.X-API-Key}", "{http.request.header.X-API-Key}"},
		{"{env.REGION}-{http.request.method}-{http.auth.user.id}:{http.request.cookie.s}", "{http.auth.user.id}{http.request.cookie.s}"},
		{"{http.request.uri.path}:{http.request.uri.query.key}", "{http.request.uri.query.key}"},
		{"{http.request.hostport}{http.request.uri}", "{http.request.uri}"}, // the URI holds the query
		{"{http.request.header.X-Tenant}:{http.request.header.X-User}", ""},
		{"{http.request.host}:{http.request.uri.path}", ""},
		{"global", ""},
	} {
		if got := keyClientPart(tc.key); got != tc.want {
			t.Errorf("keyClientPart(%q) = %q, want %q", tc.key, got, tc.want)
		}
	}
}

// TestKeyTemplateChecks: what checkKeyTemplate accepts and refuses, including Caddy's request
// placeholders whose providers read the server's context (which panicked) and escaped braces.
func TestKeyTemplateChecks(t *testing.T) {
	for _, tc := range []struct{ key, err string }{
		{"{http.request.local}", ""},
		{"{http.request.local.host}:{http.request.local.port}", ""},
		{"{http.request.remote.host}", ""},
		{`tenant\{1\}:{http.request.header.X-Tenant}`, ""},
		{"{http.request.remote.port}", "changes with every connection"},
		{"{http.request.remote}", "changes with every connection"},
		{"{client_ip}", "in JSON write {http.vars.client_ip}"},
		{"{http.request.uuid}", "changes with every request"},
		{"{a", "is not closed"},
		{"a}", "closes no placeholder"},
		{"{a{b}", "is not closed before"},
		{`\{a}`, "closes no placeholder"},
	} {
		err := checkKeyTemplate(tc.key)
		if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("key %q: %v; want %q", tc.key, err, tc.err)
		}
	}
}

// TestRateLimitRemovedPolicyFreesItsStore: a reload that removes a policy drops its in-memory
// store and its memory_keys and decisions series; the kept policy keeps its buckets and series.
func TestRateLimitRemovedPolicyFreesItsStore(t *testing.T) {
	c, base, keptOnly := keptAndGoneCaddy(t)
	getReply(t, base+"/kept")
	getReply(t, base+"/gone")
	if got := memoryKeySeries(t); len(got) != 2 || got["kept"] != 1 || got["gone"] != 1 {
		t.Fatalf("memory_keys %v, want kept 1 and gone 1", got)
	}
	if err := c.Load(keptOnly); err != nil {
		t.Fatal(err)
	}
	if got := memoryKeySeries(t); len(got) != 1 || got["kept"] != 1 {
		t.Fatalf("after the reload, memory_keys %v, want kept 1 only", got)
	}
	ch := make(chan prometheus.Metric, 256)
	rateLimitDecisions.Collect(ch)
	close(ch)
	kept := 0
	for m := range ch {
		var d dto.Metric
		if err := m.Write(&d); err != nil {
			t.Fatal(err)
		}
		for _, l := range d.GetLabel() {
			switch {
			case l.GetName() == "policy" && l.GetValue() == "gone":
				t.Fatalf("after the reload, a decisions series of the removed policy: %v", d.GetLabel())
			case l.GetName() == "policy" && l.GetValue() == "kept":
				kept++
			}
		}
	}
	if kept == 0 {
		t.Fatal("the kept policy's decision series went too")
	}
	if got := getReply(t, base+"/kept").status; got != 429 {
		t.Fatalf("the kept policy's bucket was reset: %d", got)
	}
}

// adaptiveFactorMetric reads caddy_hardening_ratelimit_adaptive_factor from the running
// configuration's metrics registry, as /metrics serves it.
func adaptiveFactorMetric(t *testing.T) float64 {
	t.Helper()
	families, err := activeApp(t).ctx.GetMetricsRegistry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == "caddy_hardening_ratelimit_adaptive_factor" && len(f.GetMetric()) == 1 {
			return f.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatal("no caddy_hardening_ratelimit_adaptive_factor in the metrics registry")
	return 0
}

// memoryKeySeries reads caddy_hardening_ratelimit_memory_keys: keys by policy label.
func memoryKeySeries(t *testing.T) map[string]float64 {
	t.Helper()
	got := map[string]float64{}
	ch := make(chan prometheus.Metric, 16)
	memoryKeys.Collect(ch)
	close(ch)
	for m := range ch {
		var d dto.Metric
		if err := m.Write(&d); err != nil {
			t.Fatal(err)
		}
		got[d.GetLabel()[0].GetValue()] = d.GetGauge().GetValue()
	}
	return got
}

// TestRateLimitFailedStartKeepsTheRunningStores: a configuration that fails after our app
// started (another listener is busy; Caddy starts apps in random order, hence 16 tries) leaves
// the running one's stores, buckets and series alone, though it lacked one of its policies.
func TestRateLimitFailedStartKeepsTheRunningStores(t *testing.T) {
	c, base, keptOnly := keptAndGoneCaddy(t)
	getReply(t, base+"/gone")
	loadFailingAfterStart(t, c, keptOnly, strings.TrimPrefix(base, "http://"))
	if got := memoryKeySeries(t); got["gone"] != 1 {
		t.Fatalf("after failed loads, memory_keys %v: the running configuration's gone store was dropped", got)
	}
	if got := getReply(t, base+"/gone").status; got != 429 {
		t.Fatalf("after failed loads, the drained bucket of gone answers %d: its store was reset", got)
	}
}

// keptAndGoneCaddy starts a Caddy with the policies kept and gone on /kept and /gone, and
// returns its base URL and a configuration without gone.
func keptAndGoneCaddy(t *testing.T) (*testcaddy.Caddy, string, string) {
	t.Helper()
	port := testenv.FreePort(t)
	config := func(policies, routes string) string {
		return fmt.Sprintf("{\n\thardening {\n%s\n\t}\n}\nhttp://127.0.0.1:%d {\n\tbind 127.0.0.1\n%s\n\trespond \"ok\"\n}\n", policies, port, routes)
	}
	const kept, keptRoute = "\t\tpolicy kept {\n\t\t\tlimit 1/1h\n\t\t}", "\thandle /kept {\n\t\tpolicy_rate_limit kept\n\t}"
	c := testcaddy.StartCaddy(t, config(kept+"\n\t\tpolicy gone {\n\t\t\tlimit 1/1h\n\t\t}", keptRoute+"\n\thandle /gone {\n\t\tpolicy_rate_limit gone\n\t}"))
	// The second configuration takes another limiter (store_timeout differs) over the same
	// memory stores (max_keys does not).
	return c, fmt.Sprintf("http://127.0.0.1:%d", port), config("\t\trate_limit {\n\t\t\tstore_timeout 60ms\n\t\t}\n"+kept, keptRoute)
}

// TestRateLimitSettingsCheckedWithoutAHandler: the rate_limit and adaptive settings of a JSON
// config were only checked when a policy_rate_limit handler first asked for the limiter, so a
// config without one (yet) passed `caddy validate` with on_store_failure "explode" or
// min_factor 5, and failed only once a site used a policy. They are checked with the app now.
func TestRateLimitSettingsCheckedWithoutAHandler(t *testing.T) {
	for _, tc := range []struct{ app, want string }{
		{`{"rate_limit":{"store":"redis"}}`, "no redis configured"},
		{`{"rate_limit":{"store":"disk"}}`, "expected redis or memory"},
		{`{"rate_limit":{"store_timeout":-5}}`, "store_timeout"},
		{`{"rate_limit":{"max_keys":-5}}`, "max_keys"},
		{`{"rate_limit":{"on_store_failure":"explode"}}`, "on_store_failure"},
		{`{"adaptive":{"min_factor":5}}`, "minimum factor"},
		{`{"adaptive":{"cpu_target":1.5}}`, "CPU target"},
		{`{"adaptive":{"interval":1000}}`, "shorter than"},
		// Was accepted: sampled every hour, adaptive limits never followed a load spike.
		{`{"adaptive":{"interval":"1h"}}`, "adaptive interval 1h0m0s is longer than 10s"},
	} {
		var c caddy.Config
		if err := json.Unmarshal([]byte(`{"admin":{"disabled":true},"apps":{"hardening":`+tc.app+`}}`), &c); err != nil {
			t.Fatal(err)
		}
		if err := caddy.Validate(&c); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v; want an error with %q", tc.app, err, tc.want)
		}
	}
}

// TestRateLimitSamplerOnlyForAdaptivePolicies: the load sampler read the CPU every interval
// as soon as any policy_rate_limit was configured, adaptive or not. It starts with the first
// configuration that uses an adaptive policy; it kept running after a reload removed every
// adaptive policy (reading the CPU every interval for nothing, for as long as the limiter's
// settings stayed the same). It now stops when no running configuration uses one, and starts
// again when a reload adds one, with the factor back at 1.
func TestRateLimitSamplerOnlyForAdaptivePolicies(t *testing.T) {
	block, _ := site(t, "\tpolicy_rate_limit api")
	// min_factor 0.35: settings of its own, so no other test's limiter is taken over.
	global := "{\n\thardening {\n\t\tadaptive {\n\t\t\tmin_factor 0.35\n\t\t}\n\t}\n}\n"
	c := testcaddy.StartCaddy(t, global+block)
	e := activeApp(t).limiter
	if e == nil || e.adaptive.Running() {
		t.Fatalf("no adaptive policy in use: the sampler runs (limiter %p)", e)
	}
	adaptiveBlock, _ := site(t, "\tpolicy_rate_limit api\n\tpolicy_rate_limit api_intensive")
	if err := c.Load(global + adaptiveBlock); err != nil {
		t.Fatal(err)
	}
	if e2 := activeApp(t).limiter; e2 != e || !e.adaptive.Running() {
		t.Fatalf("api_intensive is adaptive: same limiter %v, sampler running %v", e2 == e, e.adaptive.Running())
	}
	for i := range 3 {
		if err := c.Load(global + block); err != nil {
			t.Fatal(err)
		}
		if e3 := activeApp(t).limiter; e3 != e || e.adaptive.Running() {
			t.Fatalf("reload %d removed every adaptive policy: same limiter %v (want true), sampler running %v (want false)", i, e3 == e, e.adaptive.Running())
		}
		if f := e.adaptive.Factor(); f != 1 {
			t.Fatalf("reload %d: the stopped sampler left the factor at %v, want 1", i, f)
		}
		if err := c.Load(global + adaptiveBlock); err != nil {
			t.Fatal(err)
		}
		if e4 := activeApp(t).limiter; e4 != e || !e.adaptive.Running() {
			t.Fatalf("reload %d added an adaptive policy back: same limiter %v, sampler running %v", i, e4 == e, e.adaptive.Running())
		}
	}
}
