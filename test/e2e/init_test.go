package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// An init container runs to completion before anything else; a sidecar (init container with restartPolicy
// Always) then runs beside the app container, in the same network namespace, and counts for readiness.
func TestInitContainerThenSidecarBesideApp(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ns := newNamespace(t)
	always := corev1.ContainerRestartPolicyAlways
	busybox := func(name, script string) corev1.Container {
		return corev1.Container{Name: name, Image: "localhost/busybox:local", ImagePullPolicy: corev1.PullNever,
			Command: []string{"sh", "-c", script}}
	}
	grace := int64(2)
	pod, err := stack.client.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "layered"},
		Spec: corev1.PodSpec{
			NodeName:                      nodeName,
			TerminationGracePeriodSeconds: &grace,
			InitContainers: []corev1.Container{
				busybox("setup", "sleep 1; echo setup-done"),
				{Name: "sidecar", Image: testImage, ImagePullPolicy: corev1.PullNever, RestartPolicy: &always,
					Args: []string{"--http-port=9090", "--echo-port=0"}},
			},
			Containers: []corev1.Container{busybox("app",
				"for i in $(seq 100); do wget -qO- http://127.0.0.1:9090/healthz && break; sleep 0.1; done; "+
					"echo; echo app-reached-sidecar; exec sleep 3600")},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var p *corev1.Pod
	err = pollUntil(ctx, func() (bool, error) {
		p, err = stack.client.CoreV1().Pods(ns).Get(ctx, "layered", metav1.GetOptions{})
		return err == nil && podRunningAndReady(p), nil
	})
	if err != nil {
		t.Fatalf("pod not Running and Ready: %v\n%s", err, describe(ns))
	}
	setup, sidecar, app := p.Status.InitContainerStatuses[0], p.Status.InitContainerStatuses[1], p.Status.ContainerStatuses[0]
	if setup.State.Terminated == nil || setup.State.Terminated.Reason != "Completed" {
		t.Fatalf("setup = %+v, want terminated Completed", setup.State)
	}
	if sidecar.State.Running == nil || !sidecar.Ready || app.State.Running == nil {
		t.Fatalf("sidecar %+v app %+v, want both running", sidecar.State, app.State)
	}
	if sidecar.State.Running.StartedAt.Before(&setup.State.Terminated.FinishedAt) ||
		app.State.Running.StartedAt.Before(&sidecar.State.Running.StartedAt) {
		t.Errorf("start order wrong: setup finished %v, sidecar started %v, app started %v",
			setup.State.Terminated.FinishedAt, sidecar.State.Running.StartedAt, app.State.Running.StartedAt)
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodInitialized && c.Status != corev1.ConditionTrue {
			t.Errorf("Initialized = %s, want True", c.Status)
		}
	}
	logFile := filepath.Join("/var/log/pods", ns+"_layered_"+string(pod.UID), "app", "0.log")
	err = pollUntil(ctx, func() (bool, error) {
		data, _ := os.ReadFile(logFile)
		return strings.Contains(string(data), "stdout F ok\n") && strings.Contains(string(data), "app-reached-sidecar"), nil
	})
	if err != nil {
		data, _ := os.ReadFile(logFile)
		t.Errorf("app did not reach the sidecar over the pod's loopback: %q", data)
	}
}
