package source

import (
	"fmt"

	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/client-go/tools/cache"
)

// SlicesByService is the name of the EndpointSlice index whose keys are "namespace/service-name".
const SlicesByService = "service"

// IndexSlicesByService adds the SlicesByService index to the EndpointSlice informer unless a consumer before
// this one did: the proxy and DNS share the informer, and an informer refuses a second index of one name.
func IndexSlicesByService(informer cache.SharedIndexInformer) error {
	if _, ok := informer.GetIndexer().GetIndexers()[SlicesByService]; ok {
		return nil
	}
	if err := informer.AddIndexers(cache.Indexers{SlicesByService: SliceService}); err != nil {
		return fmt.Errorf("indexing EndpointSlices by Service: %w", err)
	}
	return nil
}

// SliceService is the "namespace/name" of the Service an EndpointSlice belongs to, as an index function; a
// slice without the service-name label belongs to none.
func SliceService(obj any) ([]string, error) {
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	slice, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok {
		return nil, fmt.Errorf("not an EndpointSlice: %T", obj)
	}
	name := slice.Labels[discoveryv1.LabelServiceName]
	if name == "" {
		return nil, nil
	}
	return []string{slice.Namespace + "/" + name}, nil
}
