package proxy

import (
	"encoding/binary"
	"net/netip"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// slice builds an EndpointSlice of Service "default/web" with one named port and the given endpoints.
func slice(addrType discoveryv1.AddressType, portName string, port int32, eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "default", Name: "web-" + string(addrType), Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
		AddressType: addrType,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To(portName), Protocol: ptr.To(corev1.ProtocolTCP), Port: ptr.To(port)}},
		Endpoints:   eps,
	}
}

func ep(addr, node string, ready, serving, terminating bool) discoveryv1.Endpoint {
	return discoveryv1.Endpoint{Addresses: []string{addr}, NodeName: ptr.To(node),
		Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(ready), Serving: ptr.To(serving), Terminating: ptr.To(terminating)}}
}

func webService(mutate ...func(*corev1.Service)) *corev1.Service {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, ClusterIP: "10.96.0.10", ClusterIPs: []string{"10.96.0.10"},
			Ports: []corev1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80}}},
	}
	for _, m := range mutate {
		m(svc)
	}
	return svc
}

func addrs(eps []endpoint) []string {
	var out []string
	for _, e := range eps {
		out = append(out, e.String())
	}
	return out
}

func TestNamedTargetPortResolvesPerSlice(t *testing.T) {
	// Two slices give the same port name different numbers (pods of two versions): each endpoint keeps its own.
	a := slice(discoveryv1.AddressTypeIPv4, "http", 8080, ep("10.244.0.11", "n", true, true, false))
	b := slice(discoveryv1.AddressTypeIPv4, "http", 9090, ep("10.244.0.12", "n", true, true, false))
	b.Name = "web-b"
	v6 := slice(discoveryv1.AddressTypeIPv6, "http", 8080, ep("fd00::1", "n", true, true, false))
	other := slice(discoveryv1.AddressTypeIPv4, "metrics", 9100, ep("10.244.0.13", "n", true, true, false))
	other.Name = "web-metrics"
	ports := servicePorts(webService(), []*discoveryv1.EndpointSlice{a, b, v6, other}, "n")
	if len(ports) != 1 {
		t.Fatalf("got %d service ports, want 1", len(ports))
	}
	if got, want := addrs(ports[0].endpoints), []string{"10.244.0.11:8080", "10.244.0.12:9090"}; !slices.Equal(got, want) {
		t.Errorf("endpoints = %v, want %v", got, want)
	}
	if ports[0].name != "default/web/tcp/http" {
		t.Errorf("name = %q", ports[0].name)
	}
}

func TestTerminatingEndpointsOnlyWhenNoneIsReady(t *testing.T) {
	terminating := ep("10.244.0.12", "n", false, true, true)
	notServing := ep("10.244.0.13", "n", false, false, true)
	withReady := servicePorts(webService(), []*discoveryv1.EndpointSlice{slice(discoveryv1.AddressTypeIPv4, "http", 8080,
		ep("10.244.0.11", "n", true, true, false), terminating, notServing)}, "n")
	if got := addrs(withReady[0].clusterEndpoints()); !slices.Equal(got, []string{"10.244.0.11:8080"}) {
		t.Errorf("with a ready endpoint: %v, want only the ready one", got)
	}
	onlyTerminating := servicePorts(webService(), []*discoveryv1.EndpointSlice{slice(discoveryv1.AddressTypeIPv4, "http", 8080,
		terminating, notServing)}, "n")
	if got := addrs(onlyTerminating[0].clusterEndpoints()); !slices.Equal(got, []string{"10.244.0.12:8080"}) {
		t.Errorf("with no ready endpoint: %v, want the serving terminating one", got)
	}
}

func TestInternalTrafficPolicyLocalUsesOnlyThisNodesEndpoints(t *testing.T) {
	svc := webService(func(s *corev1.Service) {
		s.Spec.InternalTrafficPolicy = ptr.To(corev1.ServiceInternalTrafficPolicyLocal)
	})
	ports := servicePorts(svc, []*discoveryv1.EndpointSlice{slice(discoveryv1.AddressTypeIPv4, "http", 8080,
		ep("10.244.0.11", "this", true, true, false), ep("10.244.1.11", "other", true, true, false))}, "this")
	if got := addrs(ports[0].clusterEndpoints()); !slices.Equal(got, []string{"10.244.0.11:8080"}) {
		t.Errorf("cluster endpoints = %v, want only this node's", got)
	}
	rendered := renderer{}.render(ports)
	if len(rendered.chains) != 1 {
		t.Errorf("chains %v, want only the service chain", rendered.chains)
	}
}

