package podmanager

import (
	"context"
	"fmt"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	k8stesting "k8s.io/client-go/testing"
)

// The kubelet renews a projected ServiceAccount token once 80% of its life has passed; tokens here live
// 300 ms so the test sees a renewal.
func TestProjectedTokenIsRenewedAtEightyPercentOfItsLife(t *testing.T) {
	pod := testPod("img")
	pod.Spec.ServiceAccountName = "builder"
	f := newFixture(t, pod)
	const life = 300 * time.Millisecond
	var requests []*authenticationv1.TokenRequest
	f.client.PrependReactor("create", "serviceaccounts", func(action k8stesting.Action) (bool, runtime.Object, error) {
		create, ok := action.(k8stesting.CreateAction)
		if !ok || action.GetSubresource() != "token" {
			return false, nil, nil
		}
		tr := create.GetObject().(*authenticationv1.TokenRequest).DeepCopy()
		requests = append(requests, tr)
		tr.Status = authenticationv1.TokenRequestStatus{Token: fmt.Sprint("token-", len(requests)),
			ExpirationTimestamp: metav1.NewTime(time.Now().Add(life))}
		return true, tr, nil
	})
	audience, expiration := "vault", int64(600)
	src := &corev1.ServiceAccountTokenProjection{Audience: audience, ExpirationSeconds: &expiration, Path: "token"}
	ctx := context.Background()

	started := time.Now()
	first, err := f.worker.serviceAccountToken(ctx, pod, "vol", src)
	if err != nil || first != "token-1" {
		t.Fatalf("first token = %q, %v", first, err)
	}
	var renewed string
	for renewed == first || renewed == "" {
		if time.Since(started) > 5*time.Second {
			t.Fatal("the token was never renewed")
		}
		if renewed, err = f.worker.serviceAccountToken(ctx, pod, "vol", src); err != nil {
			t.Fatal(err)
		}
		if renewed == first {
			time.Sleep(10 * time.Millisecond)
		}
	}
	if elapsed := time.Since(started); elapsed < life*8/10 {
		t.Errorf("token renewed after %s, before 80%% of its %s life", elapsed, life)
	}
	tr := requests[0]
	if tr.Spec.Audiences[0] != audience || *tr.Spec.ExpirationSeconds != expiration || tr.Spec.BoundObjectRef.Kind != "Pod" ||
		tr.Spec.BoundObjectRef.UID != pod.UID {
		t.Errorf("token request = %+v", tr.Spec)
	}
	if len(requests) != 2 {
		t.Errorf("%d token requests, want 2 (one per life)", len(requests))
	}
}
