// Package source owns the agent's view of the API server: shared informers for the Pods bound to this node
// and for the node's own Node object, one cache that every consumer reads. It never writes to the API.
// Services and EndpointSlices are further informers of a cluster-wide factory, given out as ServiceObjects;
// the ConfigMaps and Secrets that pods use are watched one by one (ObjectWatches). The consumers declare
// what they read as interfaces (podmanager.Sources, proxy.Objects, dns.Objects), which another source, a
// manifest directory, can implement.
package source

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
)

// Source is the shared cache of the API objects this node works from.
type Source struct {
	nodeName string
	// podFactory lists and watches only Pods with spec.nodeName equal to this node, as the Node authorizer allows.
	podFactory informers.SharedInformerFactory
	// nodeFactory watches only this node's Node object.
	nodeFactory informers.SharedInformerFactory
	// cluster is the factory for cluster-wide objects (Services, EndpointSlices): consumers get their
	// informers through Services, EndpointSlices and ServiceSlices (those of FactoryServices) before Start.
	cluster informers.SharedInformerFactory
	*FactoryServices

	nodes cache.SharedIndexInformer
}

// New builds the informers; nothing is listed until Start.
func New(client kubernetes.Interface, nodeName string, resync time.Duration) *Source {
	onNode := informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", nodeName).String()
	})
	ownNode := informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("metadata.name", nodeName).String()
	})
	compact := informers.WithTransform(newCompactor().transform)
	s := &Source{
		nodeName:    nodeName,
		podFactory:  informers.NewSharedInformerFactoryWithOptions(client, resync, onNode, compact),
		nodeFactory: informers.NewSharedInformerFactoryWithOptions(client, resync, ownNode, compact),
		cluster:     informers.NewSharedInformerFactoryWithOptions(client, resync, compact),
	}
	s.nodes = s.nodeFactory.Core().V1().Nodes().Informer()
	s.FactoryServices = NewFactoryServices(s.cluster)
	return s
}

// Start starts every registered informer and waits until their caches are filled.
func (s *Source) Start(ctx context.Context) error {
	for _, f := range []informers.SharedInformerFactory{s.podFactory, s.nodeFactory, s.cluster} {
		f.Start(ctx.Done())
	}
	for _, f := range []informers.SharedInformerFactory{s.podFactory, s.nodeFactory, s.cluster} {
		for typ, ok := range f.WaitForCacheSync(ctx.Done()) {
			if !ok {
				return fmt.Errorf("cache for %v did not sync", typ)
			}
		}
	}
	return nil
}

// Shutdown waits for the informers' goroutines after ctx passed to Start is cancelled.
func (s *Source) Shutdown() {
	for _, f := range []informers.SharedInformerFactory{s.podFactory, s.nodeFactory, s.cluster} {
		f.Shutdown()
	}
}

// podInformer is the informer of the node's Pods, made on first use: a process that runs only the proxy or
// only DNS never asks for it, so it never lists or watches Pods.
func (s *Source) podInformer() cache.SharedIndexInformer {
	return s.podFactory.Core().V1().Pods().Informer()
}

// Pods lists the Pods bound to this node; call it before Start.
func (s *Source) Pods() corelisters.PodLister {
	return corelisters.NewPodLister(s.podInformer().GetIndexer())
}

// OnPodChange calls fn with the Pod after every add, update and delete (the last known state for deletes).
func (s *Source) OnPodChange(fn func(*corev1.Pod)) error {
	_, err := s.podInformer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { callWithPod(obj, fn) },
		UpdateFunc: func(_, obj any) { callWithPod(obj, fn) },
		DeleteFunc: func(obj any) { callWithPod(obj, fn) },
	})
	return err
}

// Node returns this node's Node object from the cache, or nil while it does not exist.
func (s *Source) Node() *corev1.Node {
	obj, ok, err := s.nodes.GetIndexer().GetByKey(s.nodeName)
	if err != nil || !ok {
		return nil
	}
	return obj.(*corev1.Node)
}

// AllNodes lists every Node of the cluster, from an informer made on first use (only the pod network asks),
// and calls onChange after every add, update and delete; call it before Start.
func (s *Source) AllNodes(onChange func()) (corelisters.NodeLister, error) {
	nodes := s.cluster.Core().V1().Nodes()
	if _, err := nodes.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { onChange() },
		UpdateFunc: func(_, _ any) { onChange() },
		DeleteFunc: func(any) { onChange() },
	}); err != nil {
		return nil, err
	}
	return nodes.Lister(), nil
}

// OnNodeChange calls fn after every add or update of this node's Node object.
func (s *Source) OnNodeChange(fn func(*corev1.Node)) error {
	_, err := s.nodes.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { fn(obj.(*corev1.Node)) },
		UpdateFunc: func(_, obj any) { fn(obj.(*corev1.Node)) },
	})
	return err
}

func callWithPod(obj any, fn func(*corev1.Pod)) {
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	if pod, ok := obj.(*corev1.Pod); ok {
		fn(pod)
	}
}
