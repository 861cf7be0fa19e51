package source

import (
	"sync"

	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
)

// ServiceObjects are the cluster's Services and EndpointSlices as shared index informers, where the proxy
// and cluster DNS read them and add their indexes and handlers. An informer factory on the API server
// provides them (FactoryServices); a manifest directory can provide informers over a ListerWatcher of its own.
type ServiceObjects interface {
	Services() cache.SharedIndexInformer
	EndpointSlices() cache.SharedIndexInformer
	// ServiceSlices are the EndpointSlices of each Service, one for all consumers, made at the first call.
	ServiceSlices() (*ServiceSlices, error)
}

// FactoryServices are the Services and EndpointSlices of an informer factory; the factory's owner starts it.
type FactoryServices struct {
	factory       informers.SharedInformerFactory
	serviceSlices func() (*ServiceSlices, error)
}

func NewFactoryServices(factory informers.SharedInformerFactory) *FactoryServices {
	f := &FactoryServices{factory: factory}
	f.serviceSlices = sync.OnceValues(func() (*ServiceSlices, error) { return WatchServiceSlices(f.EndpointSlices()) })
	return f
}

func (f *FactoryServices) Services() cache.SharedIndexInformer {
	return f.factory.Core().V1().Services().Informer()
}

func (f *FactoryServices) EndpointSlices() cache.SharedIndexInformer {
	return f.factory.Discovery().V1().EndpointSlices().Informer()
}

func (f *FactoryServices) ServiceSlices() (*ServiceSlices, error) { return f.serviceSlices() }
