package ipclass

import "net/netip"

// nat64 is NAT64's well-known prefix (RFC 6052): 64:ff9b::c633:6409 is the IPv4 client
// 198.51.100.9 translated (by SIIT in front of an IPv6-only host, say). It holds no native
// IPv6 host: RFC 6052 reserves it for translation of global IPv4 addresses.
var nat64 = netip.MustParsePrefix("64:ff9b::/96")

// ClientAddr is the address a client is known by, in rate-limit buckets and in the detector
// alike: an IPv4 address written as IPv6 (::ffff:192.0.2.7, as a dual-stack listener or a
// proxy may give it, or 64:ff9b::c000:207, NAT64's well-known prefix, as a host behind SIIT
// sees IPv4 clients) is the IPv4 address, so a client cannot become a second client by
// writing its address the other way, and translated IPv4 clients are not all one /64; an
// IPv6 address is its network of ipv6Bits bits, as the network's first address
// (2001:db8:1:2::), so a client given a /64 cannot become 2^64 clients. ipv6Bits 128 keeps
// every IPv6 address apart. Zones are dropped.
func ClientAddr(a netip.Addr, ipv6Bits int) netip.Addr {
	a = a.Unmap().WithZone("")
	if a.Is6() && nat64.Contains(a) {
		b := a.As16()
		return netip.AddrFrom4([4]byte(b[12:]))
	}
	if a.Is6() && ipv6Bits < 128 {
		return netip.PrefixFrom(a, ipv6Bits).Masked().Addr()
	}
	return a
}

// ClientName writes ClientAddr for keys, logs and listings: an IPv6 network with its length
// (2001:db8:1:2::/64), an address as itself.
func ClientName(a netip.Addr, ipv6Bits int) string {
	a = ClientAddr(a, ipv6Bits)
	if a.Is6() && ipv6Bits < 128 {
		return netip.PrefixFrom(a, ipv6Bits).String()
	}
	return a.String()
}

// ipv6Loopback is ::1.
var ipv6Loopback = netip.IPv6Loopback()

// HoldsLoopback reports whether the client ClientAddr names holds a loopback address: an IPv4
// one in 127.0.0.0/8, or an IPv6 network of ipv6Bits bits holding ::1 (::2 names ::/64 under
// the default 64). Such a client is this host itself: its health checks, an operator's curl,
// a local proxy's every client.
func HoldsLoopback(client netip.Addr, ipv6Bits int) bool {
	client = client.Unmap()
	if client.Is4() {
		return client.IsLoopback()
	}
	p, err := client.Prefix(min(ipv6Bits, 128))
	return err == nil && p.Contains(ipv6Loopback)
}

// holdsLoopback reports whether what d detected holds a loopback address.
func (d Detection) holdsLoopback(ipv6Bits int) bool {
	if d.Bits > 0 {
		return netip.PrefixFrom(d.Addr, d.Bits).Contains(ipv6Loopback)
	}
	return HoldsLoopback(d.Addr, ipv6Bits)
}
