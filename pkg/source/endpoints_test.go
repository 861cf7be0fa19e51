package source

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func endpointPod(name, ip string, ready bool, port string) *corev1.Pod {
	status := corev1.ConditionFalse
	if ready {
		status = corev1.ConditionTrue
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name, Labels: map[string]string{"app": "web"}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIPs: []corev1.PodIP{{IP: ip}},
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: status}}}}
	if port != "" {
		pod.Spec.Containers = []corev1.Container{{Name: "c", Ports: []corev1.ContainerPort{{Name: port, ContainerPort: 8080, Protocol: corev1.ProtocolTCP}}}}
	}
	return pod
}

// As the EndpointSlice controller: a not-ready pod is listed not ready, a terminating one serving but not
// ready, a finished one not at all, and pods whose named port resolves differently go to different slices.
func TestEndpointSlicesFollowTheController(t *testing.T) {
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web"},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "web"}, IPFamilies: []corev1.IPFamily{corev1.IPv4Protocol},
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http"), Protocol: corev1.ProtocolTCP}}}}
	terminating := endpointPod("b", "10.0.0.2", true, "http")
	now := metav1.NewTime(time.Now())
	terminating.DeletionTimestamp = &now
	done := endpointPod("c", "10.0.0.3", true, "http")
	done.Status.Phase = corev1.PodSucceeded
	other := endpointPod("d", "10.0.0.4", true, "")
	other.Labels = nil
	slices := EndpointSlicesFor(svc, []*corev1.Pod{endpointPod("a", "10.0.0.1", false, "http"), terminating, done, other,
		endpointPod("e", "10.0.0.5", true, "")})
	if len(slices) != 2 {
		t.Fatalf("%d slices, want 2 (the pods with port http, and the one without)", len(slices))
	}
	withPort := slices[0]
	if len(withPort.Ports) != 1 || *withPort.Ports[0].Port != 8080 || len(withPort.Endpoints) != 2 {
		t.Fatalf("slice with the named port: %+v", withPort)
	}
	a, b := withPort.Endpoints[0], withPort.Endpoints[1]
	if *a.Conditions.Ready || *a.Conditions.Serving || *a.Conditions.Terminating {
		t.Errorf("not-ready pod: %+v", a.Conditions)
	}
	if *b.Conditions.Ready || !*b.Conditions.Serving || !*b.Conditions.Terminating {
		t.Errorf("terminating pod: %+v", b.Conditions)
	}
	if len(slices[1].Ports) != 0 || len(slices[1].Endpoints) != 1 || slices[1].Endpoints[0].Addresses[0] != "10.0.0.5" {
		t.Errorf("slice of the pod without the port: %+v", slices[1])
	}
	svc.Spec.PublishNotReadyAddresses = true
	if s := EndpointSlicesFor(svc, []*corev1.Pod{endpointPod("a", "10.0.0.1", false, "http")}); !*s[0].Endpoints[0].Conditions.Ready {
		t.Error("publishNotReadyAddresses: a not-ready pod is not ready")
	}
}
