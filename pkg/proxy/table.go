// Package proxy owns the node's Service VIPs in nftables, as kube-proxy's nftables mode does: one table,
// "inet nodeagent", that only this package writes, changed in one netlink transaction per sync through
// github.com/google/nftables. It never touches another table; Cleanup removes its own. It reads Services and
// EndpointSlices from the shared informer cache and writes nothing to the API.
package proxy

import (
	"fmt"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Conn is the part of an nftables connection the proxy uses: a transaction is queued by the Add, Del, Flush…
// and Set… calls and applied whole by Flush; the List and Get calls read what is committed. *nftables.Conn
// (from internal/nft.Open) is one; internal/nft.Fake is one in memory, for tests without root.
type Conn interface {
	AddTable(t *nftables.Table) *nftables.Table
	DelTable(t *nftables.Table)
	AddChain(c *nftables.Chain) *nftables.Chain
	FlushChain(c *nftables.Chain)
	DelChain(c *nftables.Chain)
	AddRule(r *nftables.Rule) *nftables.Rule
	AddSet(s *nftables.Set, vals []nftables.SetElement) error
	FlushSet(s *nftables.Set)
	DelSet(s *nftables.Set)
	SetAddElements(s *nftables.Set, vals []nftables.SetElement) error
	SetDeleteElements(s *nftables.Set, vals []nftables.SetElement) error
	Flush() error

	ListTablesOfFamily(family nftables.TableFamily) ([]*nftables.Table, error)
	ListChainsOfTableFamily(family nftables.TableFamily) ([]*nftables.Chain, error)
	GetSets(t *nftables.Table) ([]*nftables.Set, error)
	GetSetElements(s *nftables.Set) ([]nftables.SetElement, error)
}

// TableName is the agent's table, in the inet family so one table serves IPv4 and IPv6.
const TableName = "nodeagent"

// The table's fixed chains and named maps; every Service adds chains of its own ("service-…", "external-…",
// "local-…", "endpoint-…") and elements to the maps. Each map and set exists once per family: these are the
// IPv4 names, the IPv6 ones end in familyIPv6.suffix.
const (
	chainServices          = "services"
	chainEndpointsCheck    = "service-endpoints-check"
	chainReject            = "reject-chain"
	chainMarkForMasquerade = "mark-for-masquerade"
	chainMasquerading      = "masquerading"

	// mapServiceIPs: ClusterIP/external IP . protocol . port → goto the Service's chain.
	mapServiceIPs = "service-ips"
	// mapServiceNodePorts: protocol . NodePort → goto the Service's external chain.
	mapServiceNodePorts = "service-nodeports"
	// mapNoEndpointServices and mapNoEndpointNodePorts: the same keys → reject, for Services with no endpoint.
	mapNoEndpointServices  = "no-endpoint-services"
	mapNoEndpointNodePorts = "no-endpoint-nodeports"
	// setNodePortIPs: the node addresses that accept NodePorts (nodePortAddresses).
	setNodePortIPs = "nodeport-ips"
	// setHairpin: endpoint . endpoint pairs; a pod reaching itself through a VIP is masqueraded.
	setHairpin = "hairpin-endpoints"
)

// Cleanup removes the agent's table and everything in it (kube-proxy's --cleanup); a table that is not
// there is not an error. Other tables are left alone.
func Cleanup(conn Conn) error {
	tables, err := conn.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		return fmt.Errorf("listing inet tables: %w", err)
	}
	if !slices.ContainsFunc(tables, func(t *nftables.Table) bool { return t.Name == TableName }) {
		return nil
	}
	conn.DelTable(&nftables.Table{Name: TableName, Family: nftables.TableFamilyINet})
	if err := conn.Flush(); err != nil {
		return fmt.Errorf("deleting table inet %s: %w", TableName, err)
	}
	return nil
}

// baseSets returns the table's named maps and sets, keyed by name: each of the names above once per family,
// with the family's suffix.
func baseSets(table *nftables.Table) map[string]*nftables.Set {
	byName := map[string]*nftables.Set{}
	for _, f := range families {
		addrProtoPort, _ := nftables.ConcatSetType(f.addrType, nftables.TypeInetProto, nftables.TypeInetService)
		protoPort, _ := nftables.ConcatSetType(nftables.TypeInetProto, nftables.TypeInetService)
		addrAddr, _ := nftables.ConcatSetType(f.addrType, f.addrType)
		verdictMap := func(name string, key nftables.SetDatatype) *nftables.Set {
			return &nftables.Set{Table: table, Name: name + f.suffix, IsMap: true, Concatenation: true, KeyType: key, DataType: nftables.TypeVerdict}
		}
		for _, s := range []*nftables.Set{
			verdictMap(mapServiceIPs, addrProtoPort),
			verdictMap(mapServiceNodePorts, protoPort),
			verdictMap(mapNoEndpointServices, addrProtoPort),
			verdictMap(mapNoEndpointNodePorts, protoPort),
			{Table: table, Name: setNodePortIPs + f.suffix, KeyType: f.addrType},
			{Table: table, Name: setHairpin + f.suffix, Concatenation: true, KeyType: addrAddr},
		} {
			byName[s.Name] = s
		}
	}
	return byName
}

