package source

import (
	"slices"
	"sync"
	"unique"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/meta"
)

// compactor is the transform of every cached object: the caches hold the objects the agent reads, not
// everything the API server sent. It drops metadata.managedFields from all of them (an update sent with
// them left out keeps them on the server), and keeps an EndpointSlice as small as its readers allow: at
// 10,000 Services of 10 endpoints the slices were the largest part of the agent's heap (38 MB, some
// 3.8 KB a slice, of which 1.5 KB was the endpoints' array grown by the decoder's appends to room for 16).
// The strings and pointed-to values that repeat from object to object (namespaces, label keys, a Service's
// type and policies, ports) are shared, with the same values.
type compactor struct {
	mu sync.Mutex
	// The values that the objects' pointers point to, one copy of each: nothing writes through a cached
	// object's pointers. Each is a bounded set: the cluster's nodes, the port numbers and names in use, a
	// few policies.
	nodeNames, portNames sharedPtrs[string]
	ports                sharedPtrs[int32]
	protocols            sharedPtrs[corev1.Protocol]
	familyPolicies       sharedPtrs[corev1.IPFamilyPolicy]
	trafficPolicies      sharedPtrs[corev1.ServiceInternalTrafficPolicy]
	// yes and no are the condition values every endpoint points to.
	yes, no *bool
}

func newCompactor() *compactor {
	yes, no := true, false
	return &compactor{nodeNames: sharedPtrs[string]{}, portNames: sharedPtrs[string]{}, ports: sharedPtrs[int32]{},
		protocols: sharedPtrs[corev1.Protocol]{}, familyPolicies: sharedPtrs[corev1.IPFamilyPolicy]{},
		trafficPolicies: sharedPtrs[corev1.ServiceInternalTrafficPolicy]{}, yes: &yes, no: &no}
}

// sharedPtrs hold one pointer for each value.
type sharedPtrs[T comparable] map[T]*T

// of returns the pointer to v's value, nil for nil.
func (m sharedPtrs[T]) of(v *T) *T {
	if v == nil {
		return nil
	}
	if p, ok := m[*v]; ok {
		return p
	}
	m[*v] = v
	return v
}

// transform is a cache.TransformFunc. The informers of one factory share it, hence the lock.
func (c *compactor) transform(obj any) (any, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if m, err := meta.Accessor(obj); err == nil {
		m.SetManagedFields(nil)
		m.SetNamespace(intern(m.GetNamespace()))
		internKeys(m.GetLabels())
	}
	switch o := obj.(type) {
	case *discoveryv1.EndpointSlice:
		c.compactSlice(o)
	case *corev1.Service:
		c.compactService(o)
	}
	return obj, nil
}

// intern returns the process's one copy of s. The decoder gives every object its own copy of each string,
// and 10,000 objects repeat a few: namespaces, label keys, a Service's type. Values that differ from object
// to object (names, addresses) are left alone: interning them would cost more than it saves.
func intern[T ~string](s T) T { return T(unique.Make(string(s)).Value()) }

// internKeys puts the interned copy of each key in labels.
func internKeys(labels map[string]string) {
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	for _, k := range keys {
		v := labels[k]
		delete(labels, k) // a map keeps the key it was first given a value under
		labels[intern(k)] = v
	}
}

// compactService shares the values of a Service's spec that take one of a few, and makes its first
// ClusterIP the same string as its ClusterIP.
func (c *compactor) compactService(svc *corev1.Service) {
	spec := &svc.Spec
	spec.Type, spec.SessionAffinity = intern(spec.Type), intern(spec.SessionAffinity)
	spec.ExternalTrafficPolicy = intern(spec.ExternalTrafficPolicy)
	for i := range spec.IPFamilies {
		spec.IPFamilies[i] = intern(spec.IPFamilies[i])
	}
	spec.IPFamilyPolicy = c.familyPolicies.of(spec.IPFamilyPolicy)
	spec.InternalTrafficPolicy = c.trafficPolicies.of(spec.InternalTrafficPolicy)
	if len(spec.ClusterIPs) > 0 && spec.ClusterIPs[0] == spec.ClusterIP {
		spec.ClusterIPs[0] = spec.ClusterIP
	}
	for i := range spec.Ports {
		spec.Ports[i].Protocol = intern(spec.Ports[i].Protocol)
	}
}

// compactSlice keeps of an EndpointSlice what the proxy and DNS read: its name, namespace, labels, the
// last-change-trigger-time annotation (the proxy's network programming latency), address type, ports, and
// per endpoint the addresses, conditions, hostname and node name. It drops what no reader uses: owner
// references, other annotations, and the endpoints' targetRef, zone, hints and deprecatedTopology (a
// reader that starts using one of these takes it out of this list). The conditions, node names and the
// ports' fields become shared pointers, and the endpoints' array is cut to its length.
func (c *compactor) compactSlice(slice *discoveryv1.EndpointSlice) {
	slice.OwnerReferences = nil
	slice.GenerateName = ""
	slice.Annotations = onlyTriggerTime(slice.Annotations)
	slice.AddressType = intern(slice.AddressType)
	for i := range slice.Ports {
		p := &slice.Ports[i]
		p.Name, p.Protocol, p.Port = c.portNames.of(p.Name), c.protocols.of(p.Protocol), c.ports.of(p.Port)
	}
	for i := range slice.Endpoints {
		e := &slice.Endpoints[i]
		e.TargetRef, e.Zone, e.Hints, e.DeprecatedTopology = nil, nil, nil, nil
		e.Conditions.Ready = c.shared(e.Conditions.Ready)
		e.Conditions.Serving = c.shared(e.Conditions.Serving)
		e.Conditions.Terminating = c.shared(e.Conditions.Terminating)
		e.NodeName = c.nodeNames.of(e.NodeName)
	}
	if cap(slice.Endpoints) > len(slice.Endpoints) {
		slice.Endpoints = slices.Clone(slice.Endpoints)
	}
}

func onlyTriggerTime(annotations map[string]string) map[string]string {
	t, ok := annotations[corev1.EndpointsLastChangeTriggerTime]
	switch {
	case !ok:
		return nil
	case len(annotations) == 1:
		return annotations
	default:
		return map[string]string{corev1.EndpointsLastChangeTriggerTime: t}
	}
}

func (c *compactor) shared(b *bool) *bool {
	switch {
	case b == nil:
		return nil
	case *b:
		return c.yes
	default:
		return c.no
	}
}
