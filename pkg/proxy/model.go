package proxy

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// servicePort is one port of one Service as this node must serve it: the addresses it answers on, the
// endpoints behind it and the policies that choose among them. It is built from the API objects alone, so
// the rules rendered from it can be compared with the ones already in the kernel.
type servicePort struct {
	// name is kube-proxy's ServicePortName, "namespace/name/protocol/port-name".
	name     string
	protocol corev1.Protocol
	// family is the IP family of every address below: a dual-stack Service gives one servicePort per family.
	family    ipFamily
	clusterIP netip.Addr
	port      uint16
	nodePort  uint16
	// externalAddrs are spec.externalIPs and status.loadBalancer.ingress IPs: they behave like the NodePort.
	externalAddrs []netip.Addr
	// firewalledAddrs are the load-balancer IPs among them that only sourceRanges
	// (spec.loadBalancerSourceRanges) may reach; empty when the Service sets no ranges.
	firewalledAddrs []netip.Addr
	sourceRanges    []netip.Prefix
	affinitySeconds int32 // sessionAffinity ClientIP timeout; 0 when there is no affinity
	externalLocal   bool  // externalTrafficPolicy: Local
	internalLocal   bool  // internalTrafficPolicy: Local
	endpoints       []endpoint
}

// endpoint is one address and port behind a servicePort, with the conditions that decide whether it
// receives new connections.
type endpoint struct {
	addr                        netip.Addr
	port                        uint16
	ready, serving, terminating bool
	local                       bool // on this node
}

func (e endpoint) String() string { return netip.AddrPortFrom(e.addr, e.port).String() }

// chainID names the port's chains: the ServicePortName, and for IPv6 "/ipv6" after it (a port name cannot
// hold a "/", so no IPv4 name can look like an IPv6 one).
func (sp *servicePort) chainID() string {
	if sp.family == familyIPv6 {
		return sp.name + "/ipv6"
	}
	return sp.name
}

// clusterEndpoints are the endpoints for traffic to the ClusterIP, and to external addresses unless
// externalTrafficPolicy is Local (then localEndpoints).
func (sp *servicePort) clusterEndpoints() []endpoint {
	if sp.internalLocal {
		return usable(sp.localEndpoints())
	}
	return usable(sp.endpoints)
}

func (sp *servicePort) localEndpoints() []endpoint {
	var local []endpoint
	for _, e := range sp.endpoints {
		if e.local {
			local = append(local, e)
		}
	}
	return local
}

// usable returns the ready endpoints or, when there is none, the ones still serving while they terminate,
// as kube-proxy does (KEP-1669): a rolling update never leaves a Service with nothing to send to.
func usable(eps []endpoint) []endpoint {
	var ready, terminating []endpoint
	for _, e := range eps {
		switch {
		case e.ready:
			ready = append(ready, e)
		case e.serving && e.terminating:
			terminating = append(terminating, e)
		}
	}
	if len(ready) > 0 {
		return ready
	}
	return terminating
}

// servicePorts returns what the Service asks of this node, port by port and family by family (a dual-stack
// Service has a ClusterIP of each), with the endpoints that its EndpointSlices of that family give for
// that port (matched by port name, so named targetPorts resolve to each endpoint's own number). A Service
// with no ClusterIP (headless, ExternalName) gives nothing.
func servicePorts(svc *corev1.Service, endpointSlices []*discoveryv1.EndpointSlice, nodeName string) []servicePort {
	if svc.Spec.Type == corev1.ServiceTypeExternalName {
		return nil
	}
	var ports []servicePort
	for _, f := range families {
		ports = append(ports, familyPorts(f, svc, endpointSlices, nodeName)...)
	}
	return ports
}

