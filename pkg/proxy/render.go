package proxy

import (
	"encoding/binary"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
)

// rule is one nftables rule. When it picks among endpoints it has an endpoint map (numgen → address . port,
// or numgen → verdict), which is written with the rule; its lookup expression names no map until then (see
// table.addRules for why the map is a named one). A map of addresses is kept as its endpoints (spread) and
// its elements made when it is written: the table keeps every applied rule, and at 10,000 Services of 10
// endpoints the elements were 30 MB of the agent's heap, the endpoints packed (endpointList) 0.6.
type rule struct {
	exprs     []expr.Any
	spread    endpointList          // the endpoints of a map of addresses (spreadOver)
	verdicts  []nftables.SetElement // the elements of a map of verdicts
	mapValues nftables.SetDatatype  // of the endpoint map: the family's address . port, or verdict
}

// verdictValues reports whether the rule's endpoint map holds verdicts rather than addresses.
func (r rule) verdictValues() bool { return r.mapValues == nftables.TypeVerdict }

// hasEndpointMap reports whether the rule picks among endpoints through a map.
func (r rule) hasEndpointMap() bool { return r.spread != "" || r.verdicts != nil }

// endpointMapElements are the elements of the rule's endpoint map; nil when it has none.
func (r rule) endpointMapElements() []nftables.SetElement {
	if r.spread != "" {
		return spreadOver(r.spread)
	}
	return r.verdicts
}

// element is one element of one of the table's named sets or maps.
type element struct {
	set     string
	key     []byte // raw key bytes
	verdict *expr.Verdict
}

// affinitySet is a named dynamic set of client addresses that remember their endpoint for a while.
type affinitySet struct {
	name     string
	addrType nftables.SetDatatype
	timeout  int32 // seconds
}

// serviceRules is everything one Service owns in the table: its chains with their rules, its elements in the
// shared maps and its affinity sets.
type serviceRules struct {
	// chains are sorted by name (rulesOf searches them). A Service has a few chains (one per endpoint more
	// with ClientIP affinity); as a map they were 4 MB of the agent's heap at 10,000 Services.
	chains   []chainRules
	elements []element
	sets     []affinitySet
	// affinityEndpoints are the endpoint addresses of chains with ClientIP affinity, which dnat in rules of
	// their own; the other chains' endpoints are their rules' spread. hairpinAddrs yields both.
	affinityEndpoints []netip.Addr
}

// chainRules are one chain of a Service and its rules.
type chainRules struct {
	name  string
	rules []rule
}

// addChain adds a chain while the Service is rendered; every chain of a Service has a name of its own.
func (sr *serviceRules) addChain(name string, rules []rule) {
	sr.chains = append(sr.chains, chainRules{name: name, rules: rules})
}

// rulesOf returns the rules of the Service's chain of that name; ok is false when it has none.
func (sr *serviceRules) rulesOf(name string) (rules []rule, ok bool) {
	i, found := slices.BinarySearchFunc(sr.chains, name, func(c chainRules, name string) int { return strings.Compare(c.name, name) })
	if !found {
		return nil, false
	}
	return sr.chains[i].rules, true
}

// hairpinAddrs yields the address of each endpoint a chain of the Service sends to, once per chain: those
// need hairpin masquerading. It reads them from the rules rather than keeping a second list: at 10,000
// Services a list per Service was 3 MB of the agent's heap.
func (sr *serviceRules) hairpinAddrs(yield func(netip.Addr) bool) {
	for _, c := range sr.chains {
		for _, r := range c.rules {
			for _, ap := range r.spread.all {
				if !yield(ap.Addr()) {
					return
				}
			}
		}
	}
	for _, a := range sr.affinityEndpoints {
		if !yield(a) {
			return
		}
	}
}

// endpointChainPrefix starts the names of the per-endpoint chains of Services with ClientIP affinity.
const endpointChainPrefix = "endpoint-"

