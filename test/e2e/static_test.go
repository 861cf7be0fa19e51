package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func staticManifest(ns, version string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: web
  namespace: %s
  labels: {app: static-web}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: localhost/busybox:local
    command: [sh, -c, 'echo "static version $VERSION"; exec sleep 3600']
    env: [{name: VERSION, value: "%s"}]
`, ns, version)
}

// Static pods from --pod-manifest-path run without the API server and show up in it as mirror pods owned by
// the Node: deleting the mirror pod only brings a new one (the pod keeps running), editing the manifest
// replaces the pod, removing the file stops it and deletes the mirror.
func TestStaticPodsAndMirrorPods(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ns := newNamespace(t)
	manifest := filepath.Join(manifestDir, ns+"-web.yaml")
	// Written to a hidden file, then renamed: the agent, like the kubelet, reads every file that does not
	// start with a dot, and a visible temporary file read before the rename is a pod of its own (its UID
	// derives from its path), which made this test flaky.
	tmp := filepath.Join(manifestDir, "."+ns+"-web.yaml.tmp")
	write := func(version string) {
		t.Helper()
		if err := os.WriteFile(tmp, []byte(staticManifest(ns, version)), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, manifest); err != nil {
			t.Fatal(err)
		}
	}
	write("1")
	t.Cleanup(func() { _ = os.Remove(manifest) })
	name := "web-" + nodeName

	running := func(p *corev1.Pod) bool {
		return p.DeletionTimestamp == nil && podRunningAndReady(p) && p.Annotations["kubernetes.io/config.mirror"] != ""
	}
	mirror := waitForPod(ctx, t, ns, name, "a Running and Ready mirror pod", running)
	if refs := mirror.OwnerReferences; len(refs) != 1 || refs[0].Kind != "Node" || refs[0].Name != nodeName {
		t.Errorf("mirror pod owner references = %+v, want the Node %s", refs, nodeName)
	}
	if mirror.Annotations["kubernetes.io/config.source"] != "file" || mirror.Labels["app"] != "static-web" {
		t.Errorf("mirror pod annotations %v labels %v", mirror.Annotations, mirror.Labels)
	}
	staticUID := mirror.Annotations["kubernetes.io/config.mirror"]
	logOf := func(uid string) string {
		return filepath.Join("/var/log/pods", ns+"_"+name+"_"+uid, "c", "0.log")
	}
	waitForLog(ctx, t, logOf(staticUID), "static version 1")
	containerID := mirror.Status.ContainerStatuses[0].ContainerID

	// Deleting the mirror pod does not touch the static pod: a new mirror shows the same container.
	if err := stack.client.CoreV1().Pods(ns).Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	again := waitForPod(ctx, t, ns, name, "recreated", func(p *corev1.Pod) bool {
		return p.UID != mirror.UID && running(p) && len(p.Status.ContainerStatuses) == 1
	})
	if cs := again.Status.ContainerStatuses[0]; cs.ContainerID != containerID || cs.RestartCount != 0 {
		t.Errorf("after deleting the mirror pod: container %s restarts %d, want %s and 0", cs.ContainerID, cs.RestartCount, containerID)
	}

	// Editing the manifest replaces the pod.
	write("2")
	edited := waitForPod(ctx, t, ns, name, "replaced by the edited manifest", func(p *corev1.Pod) bool {
		return running(p) && p.Annotations["kubernetes.io/config.mirror"] != staticUID
	})
	waitForLog(ctx, t, logOf(edited.Annotations["kubernetes.io/config.mirror"]), "static version 2")
	err := pollUntil(ctx, func() (bool, error) {
		return len(crictl(t, "ps", "-a", "-q", "--label", "io.kubernetes.pod.uid="+staticUID)) == 0, nil
	})
	if err != nil {
		t.Errorf("the first version's containers are still there")
	}

	// Removing the manifest stops the pod and deletes its mirror.
	if err := os.Remove(manifest); err != nil {
		t.Fatal(err)
	}
	err = pollUntil(ctx, func() (bool, error) {
		_, err := stack.client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		return err != nil, nil
	})
	if err != nil {
		t.Fatalf("mirror pod not deleted after the manifest was removed\n%s", describe(ns))
	}
	err = pollUntil(ctx, func() (bool, error) {
		return len(crictl(t, "pods", "-q", "--label", "io.kubernetes.pod.uid="+edited.Annotations["kubernetes.io/config.mirror"])) == 0, nil
	})
	if err != nil {
		t.Errorf("the static pod's sandbox is still there after its manifest was removed")
	}
}
