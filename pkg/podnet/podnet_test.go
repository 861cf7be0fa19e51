package podnet

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/nodeagent/nodeagent/internal/netnsutil"
	"github.com/nodeagent/nodeagent/internal/nft"
)

type nodeList []*corev1.Node

func (l *nodeList) List(labels.Selector) ([]*corev1.Node, error) { return *l, nil }

func node(name, podCIDR, internalIP string) *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:   corev1.NodeSpec{PodCIDR: podCIDR, PodCIDRs: []string{podCIDR}},
		Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: internalIP}}}}
}

// The test's machines, each a network namespace it makes:
//
//	pod 10.244.1.5 ── veth ── node A (10.244.1.1; 10.99.0.1) ── veth ── node B (10.99.0.2)
//	                                                                       10.244.2.7: a pod of node B
//	                                                                       192.0.2.9: outside the cluster
//
// Node A runs the Manager; node B answers TCP on both of its addresses and tells the caller its address.
type testNet struct{ pod, nodeA, nodeB netns.NsHandle }

func newTestNet(t *testing.T) *testNet {
	t.Helper()
	n := &testNet{}
	for _, ns := range []*netns.NsHandle{&n.pod, &n.nodeA, &n.nodeB} {
		h, err := netnsutil.New()
		if err != nil {
			t.Skipf("creating a network namespace needs root: %v", err)
		}
		t.Cleanup(func() { _ = h.Close() })
		*ns = h
		run(t, h, "lo up", func(nl *netlink.Handle) error {
			lo, err := nl.LinkByName("lo")
			if err != nil {
				return err
			}
			return nl.LinkSetUp(lo)
		})
	}
	link(t, n.nodeA, "to-pod", "10.244.1.1/24", n.pod, "eth0", "10.244.1.5/24", "10.244.1.1")
	link(t, n.nodeA, "to-b", "10.99.0.1/24", n.nodeB, "eth0", "10.99.0.2/24", "10.99.0.1")
	run(t, n.nodeB, "node B's addresses", func(nl *netlink.Handle) error {
		lo, err := nl.LinkByName("lo")
		if err != nil {
			return err
		}
		for _, a := range []string{"10.244.2.7/32", "192.0.2.9/32"} {
			addr, _ := netlink.ParseAddr(a)
			if err := nl.AddrAdd(lo, addr); err != nil {
				return err
			}
		}
		return nil
	})
	// Node A reaches outside the cluster through node B, as a default route would take it.
	run(t, n.nodeA, "a route out", func(nl *netlink.Handle) error {
		_, dst, _ := net.ParseCIDR("192.0.2.0/24")
		return nl.RouteAdd(&netlink.Route{Dst: dst, Gw: net.ParseIP("10.99.0.2")})
	})
	if err := netnsutil.Do(n.nodeA, func() error {
		return os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644)
	}); err != nil {
		t.Fatal(err)
	}
	return n
}

// link connects two namespaces with a veth pair; the second end gets a default route via gw.
func link(t *testing.T, a netns.NsHandle, aName, aAddr string, b netns.NsHandle, bName, bAddr, gw string) {
	t.Helper()
	run(t, a, "veth "+aName, func(nl *netlink.Handle) error {
		veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: aName}, PeerName: bName, PeerNamespace: netlink.NsFd(b)}
		if err := nl.LinkAdd(veth); err != nil {
			return err
		}
		return addrUp(nl, aName, aAddr)
	})
	run(t, b, "veth "+bName, func(nl *netlink.Handle) error {
		if err := addrUp(nl, bName, bAddr); err != nil {
			return err
		}
		return nl.RouteAdd(&netlink.Route{Gw: net.ParseIP(gw)})
	})
}

func addrUp(nl *netlink.Handle, name, cidr string) error {
	l, err := nl.LinkByName(name)
	if err != nil {
		return err
	}
	addr, err := netlink.ParseAddr(cidr)
	if err != nil {
		return err
	}
	if err := nl.AddrAdd(l, addr); err != nil {
		return err
	}
	return nl.LinkSetUp(l)
}

func run(t *testing.T, ns netns.NsHandle, what string, fn func(*netlink.Handle) error) {
	t.Helper()
	nl, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer nl.Close()
	if err := fn(nl); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// seenAs connects from the pod to addr:port on node B and returns the source address node B saw.
func (n *testNet) seenAs(t *testing.T, addr string) string {
	t.Helper()
	var ln net.Listener
	if err := netnsutil.Do(n.nodeB, func() (err error) { ln, err = net.Listen("tcp", addr+":0"); return err }); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	seen := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			seen <- err.Error()
			return
		}
		defer c.Close()
		host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
		seen <- host
	}()
	if err := netnsutil.Do(n.pod, func() error {
		c, err := net.DialTimeout("tcp", ln.Addr().String(), 2*time.Second)
		if err != nil {
			return err
		}
		return c.Close()
	}); err != nil {
		return "unreachable: " + err.Error()
	}
	select {
	case s := <-seen:
		return s
	case <-time.After(2 * time.Second):
		return "not accepted"
	}
}

