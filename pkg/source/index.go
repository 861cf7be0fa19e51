package source

import (
	"context"
	"fmt"
	"sync"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/tools/cache"
)

// ServiceSlices are the EndpointSlices of each Service (by their service-name label), kept from an
// EndpointSlice informer's events; the proxy and DNS share one. A client-go index did this before; it keeps
// a set per Service, some 300 bytes each, where this keeps a list of the slices under a key made of the
// slice's own strings, about 100 bytes.
type ServiceSlices struct {
	synced cache.InformerSynced

	mu sync.RWMutex
	// slices are never changed in place: Of hands them out, and a change makes a new list.
	slices   map[types.NamespacedName][]*discoveryv1.EndpointSlice
	onChange []func(service types.NamespacedName, slice *discoveryv1.EndpointSlice, initial bool)
}

// WatchServiceSlices keeps ServiceSlices from informer's events; they hold the informer's first list once
// WaitForSync returns.
func WatchServiceSlices(informer cache.SharedIndexInformer) (*ServiceSlices, error) {
	s := &ServiceSlices{slices: map[types.NamespacedName][]*discoveryv1.EndpointSlice{}}
	reg, err := informer.AddEventHandler(cache.ResourceEventHandlerDetailedFuncs{
		AddFunc: func(obj any, initial bool) {
			if slice, service, ok := SliceService(obj); ok {
				s.add(service, slice)
				s.tell(service, slice, initial)
			}
		},
		UpdateFunc: func(oldObj, obj any) {
			oldSlice, oldService, hadService := SliceService(oldObj)
			slice, service, hasService := SliceService(obj)
			if hadService && (!hasService || oldService != service) {
				s.remove(oldService, oldSlice)
				s.tell(oldService, oldSlice, false)
			}
			if hasService {
				s.add(service, slice)
				s.tell(service, slice, false)
			}
		},
		DeleteFunc: func(obj any) {
			if slice, service, ok := SliceService(obj); ok {
				s.remove(service, slice)
				s.tell(service, slice, false)
			}
		},
	})
	if err != nil {
		return nil, fmt.Errorf("watching EndpointSlices by Service: %w", err)
	}
	s.synced = reg.HasSynced
	return s, nil
}

// OnChange has fn told of each change once Of gives it: the Service whose slices changed, the slice (the
// old one when it was deleted) and whether the change is the slice's arrival in the informer's first list.
// Add it before the informer starts to be told of every slice. A consumer that reacted to the informer's
// own events could read the slices before they changed: each handler of an informer gets its events in its
// own time.
func (s *ServiceSlices) OnChange(fn func(service types.NamespacedName, slice *discoveryv1.EndpointSlice, initial bool)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.onChange = append(s.onChange, fn)
}

func (s *ServiceSlices) tell(service types.NamespacedName, slice *discoveryv1.EndpointSlice, initial bool) {
	s.mu.RLock()
	fns := s.onChange
	s.mu.RUnlock()
	for _, fn := range fns {
		fn(service, slice, initial)
	}
}

// WaitForSync returns once the slices of the informer's first list are all in, or with ctx's error.
func (s *ServiceSlices) WaitForSync(ctx context.Context) error {
	return wait.PollUntilContextCancel(ctx, 10*time.Millisecond, true, func(context.Context) (bool, error) {
		return s.synced(), nil
	})
}

// Of returns the EndpointSlices of the Service namespace/name; the caller must not change the list.
func (s *ServiceSlices) Of(namespace, name string) []*discoveryv1.EndpointSlice {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.slices[types.NamespacedName{Namespace: namespace, Name: name}]
}

// add puts slice into service's list, in place of the slice of its name if there is one.
func (s *ServiceSlices) add(service types.NamespacedName, slice *discoveryv1.EndpointSlice) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.slices[service] = append(without(s.slices[service], slice.Name), slice)
}

// remove takes the slice of slice's name out of service's list.
func (s *ServiceSlices) remove(service types.NamespacedName, slice *discoveryv1.EndpointSlice) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if list := without(s.slices[service], slice.Name); len(list) > 0 {
		s.slices[service] = list
	} else {
		delete(s.slices, service)
	}
}

// without is a new list of list's slices but the one named name, with room for one more.
func without(list []*discoveryv1.EndpointSlice, name string) []*discoveryv1.EndpointSlice {
	out := make([]*discoveryv1.EndpointSlice, 0, len(list)+1)
	for _, e := range list {
		if e.Name != name {
			out = append(out, e)
		}
	}
	return out
}

// SliceService is the EndpointSlice obj (a tombstone's too) and the Service it belongs to; ok is false for
// anything else and for a slice without the service-name label, which belongs to no Service.
func SliceService(obj any) (slice *discoveryv1.EndpointSlice, service types.NamespacedName, ok bool) {
	if tomb, isTomb := obj.(cache.DeletedFinalStateUnknown); isTomb {
		obj = tomb.Obj
	}
	slice, isSlice := obj.(*discoveryv1.EndpointSlice)
	if !isSlice {
		return nil, types.NamespacedName{}, false
	}
	name := slice.Labels[discoveryv1.LabelServiceName]
	if name == "" {
		return nil, types.NamespacedName{}, false
	}
	return slice, types.NamespacedName{Namespace: slice.Namespace, Name: name}, true
}
