package ipclass

import (
	"math/rand/v2"
	"net/netip"
	"testing"
)

func mustPrefixes(t testing.TB, ss ...string) []netip.Prefix {
	t.Helper()
	var out []netip.Prefix
	for _, s := range ss {
		p, err := ParsePrefix(s)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, p)
	}
	return out
}

func TestPrefixSetContains(t *testing.T) {
	s := NewPrefixSet(mustPrefixes(t, "10.0.0.0/8", "192.168.1.0/24", "192.168.2.0/24", "203.0.113.7",
		"2001:db8::/32"))
	for _, tc := range []struct {
		ip   string
		want bool
	}{
		{"10.0.0.0", true}, {"10.255.255.255", true}, {"11.0.0.0", false}, {"9.255.255.255", false},
		{"192.168.1.77", true}, {"192.168.2.255", true}, {"192.168.3.0", false}, {"192.168.0.255", false},
		{"203.0.113.7", true}, {"203.0.113.8", false}, {"203.0.113.6", false},
		{"::ffff:10.1.2.3", true}, // IPv4-mapped IPv6 is IPv4
		{"2001:db8::1", true}, {"2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", true}, {"2001:db9::", false},
		{"2001:db7:ffff::", false}, {"::1", false},
	} {
		if got := s.Contains(netip.MustParseAddr(tc.ip)); got != tc.want {
			t.Errorf("Contains(%s) = %v, want %v", tc.ip, got, tc.want)
		}
	}
}

func TestParsePrefixRefusals(t *testing.T) {
	for _, bad := range []string{"10.0.0.0/33", "10.1.2.3/8", "not-an-ip", "10.0.0.0/", "fe80::1%eth0", "::/129"} {
		if _, err := ParsePrefix(bad); err == nil {
			t.Errorf("ParsePrefix(%q) accepted", bad)
		}
	}
	for in, want := range map[string]string{"192.0.2.1": "192.0.2.1/32", "::ffff:10.0.0.0/104": "10.0.0.0/8", "2001:db8::/32": "2001:db8::/32"} {
		p, err := ParsePrefix(in)
		if err != nil || p.String() != want {
			t.Errorf("ParsePrefix(%q) = %v, %v; want %s", in, p, err, want)
		}
	}
}

func TestPrefixSetEdges(t *testing.T) {
	all := NewPrefixSet(mustPrefixes(t, "0.0.0.0/0", "::/0"))
	for _, ip := range []string{"0.0.0.0", "255.255.255.255", "::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"} {
		if !all.Contains(netip.MustParseAddr(ip)) {
			t.Errorf("/0 does not contain %s", ip)
		}
	}
	var empty *PrefixSet
	if empty.Contains(netip.MustParseAddr("1.2.3.4")) || empty.Len() != 0 {
		t.Error("a nil set contains something")
	}
}

// TestPrefixSetMatchesLinearScan compares the binary search with a plain scan on random data.
func TestPrefixSetMatchesLinearScan(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	prefixes := randomPrefixes(r, 2000)
	s := NewPrefixSet(prefixes)
	for range 20000 {
		a := randomAddr(r)
		want := false
		for _, p := range prefixes {
			want = want || p.Contains(a)
		}
		if got := s.Contains(a); got != want {
			t.Fatalf("Contains(%s) = %v, linear scan says %v", a, got, want)
		}
	}
}

func randomAddr(r *rand.Rand) netip.Addr {
	if r.IntN(2) == 0 {
		return netip.AddrFrom4([4]byte{byte(r.IntN(256)), byte(r.IntN(256)), byte(r.IntN(256)), byte(r.IntN(256))})
	}
	var b [16]byte
	b[0], b[1], b[2], b[3] = 0x20, 0x01, byte(r.IntN(4)), byte(r.IntN(256))
	for i := 4; i < 16; i++ {
		b[i] = byte(r.IntN(256))
	}
	return netip.AddrFrom16(b)
}

func randomPrefixes(r *rand.Rand, n int) []netip.Prefix {
	out := make([]netip.Prefix, 0, n)
	for range n {
		a := randomAddr(r)
		bits := 8 + r.IntN(25)
		if a.Is6() {
			bits = 16 + r.IntN(113)
		}
		out = append(out, netip.PrefixFrom(a, bits).Masked())
	}
	return out
}

// TestPrefixSetContainsNAT64: an address of NAT64's well-known prefix (64:ff9b::/96) is its
// IPv4 client, as ClientAddr names it: it is in the IPv4 prefixes holding that address, and
// still in IPv6 prefixes holding the address as written.
func TestPrefixSetContainsNAT64(t *testing.T) {
	s := NewPrefixSet(mustPrefixes(t, "10.0.0.0/8", "64:ff9b::c633:6400/120"))
	for ip, want := range map[string]bool{
		"64:ff9b::a00:1":     true,  // 10.0.0.1
		"64:ff9b::aff:ffff":  true,  // 10.255.255.255
		"64:ff9b::b00:0":     false, // 11.0.0.0
		"64:ff9b::c633:6407": true,  // the IPv6 prefix as written
		"198.51.100.7":       false, // that prefix names translated clients only
		"64:ff9b:1::a00:1":   false, // a network-specific prefix: not recognised
		"::a00:1":            false,
	} {
		if got := s.Contains(netip.MustParseAddr(ip)); got != want {
			t.Errorf("Contains(%s) = %v, want %v", ip, got, want)
		}
	}
}
