package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/nodeagent/nodeagent/internal/netnsutil"
	"github.com/nodeagent/nodeagent/internal/nft"
)

// The traffic tests build a small network of their own out of network namespaces, so nothing they do
// reaches the host's tables, routes or any outside address:
//
//	client ns  192.168.50.2 ──veth── 192.168.50.1  node ns  br0 10.244.0.1/24 ──veth── backend ns 10.244.0.1x
//	                                 (the proxy's table)                        ──veth── ...
//
// The node namespace routes between the two and holds the proxy's table; the backends run small TCP and UDP
// servers that answer with their name and the client address they saw.
const (
	nodeIP   = "192.168.50.1"
	clientIP = "192.168.50.2"
	podCIDR  = "10.244.0.0/24"
	bridgeIP = "10.244.0.1"

	// The network is dual-stack: every link has an IPv6 address too.
	nodeIP6   = "fd00:50::1"
	clientIP6 = "fd00:50::2"
	podCIDR6  = "fd00:244::/64"
	bridgeIP6 = "fd00:244::1"
)

// testNet is the topology above. Every namespace lives as long as its handle: closing them at the end of
// the test removes them with their links, addresses and rules.
type testNet struct {
	node, client netns.NsHandle
	backends     map[string]netns.NsHandle // by name
	backendIPs   map[string]netip.Addr
	backendIPs6  map[string]netip.Addr
}

// inNS runs fn on a thread that is inside ns; sockets created by fn stay in ns after it returns.
func inNS(ns netns.NsHandle, fn func() error) error { return netnsutil.Do(ns, fn) }

// newNS creates a network namespace and returns a handle to it, with loopback up.
func newNS(t testing.TB) netns.NsHandle {
	t.Helper()
	ns, err := netnsutil.New()
	if err != nil {
		t.Skipf("creating a network namespace needs root: %v", err)
	}
	t.Cleanup(func() { _ = ns.Close() })
	if err := inNS(ns, func() error {
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		return netlink.LinkSetUp(lo)
	}); err != nil {
		t.Fatalf("loopback up: %v", err)
	}
	return ns
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// newTestNet builds the topology with the named backends (10.244.0.11 and fd00:244::11, .12, ...).
func newTestNet(t *testing.T, backends ...string) *testNet {
	t.Helper()
	n := &testNet{node: newNS(t), client: newNS(t),
		backends: map[string]netns.NsHandle{}, backendIPs: map[string]netip.Addr{}, backendIPs6: map[string]netip.Addr{}}
	nodeH, err := netlink.NewHandleAt(n.node)
	must(t, err)
	defer nodeH.Close()

	must(t, nodeH.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br0"}}))
	br, err := nodeH.LinkByName("br0")
	must(t, err)
	must(t, nodeH.AddrAdd(br, mustAddr(bridgeIP+"/24")))
	must(t, nodeH.AddrAdd(br, mustAddr(bridgeIP6+"/64")))
	must(t, nodeH.LinkSetUp(br))
	must(t, inNS(n.node, func() error {
		if err := os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644); err != nil {
			return err
		}
		return os.WriteFile("/proc/sys/net/ipv6/conf/all/forwarding", []byte("1"), 0o644)
	}))
	// Service VIPs are routed out of the bridge, as a node's default route would take them, so that a
	// connection to a VIP without endpoints reaches the filter hooks and is refused there.
	for _, cidr := range []string{"10.96.0.0/16", "fd00:96::/112"} {
		_, services, _ := net.ParseCIDR(cidr)
		must(t, nodeH.RouteAdd(&netlink.Route{LinkIndex: br.Attrs().Index, Dst: services, Scope: netlink.SCOPE_LINK}))
	}

	n.wire(t, nodeH, n.client, "client", []string{nodeIP + "/24", nodeIP6 + "/64"}, []string{clientIP + "/24", clientIP6 + "/64"},
		nil, []string{nodeIP, nodeIP6})
	for i, name := range backends {
		ns := newNS(t)
		ip := netip.MustParseAddr(fmt.Sprintf("10.244.0.%d", 11+i))
		ip6 := netip.MustParseAddr(fmt.Sprintf("fd00:244::%d", 11+i))
		n.backends[name], n.backendIPs[name], n.backendIPs6[name] = ns, ip, ip6
		n.wire(t, nodeH, ns, "b-"+name, nil, []string{ip.String() + "/24", ip6.String() + "/64"}, br, []string{bridgeIP, bridgeIP6})
		n.serve(t, name)
	}
	return n
}

// wire connects peer to the node namespace with a veth pair: the node end gets nodeAddrs (or joins bridge),
// the peer end is eth0 with peerAddrs and a default route via each of gateways (one per family).
func (n *testNet) wire(t *testing.T, nodeH *netlink.Handle, peer netns.NsHandle, name string, nodeAddrs, peerAddrs []string, bridge netlink.Link, gateways []string) {
	t.Helper()
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: "eth0", PeerNamespace: netlink.NsFd(peer)}
	must(t, nodeH.LinkAdd(veth))
	link, err := nodeH.LinkByName(name)
	must(t, err)
	if bridge != nil {
		must(t, nodeH.LinkSetMaster(link, bridge))
		must(t, nodeH.LinkSetHairpin(link, true))
	} else {
		for _, a := range nodeAddrs {
			must(t, nodeH.AddrAdd(link, mustAddr(a)))
		}
	}
	must(t, nodeH.LinkSetUp(link))
	peerH, err := netlink.NewHandleAt(peer)
	must(t, err)
	defer peerH.Close()
	eth0, err := peerH.LinkByName("eth0")
	must(t, err)
	for _, a := range peerAddrs {
		must(t, peerH.AddrAdd(eth0, mustAddr(a)))
	}
	must(t, peerH.LinkSetUp(eth0))
	for _, gw := range gateways {
		must(t, peerH.RouteAdd(&netlink.Route{LinkIndex: eth0.Attrs().Index, Gw: net.ParseIP(gw)}))
	}
}

