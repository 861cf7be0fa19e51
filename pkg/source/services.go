package source

import (
	"sync"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	discoveryinformers "k8s.io/client-go/informers/discovery/v1"
	"k8s.io/client-go/kubernetes"
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

// EndpointSlices is the factory's EndpointSlice informer without the namespace index the factory would give
// it: nothing looks slices up by namespace (the proxy and DNS go by Service, through ServiceSlices, and by
// address), and at 10,000 Services the index is a set entry per slice. The factory still applies its
// transform.
func (f *FactoryServices) EndpointSlices() cache.SharedIndexInformer {
	return f.factory.InformerFor(&discoveryv1.EndpointSlice{}, newEndpointSliceInformer)
}

func newEndpointSliceInformer(client kubernetes.Interface, resync time.Duration) cache.SharedIndexInformer {
	return discoveryinformers.NewEndpointSliceInformer(client, metav1.NamespaceAll, resync, cache.Indexers{})
}

func (f *FactoryServices) ServiceSlices() (*ServiceSlices, error) { return f.serviceSlices() }
