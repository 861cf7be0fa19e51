package proxy

import (
	"net/netip"
	"slices"
	"testing"
)

func TestEndpointListGivesBackWhatWasPacked(t *testing.T) {
	for _, tc := range []struct {
		addrLen int
		eps     []endpoint
	}{
		{4, nil},
		{4, []endpoint{{addr: netip.MustParseAddr("10.0.0.1"), port: 80}, {addr: netip.MustParseAddr("10.0.255.2"), port: 65535}}},
		{16, []endpoint{{addr: netip.MustParseAddr("fd00::1"), port: 443}, {addr: netip.MustParseAddr("::ffff:10.0.0.1"), port: 1}}},
	} {
		l := packEndpoints(tc.addrLen, tc.eps)
		if l == "" {
			t.Errorf("%v: packed to no list, want a list even of no endpoint", tc.eps)
		}
		var want, got []netip.AddrPort
		for _, e := range tc.eps {
			want = append(want, netip.AddrPortFrom(e.addr, e.port))
		}
		for i, ap := range l.all {
			if i != len(got) {
				t.Errorf("%v: index %d yielded as %d", tc.eps, len(got), i)
			}
			got = append(got, ap)
		}
		if !slices.Equal(got, want) || l.len() != len(want) {
			t.Errorf("packed %v, got back %v (len %d)", want, got, l.len())
		}
	}
}
