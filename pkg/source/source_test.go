package source

import (
	"context"
	"testing"

	"k8s.io/client-go/kubernetes/fake"
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