// familyPorts returns the Service's ports for one family; none when it has no ClusterIP of that family.
func familyPorts(f ipFamily, svc *corev1.Service, endpointSlices []*discoveryv1.EndpointSlice, nodeName string) []servicePort {
	clusterIPs := svc.Spec.ClusterIPs
	if len(clusterIPs) == 0 {
		clusterIPs = []string{svc.Spec.ClusterIP}
	}
	var clusterIP netip.Addr
	for _, ip := range clusterIPs {
		if a := parseAddr(ip, f); a.IsValid() {
			clusterIP = a
			break
		}
	}
	if !clusterIP.IsValid() {
		return nil
	}
	var external []netip.Addr
	for _, ip := range svc.Spec.ExternalIPs {
		if a := parseAddr(ip, f); a.IsValid() {
			external = append(external, a)
		}
	}
	var firewalled []netip.Addr
	var ranges []netip.Prefix
	if svc.Spec.Type == corev1.ServiceTypeLoadBalancer {
		for _, r := range svc.Spec.LoadBalancerSourceRanges {
			if p, err := netip.ParsePrefix(strings.TrimSpace(r)); err == nil && familyOf(p.Addr()) == f {
				ranges = append(ranges, p.Masked())
			}
		}
		for _, ing := range svc.Status.LoadBalancer.Ingress {
			a := parseAddr(ing.IP, f)
			if !a.IsValid() {
				continue
			}
			if !slices.Contains(external, a) {
				external = append(external, a)
			}
			if len(ranges) > 0 {
				firewalled = append(firewalled, a)
			}
		}
	}
	var affinity int32
	if svc.Spec.SessionAffinity == corev1.ServiceAffinityClientIP {
		affinity = corev1.DefaultClientIPServiceAffinitySeconds
		if c := svc.Spec.SessionAffinityConfig; c != nil && c.ClientIP != nil && c.ClientIP.TimeoutSeconds != nil {
			affinity = *c.ClientIP.TimeoutSeconds
		}
	}
	var ports []servicePort
	for _, p := range svc.Spec.Ports {
		sp := servicePort{
			name:            servicePortName(svc, p),
			protocol:        p.Protocol,
			family:          f,
			clusterIP:       clusterIP,
			port:            uint16(p.Port),
			externalAddrs:   external,
			firewalledAddrs: firewalled,
			sourceRanges:    ranges,
			affinitySeconds: affinity,
			externalLocal: svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal &&
				(svc.Spec.Type == corev1.ServiceTypeNodePort || svc.Spec.Type == corev1.ServiceTypeLoadBalancer),
			internalLocal: svc.Spec.InternalTrafficPolicy != nil && *svc.Spec.InternalTrafficPolicy == corev1.ServiceInternalTrafficPolicyLocal,
			endpoints:     endpointsFor(f, p, endpointSlices, nodeName),
		}
		if svc.Spec.Type == corev1.ServiceTypeNodePort || svc.Spec.Type == corev1.ServiceTypeLoadBalancer {
			sp.nodePort = uint16(p.NodePort)
		}
		ports = append(ports, sp)
	}
	return ports
}

// endpointsFor collects the endpoints of family f of one Service port from every slice, once each.
func endpointsFor(f ipFamily, p corev1.ServicePort, endpointSlices []*discoveryv1.EndpointSlice, nodeName string) []endpoint {
	var eps []endpoint
	seen := map[netip.AddrPort]bool{}
	for _, slice := range endpointSlices {
		if string(slice.AddressType) != f.name {
			continue
		}
		var port int32 = -1
		for _, sp := range slice.Ports {
			if sp.Name != nil && *sp.Name == p.Name && sp.Port != nil &&
				(sp.Protocol == nil || *sp.Protocol == p.Protocol) {
				port = *sp.Port
			}
		}
		if port <= 0 || port > 65535 {
			continue
		}
		for _, e := range slice.Endpoints {
			if len(e.Addresses) == 0 {
				continue
			}
			addr := parseAddr(e.Addresses[0], f)
			key := netip.AddrPortFrom(addr, uint16(port))
			if !addr.IsValid() || seen[key] {
				continue
			}
			seen[key] = true
			eps = append(eps, endpoint{
				addr: addr, port: uint16(port),
				// A nil condition means true for ready and serving, false for terminating (API docs).
				ready:       e.Conditions.Ready == nil || *e.Conditions.Ready,
				serving:     e.Conditions.Serving == nil || *e.Conditions.Serving,
				terminating: e.Conditions.Terminating != nil && *e.Conditions.Terminating,
				local:       e.NodeName != nil && *e.NodeName == nodeName,
			})
		}
	}
	// A stable order gives the same rules for the same endpoints, so an unchanged Service is not rewritten.
	slices.SortFunc(eps, func(a, b endpoint) int {
		if c := a.addr.Compare(b.addr); c != 0 {
			return c
		}
		return int(a.port) - int(b.port)
	})
	return eps
}

// parseAddr parses s as an address of family f; the zero Addr when it is not one.
func parseAddr(s string, f ipFamily) netip.Addr {
	a, err := netip.ParseAddr(s)
	if err != nil || familyOf(a) != f || a.Is4In6() || a.Zone() != "" {
		return netip.Addr{}
	}
	return a
}

// servicePortName is kube-proxy's ServicePortName of a Service's port: "namespace/name/protocol/port-name".
func servicePortName(svc *corev1.Service, p corev1.ServicePort) string {
	return fmt.Sprintf("%s/%s/%s/%s", svc.Namespace, svc.Name, strings.ToLower(string(p.Protocol)), p.Name)
}

// ServiceChains names the chains of the agent's table that carry svc's traffic: per port and address
// family, the ClusterIP's (service-...) and, with node ports or external addresses, the external one
// (external-...), for `nodeagent describe` and `nft list chain inet nodeagent <name>`.
func ServiceChains(svc *corev1.Service) []string {
	var out []string
	for _, family := range svc.Spec.IPFamilies {
		for _, p := range svc.Spec.Ports {
			sp := servicePort{name: servicePortName(svc, p), family: familyIPv4}
			if family == corev1.IPv6Protocol {
				sp.family = familyIPv6
			}
			out = append(out, "service-"+sp.chainID())
			if p.NodePort != 0 || len(svc.Spec.ExternalIPs) > 0 || len(svc.Status.LoadBalancer.Ingress) > 0 {
				out = append(out, "external-"+sp.chainID())
			}
		}
	}
	return out
}
