package dns

import (
	"fmt"
	"net"
	"net/netip"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/nodeagent/nodeagent/internal/netnsutil"
)

func TestEnsureLocalAddressCreatesTheLinkOnceAndKeepsTheAddress(t *testing.T) {
	ns, err := netnsutil.New()
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	addr := netip.MustParseAddr("169.254.20.10")
	err = netnsutil.Do(ns, func() error {
		for range 2 { // a restarted agent finds the bridge and the address there
			if err := EnsureLocalAddress(addr); err != nil {
				return err
			}
		}
		link, err := netlink.LinkByName(LocalServiceLink)
		if err != nil {
			return err
		}
		if link.Type() != "bridge" || link.Attrs().Flags&net.FlagUp == 0 {
			return fmt.Errorf("link %s type %s flags %v: want an up bridge", link.Attrs().Name, link.Type(), link.Attrs().Flags)
		}
		addrs, err := netlink.AddrList(link, netlink.FAMILY_V4)
		if err != nil {
			return err
		}
		if len(addrs) != 1 || addrs[0].IPNet.String() != "169.254.20.10/32" {
			return fmt.Errorf("addresses %v, want 169.254.20.10/32 once", addrs)
		}
		// The address is the node's: a server binds it.
		l, err := net.ListenPacket("udp", "169.254.20.10:0")
		if err != nil {
			return err
		}
		return l.Close()
	})
	if err != nil {
		t.Fatal(err)
	}
}
