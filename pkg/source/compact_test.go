package source

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"unsafe"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"

	"github.com/nodeagent/nodeagent/internal/testutil"
)

// sliceAsTheControllerWritesIt is an EndpointSlice with every field the EndpointSlice controller fills.
func sliceAsTheControllerWritesIt(service string, endpoints int) *discoveryv1.EndpointSlice {
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: service + "-x7k2p", GenerateName: service + "-",
			UID: "5d0b4f3e-8a4e-4a55-9f0e-1d4c1e0d6c1a", ResourceVersion: "4711", Generation: 1,
			Labels: map[string]string{discoveryv1.LabelServiceName: service,
				discoveryv1.LabelManagedBy: "endpointslice-controller.k8s.io", "app": service},
			Annotations: map[string]string{corev1.EndpointsLastChangeTriggerTime: "2026-12-06T06:00:00Z",
				"note": "kept by nobody"},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Service", Name: service,
				UID: "0c6b2c1e-3f51-4d7a-8a0e-9b1f3c2d4e5f", Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}},
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kube-controller-manager"}}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports: []discoveryv1.EndpointPort{{Name: ptr.To("http"), Protocol: ptr.To(corev1.ProtocolTCP),
			Port: ptr.To[int32](8080)}},
	}
	for i := range endpoints {
		slice.Endpoints = append(slice.Endpoints, discoveryv1.Endpoint{
			Addresses: []string{fmt.Sprintf("10.244.%d.%d", i/250, i%250+1)},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(i%3 != 0), Serving: ptr.To(true),
				Terminating: ptr.To(i%3 == 0)},
			Hostname:  ptr.To(fmt.Sprintf("%s-%d", service, i)),
			NodeName:  ptr.To(fmt.Sprintf("node-%d", i%2)),
			Zone:      ptr.To("zone-a"),
			TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: "default", Name: fmt.Sprintf("%s-%d", service, i)},
			Hints:     &discoveryv1.EndpointHints{ForZones: []discoveryv1.ForZone{{Name: "zone-a"}}},
		})
	}
	return slice
}

// A cached EndpointSlice keeps everything the proxy and DNS read, with the same values, and nothing else.
func TestCachedEndpointSliceKeepsWhatItsReadersRead(t *testing.T) {
	sent := sliceAsTheControllerWritesIt("web", 5)
	client := fake.NewClientset(sent.DeepCopy())
	src := New(client, "node-a", 0)
	slices := src.EndpointSlices()
	ctx, cancel := context.WithCancel(context.Background())
	defer func() { cancel(); src.Shutdown() }()
	if err := src.Start(ctx); err != nil {
		t.Fatal(err)
	}
	obj, ok, err := slices.GetIndexer().GetByKey("default/web-x7k2p")
	if err != nil || !ok {
		t.Fatalf("slice not cached: %v", err)
	}
	got := obj.(*discoveryv1.EndpointSlice)

	want := sent.DeepCopy()
	want.ManagedFields, want.OwnerReferences, want.GenerateName = nil, nil, ""
	want.Annotations = map[string]string{corev1.EndpointsLastChangeTriggerTime: "2026-12-06T06:00:00Z"}
	for i := range want.Endpoints {
		e := &want.Endpoints[i]
		e.TargetRef, e.Zone, e.Hints = nil, nil, nil
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("cached slice differs from what its readers need (-want +got):\n%s", diff)
	}
	if cap(got.Endpoints) != len(got.Endpoints) {
		t.Errorf("cached slice has room for %d endpoints, holds %d", cap(got.Endpoints), len(got.Endpoints))
	}
	if got.Endpoints[0].NodeName != got.Endpoints[2].NodeName {
		t.Errorf("endpoints on one node point to two copies of its name")
	}
}

// BenchmarkEndpointSliceCache reports the heap an informer cache keeps per EndpointSlice of 10 endpoints as
// the controller writes it, decoded from protobuf as the API server sends it, with and without the cache's
// compaction, with the ServiceSlices beside it.
func BenchmarkEndpointSliceCache(b *testing.B) {
	wire := make([][]byte, 10000)
	for i := range wire {
		data, err := sliceAsTheControllerWritesIt(fmt.Sprintf("svc-%d", i), 10).Marshal()
		if err != nil {
			b.Fatal(err)
		}
		wire[i] = data
	}
	benchmarkCacheHeap[discoveryv1.EndpointSlice](b, wire, cache.Indexers{}, "heap-B/slice", func() func(any) {
		byService := &ServiceSlices{slices: map[types.NamespacedName][]*discoveryv1.EndpointSlice{}}
		return func(obj any) {
			slice, service, _ := SliceService(obj)
			byService.add(service, slice)
		}
	})
}