// renderer turns servicePorts into serviceRules with what the node contributes: the pod CIDRs (one per
// family) whose traffic needs no masquerading.
type renderer struct {
	localCIDRs []netip.Prefix
	// shared are, by nfproto, the expressions every Service's cluster chain has alike: its masquerade rule
	// and its random pick among endpoints. One copy serves every rule (nothing changes an expression once
	// made; an endpoint map's lookup is named on a copy): at 10,000 Services the rules' expressions were
	// 20 MB of the agent's heap. A renderer without them (the zero one) makes them per rule.
	shared map[byte]sharedExprs
}

type sharedExprs struct {
	masquerade []expr.Any // nil without a pod CIDR of the family
	pick       []expr.Any
}

func newRenderer(localCIDRs []netip.Prefix) renderer {
	r := renderer{localCIDRs: localCIDRs, shared: map[byte]sharedExprs{}}
	for _, f := range families {
		r.shared[f.nfproto] = sharedExprs{masquerade: r.masqueradeExprs(f), pick: pickExprs(f)}
	}
	return r
}

// masquerade is the rule's expressions that mark traffic to a ClusterIP from outside the node's pods (the
// host, another node) for masquerading, so that the reply comes back through this node; nil without a pod
// CIDR of the family.
func (r renderer) masquerade(f ipFamily) []expr.Any {
	if e, ok := r.shared[f.nfproto]; ok {
		return e.masquerade
	}
	return r.masqueradeExprs(f)
}

func (r renderer) masqueradeExprs(f ipFamily) []expr.Any {
	local := r.localCIDR(f)
	if !local.IsValid() {
		return nil
	}
	return append(addrNotIn(true, local), jump(chainMarkForMasquerade))
}

// pick is the expressions of "dnat to numgen random mod endpointDraws map @<endpoint map>", whose map gives
// each endpoint an equal interval of the draws; the map is named when the rule is written.
func (r renderer) pick(f ipFamily) []expr.Any {
	if e, ok := r.shared[f.nfproto]; ok {
		return e.pick
	}
	return pickExprs(f)
}

func pickExprs(f ipFamily) []expr.Any {
	return []expr.Any{
		&expr.Numgen{Register: reg1, Modulus: endpointDraws, Type: unix.NFT_NG_RANDOM},
		// An interval map compares keys as big-endian numbers; numgen writes host order (nft does the same).
		&expr.Byteorder{SourceRegister: reg1, DestRegister: reg1, Op: expr.ByteorderHton, Len: 4, Size: 4},
		&expr.Lookup{SourceRegister: reg1, IsDestRegSet: true, DestRegister: reg1},
		&expr.NAT{Type: expr.NATTypeDestNAT, Family: uint32(f.nfproto), RegAddrMin: reg1, RegProtoMin: f.afterAddr(0)},
	}
}

// localCIDR returns the pod CIDR of family f; the zero Prefix when there is none.
func (r renderer) localCIDR(f ipFamily) netip.Prefix {
	for _, p := range r.localCIDRs {
		if familyOf(p.Addr()) == f {
			return p
		}
	}
	return netip.Prefix{}
}

func protoNumber(p corev1.Protocol) uint8 {
	switch p {
	case corev1.ProtocolUDP:
		return unix.IPPROTO_UDP
	case corev1.ProtocolSCTP:
		return unix.IPPROTO_SCTP
	default:
		return unix.IPPROTO_TCP
	}
}

// render returns the rules for all ports of one Service.
func (r renderer) render(ports []servicePort) *serviceRules {
	out := &serviceRules{}
	for i := range ports {
		r.renderPort(out, &ports[i])
	}
	slices.SortFunc(out.chains, func(a, b chainRules) int { return strings.Compare(a.name, b.name) })
	return out
}

