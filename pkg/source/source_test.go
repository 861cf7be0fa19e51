package source

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	corelisters "k8s.io/client-go/listers/core/v1"
)

// A process that runs only the proxy or only DNS never asks for Pods, so it never lists or watches them;
// the node agent does.
func TestPodsAreWatchedOnlyWhenAsked(t *testing.T) {
	for _, asked := range []bool{false, true} {
		client := fake.NewClientset()
		src := New(client, "node-a", 0)
		if asked {
			src.Pods()
		}
		ctx, cancel := context.WithCancel(context.Background())
		if err := src.Start(ctx); err != nil {
			t.Fatal(err)
		}
		cancel()
		src.Shutdown()
		listed := false
		for _, a := range client.Actions() {
			if a.GetVerb() == "list" && a.GetResource().Resource == "pods" {
				listed = true
			}
		}
		if listed != asked {
			t.Errorf("Pods asked for: %v; Pods listed: %v", asked, listed)
		}
	}
}

// The caches hold objects without their managedFields, which nothing in the agent reads.
func TestCachedObjectsHaveNoManagedFields(t *testing.T) {
	managed := metav1.ObjectMeta{Namespace: "default", Name: "web",
		ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl", Operation: metav1.ManagedFieldsOperationApply}}}
	client := fake.NewClientset(&corev1.Service{ObjectMeta: managed})
	src := New(client, "node-a", 0)
	services := corelisters.NewServiceLister(src.Services().GetIndexer())
	ctx, cancel := context.WithCancel(context.Background())
	defer func() { cancel(); src.Shutdown() }()
	if err := src.Start(ctx); err != nil {
		t.Fatal(err)
	}
	svc, err := services.Services("default").Get("web")
	if err != nil {
		t.Fatal(err)
	}
	if svc.ManagedFields != nil {
		t.Errorf("cached Service has managedFields %v, want none", svc.ManagedFields)
	}
}
