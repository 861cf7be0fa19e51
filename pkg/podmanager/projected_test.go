package podmanager

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
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

// The API server can refuse a TokenRequest right after the Pod's creation, "pod not found" or "no
// relationship found" (its admission and Node authorizer read the Pod from caches of their own): the request
// is made again at once, and the sync goes on.
func TestATokenRequestThatDoesNotFindThePodYetIsRepeated(t *testing.T) {
	pod := testPod("img")
	f := newFixture(t, pod)
	requests := 0
	f.client.PrependReactor("create", "serviceaccounts", func(action k8stesting.Action) (bool, runtime.Object, error) {
		if action.GetSubresource() != "token" {
			return false, nil, nil
		}
		switch requests++; requests {
		case 1:
			return true, nil, apierrors.NewNotFound(corev1.Resource("pods"), pod.Name)
		case 2:
			return true, nil, apierrors.NewForbidden(corev1.Resource("serviceaccounts/token"), "default",
				errors.New("no relationship found between node 'node-a' and this object"))
		}
		tr := action.(k8stesting.CreateAction).GetObject().(*authenticationv1.TokenRequest).DeepCopy()
		tr.Status = authenticationv1.TokenRequestStatus{Token: "token", ExpirationTimestamp: metav1.NewTime(time.Now().Add(time.Hour))}
		return true, tr, nil
	})
	token, err := f.worker.serviceAccountToken(context.Background(), pod, "vol", &corev1.ServiceAccountTokenProjection{Path: "token"})
	if err != nil || token != "token" || requests != 3 {
		t.Fatalf("token %q, %v after %d requests; want the third's", token, err, requests)
	}
}

// A sync that fails for a moment (here the API server's TokenRequest, once) is tried again soon, not at the
// next resync.
func TestAPodWhoseTokenFailedOnceStartsSoon(t *testing.T) {
	pod := testPod("localhost/testserver:local")
	pod.Spec.Volumes = []corev1.Volume{{Name: "kube-api-access", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
		Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "token"}}}}}}}
	f := newFixture(t, pod)
	f.runtime.SetFakeImages([]string{"localhost/testserver:local"})
	requests := 0
	f.client.PrependReactor("create", "serviceaccounts", func(action k8stesting.Action) (bool, runtime.Object, error) {
		if action.GetSubresource() != "token" {
			return false, nil, nil
		}
		if requests++; requests == 1 {
			return true, nil, apierrors.NewInternalError(errors.New("etcd is busy"))
		}
		tr := action.(k8stesting.CreateAction).GetObject().(*authenticationv1.TokenRequest).DeepCopy()
		tr.Status = authenticationv1.TokenRequestStatus{Token: "token", ExpirationTimestamp: metav1.NewTime(time.Now().Add(time.Hour))}
		return true, tr, nil
	})
	m := f.worker.m
	m.cfg.ResyncInterval = time.Hour // the retry is what starts the pod, or nothing does
	m.dispatch(t.Context(), pod.UID, types.NamespacedName{Namespace: pod.Namespace, Name: pod.Name})
	deadline := time.Now().Add(5 * time.Second)
	for f.postedStatus(t).Phase != corev1.PodRunning {
		if time.Now().After(deadline) {
			t.Fatal("pod not Running 5 s after a failed TokenRequest")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
