package source

import (
	"context"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// ObjectWatches keeps the ConfigMaps and Secrets that the node's pods mount up to date with one watch per
// object (a field selector on its name, which the API server's Node authorizer allows for objects of the
// node's pods), as the kubelet's watch-based manager does: volumes are re-read from these caches every few
// seconds, not fetched with a GET per volume each time. A watch starts when a pod first needs its object and
// stops when the last pod that needed it is gone.
type ObjectWatches struct {
	client kubernetes.Interface

	mu      sync.Mutex
	watches map[watchKey]*objectWatch
}

type watchKey struct {
	kind            string // "configmaps" or "secrets"
	namespace, name string
}

type objectWatch struct {
	store  cache.Store
	synced cache.InformerSynced
	users  map[types.UID]bool
	stop   context.CancelFunc
}

// watchSyncTimeout bounds how long a Get waits for a new watch's first list; past it the caller reports the
// volume as not ready and tries again on its next sync, while the watch keeps trying.
const watchSyncTimeout = 10 * time.Second

// NewObjectWatches returns watches with none started; the caller stops them with StopAll.
func NewObjectWatches(client kubernetes.Interface) *ObjectWatches {
	return &ObjectWatches{client: client, watches: map[watchKey]*objectWatch{}}
}

// ConfigMap returns the ConfigMap for the pod, from its watch (started now if it is the first use).
func (o *ObjectWatches) ConfigMap(ctx context.Context, pod types.UID, namespace, name string) (*corev1.ConfigMap, error) {
	obj, err := o.get(ctx, pod, watchKey{kind: "configmaps", namespace: namespace, name: name})
	if err != nil {
		return nil, err
	}
	return obj.(*corev1.ConfigMap), nil
}

// Secret returns the Secret for the pod, from its watch (started now if it is the first use).
func (o *ObjectWatches) Secret(ctx context.Context, pod types.UID, namespace, name string) (*corev1.Secret, error) {
	obj, err := o.get(ctx, pod, watchKey{kind: "secrets", namespace: namespace, name: name})
	if err != nil {
		return nil, err
	}
	return obj.(*corev1.Secret), nil
}

func (o *ObjectWatches) get(ctx context.Context, pod types.UID, key watchKey) (runtime.Object, error) {
	w := o.watch(pod, key)
	if !w.synced() {
		waitCtx, cancel := context.WithTimeout(ctx, watchSyncTimeout)
		defer cancel()
		if !cache.WaitForCacheSync(waitCtx.Done(), w.synced) {
			return nil, fmt.Errorf("watching %s %s/%s: no list within %v", key.kind, key.namespace, key.name, watchSyncTimeout)
		}
	}
	obj, ok, err := w.store.GetByKey(key.namespace + "/" + key.name)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, apierrors.NewNotFound(corev1.Resource(key.kind), key.name)
	}
	return obj.(runtime.Object), nil
}

// watch returns the object's watch with pod among its users, starting it if there is none.
func (o *ObjectWatches) watch(pod types.UID, key watchKey) *objectWatch {
	o.mu.Lock()
	defer o.mu.Unlock()
	if w, ok := o.watches[key]; ok {
		w.users[pod] = true
		return w
	}
	var lw cache.ListerWatcher
	var objType runtime.Object
	if key.kind == "configmaps" {
		objType, lw = &corev1.ConfigMap{}, byName(o.client, o.client.CoreV1().ConfigMaps(key.namespace), key.name)
	} else {
		objType, lw = &corev1.Secret{}, byName(o.client, o.client.CoreV1().Secrets(key.namespace), key.name)
	}
	store, controller := cache.NewInformerWithOptions(cache.InformerOptions{ListerWatcher: lw, ObjectType: objType,
		Handler: cache.ResourceEventHandlerFuncs{}})
	ctx, cancel := context.WithCancel(context.Background())
	go controller.RunWithContext(ctx)
	w := &objectWatch{store: store, synced: controller.HasSynced, users: map[types.UID]bool{pod: true}, stop: cancel}
	o.watches[key] = w
	return w
}

// listWatcher is what a typed client of one namespace offers for lists and watches.
type listWatcher[L runtime.Object] interface {
	List(ctx context.Context, opts metav1.ListOptions) (L, error)
	Watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error)
}

// byName lists and watches the one object called name (with the API server's streaming lists unless the
// clientset says it has none, as client-go's own informers do).
func byName[L runtime.Object](clientset kubernetes.Interface, client listWatcher[L], name string) cache.ListerWatcher {
	selector := fields.OneTermEqualSelector("metadata.name", name).String()
	return cache.ToListWatcherWithWatchListSemantics(&cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
			opts.FieldSelector = selector
			return client.List(ctx, opts)
		},
		WatchFuncWithContext: func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
			opts.FieldSelector = selector
			return client.Watch(ctx, opts)
		},
	}, clientset)
}

// Release drops the pod from the users of every watch, and stops those it was the last user of.
func (o *ObjectWatches) Release(pod types.UID) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for key, w := range o.watches {
		delete(w.users, pod)
		if len(w.users) == 0 {
			w.stop()
			delete(o.watches, key)
		}
	}
}

// StopAll stops every watch; the owner calls it once nothing asks for objects any more.
func (o *ObjectWatches) StopAll() {
	o.mu.Lock()
	defer o.mu.Unlock()
	for key, w := range o.watches {
		w.stop()
		delete(o.watches, key)
	}
}