func (r renderer) renderPort(out *serviceRules, sp *servicePort) {
	proto := protoNumber(sp.protocol)
	f := sp.family
	clusterChain := "service-" + sp.chainID()
	externalChain := "external-" + sp.chainID()
	clusterEPs := sp.clusterEndpoints()
	hasExternal := sp.nodePort != 0 || len(sp.externalAddrs) > 0
	addElement := func(set string, key []byte, v *expr.Verdict) {
		out.elements = append(out.elements, element{set: set, key: key, verdict: v})
	}

	if len(clusterEPs) == 0 {
		// Nothing to send to: new connections are refused at once (filter chains), not left to time out.
		reject := &expr.Verdict{Kind: expr.VerdictGoto, Chain: chainReject}
		addElement(mapNoEndpointServices+f.suffix, addrProtoPortKey(sp.clusterIP, proto, sp.port), reject)
		for _, a := range sp.externalAddrs {
			addElement(mapNoEndpointServices+f.suffix, addrProtoPortKey(a, proto, sp.port), reject)
		}
		if sp.nodePort != 0 {
			addElement(mapNoEndpointNodePorts+f.suffix, protoPortKey(proto, sp.nodePort), reject)
		}
		return
	}

	var masq []rule
	if exprs := r.masquerade(f); exprs != nil {
		masq = []rule{{exprs: exprs}}
	}
	out.addChain(clusterChain, append(masq, r.dispatch(out, f, clusterChain, clusterEPs, sp.affinitySeconds)...))
	addElement(mapServiceIPs+f.suffix, addrProtoPortKey(sp.clusterIP, proto, sp.port), &expr.Verdict{Kind: expr.VerdictGoto, Chain: clusterChain})
	if !hasExternal {
		return
	}

	var ext []rule
	if !sp.externalLocal {
		ext = []rule{
			{exprs: []expr.Any{jump(chainMarkForMasquerade)}},
			{exprs: []expr.Any{goTo(clusterChain)}},
		}
	} else {
		// externalTrafficPolicy Local: the client's address is kept, so only this node's endpoints can
		// answer; traffic from the node itself may still use any endpoint.
		ext = []rule{
			{exprs: append(addrTypeLocal(true), jump(chainMarkForMasquerade))},
			{exprs: append(addrTypeLocal(true), goTo(clusterChain))},
		}
		if local := usable(sp.localEndpoints()); len(local) > 0 {
			localChain := "local-" + sp.chainID()
			out.addChain(localChain, r.dispatch(out, f, localChain, local, sp.affinitySeconds))
			ext = append(ext, rule{exprs: []expr.Any{goTo(localChain)}})
		} else {
			// As kube-proxy: drop, not reject, so a load balancer's health check sees this node as down.
			ext = append(ext, rule{exprs: []expr.Any{&expr.Verdict{Kind: expr.VerdictDrop}}})
		}
	}
	out.addChain(externalChain, ext)
	toExternal := &expr.Verdict{Kind: expr.VerdictGoto, Chain: externalChain}
	toFirewall := toExternal
	if len(sp.firewalledAddrs) > 0 {
		// loadBalancerSourceRanges: connections to a load-balancer IP from other sources are dropped, as
		// kube-proxy does; the NodePort and externalIPs stay open.
		firewallChain := "firewall-" + sp.chainID()
		var fw []rule
		for _, p := range sp.sourceRanges {
			fw = append(fw, rule{exprs: append(addrIn(true, p), goTo(externalChain))})
		}
		out.addChain(firewallChain, append(fw, rule{exprs: []expr.Any{&expr.Verdict{Kind: expr.VerdictDrop}}}))
		toFirewall = &expr.Verdict{Kind: expr.VerdictGoto, Chain: firewallChain}
	}
	for _, a := range sp.externalAddrs {
		target := toExternal
		if slices.Contains(sp.firewalledAddrs, a) {
			target = toFirewall
		}
		addElement(mapServiceIPs+f.suffix, addrProtoPortKey(a, proto, sp.port), target)
	}
	if sp.nodePort != 0 {
		addElement(mapServiceNodePorts+f.suffix, protoPortKey(proto, sp.nodePort), toExternal)
	}
}

