// Package podnet connects this node's pods with the other nodes' pods, as kindnet does: for every other Node, a
// route to each of its spec.podCIDRs via its InternalIP, added and removed as Nodes come and go; and the
// masquerade of pod traffic leaving the cluster's pod ranges, in its own nftables table (inet
// nodeagent-podnet), so traffic between pods keeps the pods' addresses. It owns the routes it marks with its
// protocol number and that table; it must not touch other routes, other tables, or the pod bridge (pkg/node
// writes the CNI config that makes it).
package podnet

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/klog/v2"
)

// RouteProtocol marks the routes this package owns (rtnetlink's protocol field, as routing daemons mark
// theirs): `ip route show proto 0x6e` lists them, and nothing else is ever removed.
const RouteProtocol = netlink.RouteProtocol(0x6e)

// Table is the nftables table of the masquerade rules.
const Table = "nodeagent-podnet"

// Nodes lists the cluster's Nodes (a client-go NodeLister is one).
type Nodes interface {
	List(selector labels.Selector) ([]*corev1.Node, error)
}

// Config is this node's name and what else counts as the cluster's pod network.
type Config struct {
	NodeName string
	// PodCIDR is this node's pod range while its Node has no spec.podCIDRs (the agent's podCIDR setting).
	PodCIDR string
	// ClusterCIDRs are pod ranges beyond the Nodes' (kube-proxy's clusterCIDR), kept from masquerade too.
	ClusterCIDRs []netip.Prefix
	// Resync is how often the routes and the table are checked without a Node change.
	Resync time.Duration
}

// Manager keeps the routes and the masquerade table in step with the Nodes.
type Manager struct {
	cfg    Config
	nodes  Nodes
	routes *netlink.Handle
	nft    *nftables.Conn
	// changed wakes Run when a Node changes; one pending wake is enough.
	changed chan struct{}
	// lastTable is the table last written, so an unchanged one is not written again; lastRoutes are the
	// routes last written without an error, nil when the next sync must write them.
	lastTable  *desiredTable
	lastRoutes []route
}

// New makes a Manager that writes routes through routes and the table through conn, both opened in the
// network namespace the node's pods reach the others from.
func New(cfg Config, nodes Nodes, routes *netlink.Handle, conn *nftables.Conn) *Manager {
	return &Manager{cfg: cfg, nodes: nodes, routes: routes, nft: conn, changed: make(chan struct{}, 1)}
}

// NodeChanged asks for a sync; it never blocks.
func (m *Manager) NodeChanged() {
	select {
	case m.changed <- struct{}{}:
	default:
	}
}

// Run syncs at every Node change and every Resync until ctx ends. The routes and the table stay when it
// ends, so pods keep reaching each other while the agent restarts.
func (m *Manager) Run(ctx context.Context) {
	tick := time.NewTicker(m.cfg.Resync)
	defer tick.Stop()
	force := true
	for {
		if err := m.sync(force); err != nil {
			klog.ErrorS(err, "Syncing pod routes")
		}
		select {
		case <-ctx.Done():
			return
		case <-m.changed:
			force = false
		case <-tick.C:
			force = true
		}
	}
}

// route is one route to another node's pods.
type route struct {
	dst netip.Prefix
	via netip.Addr
}

// Sync makes the routes and the table what the Nodes ask for. A route that cannot be added (its gateway not
// on a connected network) is reported and the others still are.
func (m *Manager) Sync() error { return m.sync(true) }

// sync is Sync; unless force, routes are written only when what the Nodes ask for changed since the last
// sync that wrote them all: most Node updates are status posts that change neither podCIDRs nor addresses.
func (m *Manager) sync(force bool) error {
	nodes, err := m.nodes.List(labels.Everything())
	if err != nil {
		return fmt.Errorf("listing nodes: %w", err)
	}
	var want []route
	var own, all []netip.Prefix
	for _, n := range nodes {
		cidrs := podCIDRs(n)
		if n.Name == m.cfg.NodeName {
			if len(cidrs) == 0 && m.cfg.PodCIDR != "" {
				if p, err := netip.ParsePrefix(m.cfg.PodCIDR); err == nil {
					cidrs = []netip.Prefix{p.Masked()}
				}
			}
			own = cidrs
			all = append(all, cidrs...)
			continue
		}
		all = append(all, cidrs...)
		for _, c := range cidrs {
			if ip, ok := internalIP(n, c.Addr().Is4()); ok {
				want = append(want, route{dst: c, via: ip})
			}
		}
	}
	// The lister's order is a map's: sorted, an unchanged cluster gives an equal list.
	slices.SortFunc(want, func(a, b route) int { return strings.Compare(a.dst.String(), b.dst.String()) })
	var errs []error
	if force || m.lastRoutes == nil || !slices.Equal(want, m.lastRoutes) {
		err := m.syncRoutes(want)
		if err == nil {
			m.lastRoutes = append([]route{}, want...)
		} else {
			m.lastRoutes = nil
		}
		errs = append(errs, err)
	}
	errs = append(errs, m.syncTable(&desiredTable{own: own, cluster: merge(append(all, m.cfg.ClusterCIDRs...))}))
	return errors.Join(errs...)
}

