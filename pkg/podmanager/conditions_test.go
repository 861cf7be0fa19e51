package podmanager

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// While an init container runs, the conditions say which containers hold the pod back, in the kubelet's
// words, and every condition and the status carry the generation they were computed for.
func TestConditionsNameTheContainersThatHoldThePodBack(t *testing.T) {
	pod := testPod("busybox")
	pod.Generation = 3
	pod.Spec.InitContainers = []corev1.Container{{Name: "setup", Image: "busybox"}, {Name: "setup2", Image: "busybox"}}
	pod.Spec.ReadinessGates = []corev1.PodReadinessGate{{ConditionType: "example.com/lb"}}
	f := newFixture(t, pod)
	f.runtime.SetFakeImages([]string{"busybox"})
	if _, err := f.worker.sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	status := f.postedStatus(t)
	if status.ObservedGeneration != 3 {
		t.Errorf("status.observedGeneration %d, want 3", status.ObservedGeneration)
	}
	want := map[corev1.PodConditionType]corev1.PodCondition{
		corev1.PodReadyToStartContainers: {Status: corev1.ConditionTrue},
		corev1.PodInitialized: {Status: corev1.ConditionFalse, Reason: "ContainersNotInitialized",
			Message: "containers with incomplete status: [setup setup2]"},
		corev1.ContainersReady: {Status: corev1.ConditionFalse, Reason: "ContainersNotReady",
			Message: "containers with unready status: [server]"},
		corev1.PodReady: {Status: corev1.ConditionFalse, Reason: "ContainersNotReady",
			Message: "containers with unready status: [server]"},
		corev1.PodScheduled: {Status: corev1.ConditionTrue}, // the kubelet's, for the generation it saw
	}
	for _, c := range status.Conditions {
		w, ok := want[c.Type]
		if !ok {
			t.Errorf("unexpected condition %+v", c)
			continue
		}
		delete(want, c.Type)
		if c.Status != w.Status || c.Reason != w.Reason || c.Message != w.Message || c.ObservedGeneration != 3 {
			t.Errorf("%s: %s %q %q generation %d; want %s %q %q generation 3", c.Type, c.Status, c.Reason, c.Message,
				c.ObservedGeneration, w.Status, w.Reason, w.Message)
		}
	}
	for typ := range want {
		t.Errorf("no %s condition", typ)
	}
	// The containers not made yet wait as the kubelet says, in a pod with init containers.
	for _, cs := range []corev1.ContainerStatus{status.InitContainerStatuses[1], status.ContainerStatuses[0]} {
		if cs.State.Waiting == nil || cs.State.Waiting.Reason != "PodInitializing" {
			t.Errorf("%s: state %+v, want waiting PodInitializing", cs.Name, cs.State)
		}
	}
}

// Once the containers are ready, a readiness gate whose condition is missing keeps the pod unready.
func TestReadinessGateHoldsAReadyPod(t *testing.T) {
	pod := testPod("busybox")
	pod.Spec.ReadinessGates = []corev1.PodReadinessGate{{ConditionType: "example.com/lb"}}
	ok, reason, message := readinessGates(pod, nil)
	if ok || reason != "ReadinessGatesNotReady" ||
		message != `corresponding condition of pod readiness gate "example.com/lb" does not exist.` {
		t.Errorf("readinessGates = %v %q %q", ok, reason, message)
	}
	ok, _, message = readinessGates(pod, []corev1.PodCondition{{Type: "example.com/lb", Status: corev1.ConditionFalse}})
	if ok || message != `the status of pod readiness gate "example.com/lb" is not "True", but False` {
		t.Errorf("readinessGates = %v %q", ok, message)
	}
	if ok, _, _ = readinessGates(pod, []corev1.PodCondition{{Type: "example.com/lb", Status: corev1.ConditionTrue}}); !ok {
		t.Error("a True gate condition holds the pod")
	}
}

// A condition that someone else set (a readiness gate's) survives the node's status writes even when the
// node's cached copy of the pod does not have it yet.
func TestStatusWritesKeepOthersConditions(t *testing.T) {
	pod := testPod("busybox")
	pod.Spec.ReadinessGates = []corev1.PodReadinessGate{{ConditionType: "example.com/lb"}}
	f := newFixture(t, pod)
	f.runtime.SetFakeImages([]string{"busybox"})
	inAPI := pod.DeepCopy()
	inAPI.Status.Conditions = []corev1.PodCondition{{Type: "example.com/lb", Status: corev1.ConditionTrue}}
	if _, err := f.client.CoreV1().Pods("default").UpdateStatus(context.Background(), inAPI, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.worker.sync(context.Background()); err != nil { // the cache still has the pod without it
		t.Fatal(err)
	}
	status := f.postedStatus(t)
	var gate, ready corev1.ConditionStatus
	for _, c := range status.Conditions {
		switch c.Type {
		case "example.com/lb":
			gate = c.Status
		case corev1.PodReady:
			ready = c.Status
		}
	}
	if gate != corev1.ConditionTrue || ready == "" {
		t.Errorf("conditions %+v: want the gate's kept True beside the node's Ready", status.Conditions)
	}
}

// A new sandbox's address replaces the old one in podIPs (a list the API merges by IP): the patch says
// what to remove, not only what to add.
func TestStatusWritesReplaceThePodIPs(t *testing.T) {
	pod := testPod("busybox")
	pod.Status.PodIP, pod.Status.PodIPs = "10.0.0.1", []corev1.PodIP{{IP: "10.0.0.1"}}
	f := newFixture(t, pod)
	status := pod.Status.DeepCopy()
	status.PodIP, status.PodIPs = "10.0.0.2", []corev1.PodIP{{IP: "10.0.0.2"}}
	if err := f.worker.patchStatus(context.Background(), pod, status); err != nil {
		t.Fatal(err)
	}
	if got := f.postedStatus(t); got.PodIP != "10.0.0.2" || len(got.PodIPs) != 1 || got.PodIPs[0].IP != "10.0.0.2" {
		t.Errorf("podIP %q podIPs %v, want only 10.0.0.2", got.PodIP, got.PodIPs)
	}
}
