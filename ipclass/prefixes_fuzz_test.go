package ipclass

import (
	"net/netip"
	"testing"
)

// FuzzPrefixSet: the merged ranges answer Contains exactly as a linear scan of the prefixes
// (IPv4, IPv6, IPv4-mapped and NAT64 addresses; overlapping, nested and adjacent prefixes).
func FuzzPrefixSet(f *testing.F) {
	f.Add([]byte{10, 0, 0, 0, 8, 10, 1, 2, 3, 32, 192, 168, 0, 0, 16}, []byte{10, 1, 2, 3})
	f.Add([]byte{0, 0, 0, 0, 0, 255, 255, 255, 255, 32}, []byte{255, 255, 255, 255})
	f.Add([]byte{32, 1, 13, 184, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32}, []byte{32, 1, 13, 184, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, spec, probe []byte) {
		// spec: records of [4 address bytes, bits] when the first byte is even, else
		// [16 address bytes, bits]; a record that does not fit ends the list.
		var prefixes []netip.Prefix
		for len(spec) > 0 && len(prefixes) < 64 {
			size := 4
			if spec[0]%2 == 1 {
				size = 16
			}
			if len(spec) < size+1 {
				break
			}
			addr, _ := netip.AddrFromSlice(spec[:size])
			bits := int(spec[size]) % (size*8 + 1)
			// Mapped IPv6 prefixes are stored as IPv4 (as ParsePrefix does).
			p, err := ParsePrefix(netip.PrefixFrom(addr, bits).Masked().String())
			if err != nil {
				t.Fatalf("ParsePrefix(%v): %v", netip.PrefixFrom(addr, bits).Masked(), err)
			}
			prefixes = append(prefixes, p)
			spec = spec[size+1:]
		}
		set := NewPrefixSet(prefixes)
		var probes []netip.Addr
		for len(probe) >= 4 && len(probes) < 16 {
			if len(probe) >= 16 {
				a, _ := netip.AddrFromSlice(probe[:16])
				probes = append(probes, a)
			}
			a, _ := netip.AddrFromSlice(probe[:4])
			b := nat64.Addr().As16() // and its NAT64 form
			copy(b[12:], probe[:4])
			probes = append(probes, a, netip.AddrFrom16(a.As16()), netip.AddrFrom16(b)) // and its mapped form
			probe = probe[4:]
		}
		for _, p := range prefixes { // the edges of every range
			probes = append(probes, p.Addr(), lastAddr(p), lastAddr(p).Next(), p.Addr().Prev())
		}
		for _, a := range probes {
			if !a.IsValid() {
				continue
			}
			want := false
			for _, p := range prefixes {
				want = want || p.Contains(a.Unmap())
				if nat64.Contains(a) { // a NAT64 address is its IPv4 client too
					b := a.As16()
					want = want || p.Contains(netip.AddrFrom4([4]byte(b[12:])))
				}
			}
			if got := set.Contains(a); got != want {
				t.Fatalf("Contains(%v) = %v, a scan of %v says %v", a, got, prefixes, want)
			}
		}
	})
}

// lastAddr is the highest address of p.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}
