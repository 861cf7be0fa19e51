package proxy

import "net/netip"

// addrCounts counts, per endpoint address, how many Services' chains send to it: the hairpin set holds the
// addresses counted at least once. IPv4 addresses are keyed by their four bytes and IPv6 ones by their
// sixteen, with 32-bit counts: at 10,000 Services of 10 endpoints a map keyed by netip.Addr (24 bytes,
// 32 a slot with an int count) was 5.2 MB of the agent's heap.
type addrCounts struct {
	v4 map[[4]byte]int32
	v6 map[[16]byte]int32
}

func newAddrCounts() addrCounts {
	return addrCounts{v4: map[[4]byte]int32{}, v6: map[[16]byte]int32{}}
}

// get is a's count, 0 when it has none.
func (c addrCounts) get(a netip.Addr) int {
	if a.Is4() {
		return int(c.v4[a.As4()])
	}
	return int(c.v6[a.As16()])
}

// add changes a's count by delta; a count that reaches 0 is removed.
func (c addrCounts) add(a netip.Addr, delta int) {
	if a.Is4() {
		addCount(c.v4, a.As4(), delta)
	} else {
		addCount(c.v6, a.As16(), delta)
	}
}

func addCount[K comparable](m map[K]int32, k K, delta int) {
	if n := m[k] + int32(delta); n == 0 {
		delete(m, k)
	} else {
		m[k] = n
	}
}

// addrs are the counted addresses, in no particular order.
func (c addrCounts) addrs() []netip.Addr {
	out := make([]netip.Addr, 0, len(c.v4)+len(c.v6))
	for k := range c.v4 {
		out = append(out, netip.AddrFrom4(k))
	}
	for k := range c.v6 {
		out = append(out, netip.AddrFrom16(k))
	}
	return out
}