// benchmarkCacheHeap reports in unit the heap an informer cache keeps per object of wire, each decoded into
// a T and stored with the informer's indexers, with and without the compaction. beside, when not nil,
// makes for each iteration what is kept beside the cache, which is given every object cached.
func benchmarkCacheHeap[T any, PT interface {
	*T
	Unmarshal([]byte) error
}](b *testing.B, wire [][]byte, indexers cache.Indexers, unit string, beside func() func(any)) {
	for _, compacted := range []bool{false, true} {
		b.Run(fmt.Sprintf("compacted=%v", compacted), func(b *testing.B) {
			for b.Loop() {
				c := newCompactor()
				store := cache.NewIndexer(cache.MetaNamespaceKeyFunc, indexers)
				before := testutil.LiveHeap()
				keep := func(any) {}
				if beside != nil {
					keep = beside()
				}
				for _, data := range wire {
					obj := any(PT(new(T)))
					if err := obj.(PT).Unmarshal(data); err != nil {
						b.Fatal(err)
					}
					if compacted {
						obj, _ = c.transform(obj)
					}
					if err := store.Add(obj); err != nil {
						b.Fatal(err)
					}
					keep(obj)
				}
				b.ReportMetric(float64(testutil.LiveHeap()-before)/float64(len(wire)), unit)
				runtime.KeepAlive(store)
				runtime.KeepAlive(keep)
			}
		})
	}
}

// A cached Service has the values sent, and shares with other Services the strings and pointed-to values
// that repeat.
func TestCachedServicesShareWhatRepeats(t *testing.T) {
	service := func(name, ip string) *corev1.Service {
		return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name,
			Labels: map[string]string{"app.kubernetes.io/name": name}},
			Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, ClusterIP: ip, ClusterIPs: []string{ip},
				SessionAffinity: corev1.ServiceAffinityNone, IPFamilies: []corev1.IPFamily{corev1.IPv4Protocol},
				IPFamilyPolicy:        ptr.To(corev1.IPFamilyPolicySingleStack),
				InternalTrafficPolicy: ptr.To(corev1.ServiceInternalTrafficPolicyCluster),
				Ports:                 []corev1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80}}}}
	}
	sent := []*corev1.Service{service("a", "10.96.0.10"), service("b", "10.96.0.11")}
	c := newCompactor()
	var got []*corev1.Service
	for _, s := range sent {
		// As the decoder gives them: every string a copy of its own.
		var decoded corev1.Service
		data, err := s.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if err := decoded.Unmarshal(data); err != nil {
			t.Fatal(err)
		}
		obj, err := c.transform(&decoded)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, obj.(*corev1.Service))
	}
	for i := range sent {
		if diff := cmp.Diff(sent[i], got[i]); diff != "" {
			t.Errorf("cached Service differs from the one sent (-sent +cached):\n%s", diff)
		}
	}
	a, b := got[0], got[1]
	same := func(what string, x, y string) {
		if unsafe.StringData(x) != unsafe.StringData(y) {
			t.Errorf("%s: two copies of %q", what, x)
		}
	}
	same("namespace", a.Namespace, b.Namespace)
	for k := range a.Labels {
		for l := range b.Labels {
			same("label key", k, l)
		}
	}
	same("type", string(a.Spec.Type), string(b.Spec.Type))
	same("session affinity", string(a.Spec.SessionAffinity), string(b.Spec.SessionAffinity))
	same("IP family", string(a.Spec.IPFamilies[0]), string(b.Spec.IPFamilies[0]))
	same("port protocol", string(a.Spec.Ports[0].Protocol), string(b.Spec.Ports[0].Protocol))
	same("first ClusterIP", a.Spec.ClusterIP, a.Spec.ClusterIPs[0])
	if a.Spec.IPFamilyPolicy != b.Spec.IPFamilyPolicy || a.Spec.InternalTrafficPolicy != b.Spec.InternalTrafficPolicy {
		t.Errorf("the policies point to two copies of their values")
	}
}

// BenchmarkServiceCache reports the heap an informer cache keeps per Service of one port, decoded from
// protobuf as the API server sends it, with and without the cache's compaction.
func BenchmarkServiceCache(b *testing.B) {
	wire := make([][]byte, 10000)
	for i := range wire {
		ip := fmt.Sprintf("10.96.%d.%d", i/250, i%250+1)
		data, err := (&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: fmt.Sprintf("svc-%d", i),
			UID: "0c6b2c1e-3f51-4d7a-8a0e-9b1f3c2d4e5f", ResourceVersion: "4711",
			Labels: map[string]string{"app.kubernetes.io/name": fmt.Sprintf("svc-%d", i)}},
			Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, ClusterIP: ip, ClusterIPs: []string{ip},
				SessionAffinity: corev1.ServiceAffinityNone, IPFamilies: []corev1.IPFamily{corev1.IPv4Protocol},
				IPFamilyPolicy:        ptr.To(corev1.IPFamilyPolicySingleStack),
				InternalTrafficPolicy: ptr.To(corev1.ServiceInternalTrafficPolicyCluster),
				Ports:                 []corev1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80}}}}).Marshal()
		if err != nil {
			b.Fatal(err)
		}
		wire[i] = data
	}
	benchmarkCacheHeap[corev1.Service](b, wire, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc}, "heap-B/service", nil)
}
