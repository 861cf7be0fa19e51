package proxy

import (
	"net/netip"
	"slices"
	"testing"
)

func TestAddrCountsKeepEachFamilyApartAndDropZeroes(t *testing.T) {
	v4, v6, mapped := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("fd00::1"), netip.MustParseAddr("::ffff:10.0.0.1")
	c := newAddrCounts()
	c.add(v4, 1)
	c.add(v4, 1)
	c.add(v6, 1)
	c.add(mapped, 1)
	if got := []int{c.get(v4), c.get(v6), c.get(mapped)}; !slices.Equal(got, []int{2, 1, 1}) {
		t.Fatalf("counts of %v, %v, %v: %v, want [2 1 1]", v4, v6, mapped, got)
	}
	c.add(v4, -2)
	c.add(mapped, -1)
	if c.get(v4) != 0 || c.get(mapped) != 0 {
		t.Fatalf("counts after removing: %d, %d, want 0", c.get(v4), c.get(mapped))
	}
	if got := c.addrs(); !slices.Equal(got, []netip.Addr{v6}) {
		t.Fatalf("addresses left: %v, want [%v]", got, v6)
	}
}
