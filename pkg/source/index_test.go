package source

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
)

// TestServiceSlicesFollowTheSlicesAndTellAfterTheyChanged: a consumer told of a change reads the slices with
// it, for a slice's arrival, its move to another Service and its deletion.
func TestServiceSlicesFollowTheSlicesAndTellAfterTheyChanged(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	slice := func(name, service string) *discoveryv1.EndpointSlice {
		return &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name,
			Labels: map[string]string{discoveryv1.LabelServiceName: service}}, AddressType: discoveryv1.AddressTypeIPv4}
	}
	client := fake.NewClientset(slice("a-1", "a"), slice("a-2", "a"))
	factory := informers.NewSharedInformerFactory(client, 0)
	informer := factory.Discovery().V1().EndpointSlices().Informer()

	var mu sync.Mutex
	var told []string // what each call saw: "service slice initial names-of-the-service's-slices"
	var byService *ServiceSlices
	byService, err := WatchServiceSlices(informer)
	if err != nil {
		t.Fatal(err)
	}
	byService.OnChange(func(service types.NamespacedName, s *discoveryv1.EndpointSlice, initial bool) {
		var names []string
		for _, e := range byService.Of(service.Namespace, service.Name) {
			names = append(names, e.Name)
		}
		slices.Sort(names)
		mu.Lock()
		defer mu.Unlock()
		told = append(told, service.Name+" "+s.Name+" "+map[bool]string{true: "initial", false: "change"}[initial]+" "+fmt.Sprint(names))
	})
	factory.Start(ctx.Done())
	defer factory.Shutdown() // after cancel, which stops the informer
	defer cancel()
	if err := byService.WaitForSync(ctx); err != nil {
		t.Fatal(err)
	}
	slicesClient := client.DiscoveryV1().EndpointSlices("ns")
	if _, err := slicesClient.Update(ctx, slice("a-2", "b"), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := slicesClient.Delete(ctx, "a-1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := slicesClient.Create(ctx, slice("orphan", ""), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	want := []string{"a a-1 initial [a-1]", "a a-2 initial [a-1 a-2]", // the first list's order is the fake's
		"a a-2 change [a-1]", "b a-2 change [a-2]", "a a-1 change []"}
	for {
		mu.Lock()
		got := slices.Clone(told)
		mu.Unlock()
		if slices.Equal(got, want) {
			break
		}
		if ctx.Err() != nil || len(got) > len(want) {
			t.Fatalf("told\n%q\nwant\n%q", got, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := byService.Of("ns", ""); got != nil {
		t.Errorf("a slice without the service-name label is listed: %v", got)
	}
}
