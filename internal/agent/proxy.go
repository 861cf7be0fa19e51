package agent

import (
	"context"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/klog/v2"

	"github.com/nodeagent/nodeagent/internal/nft"
	"github.com/nodeagent/nodeagent/pkg/dns"
	"github.com/nodeagent/nodeagent/pkg/podnet"
	"github.com/nodeagent/nodeagent/pkg/proxy"
)

// proxyComponent is the Service proxy: the cluster's Service VIPs in the node's nftables.
type proxyComponent struct {
	nop
	proxier *proxy.Proxier
}

// newProxyComponent sets up the proxy on the shared cache; it runs once the cache is filled.
func newProxyComponent(s *shared) (*proxyComponent, error) {
	cfg := s.cfg.cfg
	conn, err := nft.Open(0)
	if err != nil {
		return nil, err
	}
	clusterCIDRs, _ := cfg.Proxy.ClusterCIDRs() // validated; none when empty
	proxier, err := proxy.New(proxy.Config{
		NodeName: s.nodeName,
		NodePortIPs: func() []netip.Addr {
			ips, err := proxy.NodePortIPs(s.src.Node(), cfg.Proxy.NodePortAddresses, net.InterfaceAddrs)
			if err != nil {
				klog.ErrorS(err, "NodePorts are not served on some addresses")
			}
			return ips
		},
		LocalCIDRs: func() []netip.Prefix {
			if len(clusterCIDRs) > 0 {
				return clusterCIDRs
			}
			return s.podCIDRs()
		},
		FullSyncPeriod: cfg.Proxy.SyncPeriod.Duration,
		Metrics:        s.registry,
	}, conn, s.src)
	if err != nil {
		return nil, err
	}
	if err := s.src.OnNodeChange(func(*corev1.Node) { proxier.NodeChanged() }); err != nil {
		return nil, err
	}
	return &proxyComponent{proxier: proxier}, nil
}

func (p *proxyComponent) run(ctx context.Context) { p.proxier.Run(ctx) }

// ProxyTable is the nftables table the proxy owns and CleanupProxy removes.
const ProxyTable = "inet " + proxy.TableName

// CleanupProxy removes the agent's nftables tables (the proxy's and the pod network's) and its routes to
// other nodes' pods from this host's network namespace, as kube-proxy --cleanup, and stops the DNS socket
// holders.
func CleanupProxy() error {
	conn, err := nft.Open(0)
	if err != nil {
		return err
	}
	if err := proxy.Cleanup(conn); err != nil {
		return err
	}
	klog.InfoS("Removed the proxy's nftables table", "table", ProxyTable)
	routes, err := netlink.NewHandle()
	if err != nil {
		return err
	}
	defer routes.Close()
	if err := podnet.Cleanup(routes, conn); err != nil {
		return err
	}
	klog.InfoS("Removed the pod network's routes and nftables table", "table", "inet "+podnet.Table)
	if err := dns.StopHolders(); err != nil {
		return err
	}
	klog.InfoS("Stopped the DNS socket holders of this network namespace", "dir", dns.HolderDir)
	return nil
}

// podCIDRs are the node's pod ranges: those the API server assigned (the first is spec.podCIDR), then
// podCIDR from the configuration, used when it assigns none.
func (s *shared) podCIDRs() []netip.Prefix {
	var cidrs []string
	if n := s.src.Node(); n != nil {
		cidrs = append(cidrs, n.Spec.PodCIDRs...)
	}
	var prefixes []netip.Prefix
	for _, c := range append(cidrs, s.cfg.cfg.PodCIDR) {
		if p, err := netip.ParsePrefix(c); err == nil {
			prefixes = append(prefixes, p)
		}
	}
	return prefixes
}