// mustAddr parses an address with its prefix length. An IPv6 one skips duplicate address detection, which
// would leave it unusable for a second or two.
func mustAddr(cidr string) *netlink.Addr {
	a, err := netlink.ParseAddr(cidr)
	if err != nil {
		panic(err)
	}
	if a.IP.To4() == nil {
		a.Flags |= unix.IFA_F_NODAD
	}
	return a
}

// serve starts the backend's servers on TCP 8080, TCP 8443 and UDP 5353: each answers
// "<backend> <client address>". They stop with the test.
func (n *testNet) serve(t *testing.T, name string) {
	t.Helper()
	var tcp []net.Listener
	var udp net.PacketConn
	must(t, inNS(n.backends[name], func() error {
		for _, port := range []string{"8080", "8443"} {
			l, err := net.Listen("tcp", ":"+port)
			if err != nil {
				return err
			}
			tcp = append(tcp, l)
		}
		var err error
		udp, err = net.ListenPacket("udp", ":5353")
		return err
	}))
	for _, l := range tcp {
		t.Cleanup(func() { _ = l.Close() })
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
				_, _ = fmt.Fprintf(c, "%s %s\n", name, host)
				_ = c.Close()
			}
		}()
	}
	t.Cleanup(func() { _ = udp.Close() })
	go func() {
		buf := make([]byte, 512)
		for {
			_, from, err := udp.ReadFrom(buf)
			if err != nil {
				return
			}
			host, _, _ := net.SplitHostPort(from.String())
			_, _ = udp.WriteTo([]byte(name+" "+host), from)
		}
	}()
}

// reply is what a backend answered: its name and the client address it saw.
type reply struct{ backend, source string }

// dialTCP connects from ns to addr and reads the backend's answer.
func dialTCP(ns netns.NsHandle, addr string, timeout time.Duration) (reply, error) {
	var conn net.Conn
	err := inNS(ns, func() error {
		var err error
		conn, err = net.DialTimeout("tcp", addr, timeout)
		return err
	})
	if err != nil {
		return reply{}, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(timeout))
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return reply{}, fmt.Errorf("reading from %s: %w", addr, err)
	}
	backend, source, _ := strings.Cut(strings.TrimSpace(line), " ")
	return reply{backend, source}, nil
}

// exchangeUDP sends one datagram from ns to addr from a fresh source port and reads the answer.
func exchangeUDP(ns netns.NsHandle, addr string, timeout time.Duration) (reply, error) {
	var conn net.Conn
	err := inNS(ns, func() error {
		var err error
		conn, err = net.Dial("udp", addr)
		return err
	})
	if err != nil {
		return reply{}, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(timeout))
	if _, err := conn.Write([]byte("hello")); err != nil {
		return reply{}, err
	}
	buf := make([]byte, 512)
	n, err := conn.Read(buf)
	if err != nil {
		return reply{}, err
	}
	backend, source, _ := strings.Cut(string(buf[:n]), " ")
	return reply{backend, source}, nil
}

// nftConn returns a connection to nftables in ns.
func nftConn(t testing.TB, ns netns.NsHandle) *nftables.Conn {
	t.Helper()
	conn, err := nft.Open(int(ns))
	must(t, err)
	return conn
}

// dumpRuleset writes the node namespace's ruleset into the test log when the test fails, with nft(8) if
// the machine has it: the first thing to read when a packet went the wrong way.
func (n *testNet) dumpRulesetOnFailure(t *testing.T) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		nft, err := findExecutable("nft")
		if err != nil {
			return
		}
		out, _ := runInNS(n.node, nft, "list", "ruleset")
		t.Logf("ruleset in the node namespace:\n%s", out)
	})
}

func findExecutable(name string) (string, error) {
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/bin"} {
		p := filepath.Join(dir, name)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", errors.New(name + " not found")
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var last error
	for {
		if last = cond(); last == nil {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: not within %s: %v", what, timeout, last)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// runInNS runs a command inside ns: a child forked from a thread in ns starts there.
func runInNS(ns netns.NsHandle, name string, args ...string) (string, error) {
	var out []byte
	err := inNS(ns, func() error {
		var err error
		out, err = exec.Command(name, args...).CombinedOutput()
		return err
	})
	return string(out), err
}