func podCIDRs(n *corev1.Node) []netip.Prefix {
	cidrs := n.Spec.PodCIDRs
	if len(cidrs) == 0 && n.Spec.PodCIDR != "" {
		cidrs = []string{n.Spec.PodCIDR}
	}
	var out []netip.Prefix
	for _, c := range cidrs {
		if p, err := netip.ParsePrefix(c); err == nil {
			out = append(out, p.Masked())
		}
	}
	return out
}

// internalIP is the Node's first InternalIP of the family.
func internalIP(n *corev1.Node, v4 bool) (netip.Addr, bool) {
	for _, a := range n.Status.Addresses {
		if a.Type != corev1.NodeInternalIP {
			continue
		}
		if ip, err := netip.ParseAddr(a.Address); err == nil && ip.Is4() == v4 {
			return ip, true
		}
	}
	return netip.Addr{}, false
}

// syncRoutes replaces the wanted routes and removes the other routes of RouteProtocol.
func (m *Manager) syncRoutes(want []route) error {
	var errs []error
	wanted := map[string]bool{}
	for _, r := range want {
		nr := &netlink.Route{Dst: ipNet(r.dst), Gw: net.IP(r.via.AsSlice()), Protocol: RouteProtocol}
		wanted[nr.Dst.String()] = true
		// A replace would take over a route someone else made (the connected route of a bridge that serves
		// that range on this very host, a static route): those are left alone.
		other, err := m.foreignRoute(nr)
		if err != nil {
			errs = append(errs, fmt.Errorf("route to %s via %s: %w", r.dst, r.via, err))
			continue
		}
		if other != nil {
			errs = append(errs, fmt.Errorf("route to %s via %s not added: this host routes that range already (%s), not the agent", r.dst, r.via, other))
			continue
		}
		if err := m.routes.RouteReplace(nr); err != nil {
			errs = append(errs, fmt.Errorf("route to %s via %s: %w", r.dst, r.via, err))
		}
	}
	for _, family := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		have, err := m.routes.RouteListFiltered(family, &netlink.Route{Protocol: RouteProtocol}, netlink.RT_FILTER_PROTOCOL)
		if err != nil {
			errs = append(errs, fmt.Errorf("listing pod routes: %w", err))
			continue
		}
		for _, r := range have {
			if r.Dst != nil && !wanted[r.Dst.String()] {
				klog.InfoS("Removing the route to a node's pods that is gone", "dst", r.Dst, "via", r.Gw)
				if err := m.routes.RouteDel(&r); err != nil {
					errs = append(errs, fmt.Errorf("removing route to %s: %w", r.Dst, err))
				}
			}
		}
	}
	return errors.Join(errs...)
}

