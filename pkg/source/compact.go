package source

import (
	"slices"
	"sync"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/meta"
)

// compactor is the transform of every cached object: the caches hold the objects the agent reads, not
// everything the API server sent. It drops metadata.managedFields from all of them (an update sent with
// them left out keeps them on the server), and keeps an EndpointSlice as small as its readers allow: at
// 10,000 Services of 10 endpoints the slices were the largest part of the agent's heap (38 MB, some
// 3.8 KB a slice, of which 1.5 KB was the endpoints' array grown by the decoder's appends to room for 16).
type compactor struct {
	mu sync.Mutex
	// nodeNames holds one copy of each node name the endpoints name: the cluster's nodes, a bounded set.
	nodeNames map[string]*string
	// yes and no are the condition values every endpoint points to; nothing writes through a cached
	// object's pointers.
	yes, no *bool
}

func newCompactor() *compactor {
	yes, no := true, false
	return &compactor{nodeNames: map[string]*string{}, yes: &yes, no: &no}
}

// transform is a cache.TransformFunc. The informers of one factory share it, hence the lock.
func (c *compactor) transform(obj any) (any, error) {
	if m, err := meta.Accessor(obj); err == nil {
		m.SetManagedFields(nil)
	}
	if slice, ok := obj.(*discoveryv1.EndpointSlice); ok {
		c.compactSlice(slice)
	}
	return obj, nil
}

// compactSlice keeps of an EndpointSlice what the proxy and DNS read: its name, namespace, labels, the
// last-change-trigger-time annotation (the proxy's network programming latency), address type, ports, and
// per endpoint the addresses, conditions, hostname and node name. It drops what no reader uses: owner
// references, other annotations, and the endpoints' targetRef, zone, hints and deprecatedTopology (a
// reader that starts using one of these takes it out of this list). The conditions and node names become
// shared pointers, and the endpoints' array is cut to its length.
func (c *compactor) compactSlice(slice *discoveryv1.EndpointSlice) {
	slice.OwnerReferences = nil
	slice.GenerateName = ""
	slice.Annotations = onlyTriggerTime(slice.Annotations)
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := range slice.Endpoints {
		e := &slice.Endpoints[i]
		e.TargetRef, e.Zone, e.Hints, e.DeprecatedTopology = nil, nil, nil, nil
		e.Conditions.Ready = c.shared(e.Conditions.Ready)
		e.Conditions.Serving = c.shared(e.Conditions.Serving)
		e.Conditions.Terminating = c.shared(e.Conditions.Terminating)
		if e.NodeName != nil {
			e.NodeName = c.nodeName(*e.NodeName)
		}
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

func (c *compactor) nodeName(name string) *string {
	if p, ok := c.nodeNames[name]; ok {
		return p
	}
	p := &name
	c.nodeNames[name] = p
	return p
}
