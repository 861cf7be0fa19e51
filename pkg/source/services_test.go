package source

import (
	"testing"

	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"
)

// The EndpointSlice informer is the factory's one, so that a consumer asking the factory for it does not
// start a second watch, and it keeps no namespace index, which nothing reads.
func TestEndpointSliceInformerIsTheFactorysWithoutANamespaceIndex(t *testing.T) {
	factory := informers.NewSharedInformerFactory(fake.NewClientset(), 0)
	slices := NewFactoryServices(factory).EndpointSlices()
	if typed := factory.Discovery().V1().EndpointSlices().Informer(); typed.GetIndexer() != slices.GetIndexer() {
		t.Errorf("the factory has a second EndpointSlice informer")
	}
	if _, indexed := slices.GetIndexer().GetIndexers()[cache.NamespaceIndex]; indexed {
		t.Errorf("EndpointSlices are indexed by namespace")
	}
}