func TestExternalAddressesAndNodePorts(t *testing.T) {
	lb := webService(func(s *corev1.Service) {
		s.Spec.Type = corev1.ServiceTypeLoadBalancer
		s.Spec.Ports[0].NodePort = 30080
		s.Spec.ExternalIPs = []string{"192.0.2.10", "2001:db8::1"}
		s.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "192.0.2.20"}, {Hostname: "lb.example"}}
	})
	ports := servicePorts(lb, nil, "n")
	if got := ports[0].externalAddrs; !slices.Equal(got, []netip.Addr{netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("192.0.2.20")}) {
		t.Errorf("external addresses = %v, want the IPv4 externalIP and ingress IP", got)
	}
	if ports[0].nodePort != 30080 {
		t.Errorf("nodePort = %d", ports[0].nodePort)
	}
	// Without endpoints every entry rejects.
	sr := renderer{}.render(ports)
	var sets []string
	for _, e := range sr.elements {
		sets = append(sets, e.set)
	}
	slices.Sort(sets)
	want := []string{mapNoEndpointNodePorts, mapNoEndpointServices, mapNoEndpointServices, mapNoEndpointServices}
	if !slices.Equal(sets, want) {
		t.Errorf("elements in %v, want %v", sets, want)
	}

	clusterIP := webService(func(s *corev1.Service) { s.Spec.Ports[0].NodePort = 30080 })
	if p := servicePorts(clusterIP, nil, "n"); p[0].nodePort != 0 {
		t.Errorf("a ClusterIP Service got NodePort %d", p[0].nodePort)
	}
}

func TestServicePortsFollowTheClusterIPFamilies(t *testing.T) {
	for name, svc := range map[string]*corev1.Service{
		"headless":     webService(func(s *corev1.Service) { s.Spec.ClusterIP, s.Spec.ClusterIPs = "None", []string{"None"} }),
		"externalName": webService(func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeExternalName }),
	} {
		if ports := servicePorts(svc, nil, "n"); len(ports) != 0 {
			t.Errorf("%s: %d service ports, want none", name, len(ports))
		}
	}
	for name, tc := range map[string]struct {
		clusterIPs []string
		want       []string // ClusterIP, chain ID
	}{
		"ipv6 only":                {[]string{"fd00::10"}, []string{"fd00::10 default/web/tcp/http/ipv6"}},
		"dual-stack, IPv6 primary": {[]string{"fd00::10", "10.96.0.11"}, []string{"10.96.0.11 default/web/tcp/http", "fd00::10 default/web/tcp/http/ipv6"}},
		"dual-stack, IPv4 primary": {[]string{"10.96.0.11", "fd00::10"}, []string{"10.96.0.11 default/web/tcp/http", "fd00::10 default/web/tcp/http/ipv6"}},
	} {
		svc := webService(func(s *corev1.Service) { s.Spec.ClusterIP, s.Spec.ClusterIPs = tc.clusterIPs[0], tc.clusterIPs })
		var got []string
		for _, p := range servicePorts(svc, nil, "n") {
			got = append(got, p.clusterIP.String()+" "+p.chainID())
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: ports %q, want %q", name, got, tc.want)
		}
	}
}

func TestSCTPAndUDPKeys(t *testing.T) {
	svc := webService(func(s *corev1.Service) {
		s.Spec.Ports = []corev1.ServicePort{{Name: "a", Protocol: corev1.ProtocolSCTP, Port: 9}, {Name: "b", Protocol: corev1.ProtocolUDP, Port: 53}}
	})
	sr := renderer{}.render(servicePorts(svc, nil, "n"))
	var protos []byte
	for _, e := range sr.elements {
		protos = append(protos, e.key[4]) // address (4 bytes), then the protocol
	}
	slices.Sort(protos)
	if !slices.Equal(protos, []byte{17, 132}) {
		t.Errorf("protocols in the keys = %v, want udp (17) and sctp (132)", protos)
	}
}

// Every draw belongs to exactly one endpoint's interval, and the intervals are as equal as can be.
func TestEndpointMapSplitsTheDrawsEvenly(t *testing.T) {
	for _, n := range []int{1, 2, 3, 7, 10, 11, 1000} {
		eps := make([]endpoint, n)
		for i := range eps {
			eps[i] = endpoint{addr: netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), port: 80}
		}
		elems := spreadOver(packEndpoints(4, eps))
		if len(elems) != 2*n {
			t.Fatalf("%d endpoints: %d elements, want a start and an end for each", n, len(elems))
		}
		next, smallest, largest := uint32(0), uint32(endpointDraws), uint32(0)
		for i := 0; i < len(elems); i += 2 {
			start, end := binary.BigEndian.Uint32(elems[i].Key), binary.BigEndian.Uint32(elems[i+1].Key)
			if start != next || elems[i].IntervalEnd || !elems[i+1].IntervalEnd || end <= start {
				t.Fatalf("%d endpoints: interval %d is [%d, %d) end=%v, want it to start at %d", n, i/2, start, end, elems[i+1].IntervalEnd, next)
			}
			if want := append(eps[i/2].addr.AsSlice(), portKey(80)...); !slices.Equal(elems[i].Val, want) {
				t.Errorf("%d endpoints: interval %d maps to %v, want %v", n, i/2, elems[i].Val, want)
			}
			smallest, largest = min(smallest, end-start), max(largest, end-start)
			next = end
		}
		if next != endpointDraws || largest-smallest > 1 {
			t.Errorf("%d endpoints: intervals cover [0, %d) with sizes %d to %d, want [0, %d) within one draw", n, next, smallest, largest, endpointDraws)
		}
	}
}
