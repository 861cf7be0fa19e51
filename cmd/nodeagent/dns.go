package main

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/klog/v2"

	"github.com/nodeagent/nodeagent/pkg/config"
	"github.com/nodeagent/nodeagent/pkg/dns"
	"github.com/nodeagent/nodeagent/pkg/metrics"
	"github.com/nodeagent/nodeagent/pkg/node"
	"github.com/nodeagent/nodeagent/pkg/proxy"
	"github.com/nodeagent/nodeagent/pkg/source"
)

// newDNSServer sets up cluster DNS on the shared cache and opens its sockets on the node-local address,
// which it first puts on the node's local-service link (a loopback address needs none); it serves once the
// cache is filled.
func newDNSServer(cfg *config.Configuration, src *source.Source, reg prometheus.Registerer) (*dns.Server, error) {
	local, err := netip.ParseAddr(cfg.DNS.LocalAddress)
	if err != nil {
		return nil, fmt.Errorf("dns.localAddress: %w", err)
	}
	upstreams, err := dnsUpstreams(cfg, local)
	if err != nil {
		return nil, err
	}
	if len(upstreams) == 0 {
		klog.InfoS("No DNS upstreams: names outside the cluster get SERVFAIL", "resolvConf", cfg.ResolvConf)
	}
	if !local.IsLoopback() {
		if err := node.EnsureLocalAddress(local); err != nil {
			return nil, fmt.Errorf("dns.localAddress: %w", err)
		}
	}
	hostAddrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, fmt.Errorf("listing the node's addresses: %w", err)
	}
	server, err := dns.New(dns.Config{
		Domain:    cfg.ClusterDomain,
		Listen:    []string{net.JoinHostPort(local.String(), strconv.Itoa(int(cfg.DNS.Port)))},
		Upstreams: upstreams,
		CacheSize: int(cfg.DNS.CacheSize),
		RecursionAllowed: func(client netip.Addr) bool {
			// hostAddrs are listed after local went on its link, so they hold it.
			return client.IsLoopback() || onNode(client, hostAddrs) || inPodCIDR(client, cfg, src)
		},
		Metrics: reg,
	}, src.Cluster)
	if err != nil {
		return nil, err
	}
	if err := server.Listen(); err != nil {
		return nil, err
	}
	return server, nil
}

// dnsUpstreams are dns.upstreams, or else the nameservers of the node's resolv.conf, leaving out the
// agent's own address, which would loop.
func dnsUpstreams(cfg *config.Configuration, local netip.Addr) ([]string, error) {
	names := cfg.DNS.Upstreams
	if len(names) == 0 {
		rc, err := dns.ReadResolvConf(cfg.ResolvConf)
		if err != nil {
			return nil, fmt.Errorf("resolvConf: %w", err)
		}
		names = rc.Nameservers
	}
	var upstreams []string
	for _, name := range names {
		addr, err := config.UpstreamAddress(name)
		if err != nil {
			return nil, fmt.Errorf("DNS upstream %q: %w", name, err)
		}
		if netip.MustParseAddrPort(addr).Addr() != local {
			upstreams = append(upstreams, addr)
		}
	}
	return upstreams, nil
}

func onNode(client netip.Addr, hostAddrs []net.Addr) bool {
	for _, a := range hostAddrs {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok && ip.Unmap() == client {
				return true
			}
		}
	}
	return false
}

// inPodCIDR is whether client is one of this node's pods.
func inPodCIDR(client netip.Addr, cfg *config.Configuration, src *source.Source) bool {
	for _, p := range podCIDRs(cfg, src) {
		if p.Contains(client) {
			return true
		}
	}
	return false
}

// podCIDRs are the node's pod ranges: those the API server assigned (the first is spec.podCIDR), then
// podCIDR from the configuration, used when it assigns none.
func podCIDRs(cfg *config.Configuration, src *source.Source) []netip.Prefix {
	var cidrs []string
	if n := src.Node(); n != nil {
		cidrs = append(cidrs, n.Spec.PodCIDRs...)
	}
	var prefixes []netip.Prefix
	for _, c := range append(cidrs, cfg.PodCIDR) {
		if p, err := netip.ParsePrefix(c); err == nil {
			prefixes = append(prefixes, p)
		}
	}
	return prefixes
}

// runDNS serves DNS until ctx ends, logging why it stopped otherwise.
func runDNS(ctx context.Context, server *dns.Server) {
	if err := server.Serve(ctx); err != nil {
		klog.ErrorS(err, "Cluster DNS stopped")
	}
}

// runDNSOnly runs the cluster DNS server alone, as CoreDNS runs in a cluster; its credentials must list
// Services and EndpointSlices.
func runDNSOnly(ctx context.Context, cfg *config.Configuration) error {
	nodeName, client, err := connect(cfg)
	if err != nil {
		return err
	}
	klog.InfoS("Starting nodeagent as cluster DNS only", "version", version, "node", nodeName)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	if err := proxy.CheckAccess(ctx, client); err != nil {
		return err
	}
	src := source.New(client, nodeName, 0)
	registry := metrics.NewRegistry()
	server, err := newDNSServer(cfg, src, registry)
	if err != nil {
		return err
	}
	if err := serveEndpoints(ctx, &wg, cfg, registry, nil, src); err != nil {
		return err
	}
	if err := src.Start(ctx); err != nil {
		return err
	}
	defer src.Shutdown()
	runDNS(ctx, server)
	return nil
}
