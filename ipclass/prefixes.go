package ipclass

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// PrefixSet answers "is this address in any of these prefixes" with a binary search over
// merged, sorted address ranges: the cost grows with log2 of the list size, never with the
// position of the matching prefix, and a lookup allocates nothing. IPv4 and IPv4-mapped IPv6
// addresses are matched against the IPv4 prefixes; an address of NAT64's well-known prefix
// (64:ff9b::a00:1) is its IPv4 client (10.0.0.1), as ClientAddr names it, and is matched
// against the IPv4 prefixes too, besides the IPv6 ones as written.
type PrefixSet struct {
	v4 []range4
	v6 []range6
	n  int // prefixes given, for reports
}

type range4 struct{ lo, hi uint32 }

type u128 struct{ hi, lo uint64 }

type range6 struct{ lo, hi u128 }

func (a u128) less(b u128) bool { return a.hi < b.hi || (a.hi == b.hi && a.lo < b.lo) }

func (a u128) compare(b u128) int {
	if a.hi != b.hi {
		return cmp.Compare(a.hi, b.hi)
	}
	return cmp.Compare(a.lo, b.lo)
}

func (a u128) next() u128 {
	if a.lo == ^uint64(0) {
		return u128{a.hi + 1, 0}
	}
	return u128{a.hi, a.lo + 1}
}

// ParsePrefix reads a CIDR prefix or a single address (a /32 or /128). A prefix with host bits
// set (10.1.2.3/8) is refused: it is usually a typo for something narrower or wider.
func ParsePrefix(s string) (netip.Prefix, error) {
	if s == "private_ranges" {
		// Caddy's trusted_proxies and remote_ip take it; an operator who reuses the same
		// variable here needs to know what it would trust.
		return netip.Prefix{}, fmt.Errorf("%q is a shorthand of trusted_proxies, not read here; expected the prefixes themselves (it stands for 192.168.0.0/16 172.16.0.0/12 10.0.0.0/8 127.0.0.1/8 fd00::/8 ::1), and trusting them trusts every client Caddy sees with a private address: all of them behind a proxy that trusted_proxies does not name", s)
	}
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not an IP address or CIDR prefix (expected e.g. 10.0.0.0/8, 2001:db8::/32 or 192.0.2.7)", s)
		}
		if a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("%q: an address with a zone cannot be classified", s)
		}
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not a CIDR prefix (expected e.g. 10.0.0.0/8 or 2001:db8::/32)", s)
	}
	if p.Masked() != p {
		return netip.Prefix{}, fmt.Errorf("%q has host bits set: did you mean %s?", s, p.Masked())
	}
	if p.Addr().Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	return p, nil
}

// NewPrefixSet merges the prefixes into sorted, disjoint ranges.
func NewPrefixSet(prefixes []netip.Prefix) *PrefixSet {
	s := &PrefixSet{n: len(prefixes)}
	for _, p := range prefixes {
		if p.Addr().Is4() {
			lo := v4(p.Addr())
			hi := lo | uint32(uint64(1)<<(32-p.Bits())-1)
			s.v4 = append(s.v4, range4{lo, hi})
			continue
		}
		lo := v6(p.Addr())
		hi := lo
		host := 128 - p.Bits()
		switch {
		case host >= 64:
			hi.lo = ^uint64(0)
			if host == 128 {
				hi.hi = ^uint64(0)
			} else {
				hi.hi |= uint64(1)<<(host-64) - 1
			}
		case host > 0:
			hi.lo |= uint64(1)<<host - 1
		}
		s.v6 = append(s.v6, range6{lo, hi})
	}
	s.v4 = merge4(s.v4)
	s.v6 = merge6(s.v6)
	return s
}

func merge4(rs []range4) []range4 {
	slices.SortFunc(rs, func(a, b range4) int { return cmp.Compare(a.lo, b.lo) })
	out := rs[:0]
	for _, r := range rs {
		if n := len(out); n > 0 && (r.lo <= out[n-1].hi || out[n-1].hi != ^uint32(0) && r.lo == out[n-1].hi+1) {
			out[n-1].hi = max(out[n-1].hi, r.hi)
			continue
		}
		out = append(out, r)
	}
	return slices.Clip(out)
}

func merge6(rs []range6) []range6 {
	slices.SortFunc(rs, func(a, b range6) int { return a.lo.compare(b.lo) })
	out := rs[:0]
	for _, r := range rs {
		if n := len(out); n > 0 && (!out[n-1].hi.less(r.lo) || out[n-1].hi.next() == r.lo) {
			if out[n-1].hi.less(r.hi) {
				out[n-1].hi = r.hi
			}
			continue
		}
		out = append(out, r)
	}
	return slices.Clip(out)
}

func v4(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func v6(a netip.Addr) u128 {
	b := a.As16()
	var x u128
	for i := 0; i < 8; i++ {
		x.hi = x.hi<<8 | uint64(b[i])
		x.lo = x.lo<<8 | uint64(b[i+8])
	}
	return x
}

// Contains reports whether a is in one of the set's prefixes, or, for an address of NAT64's
// well-known prefix, whether the IPv4 client it carries is.
func (s *PrefixSet) Contains(a netip.Addr) bool {
	if s == nil {
		return false
	}
	a = a.Unmap()
	if a.Is6() && len(s.v4) > 0 && nat64.Contains(a) {
		b := a.As16()
		if s.contains4(netip.AddrFrom4([4]byte(b[12:]))) {
			return true
		}
	}
	return s.contains(a)
}

// contains reports whether a, unmapped, is in one of the set's prefixes.
func (s *PrefixSet) contains(a netip.Addr) bool {
	if a.Is4() {
		return s.contains4(a)
	}
	if !a.Is6() {
		return false
	}
	x := v6(a)
	i, _ := slices.BinarySearchFunc(s.v6, x, func(r range6, x u128) int { return r.lo.compare(x) })
	if i < len(s.v6) && s.v6[i].lo == x {
		return true
	}
	return i > 0 && !s.v6[i-1].hi.less(x)
}

// contains4 reports whether the IPv4 address a is in one of the set's IPv4 prefixes.
func (s *PrefixSet) contains4(a netip.Addr) bool {
	x := v4(a)
	i, _ := slices.BinarySearchFunc(s.v4, x, func(r range4, x uint32) int { return cmp.Compare(r.lo, x) })
	// i is the first range starting after x (or at x): x is in range i when it starts at x,
	// else in range i-1 when that one reaches x.
	if i < len(s.v4) && s.v4[i].lo == x {
		return true
	}
	return i > 0 && x <= s.v4[i-1].hi
}

// Len is the number of prefixes the set was built from.
func (s *PrefixSet) Len() int {
	if s == nil {
		return 0
	}
	return s.n
}