// baseChain is one of the table's fixed chains: the hooked ones and those every Service shares.
type baseChain struct {
	name     string
	typ      nftables.ChainType
	hook     *nftables.ChainHook
	priority *nftables.ChainPriority
	rules    [][]expr.Any
}

// baseChains returns the fixed chains and their rules, kube-proxy's layout: DNAT in prerouting and output
// through the service maps, refusal of connections to Services without endpoints in the filter hooks, and
// masquerading by mark in postrouting.
func baseChains(sets map[string]*nftables.Set) []baseChain {
	filterPriority := nftables.ChainPriorityRef(-110) // before DNAT: the packet still has the VIP
	endpointsCheck := [][]expr.Any{append(ctStateNew(), jump(chainEndpointsCheck))}
	var hairpin, services, noEndpoints [][]expr.Any
	for _, f := range families {
		nodePortIP := append(f.only(), f.loadAddr(false, reg1), inSet(sets[setNodePortIPs+f.suffix]))
		hairpin = append(hairpin, append(append(f.only(), f.loadAddr(true, reg1), f.loadAddr(false, f.afterAddr(0)),
			inSet(sets[setHairpin+f.suffix])), jump(chainMarkForMasquerade)))
		services = append(services,
			append(append(f.only(), f.daddrProtoPort()...), vmap(sets[mapServiceIPs+f.suffix])),
			append(append(slices.Clone(nodePortIP), protoPort()...), vmap(sets[mapServiceNodePorts+f.suffix])))
		noEndpoints = append(noEndpoints,
			append(append(f.only(), f.daddrProtoPort()...), vmap(sets[mapNoEndpointServices+f.suffix])),
			append(append(slices.Clone(nodePortIP), protoPort()...), vmap(sets[mapNoEndpointNodePorts+f.suffix])))
	}
	return []baseChain{
		// Regular chains first: the hooked ones jump to them.
		{name: chainMarkForMasquerade, rules: [][]expr.Any{setMasqueradeMark()}},
		{name: chainMasquerading, rules: append(hairpin,
			unlessMasqueradeMarkReturn(),
			clearMasqueradeMark(),
			[]expr.Any{&expr.Masq{FullyRandom: true}},
		)},
		// A TCP connection is refused with a reset, the rest with ICMP port unreachable. kube-proxy answers TCP
		// with ICMP too, but over IPv6 the client's connect() then failed only when the SYN was sent again,
		// a second later (measured in this package's tests; likely because the error arrives while connect()
		// still holds the socket, when TCP only notes it, whereas a reset waits in the socket's backlog).
		// Resets are not rate-limited as ICMP errors are either.
		{name: chainReject, rules: [][]expr.Any{
			{
				&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{unix.IPPROTO_TCP}},
				&expr.Reject{Type: unix.NFT_REJECT_TCP_RST},
			},
			{&expr.Reject{Type: unix.NFT_REJECT_ICMPX_UNREACH, Code: unix.NFT_REJECT_ICMPX_PORT_UNREACH}},
		}},
		{name: chainServices, rules: services},
		{name: chainEndpointsCheck, rules: noEndpoints},
		{name: "filter-input", typ: nftables.ChainTypeFilter, hook: nftables.ChainHookInput, priority: filterPriority, rules: endpointsCheck},
		{name: "filter-forward", typ: nftables.ChainTypeFilter, hook: nftables.ChainHookForward, priority: filterPriority, rules: endpointsCheck},
		{name: "filter-output", typ: nftables.ChainTypeFilter, hook: nftables.ChainHookOutput, priority: filterPriority, rules: endpointsCheck},
		{name: "nat-prerouting", typ: nftables.ChainTypeNAT, hook: nftables.ChainHookPrerouting, priority: nftables.ChainPriorityNATDest,
			rules: [][]expr.Any{{jump(chainServices)}}},
		{name: "nat-output", typ: nftables.ChainTypeNAT, hook: nftables.ChainHookOutput, priority: nftables.ChainPriorityNATDest,
			rules: [][]expr.Any{{jump(chainServices)}}},
		{name: "nat-postrouting", typ: nftables.ChainTypeNAT, hook: nftables.ChainHookPostrouting, priority: nftables.ChainPriorityNATSource,
			rules: [][]expr.Any{{jump(chainMasquerading)}}},
	}
}
