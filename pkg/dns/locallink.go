package dns

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// LocalServiceLink is the link that holds the addresses of the agent's node-local services (its DNS): a
// bridge without ports, since the kernel may lack dummy links, and apart from the pod bridge, whose CNI
// plugin refuses a bridge with an IPv4 address other than its gateway.
const LocalServiceLink = "nodeagent-local"

// EnsureLocalAddress puts addr on LocalServiceLink, creating it if needed, so that a node-local service
// can listen on it. Pods reach it through their gateway, as they reach NodeLocal DNSCache's address.
func EnsureLocalAddress(addr netip.Addr) error {
	link, err := netlink.LinkByName(LocalServiceLink)
	var notFound netlink.LinkNotFoundError
	if errors.As(err, &notFound) {
		if err := netlink.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: LocalServiceLink}}); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("creating link %s: %w", LocalServiceLink, err)
		}
		link, err = netlink.LinkByName(LocalServiceLink)
	}
	if err != nil {
		return fmt.Errorf("looking up link %s: %w", LocalServiceLink, err)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("bringing up link %s: %w", LocalServiceLink, err)
	}
	ipNet := &net.IPNet{IP: addr.AsSlice(), Mask: net.CIDRMask(addr.BitLen(), addr.BitLen())}
	if err := netlink.AddrReplace(link, &netlink.Addr{IPNet: ipNet}); err != nil {
		return fmt.Errorf("adding %s to link %s: %w", addr, LocalServiceLink, err)
	}
	return nil
}
