package proxy

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
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

// CheckAccess makes sure the agent's credentials may list Services and EndpointSlices in all namespaces,
// which the proxy and cluster DNS watch. The Node authorizer does not give a node EndpointSlices: without a
// binding the cache would never fill and the agent would wait forever, so start-up stops with what to do
// instead.
func CheckAccess(ctx context.Context, client kubernetes.Interface) error {
	one := metav1.ListOptions{Limit: 1}
	if _, err := client.CoreV1().Services("").List(ctx, one); err != nil {
		return accessError("services", err)
	}
	if _, err := client.DiscoveryV1().EndpointSlices("").List(ctx, one); err != nil {
		return accessError("endpointslices.discovery.k8s.io", err)
	}
	return nil
}

func accessError(resource string, err error) error {
	if apierrors.IsForbidden(err) {
		return fmt.Errorf("the agent cannot list %s, which its Service proxy and cluster DNS watch: %w; give the node kube-proxy's role "+
			"(kubectl create clusterrolebinding nodeagent:node-proxier --clusterrole=system:node-proxier --group=system:nodes) "+
			"or turn both off (proxy.enabled: false, dns.enabled: false; --enable-proxy=false --enable-dns=false)", resource, err)
	}
	return fmt.Errorf("listing %s: %w", resource, err)
}
