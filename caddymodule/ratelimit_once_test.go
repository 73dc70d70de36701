package caddymodule

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/swarmsec/caddy-hardening/internal/testcaddy"
	"github.com/swarmsec/caddy-hardening/internal/testenv"
)

// TestRateLimitSamePolicyTwiceCountsOnce: every shape in which one request meets the same
// policy (and key) twice — a site-wide line and the same line in a handle block, a named
// matcher's line and a catch-all's in one route, a snippet imported twice — spends one request
// of the client's bucket, in memory and in a real Redis: with 3 an hour the 4th request is
// refused, not the 2nd, every response lists the policy once, and the decisions counter
// counts 3 admissions and 1 refusal.
func TestRateLimitSamePolicyTwiceCountsOnce(t *testing.T) {
	r := testenv.StartRedis(t)
	shapes := []struct{ name, snippet, site string }{
		{"handle", "", "\tpolicy_rate_limit POLICY\n\thandle /x {\n\t\tpolicy_rate_limit POLICY\n\t\trespond \"x\"\n\t}"},
		{"matcher", "", "\t@x path /x\n\tpolicy_rate_limit @x POLICY\n\tpolicy_rate_limit POLICY"},
		{"import", "(limit) {\n\tpolicy_rate_limit POLICY\n}\n", "\timport limit\n\troute /x {\n\t\timport limit\n\t}"},
	}
	for _, store := range []string{"memory", "redis"} {
		for i, shape := range shapes {
			t.Run(store+"/"+shape.name, func(t *testing.T) {
				policy := fmt.Sprintf("once%d%s", i, store) // buckets of its own: memory stores outlive a reload
				block, url := site(t, strings.ReplaceAll(shape.site, "POLICY", policy))
				snippet := strings.ReplaceAll(shape.snippet, "POLICY", policy)
				testcaddy.StartCaddy(t, fmt.Sprintf(`{
	hardening {
		%s
		policy %s {
			limit 3/1h
		}
	}
}
`, slowRedis("redis "+r.URL(0), store), policy)+snippet+block)
				for n := 1; n <= 4; n++ {
					rep := getReply(t, url+"x")
					want := 200
					if n == 4 {
						want = 429
					}
					if rep.status != want {
						t.Fatalf("request %d: %d, want %d: one request must spend one of the 3", n, rep.status, want)
					}
					rl, rp := rep.header.Values(headerRateLimit), rep.header.Values(headerRateLimitPolicy)
					if wantRL := fmt.Sprintf(`"%s";r=%d;`, policy, max(0, 3-n)); len(rl) != 1 || !strings.HasPrefix(rl[0], wantRL) {
						t.Fatalf("request %d: RateLimit %q; want one member %s...", n, rl, wantRL)
					}
					if wantRP := []string{fmt.Sprintf(`"%s";q=3;w=3600`, policy)}; !slices.Equal(rp, wantRP) {
						t.Fatalf("request %d: RateLimit-Policy %q; want %q", n, rp, wantRP)
					}
				}
				if a, d := rateLimitCount(t, policy, "default", "allowed"), rateLimitCount(t, policy, "default", "denied"); a != 3 || d != 1 {
					t.Fatalf("decisions counted: %v allowed, %v denied; want 3 and 1 (4 requests, each decided once)", a, d)
				}
			})
		}
	}
}

// TestRateLimitSamePolicyNewKeyInOneRequest: a policy keyed by a header that a later handler
// of the same request sets (request_header, or an authentication step that copies the user
// into a header) names another bucket at its second line: that bucket is spent too, once, and
// the two members of the RateLimit fields tell the buckets apart by their pk (partition key)
// parameter, as draft-ietf-httpapi-ratelimit-headers-10 does. Before, the second line was
// skipped as "decided" and bob's bucket was never spent: every client could send as many
// requests as bob's limit allowed under a header value of its own.
func TestRateLimitSamePolicyNewKeyInOneRequest(t *testing.T) {
	r := testenv.StartRedis(t)
	for _, store := range []string{"memory", "redis"} {
		t.Run(store, func(t *testing.T) {
			policy := "newkey" + store
			block, url := site(t, fmt.Sprintf("\troute {\n\t\tpolicy_rate_limit %[1]s\n\t\trequest_header X-User bob\n\t\tpolicy_rate_limit %[1]s\n\t}", policy))
			testcaddy.StartCaddy(t, fmt.Sprintf(`{
	hardening {
		%s
		policy %s {
			limit 3/1h
			key {header.X-User}
		}
	}
}
`, slowRedis("redis "+r.URL(0), store), policy)+block)
			for n, user := range []string{"alice", "carol", "dave"} {
				rep := getReply(t, url, "X-User: "+user)
				if rep.status != 200 {
					t.Fatalf("request %d (%s): %d, want 200", n+1, user, rep.status)
				}
				rl := rep.header.Values(headerRateLimit)
				if len(rl) != 2 || !strings.HasPrefix(rl[0], fmt.Sprintf(`"%s";r=2;`, policy)) ||
					!strings.HasPrefix(rl[1], fmt.Sprintf(`"%s";r=%d;`, policy, 2-n)) {
					t.Fatalf("request %d: RateLimit %q; want %s's bucket at r=2, then bob's at r=%d", n+1, rl, user, 2-n)
				}
				rp := rep.header.Values(headerRateLimitPolicy)
				if len(rp) != 2 || pkOf(rl[0]) == pkOf(rl[1]) || pkOf(rl[1]) == "" || pkOf(rp[1]) != pkOf(rl[1]) {
					t.Fatalf("request %d: RateLimit %q, RateLimit-Policy %q; want the second bucket's members marked with a pk of their own", n+1, rl, rp)
				}
			}
			if rep := getReply(t, url, "X-User: erin"); rep.status != 429 {
				t.Fatalf("4th request as bob: %d, want 429: bob's bucket of 3 is spent", rep.status)
			}
		})
	}
}

// pkOf is a RateLimit or RateLimit-Policy member's pk parameter, "" without one.
func pkOf(member string) string {
	_, pk, ok := strings.Cut(member, ";pk=")
	if !ok {
		return ""
	}
	pk, _, _ = strings.Cut(pk, ";")
	return pk
}

// TestRateLimitSamePolicyTwiceUnlimitedCountsOnce: a class whose row is unlimited passes a
// policy met twice with one decision too: decisions_total{result="unlimited"} counts requests,
// not lines.
func TestRateLimitSamePolicyTwiceUnlimitedCountsOnce(t *testing.T) {
	block, url := site(t, "\tpolicy_rate_limit onceunl\n\thandle /x {\n\t\tpolicy_rate_limit onceunl\n\t\trespond \"x\"\n\t}")
	testcaddy.StartCaddy(t, `{
	hardening {
		ip_classes {
			trusted 127.0.0.1/32
		}
		policy onceunl {
			limit 1/1h
			trusted unlimited
		}
	}
}
`+block)
	before := rateLimitCount(t, "onceunl", "trusted", "unlimited")
	for range 3 {
		if rep := getReply(t, url+"x"); rep.status != 200 || len(rep.header.Values(headerRateLimit)) != 0 {
			t.Fatalf("trusted client: %d, RateLimit %q; want 200 and no fields", rep.status, rep.header.Values(headerRateLimit))
		}
	}
	if got := rateLimitCount(t, "onceunl", "trusted", "unlimited") - before; got != 3 {
		t.Fatalf("unlimited counted %v times for 3 requests, want 3", got)
	}
}
