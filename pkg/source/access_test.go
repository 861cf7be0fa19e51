package source

import (
	"context"
	"errors"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// A node's credentials do not cover EndpointSlices: start-up says which binding to create, or what to turn off.
func TestCheckAccessSaysWhatToDo(t *testing.T) {
	client := fake.NewClientset()
	client.PrependReactor("list", "endpointslices", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Group: "discovery.k8s.io", Resource: "endpointslices"}, "", errors.New("node authorizer"))
	})
	err := CheckServiceAccess(context.Background(), client)
	if err == nil {
		t.Fatal("no error without access to EndpointSlices")
	}
	for _, want := range []string{"cannot list endpointslices.discovery.k8s.io",
		"kubectl create clusterrolebinding nodeagent:node-proxier --clusterrole=system:node-proxier --group=system:nodes",
		"--enable-proxy=false --enable-dns=false"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q\nlacks %q", err, want)
		}
	}
	if err := CheckServiceAccess(context.Background(), fake.NewClientset()); err != nil {
		t.Errorf("with access: %v", err)
	}
}
