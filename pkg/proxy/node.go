package proxy

import (
	"fmt"
	"net"
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"
)

// NodePortIPs returns the addresses that accept NodePorts, sorted: for "primary" the node's InternalIPs,
// for CIDRs the host's addresses inside them (kube-proxy's nodePortAddresses).
func NodePortIPs(node *corev1.Node, nodePortAddresses []string, hostAddrs func() ([]net.Addr, error)) ([]netip.Addr, error) {
	var ips []netip.Addr
	if len(nodePortAddresses) == 0 || slices.Equal(nodePortAddresses, []string{"primary"}) {
		if node == nil {
			return nil, nil
		}
		for _, a := range node.Status.Addresses {
			if ip, err := netip.ParseAddr(a.Address); err == nil && a.Type == corev1.NodeInternalIP {
				ips = append(ips, ip)
			}
		}
	} else {
		addrs, err := hostAddrs()
		if err != nil {
			return nil, fmt.Errorf("listing the host's addresses: %w", err)
		}
		for _, a := range addrs {
			ipnet, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			ip, ok := netip.AddrFromSlice(ipnet.IP)
			if !ok {
				continue
			}
			ip = ip.Unmap()
			for _, cidr := range nodePortAddresses {
				if p, err := netip.ParsePrefix(cidr); err == nil && p.Contains(ip) && !ip.IsLoopback() {
					ips = append(ips, ip)
					break
				}
			}
		}
	}
	slices.SortFunc(ips, netip.Addr.Compare)
	return slices.Compact(ips), nil
}
