package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
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

// What an agent stopped in the middle of removing a pod leaves behind (a mounted memory emptyDir, the pod's
// directory and logs) is cleaned up by the next agent, although neither the API nor the runtime remembers
// the pod.
func TestOrphanedPodFilesAreCleanedUpAfterARestart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ns := newNamespace(t)
	pod := busyboxPod("orphan", 1, "echo orphan-logs; exec sleep 3600")
	pod.Spec.Volumes = []corev1.Volume{{Name: "mem", VolumeSource: corev1.VolumeSource{
		EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory}}}}
	pod.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "mem", MountPath: "/mem"}}
	created, err := stack.client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitForLog(ctx, t, logFile(created, "c"), "orphan-logs")
	podDir := filepath.Join(runDir, "root", "pods", string(created.UID))
	tmpfs := filepath.Join(podDir, "volumes", "kubernetes.io~empty-dir", "mem")
	if !isMounted(t, tmpfs) {
		t.Fatalf("%s is not mounted", tmpfs)
	}

	// The agent dies; meanwhile the pod is force-deleted and its sandbox removed behind its back.
	if err := stack.killAgent(); err != nil {
		t.Fatal(err)
	}
	zero := int64(0)
	if err := stack.client.CoreV1().Pods(ns).Delete(ctx, "orphan", metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		t.Fatal(err)
	}
	for _, id := range crictl(t, "pods", "-q", "--label", "io.kubernetes.pod.uid="+string(created.UID)) {
		crictl(t, "stopp", id)
		crictl(t, "rmp", id)
	}
	if err := stack.startAgent(); err != nil {
		t.Fatal(err)
	}
	err = pollUntil(ctx, func() (bool, error) {
		_, errDir := os.Stat(podDir)
		_, errLogs := os.Stat(filepath.Dir(filepath.Dir(logFile(created, "c"))))
		return os.IsNotExist(errDir) && os.IsNotExist(errLogs) && !isMounted(t, tmpfs), nil
	})
	if err != nil {
		t.Errorf("the orphaned pod's tmpfs, directory or logs are still there after the restart")
	}
}

// isMounted reports whether path is a mount point on the host (mountinfo shows paths with symlinks such as
// /var/run resolved).
func isMounted(t *testing.T, path string) bool {
	t.Helper()
	if resolved, err := filepath.EvalSymlinks(path); err == nil {
		path = resolved
	}
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	return strings.Contains(string(data), " "+path+" ")
}
