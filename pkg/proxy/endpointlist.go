package proxy

import (
	"encoding/binary"
	"net/netip"
)

// endpointList is the endpoints of a map of addresses, packed in a string: the length of their addresses
// (4 or 16), then each endpoint's address and port. The table keeps every applied rule: at 10,000 Services
// of 10 endpoints the endpoints as a []netip.AddrPort (32 bytes each) were 3.2 MB of the agent's heap, where
// an IPv4 endpoint here is 6 bytes. A list of no endpoint is still one (its length byte); "" is no list.
type endpointList string

// packEndpoints packs the addresses and ports of eps, which are of the family whose addresses are addrLen
// bytes long.
func packEndpoints(addrLen int, eps []endpoint) endpointList {
	b := make([]byte, 0, 1+len(eps)*(addrLen+2))
	b = append(b, byte(addrLen))
	for _, e := range eps {
		b = appendAddr(b, e.addr)
		b = binary.BigEndian.AppendUint16(b, e.port)
	}
	return endpointList(b)
}

// len is the number of endpoints.
func (l endpointList) len() int {
	if l == "" {
		return 0
	}
	return (len(l) - 1) / (int(l[0]) + 2)
}

// all yields each endpoint with its index, in the order packed.
func (l endpointList) all(yield func(int, netip.AddrPort) bool) {
	if l == "" {
		return
	}
	addrLen := int(l[0])
	for i, rest := 0, l[1:]; len(rest) >= addrLen+2; i, rest = i+1, rest[addrLen+2:] {
		var addr netip.Addr
		if addrLen == 4 {
			addr = netip.AddrFrom4([4]byte([]byte(rest[:4])))
		} else {
			addr = netip.AddrFrom16([16]byte([]byte(rest[:16])))
		}
		port := uint16(rest[addrLen])<<8 | uint16(rest[addrLen+1])
		if !yield(i, netip.AddrPortFrom(addr, port)) {
			return
		}
	}
}
