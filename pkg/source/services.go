package source

import (
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
)

// ServiceObjects are the cluster's Services and EndpointSlices as shared index informers, where the proxy
// and cluster DNS read them and add their indexes and handlers. An informer factory on the API server
// provides them (FactoryServices); a manifest directory can provide informers over a ListerWatcher of its own.
type ServiceObjects interface {
	Services() cache.SharedIndexInformer
	EndpointSlices() cache.SharedIndexInformer
}

// FactoryServices are the Services and EndpointSlices of an informer factory; the factory's owner starts it.
type FactoryServices struct {
	Factory informers.SharedInformerFactory
}

func (f FactoryServices) Services() cache.SharedIndexInformer {
	return f.Factory.Core().V1().Services().Informer()
}

func (f FactoryServices) EndpointSlices() cache.SharedIndexInformer {
	return f.Factory.Discovery().V1().EndpointSlices().Informer()
}

// Services are the cluster's Services in the shared cache.
func (s *Source) Services() cache.SharedIndexInformer { return FactoryServices{s.cluster}.Services() }

// EndpointSlices are the cluster's EndpointSlices in the shared cache.
func (s *Source) EndpointSlices() cache.SharedIndexInformer {
	return FactoryServices{s.cluster}.EndpointSlices()
}
