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
)

// TableName is the agent's table, in the inet family so one table serves IPv4 and IPv6.
const TableName = "nodeagent"

// The table's fixed chains and named maps; every Service adds chains of its own ("service-…", "external-…",
// "local-…", "endpoint-…") and elements to the maps.
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
func Cleanup(conn *nftables.Conn) error {
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

// baseSets returns the table's named maps and sets, keyed by name.
func baseSets(table *nftables.Table) map[string]*nftables.Set {
	addrProtoPort, _ := nftables.ConcatSetType(nftables.TypeIPAddr, nftables.TypeInetProto, nftables.TypeInetService)
	protoPort, _ := nftables.ConcatSetType(nftables.TypeInetProto, nftables.TypeInetService)
	addrAddr, _ := nftables.ConcatSetType(nftables.TypeIPAddr, nftables.TypeIPAddr)
	verdictMap := func(name string, key nftables.SetDatatype) *nftables.Set {
		return &nftables.Set{Table: table, Name: name, IsMap: true, Concatenation: true, KeyType: key, DataType: nftables.TypeVerdict}
	}
	sets := []*nftables.Set{
		verdictMap(mapServiceIPs, addrProtoPort),
		verdictMap(mapServiceNodePorts, protoPort),
		verdictMap(mapNoEndpointServices, addrProtoPort),
		verdictMap(mapNoEndpointNodePorts, protoPort),
		{Table: table, Name: setNodePortIPs, KeyType: nftables.TypeIPAddr},
		{Table: table, Name: setHairpin, Concatenation: true, KeyType: addrAddr},
	}
	byName := map[string]*nftables.Set{}
	for _, s := range sets {
		byName[s.Name] = s
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
	nodePortIP := append(onlyIPv4(), loadIPv4Addr(false, reg1), inSet(sets[setNodePortIPs]))
	return []baseChain{
		// Regular chains first: the hooked ones jump to them.
		{name: chainMarkForMasquerade, rules: [][]expr.Any{setMasqueradeMark()}},
		{name: chainMasquerading, rules: [][]expr.Any{
			append(append(onlyIPv4(), loadIPv4Addr(true, reg1), loadIPv4Addr(false, reg32_01),
				inSet(sets[setHairpin])), jump(chainMarkForMasquerade)),
			unlessMasqueradeMarkReturn(),
			clearMasqueradeMark(),
			{&expr.Masq{FullyRandom: true}},
		}},
		{name: chainReject, rules: [][]expr.Any{{&expr.Reject{Type: 2 /* NFT_REJECT_ICMPX_UNREACH */, Code: 1 /* NFT_REJECT_ICMPX_PORT_UNREACH */}}}},
		{name: chainServices, rules: [][]expr.Any{
			append(append(onlyIPv4(), daddrProtoPort()...), vmap(sets[mapServiceIPs])),
			append(append(slices.Clone(nodePortIP), protoPort()...), vmap(sets[mapServiceNodePorts])),
		}},
		{name: chainEndpointsCheck, rules: [][]expr.Any{
			append(append(onlyIPv4(), daddrProtoPort()...), vmap(sets[mapNoEndpointServices])),
			append(append(slices.Clone(nodePortIP), protoPort()...), vmap(sets[mapNoEndpointNodePorts])),
		}},
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