// A route to each other node's pod range via its InternalIP, removed with the Node; traffic between pods
// keeps the pod's address, traffic leaving the cluster's pod ranges is masqueraded.
func TestRoutesAndMasqueradeFollowTheNodes(t *testing.T) {
	n := newTestNet(t)
	nl, err := netlink.NewHandleAt(n.nodeA)
	if err != nil {
		t.Fatal(err)
	}
	defer nl.Close()
	conn, err := nft.Open(int(n.nodeA))
	if err != nil {
		t.Fatal(err)
	}
	// Node "here" claims a range that a bridge of this host serves (its connected route): not taken over.
	nodes := nodeList{node("a", "10.244.1.0/24", "10.99.0.1"), node("b", "10.244.2.0/24", "10.99.0.2"),
		node("unreachable", "10.244.3.0/24", "10.77.0.1"), node("here", "10.99.0.0/24", "10.99.0.2")}
	m := New(Config{NodeName: "a", Resync: time.Minute}, &nodes, nl, conn)

	// A route the Manager does not own stays whatever it does.
	_, foreign, _ := net.ParseCIDR("10.244.9.0/24")
	if err := nl.RouteAdd(&netlink.Route{Dst: foreign, Gw: net.ParseIP("10.99.0.2")}); err != nil {
		t.Fatal(err)
	}
	if err := m.Sync(); err == nil {
		t.Errorf("Sync with a node whose InternalIP is on no connected network: no error, want one naming it")
	}
	if got := ownRoutes(t, nl); !slices.Equal(got, []string{"10.244.2.0/24 via 10.99.0.2"}) {
		t.Errorf("routes after the first sync: %v, want node b's pod range via its InternalIP", got)
	}
	if r, err := nl.RouteGet(net.ParseIP("10.99.0.2")); err != nil || len(r) != 1 || r[0].Gw != nil {
		t.Errorf("the connected route to 10.99.0.0/24 was replaced: %v (%v)", r, err)
	}
	if got := n.seenAs(t, "10.244.2.7"); got != "10.244.1.5" {
		t.Errorf("a pod of node B saw the pod as %s, want its own address 10.244.1.5", got)
	}
	if got := n.seenAs(t, "192.0.2.9"); got != "10.99.0.1" {
		t.Errorf("an address outside the cluster saw the pod as %s, want node A's 10.99.0.1 (masqueraded)", got)
	}

	nodes = nodes[:1]
	if err := m.Sync(); err != nil {
		t.Fatal(err)
	}
	if got := ownRoutes(t, nl); len(got) != 0 {
		t.Errorf("routes after node b was deleted: %v, want none", got)
	}
	// Node A has no default route in this test: without the route to node B, its pods are out of reach.
	if got := n.seenAs(t, "10.244.2.7"); !strings.HasPrefix(got, "unreachable") {
		t.Errorf("with node b gone, 10.244.2.7 saw the pod as %s, want it unreachable", got)
	}
	if _, err := nl.RouteGet(net.ParseIP("10.244.9.1")); err != nil {
		t.Errorf("the route the Manager does not own is gone: %v", err)
	}
}

func ownRoutes(t *testing.T, nl *netlink.Handle) []string {
	t.Helper()
	routes, err := nl.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Protocol: RouteProtocol}, netlink.RT_FILTER_PROTOCOL)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range routes {
		out = append(out, fmt.Sprintf("%s via %s", r.Dst, r.Gw))
	}
	return out
}

func TestMergeDropsRangesInsideOthers(t *testing.T) {
	got := merge([]netip.Prefix{netip.MustParsePrefix("10.244.2.0/24"), netip.MustParsePrefix("10.244.0.0/16"),
		netip.MustParsePrefix("fd00::/64"), netip.MustParsePrefix("10.245.0.0/24")})
	want := []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16"), netip.MustParsePrefix("10.245.0.0/24"), netip.MustParsePrefix("fd00::/64")}
	if !slices.Equal(got, want) {
		t.Errorf("merge = %v, want %v", got, want)
	}
	if last := lastAddr(netip.MustParsePrefix("10.244.0.0/22")); last != netip.MustParseAddr("10.244.3.255") {
		t.Errorf("lastAddr(10.244.0.0/22) = %v", last)
	}
}
