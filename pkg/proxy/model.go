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
	// name is kube-proxy's ServicePortName, "namespace/name/protocol/port-name", used in chain names.
	name     string
	protocol corev1.Protocol
	// clusterIP is the IPv4 ClusterIP; invalid for headless Services and IPv6-only ones.
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

// servicePorts returns what the Service asks of this node, port by port, with the endpoints that its
// EndpointSlices give for that port (matched by port name, so named targetPorts resolve to each endpoint's
// own number). A Service with no IPv4 ClusterIP (headless, ExternalName, IPv6-only) gives nothing.
func servicePorts(svc *corev1.Service, endpointSlices []*discoveryv1.EndpointSlice, nodeName string) []servicePort {
	if svc.Spec.Type == corev1.ServiceTypeExternalName {
		return nil
	}
	clusterIP := ipv4(svc.Spec.ClusterIP)
	for _, ip := range svc.Spec.ClusterIPs { // dual-stack: the IPv4 one, whichever family is primary
		if a := ipv4(ip); a.IsValid() {
			clusterIP = a
			break
		}
	}
	if !clusterIP.IsValid() {
		return nil
	}
	var external []netip.Addr
	for _, ip := range svc.Spec.ExternalIPs {
		if a := ipv4(ip); a.IsValid() {
			external = append(external, a)
		}
	}
	var firewalled []netip.Addr
	var ranges []netip.Prefix
	if svc.Spec.Type == corev1.ServiceTypeLoadBalancer {
		for _, r := range svc.Spec.LoadBalancerSourceRanges {
			if p, err := netip.ParsePrefix(strings.TrimSpace(r)); err == nil && p.Addr().Is4() {
				ranges = append(ranges, p.Masked())
			}
		}
		for _, ing := range svc.Status.LoadBalancer.Ingress {
			a := ipv4(ing.IP)
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
			name:            fmt.Sprintf("%s/%s/%s/%s", svc.Namespace, svc.Name, strings.ToLower(string(p.Protocol)), p.Name),
			protocol:        p.Protocol,
			clusterIP:       clusterIP,
			port:            uint16(p.Port),
			externalAddrs:   external,
			firewalledAddrs: firewalled,
			sourceRanges:    ranges,
			affinitySeconds: affinity,
			externalLocal: svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal &&
				(svc.Spec.Type == corev1.ServiceTypeNodePort || svc.Spec.Type == corev1.ServiceTypeLoadBalancer),
			internalLocal: svc.Spec.InternalTrafficPolicy != nil && *svc.Spec.InternalTrafficPolicy == corev1.ServiceInternalTrafficPolicyLocal,
			endpoints:     endpointsFor(p, endpointSlices, nodeName),
		}
		if svc.Spec.Type == corev1.ServiceTypeNodePort || svc.Spec.Type == corev1.ServiceTypeLoadBalancer {
			sp.nodePort = uint16(p.NodePort)
		}
		ports = append(ports, sp)
	}
	return ports
}

// endpointsFor collects the IPv4 endpoints of one Service port from every slice, once each.
func endpointsFor(p corev1.ServicePort, endpointSlices []*discoveryv1.EndpointSlice, nodeName string) []endpoint {
	var eps []endpoint
	seen := map[netip.AddrPort]bool{}
	for _, slice := range endpointSlices {
		if slice.AddressType != discoveryv1.AddressTypeIPv4 {
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
			addr := ipv4(e.Addresses[0])
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

// ipv4 parses s as an IPv4 address; the zero Addr when it is not one.
func ipv4(s string) netip.Addr {
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is4() {
		return netip.Addr{}
	}
	return a
}
