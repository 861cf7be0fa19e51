package e2e

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nodeagent/nodeagent/internal/testutil"
)

// Each pod runs in a pod cgroup under its QoS class's cgroup (the kubelet's cgroupfs layout on this cgroup v1
// host), sized by the pod's requests and limits; the container is inside it; deletion removes it.
func TestQoSPodCgroups(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ns := newNamespace(t)
	resources := func(cpu, memory string) corev1.ResourceList {
		return corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu), corev1.ResourceMemory: resource.MustParse(memory)}
	}
	cases := []struct {
		name      string
		resources corev1.ResourceRequirements
		qos       corev1.PodQOSClass
		dir       string // under the kubepods cgroup
		memory    string // the pod cgroup's memory.limit_in_bytes
		shares    string
	}{
		{"guaranteed", corev1.ResourceRequirements{Requests: resources("200m", "48Mi"), Limits: resources("200m", "48Mi")},
			corev1.PodQOSGuaranteed, "", "50331648", "204"},
		{"burstable", corev1.ResourceRequirements{Requests: resources("100m", "16Mi"), Limits: resources("1", "80Mi")},
			corev1.PodQOSBurstable, "burstable/", "83886080", "102"},
		{"besteffort", corev1.ResourceRequirements{}, corev1.PodQOSBestEffort, "besteffort/", "", "2"},
	}
	for _, tc := range cases {
		pod := busyboxPod(tc.name, 1, `grep memory /proc/self/cgroup; exec sleep 3600`)
		pod.Spec.Containers[0].Resources = tc.resources
		created, err := stack.client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if created.Status.QOSClass != tc.qos {
			t.Errorf("%s: qosClass %s, want %s", tc.name, created.Status.QOSClass, tc.qos)
		}
		podCgroup := "/kubepods/" + tc.dir + "pod" + string(created.UID)
		waitForLog(ctx, t, logFile(created, "c"), ":memory:"+podCgroup+"/")
		if tc.memory != "" {
			testutil.ExpectFile(t, "/sys/fs/cgroup/memory"+podCgroup+"/memory.limit_in_bytes", tc.memory)
		}
		testutil.ExpectFile(t, "/sys/fs/cgroup/cpu"+podCgroup+"/cpu.shares", tc.shares)
	}
	// The agent's kubepods is sized to the node's allocatable memory.
	node, err := stack.client.CoreV1().Nodes().Get(ctx, nodeName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	testutil.ExpectFile(t, "/sys/fs/cgroup/memory/kubepods/memory.limit_in_bytes", strconv.FormatInt(node.Status.Allocatable.Memory().Value(), 10))

	pod, err := stack.client.CoreV1().Pods(ns).Get(ctx, "burstable", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	deletePod(ctx, t, ns, "burstable")
	dir := "/sys/fs/cgroup/memory/kubepods/burstable/pod" + string(pod.UID)
	err = pollUntil(ctx, func() (bool, error) {
		_, err := os.Stat(dir)
		return os.IsNotExist(err), nil
	})
	if err != nil {
		t.Errorf("%s still exists after the pod was deleted", dir)
	}
}
