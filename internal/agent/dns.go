package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"

	"k8s.io/klog/v2"

	"github.com/nodeagent/nodeagent/pkg/config"
	"github.com/nodeagent/nodeagent/pkg/dns"
	"github.com/nodeagent/nodeagent/pkg/resolvconf"
)

// dnsComponent is cluster DNS for the node's pods on the node-local address.
type dnsComponent struct {
	nop
	server *dns.Server
}

// newDNSComponent sets up cluster DNS on the shared cache and opens its sockets on the node-local address,
// which it first puts on the node's local-service link (a loopback address needs none); it serves once the
// cache is filled.
func newDNSComponent(ctx context.Context, s *shared) (*dnsComponent, error) {
	cfg := s.cfg.cfg
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
		if err := dns.EnsureLocalAddress(local); err != nil {
			return nil, fmt.Errorf("dns.localAddress: %w", err)
		}
	}
	hostAddrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, fmt.Errorf("listing the node's addresses: %w", err)
	}
	listen := net.JoinHostPort(local.String(), strconv.Itoa(int(cfg.DNS.Port)))
	server, err := dns.New(dns.Config{
		Domain:    cfg.ClusterDomain,
		Listen:    []string{listen},
		Upstreams: upstreams,
		CacheSize: int(cfg.DNS.CacheSize),
		RecursionAllowed: func(client netip.Addr) bool {
			// hostAddrs are listed after local went on its link, so they hold it.
			return client.IsLoopback() || onNode(client, hostAddrs) || s.inPodCIDR(client)
		},
		Metrics: s.registry,
	}, s.src)
	if err != nil {
		return nil, err
	}
	if !cfg.DNS.SocketHolder {
		if err := server.Listen(); err != nil {
			return nil, err
		}
		return &dnsComponent{server: server}, nil
	}
	pc, l, err := heldDNSSockets(ctx, listen, cfg.RootDir)
	if err != nil {
		return nil, fmt.Errorf("dns.socketHolder: %w", err)
	}
	server.Adopt(pc, l)
	return &dnsComponent{server: server}, nil
}

// heldDNSSockets gets the sockets for listen from the holder of this network namespace, starting one (this
// binary, logging into rootDir) when none runs.
func heldDNSSockets(ctx context.Context, listen, rootDir string) (net.PacketConn, net.Listener, error) {
	control, err := dns.HolderControl(listen)
	if err != nil {
		return nil, nil, err
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, nil, err
	}
	return dns.HeldSockets(ctx, listen, control, func() error {
		if err := os.MkdirAll(rootDir, 0o700); err != nil {
			return err
		}
		return dns.StartHolder(exe, listen, control, filepath.Join(rootDir, "dns-socket-holder.log"))
	})
}

// HoldDNSSockets is `nodeagent dns-socket-holder HOST:PORT CONTROL-SOCKET`, which an agent starts: it holds the
// DNS sockets for the agents until ctx ends.
func HoldDNSSockets(ctx context.Context, args []string) error {
	if len(args) != 2 {
		return errors.New("usage: nodeagent dns-socket-holder HOST:PORT CONTROL-SOCKET")
	}
	// The holder is this whole binary started for one small job: the garbage of its packages' start-up
	// (API schemes and the like) goes back to the system rather than staying resident for the node's life.
	debug.FreeOSMemory()
	return dns.HoldSockets(ctx, args[0], args[1])
}

// dnsUpstreams are dns.upstreams, or else the nameservers of the node's resolv.conf, leaving out the
// agent's own address, which would loop.
func dnsUpstreams(cfg *config.Configuration, local netip.Addr) ([]string, error) {
	names := cfg.DNS.Upstreams
	if len(names) == 0 {
		rc, err := resolvconf.Read(cfg.ResolvConf)
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

func (d *dnsComponent) run(ctx context.Context) {
	if err := d.server.Serve(ctx); err != nil {
		klog.ErrorS(err, "Cluster DNS stopped")
	}
}

// inPodCIDR is whether client is one of this node's pods.
func (s *shared) inPodCIDR(client netip.Addr) bool {
	for _, p := range s.podCIDRs() {
		if p.Contains(client) {
			return true
		}
	}
	return false
}
