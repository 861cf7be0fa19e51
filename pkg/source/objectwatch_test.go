package source

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// Pods read a ConfigMap from one watch, which follows updates without a GET, tells a missing object from a
// present one, and stops when the last pod using it is released.
func TestObjectWatchesShareOneWatchPerObject(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	client := fake.NewClientset(&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "app"},
		Data: map[string]string{"k": "v1"}})
	o := NewObjectWatches(client)
	defer o.StopAll()
	for _, pod := range []string{"pod-a", "pod-b"} {
		cm, err := o.ConfigMap(ctx, types.UID(pod), "ns", "app")
		if err != nil || cm.Data["k"] != "v1" {
			t.Fatalf("%s: %v, %v", pod, cm, err)
		}
	}
	if _, err := o.Secret(ctx, "pod-a", "ns", "missing"); !apierrors.IsNotFound(err) {
		t.Fatalf("a missing Secret: %v, want NotFound", err)
	}
	if _, err := client.CoreV1().ConfigMaps("ns").Update(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "app"},
		Data: map[string]string{"k": "v2"}}, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	for {
		cm, err := o.ConfigMap(ctx, "pod-a", "ns", "app")
		if err != nil {
			t.Fatal(err)
		}
		if cm.Data["k"] == "v2" {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatal("the update never reached the watch")
		case <-time.After(10 * time.Millisecond):
		}
	}
	var lists, gets int
	for _, a := range client.Actions() {
		if a.GetResource().Resource == "configmaps" {
			switch a.GetVerb() {
			case "list":
				lists++
			case "get":
				gets++
			}
		}
		if l, ok := a.(k8stesting.ListAction); ok && l.GetListRestrictions().Fields.String() == "" {
			t.Errorf("a list without a field selector: %v", a)
		}
	}
	if lists != 1 || gets != 0 {
		t.Errorf("%d lists and %d gets of ConfigMaps for two pods and an update, want one list", lists, gets)
	}
	o.Release("pod-a")
	if n := len(o.watches); n != 1 {
		t.Fatalf("%d watches after pod-a left, want the ConfigMap's (pod-b still uses it)", n)
	}
	o.Release("pod-b")
	if n := len(o.watches); n != 0 {
		t.Fatalf("%d watches after both pods left", n)
	}
}
