package caddymodule

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/dunglas/httpsfv"

	"github.com/swarmsec/caddy-hardening/internal/testcaddy"
	"github.com/swarmsec/caddy-hardening/internal/testenv"
)

// rateLimitMember is one member of a RateLimit or RateLimit-Policy field as a client parses it
// (RFC 8941): the policy name and the pk parameter, "" without one.
type rateLimitMember struct{ name, pk, value string }

// parseRateLimitField parses the field lines of one RateLimit field as a structured-field
// List, as draft-ietf-httpapi-ratelimit-headers-10 defines both fields; pk must be a Byte
// Sequence (sections 3.1.4 and 4.1.3).
func parseRateLimitField(t *testing.T, lines []string) []rateLimitMember {
	t.Helper()
	list, err := httpsfv.UnmarshalList(lines)
	if err != nil {
		t.Fatalf("%q is not a structured-field List: %v", lines, err)
	}
	var out []rateLimitMember
	for i, m := range list {
		item, ok := m.(httpsfv.Item)
		if !ok {
			t.Fatalf("%q: member %d is not an Item", lines, i)
		}
		name, ok := item.Value.(string)
		if !ok {
			t.Fatalf("%q: member %d's value is not a String", lines, i)
		}
		rm := rateLimitMember{name: name}
		if v, ok := item.Params.Get("pk"); ok {
			b, ok := v.([]byte)
			if !ok {
				t.Fatalf("%q: member %d's pk is not a Byte Sequence", lines, i)
			}
			rm.pk = string(b)
		}
		rm.value, _ = httpsfv.Marshal(item)
		out = append(out, rm)
	}
	return out
}