// dispatch returns the rules that send a new connection to one of eps at random. Without affinity that is
// one rule, "dnat to numgen random mod endpointDraws map { 0-240239 : a . p, ... }", whose map gives each
// endpoint an equal interval of the draws. With ClientIP affinity each endpoint gets a chain that records
// the client in a timed set, and clients found in a set go back to its endpoint.
func (r renderer) dispatch(out *serviceRules, f ipFamily, chain string, eps []endpoint, affinitySeconds int32) []rule {
	if affinitySeconds == 0 {
		// Never "": a map with no endpoint is still a map.
		spread := packEndpoints(int(f.addrLen), eps)
		return []rule{{spread: spread, mapValues: f.endpointValues(), exprs: r.pick(f)}}
	}
	var rules []rule
	elems := make([]nftables.SetElement, len(eps))
	for i, e := range eps {
		epChain := endpointChainPrefix + chain + "__" + e.addr.String() + "/" + strconv.Itoa(int(e.port))
		set := affinitySet{name: "affinity-" + chain + "__" + e.String(), addrType: f.addrType, timeout: affinitySeconds}
		out.sets = append(out.sets, set)
		out.affinityEndpoints = append(out.affinityEndpoints, e.addr)
		out.addChain(epChain, []rule{{exprs: append(append(f.only(),
			f.loadAddr(true, reg1),
			&expr.Dynset{SrcRegKey: reg1, SetName: set.name, Operation: unix.NFT_DYNSET_OP_UPDATE,
				Timeout: secondsDuration(affinitySeconds)}),
			dnatTo(e.addr, e.port)...)}})
		rules = append(rules, rule{exprs: append(f.only(),
			f.loadAddr(true, reg1),
			&expr.Lookup{SourceRegister: reg1, SetName: set.name},
			goTo(epChain))})
		elems[i] = nftables.SetElement{Key: binaryutil.NativeEndian.PutUint32(uint32(i)),
			VerdictData: &expr.Verdict{Kind: expr.VerdictGoto, Chain: epChain}}
	}
	return append(rules, rule{verdicts: elems, mapValues: nftables.TypeVerdict, exprs: []expr.Any{
		&expr.Numgen{Register: reg1, Modulus: uint32(len(eps)), Type: unix.NFT_NG_RANDOM},
		&expr.Lookup{SourceRegister: reg1, IsDestRegSet: true, DestRegister: 0},
	}})
}

// endpointDraws is how many numbers numgen draws from for a Service without affinity. The rule is the same
// whatever the number of endpoints, so any change of endpoints (but to or from none) changes elements of
// the endpoint map only, never the rule (see table.endpointMapUpdates). 720720 is divisible by every
// number up to 16, so small Services split it exactly; with more endpoints the intervals differ by at most
// one draw in 720720/N.
const endpointDraws = 720720

// spreadOver returns the elements of an endpoint map that gives each endpoint an interval of the draws: its
// first draw with the endpoint's address . port, and the first draw past it marked as the interval's end,
// as nft writes intervals. An endpoint beyond the 720720th gets no interval and no traffic.
// The elements' keys and values share one allocation: at 10,000 Services they are a million small slices.
func spreadOver(eps endpointList) []nftables.SetElement {
	elems := make([]nftables.SetElement, 0, 2*eps.len())
	// Per endpoint: the interval's two 4-byte keys, and the value: an address of up to 16 bytes, a port key.
	buf := make([]byte, 0, eps.len()*(4+16+4+4))
	n := uint64(eps.len())
	for i, e := range eps.all {
		start, end := uint64(i)*endpointDraws/n, uint64(i+1)*endpointDraws/n
		if start == end {
			continue
		}
		key := len(buf)
		buf = binary.BigEndian.AppendUint32(buf, uint32(start))
		val := len(buf)
		buf = appendAddr(buf, e.Addr())
		buf = append(buf, portKey(e.Port())...)
		endKey := len(buf)
		buf = binary.BigEndian.AppendUint32(buf, uint32(end))
		elems = append(elems,
			nftables.SetElement{Key: buf[key:val:val], Val: buf[val:endKey:endKey]},
			nftables.SetElement{Key: buf[endKey:len(buf):len(buf)], IntervalEnd: true})
	}
	return elems
}

// appendAddr appends an address's bytes, as AsSlice gives them, without allocating.
func appendAddr(b []byte, a netip.Addr) []byte {
	if a.Is4() {
		a4 := a.As4()
		return append(b, a4[:]...)
	}
	a16 := a.As16()
	return append(b, a16[:]...)
}
