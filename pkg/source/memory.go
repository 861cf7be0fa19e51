package source

import (
	"fmt"
	"strconv"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
)

// memoryObjects is one kind of object held in memory, served to informers as the API server serves them: a
// list at a resource version, then a watch from that version. With it the standalone mode's objects reach
// the components through the same shared informers, indexes and handlers as the API server's.
type memoryObjects struct {
	// newList wraps items in the kind's list type.
	newList func(items []runtime.Object) runtime.Object

	mu      sync.Mutex
	version uint64
	objects map[string]runtime.Object // by namespace/name
	// history holds the latest events, so a watch that starts at a list's version misses none made
	// between the list and the watch.
	history     []watch.Event
	broadcaster *watch.Broadcaster
}

// historyLength bounds what a late watch can replay; an older version is answered 410 Gone, and the
// informer lists again.
const historyLength = 1000

var _ cache.ListerWatcher = (*memoryObjects)(nil)

func newMemoryObjects(newList func(items []runtime.Object) runtime.Object) *memoryObjects {
	return &memoryObjects{newList: newList, objects: map[string]runtime.Object{},
		broadcaster: watch.NewBroadcaster(historyLength, watch.WaitIfChannelFull)}
}

// get returns the object with this key (namespace/name), which the caller must not change.
func (m *memoryObjects) get(key string) (runtime.Object, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	obj, ok := m.objects[key]
	return obj, ok
}

// keys lists the keys of the objects held.
func (m *memoryObjects) keys() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]string, 0, len(m.objects))
	for k := range m.objects {
		out = append(out, k)
	}
	return out
}

// put adds or replaces obj (owned by the store from now on), stamping it with the next resource version.
func (m *memoryObjects) put(obj runtime.Object) error {
	key, err := cache.MetaNamespaceKeyFunc(obj)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	typ := watch.Modified
	if _, ok := m.objects[key]; !ok {
		typ = watch.Added
	}
	m.objects[key] = obj
	return m.record(typ, obj)
}

// remove deletes the object with this key, if there is one.
func (m *memoryObjects) remove(key string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	obj, ok := m.objects[key]
	if !ok {
		return nil
	}
	delete(m.objects, key)
	return m.record(watch.Deleted, obj.DeepCopyObject())
}

// record stamps obj with a new version and sends the event to the watches; m.mu is held, so a watch starts
// either before the event (and receives it) or after (and replays it from the history).
func (m *memoryObjects) record(typ watch.EventType, obj runtime.Object) error {
	m.version++
	acc, err := meta.Accessor(obj)
	if err != nil {
		return err
	}
	acc.SetResourceVersion(strconv.FormatUint(m.version, 10))
	event := watch.Event{Type: typ, Object: obj}
	m.history = append(m.history, event)
	if len(m.history) > historyLength {
		m.history = m.history[len(m.history)-historyLength:]
	}
	return m.broadcaster.Action(typ, obj)
}

// List returns every object, and the version a watch continues from.
func (m *memoryObjects) List(metav1.ListOptions) (runtime.Object, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	items := make([]runtime.Object, 0, len(m.objects))
	for _, obj := range m.objects {
		items = append(items, obj.DeepCopyObject())
	}
	list := m.newList(items)
	listMeta, err := meta.ListAccessor(list)
	if err != nil {
		return nil, err
	}
	listMeta.SetResourceVersion(strconv.FormatUint(m.version, 10))
	return list, nil
}

// Watch sends every change after options.ResourceVersion.
func (m *memoryObjects) Watch(options metav1.ListOptions) (watch.Interface, error) {
	from, err := strconv.ParseUint(options.ResourceVersion, 10, 64)
	if err != nil {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("resourceVersion %q: a watch starts at a list's version", options.ResourceVersion))
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	oldest := m.version + 1 - uint64(len(m.history)) // the version of history[0]
	if from+1 < oldest {
		return nil, apierrors.NewResourceExpired(fmt.Sprintf("too old resource version: %d (%d)", from, oldest-1))
	}
	replay := m.history[from+1-oldest:]
	prefix := make([]watch.Event, len(replay))
	for i, e := range replay {
		prefix[i] = watch.Event{Type: e.Type, Object: e.Object.DeepCopyObject()}
	}
	return m.broadcaster.WatchWithPrefix(prefix)
}

// IsWatchListSemanticsUnSupported tells the informer to list and then watch: these watches do not
// stream the initial list.
func (m *memoryObjects) IsWatchListSemanticsUnSupported() bool { return true }

// shutdown ends every watch.
func (m *memoryObjects) shutdown() { m.broadcaster.Shutdown() }