// TestRateLimitUpstreamMembersOfTheSameName: an upstream behind policy_rate_limit (a real one,
// through reverse_proxy) that sends RateLimit and RateLimit-Policy members of its own keeps
// them as it sent them: draft-10 section 7.2 asks an intermediary not to remove them (that would
// read as a more permissive policy). Where one of them has the name of the edge's policy and
// nothing tells the two apart (no pk on either), the response listed two "api" members and a
// client could not know which limit was whose: the edge's members then carry their pk, in both
// fields, as a second bucket of one policy does, the same for the client on every request.
// Where the upstream's member has a pk of its own, or another name, the edge's are unchanged.
func TestRateLimitUpstreamMembersOfTheSameName(t *testing.T) {
	const policy = "rlupstream" // the edge's policy, and the name the upstream's members take
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := policy
		if r.URL.Path == "/other" {
			name = "app"
		}
		pk := ""
		if r.URL.Path == "/pk" {
			pk = ";pk=:dXBzdHJlYW0=:"
		}
		w.Header().Add("RateLimit-Policy", `"`+name+`";q=1000;w=3600`+pk)
		if r.URL.Path != "/policy-only" {
			w.Header().Add("RateLimit", `"`+name+`";r=999;t=3600`+pk)
		}
		_, _ = w.Write([]byte("from upstream"))
	}))
	t.Cleanup(upstream.Close)
	port, port2, port3 := testenv.FreePort(t), testenv.FreePort(t), testenv.FreePort(t)
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	up := strings.TrimPrefix(upstream.URL, "http://")
	block := fmt.Sprintf("http://127.0.0.1:%d {\n\tbind 127.0.0.1\n\tpolicy_rate_limit %s\n\treverse_proxy %s\n}\n", port, policy, up)
	// The README's way to send the edge's fields alone: header_down drops the upstream's.
	block += fmt.Sprintf("http://127.0.0.1:%d {\n\tbind 127.0.0.1\n\tpolicy_rate_limit %s\n\treverse_proxy %s {\n\t\theader_down -RateLimit\n\t\theader_down -RateLimit-Policy\n\t}\n}\n", port2, policy, up)
	// The same in a named route that `invoke` runs (not among the server's routes; Caddy
	// v2.11.9 adapts only a named route's first directive, hence the route block).
	block += fmt.Sprintf("&(proxied) {\n\troute {\n\t\tpolicy_rate_limit %s\n\t\treverse_proxy %s\n\t}\n}\nhttp://127.0.0.1:%d {\n\tbind 127.0.0.1\n\tinvoke proxied\n}\n", policy, up, port3)
	testcaddy.StartCaddy(t, fmt.Sprintf("{\n\thardening {\n\t\tpolicy %s {\n\t\t\tlimit 100/1h\n\t\t}\n\t}\n}\n", policy)+block)

	edgePK := ""
	for _, tc := range []struct {
		path      string
		edgeHasPK bool
	}{{"same", true}, {"policy-only", true}, {"same", true}, {"pk", false}, {"other", false}} {
		rep := getReply(t, url+tc.path)
		if rep.status != 200 || rep.body != "from upstream" {
			t.Fatalf("/%s: %d %q", tc.path, rep.status, rep.body)
		}
		rl := parseRateLimitField(t, rep.header.Values(headerRateLimit))
		rp := parseRateLimitField(t, rep.header.Values(headerRateLimitPolicy))
		// The edge's members come first (reverse_proxy adds the upstream's after them).
		if len(rp) != 2 || rp[0].name != policy || !strings.HasPrefix(rp[0].value, `"`+policy+`";q=100;w=3600`) {
			t.Fatalf("/%s: RateLimit-Policy %q; want the edge's member, then the upstream's", tc.path, rep.header.Values(headerRateLimitPolicy))
		}
		if len(rl) == 0 || rl[0].name != policy || !strings.HasPrefix(rl[0].value, `"`+policy+`";r=`) {
			t.Fatalf("/%s: RateLimit %q; want the edge's member first", tc.path, rep.header.Values(headerRateLimit))
		}
		// The upstream's members as it sent them.
		upRP := rep.header.Values(headerRateLimitPolicy)
		if !slices.ContainsFunc(upRP, func(v string) bool { return strings.Contains(v, `;q=1000;w=3600`) }) {
			t.Fatalf("/%s: RateLimit-Policy %q lost the upstream's member", tc.path, upRP)
		}
		if tc.path != "policy-only" && (len(rl) != 2 || !strings.Contains(rl[1].value, "r=999;t=3600")) {
			t.Fatalf("/%s: RateLimit %q; want the upstream's member kept", tc.path, rep.header.Values(headerRateLimit))
		}
		if !tc.edgeHasPK {
			if rl[0].pk != "" || rp[0].pk != "" {
				t.Fatalf("/%s: the edge's members %q, %q carry a pk, but nothing collides with them", tc.path, rl[0].value, rp[0].value)
			}
			continue
		}
		if rl[0].pk == "" || rl[0].pk != rp[0].pk || len(rl[0].pk) != 8 {
			t.Fatalf("/%s: the edge's members %q, %q: want one 8-byte pk on both, telling them from the upstream's %q", tc.path, rl[0].value, rp[0].value, rp[1].value)
		}
		if rp[1].pk == rp[0].pk {
			t.Fatalf("/%s: the upstream's member %q has the edge's pk", tc.path, rp[1].value)
		}
		if edgePK != "" && edgePK != rl[0].pk {
			t.Fatalf("/%s: the edge's pk changed between requests of one client", tc.path)
		}
		edgePK = rl[0].pk
	}

	rep := getReply(t, fmt.Sprintf("http://127.0.0.1:%d/same", port3))
	if rl := parseRateLimitField(t, rep.header.Values(headerRateLimit)); len(rl) != 2 || rl[0].pk == "" || rl[0].pk != edgePK {
		t.Fatalf("through invoke: RateLimit %q; want the edge's member with its pk %x, then the upstream's", rep.header.Values(headerRateLimit), edgePK)
	}

	rep = getReply(t, fmt.Sprintf("http://127.0.0.1:%d/same", port2))
	rl, rp := rep.header.Values(headerRateLimit), rep.header.Values(headerRateLimitPolicy)
	if len(rl) != 1 || len(rp) != 1 || rp[0] != `"`+policy+`";q=100;w=3600` || pkOf(rl[0]) != "" {
		t.Fatalf("with header_down -RateLimit -RateLimit-Policy: RateLimit %q, RateLimit-Policy %q; want the edge's members alone, without a pk", rl, rp)
	}
}