// foreignRoute is a route to r's destination in the main table that RouteProtocol does not mark, if any.
func (m *Manager) foreignRoute(r *netlink.Route) (*netlink.Route, error) {
	family := netlink.FAMILY_V4
	if r.Dst.IP.To4() == nil {
		family = netlink.FAMILY_V6
	}
	have, err := m.routes.RouteListFiltered(family, &netlink.Route{Dst: r.Dst}, netlink.RT_FILTER_DST)
	if err != nil {
		return nil, err
	}
	for _, h := range have {
		if h.Protocol != RouteProtocol {
			return &h, nil
		}
	}
	return nil, nil
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// merge sorts prefixes and drops those inside another, as an interval set must hold no overlaps.
func merge(prefixes []netip.Prefix) []netip.Prefix {
	slices.SortFunc(prefixes, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	var out []netip.Prefix
	for _, p := range prefixes {
		if len(out) > 0 && out[len(out)-1].Overlaps(p) {
			continue // sorted by address then length: the earlier one contains p
		}
		out = append(out, p)
	}
	return out
}

// desiredTable is what the masquerade table holds: traffic from own to outside cluster is masqueraded.
type desiredTable struct {
	own, cluster []netip.Prefix
}

func (d *desiredTable) equal(o *desiredTable) bool {
	return o != nil && slices.Equal(d.own, o.own) && slices.Equal(d.cluster, o.cluster)
}

// syncTable writes the whole table in one transaction when it changed: a set of the cluster's pod ranges
// per family, and in a postrouting nat chain, for each of this node's ranges, "saddr in it and daddr not in
// the set: masquerade".
func (m *Manager) syncTable(d *desiredTable) error {
	if d.equal(m.lastTable) {
		return nil
	}
	t := &nftables.Table{Family: nftables.TableFamilyINet, Name: Table}
	// Add then delete: the delete of a table that is not there would fail the transaction.
	m.nft.AddTable(t)
	m.nft.DelTable(t)
	m.nft.AddTable(t)
	chain := m.nft.AddChain(&nftables.Chain{Name: "postrouting", Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource})
	for _, fam := range []struct {
		name    string
		v4      bool
		keyType nftables.SetDatatype
	}{{"cluster-v4", true, nftables.TypeIPAddr}, {"cluster-v6", false, nftables.TypeIP6Addr}} {
		set := &nftables.Set{Table: t, Name: fam.name, KeyType: fam.keyType, Interval: true}
		if err := m.nft.AddSet(set, intervals(d.cluster, fam.v4)); err != nil {
			return fmt.Errorf("pod range set %s: %w", fam.name, err)
		}
		for _, p := range d.own {
			if p.Addr().Is4() == fam.v4 {
				m.nft.AddRule(&nftables.Rule{Table: t, Chain: chain, Exprs: masqueradeFrom(p, set)})
			}
		}
	}
	if err := m.nft.Flush(); err != nil {
		return fmt.Errorf("writing table %s: %w", Table, err)
	}
	klog.InfoS("Wrote the pod masquerade table", "table", Table, "ownRanges", d.own, "clusterRanges", d.cluster)
	m.lastTable = d
	return nil
}

// intervals are the set elements of the prefixes of one family: each prefix's first address, and the
// address after its last as the interval's end.
func intervals(prefixes []netip.Prefix, v4 bool) []nftables.SetElement {
	var elems []nftables.SetElement
	for _, p := range prefixes {
		if p.Addr().Is4() != v4 || p.Bits() == 0 {
			continue
		}
		elems = append(elems, nftables.SetElement{Key: p.Addr().AsSlice()})
		end := lastAddr(p).Next()
		if end.IsValid() {
			elems = append(elems, nftables.SetElement{Key: end.AsSlice(), IntervalEnd: true})
		}
	}
	return elems
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := range b {
		hostBits := max(0, min(8, (i+1)*8-p.Bits()))
		b[i] |= byte(1<<hostBits - 1)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// masqueradeFrom is "<family> saddr p.network/p.bits <family> daddr != @set masquerade".
func masqueradeFrom(p netip.Prefix, set *nftables.Set) []expr.Any {
	proto, saddr, daddr, size := byte(unix.NFPROTO_IPV4), uint32(12), uint32(16), uint32(4)
	if !p.Addr().Is4() {
		proto, saddr, daddr, size = unix.NFPROTO_IPV6, 8, 24, 16
	}
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: saddr, Len: size},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: size, Mask: ipNet(p).Mask, Xor: make([]byte, size)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: p.Addr().AsSlice()},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: daddr, Len: size},
		&expr.Lookup{SourceRegister: 1, SetName: set.Name, SetID: set.ID, Invert: true},
		&expr.Masq{},
	}
}

// Cleanup removes the routes of RouteProtocol and the table: the agent's --cleanup-proxy, for a node that
// stops being one.
func Cleanup(routes *netlink.Handle, conn *nftables.Conn) error {
	routesErr := (&Manager{routes: routes}).syncRoutes(nil)
	t := &nftables.Table{Family: nftables.TableFamilyINet, Name: Table}
	conn.AddTable(t)
	conn.DelTable(t)
	return errors.Join(routesErr, conn.Flush())
}
