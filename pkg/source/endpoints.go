package source

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// ManagedByStandalone is the endpointslice.kubernetes.io/managed-by of the standalone mode's slices.
const ManagedByStandalone = "nodeagent.io/standalone"

// syncEndpointSlices makes the slices those of the Services and Pods held now (m.mu is held).
func (m *Manifests) syncEndpointSlices() error {
	var services []*corev1.Service
	for _, key := range m.services.keys() {
		if obj, ok := m.services.get(key); ok {
			services = append(services, obj.(*corev1.Service))
		}
	}
	var pods []*corev1.Pod
	for _, key := range m.pods.keys() {
		if obj, ok := m.pods.get(key); ok {
			pods = append(pods, obj.(*corev1.Pod))
		}
	}
	want := map[string]*discoveryv1.EndpointSlice{}
	for _, svc := range services {
		for _, slice := range EndpointSlicesFor(svc, pods) {
			want[slice.Namespace+"/"+slice.Name] = slice
		}
	}
	return convergeStore(m.slices, want, func(a, b *discoveryv1.EndpointSlice) bool {
		return apiequality.Semantic.DeepEqual(a.Endpoints, b.Endpoints) && apiequality.Semantic.DeepEqual(a.Ports, b.Ports)
	})
}

// EndpointSlicesFor is what the EndpointSlice controller makes for svc from pods: for each address family
// of the Service, one slice per set of resolved ports (a named targetPort can resolve differently per pod),
// with each running pod that matches the selector. Ready means the pod is Ready and not being deleted
// (or the Service publishes not-ready addresses); serving ignores the deletion; terminating is the deletion.
// A Service without a selector has none: its endpoints are someone else's.
func EndpointSlicesFor(svc *corev1.Service, pods []*corev1.Pod) []*discoveryv1.EndpointSlice {
	if svc.Spec.Selector == nil || svc.Spec.Type == corev1.ServiceTypeExternalName {
		return nil
	}
	selector := labels.SelectorFromSet(svc.Spec.Selector)
	families := svc.Spec.IPFamilies
	if len(families) == 0 { // headless without an address: the pods' families
		families = []corev1.IPFamily{corev1.IPv4Protocol, corev1.IPv6Protocol}
	}
	type group struct {
		ports     []discoveryv1.EndpointPort
		endpoints []discoveryv1.Endpoint
	}
	groups := map[string]*group{} // by family and ports
	var keys []string
	for _, pod := range pods {
		if pod.Namespace != svc.Namespace || !selector.Matches(labels.Set(pod.Labels)) ||
			pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
			continue
		}
		ports := endpointPorts(svc, pod)
		for _, family := range families {
			ep, ok := endpointOf(svc, pod, family)
			if !ok {
				continue
			}
			key := string(family) + "/" + portsKey(ports)
			g, ok := groups[key]
			if !ok {
				g = &group{ports: ports}
				groups[key] = g
				keys = append(keys, key)
			}
			g.endpoints = append(g.endpoints, ep)
		}
	}
	var out []*discoveryv1.EndpointSlice
	for _, key := range keys {
		g := groups[key]
		family, _, _ := strings.Cut(key, "/")
		sum := sha256.Sum256([]byte(key))
		sortEndpoints(g.endpoints)
		labels := map[string]string{discoveryv1.LabelServiceName: svc.Name, discoveryv1.LabelManagedBy: ManagedByStandalone}
		if svc.Spec.ClusterIP == corev1.ClusterIPNone {
			labels[corev1.IsHeadlessService] = "" // as the EndpointSlice controller marks a headless Service's slices
		}
		out = append(out, &discoveryv1.EndpointSlice{
			ObjectMeta: metav1.ObjectMeta{Namespace: svc.Namespace, Name: svc.Name + "-" + hex.EncodeToString(sum[:3]),
				Labels:          labels,
				OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Service", Name: svc.Name, UID: svc.UID}}},
			AddressType: discoveryv1.AddressType(family),
			Endpoints:   g.endpoints,
			Ports:       g.ports,
		})
	}
	return out
}

func sortEndpoints(eps []discoveryv1.Endpoint) {
	slices.SortFunc(eps, func(a, b discoveryv1.Endpoint) int { return strings.Compare(a.Addresses[0], b.Addresses[0]) })
}

// endpointOf is pod's endpoint of family, if it has an address of that family.
func endpointOf(svc *corev1.Service, pod *corev1.Pod, family corev1.IPFamily) (discoveryv1.Endpoint, bool) {
	var address string
	for _, ip := range pod.Status.PodIPs {
		if addr, err := netip.ParseAddr(ip.IP); err == nil && addr.Is6() == (family == corev1.IPv6Protocol) {
			address = addr.String()
			break
		}
	}
	if address == "" {
		return discoveryv1.Endpoint{}, false
	}
	podReady := false
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			podReady = c.Status == corev1.ConditionTrue
		}
	}
	serving := podReady || svc.Spec.PublishNotReadyAddresses
	terminating := pod.DeletionTimestamp != nil
	ready := serving && (!terminating || svc.Spec.PublishNotReadyAddresses)
	ep := discoveryv1.Endpoint{
		Addresses:  []string{address},
		Conditions: discoveryv1.EndpointConditions{Ready: &ready, Serving: &serving, Terminating: &terminating},
		NodeName:   &pod.Spec.NodeName,
		TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID},
	}
	if pod.Spec.Hostname != "" && pod.Spec.Subdomain == svc.Name {
		hostname := pod.Spec.Hostname
		ep.Hostname = &hostname
	}
	return ep, true
}

// endpointPorts resolves the Service's target ports in pod; a named port the pod does not have is left out.
func endpointPorts(svc *corev1.Service, pod *corev1.Pod) []discoveryv1.EndpointPort {
	var out []discoveryv1.EndpointPort
	for _, sp := range svc.Spec.Ports {
		port, ok := targetPort(sp, pod)
		if !ok {
			continue
		}
		name, protocol := sp.Name, sp.Protocol
		out = append(out, discoveryv1.EndpointPort{Name: &name, Port: &port, Protocol: &protocol, AppProtocol: sp.AppProtocol})
	}
	return out
}

func targetPort(sp corev1.ServicePort, pod *corev1.Pod) (int32, bool) {
	if sp.TargetPort.Type == intstr.Int {
		return sp.TargetPort.IntVal, true
	}
	for _, c := range pod.Spec.Containers {
		for _, p := range c.Ports {
			if p.Name == sp.TargetPort.StrVal && p.Protocol == sp.Protocol {
				return p.ContainerPort, true
			}
		}
	}
	return 0, false
}

func portsKey(ports []discoveryv1.EndpointPort) string {
	var b strings.Builder
	for _, p := range ports {
		fmt.Fprintf(&b, "%s:%s:%d,", *p.Name, *p.Protocol, *p.Port)
	}
	return b.String()
}
