package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// After kill -9 and a restart, the agent adopts the running containers instead of restarting them, and goes
// on serving: a pod created after the restart starts.
func TestKilledAgentAdoptsRunningPods(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ns := newNamespace(t)
	pods := stack.client.CoreV1().Pods(ns)
	for i := range 5 {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("keep-%d", i)}, Spec: testPodSpec(testImage)}
		if _, err := pods.Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	before := map[string]string{}
	err := pollUntil(ctx, func() (bool, error) {
		list, err := pods.List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		for _, p := range list.Items {
			if !podRunningAndReady(&p) {
				return false, nil
			}
			before[p.Name] = p.Status.ContainerStatuses[0].ContainerID
		}
		return len(before) == 5, nil
	})
	if err != nil {
		t.Fatalf("pods not running: %v\n%s", err, describe(ns))
	}

	if err := stack.killAgent(); err != nil {
		t.Fatalf("kill -9 agent: %v", err)
	}
	if err := stack.startAgent(); err != nil {
		t.Fatalf("restarting agent: %v", err)
	}
	// The restarted agent must go on converging: a new pod starts.
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "after-restart"}, Spec: testPodSpec(testImage)}
	if _, err := pods.Create(ctx, p, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	resumeCtx, cancelResume := context.WithTimeout(ctx, 30*time.Second)
	defer cancelResume()
	err = pollUntil(resumeCtx, func() (bool, error) {
		p, err := pods.Get(ctx, "after-restart", metav1.GetOptions{})
		return err == nil && podRunningAndReady(p), nil
	})
	if err != nil {
		t.Fatalf("restarted agent did not start a new pod within 30s: %v\n%s", err, describe(ns))
	}

	for name, id := range before {
		p, err := pods.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		cs := p.Status.ContainerStatuses[0]
		if cs.ContainerID != id || cs.RestartCount != 0 || !podRunningAndReady(p) {
			t.Errorf("pod %s after restart: container %s restartCount %d ready %v; want %s, 0, true",
				name, cs.ContainerID, cs.RestartCount, podRunningAndReady(p), id)
		}
		if got := crictl(t, "ps", "-a", "--label", "io.kubernetes.pod.uid="+string(p.UID), "-q"); len(got) != 1 {
			t.Errorf("pod %s has %d containers in the runtime, want 1 (nothing recreated)", name, len(got))
		}
	}
}
