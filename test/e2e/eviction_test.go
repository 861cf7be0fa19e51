package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nodeagent/nodeagent/pkg/eviction"
)

// Node-pressure eviction on the real node: the agent is restarted with a hard threshold just below what is
// available now, a BestEffort pod fills memory (a memory-backed emptyDir) or disk (an emptyDir) or starts
// 800 processes, and the
// agent reports the pressure condition, evicts that pod (Failed, Evicted, DisruptionTarget, an event) while a
// Guaranteed pod beside it keeps running, frees the volume, and the condition clears.
func TestNodePressureEviction(t *testing.T) {
	const fill = "dd if=/dev/zero of=/fill/data bs=1M count=700 conv=fsync && exec sleep 3600"
	for _, tc := range []struct {
		name, signal, condition, medium, resource, hog string
		headroom                                       int64 // below what is available now
	}{
		{"memory", eviction.SignalMemoryAvailable, string(corev1.NodeMemoryPressure), "Memory", "memory", fill, 300 << 20},
		{"disk", eviction.SignalNodeFsAvailable, string(corev1.NodeDiskPressure), "", "ephemeral-storage", fill, 300 << 20},
		{"pids", eviction.SignalPIDAvailable, string(corev1.NodePIDPressure), "", "pids",
			`i=0; while [ $i -lt 800 ]; do sleep 3600 & i=$((i+1)); done; wait`, 300},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			ns := newNamespace(t)
			stats := &eviction.NodeStats{RootDir: runDir + "/root"}
			obs, err := stats.Observe()
			if err != nil {
				t.Fatal(err)
			}
			// Headroom against the machine's own noise; the hog takes more than twice as much.
			threshold := obs[tc.signal].Available - tc.headroom
			restartAgent(t, "--eviction-hard", fmt.Sprintf("%s<%d", tc.signal, threshold))
			t.Cleanup(func() { restartAgent(t) })

			guaranteed := busyboxPod("guaranteed", 1, "exec sleep 3600")
			limits := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("32Mi")}
			guaranteed.Spec.Containers[0].Resources = corev1.ResourceRequirements{Requests: limits, Limits: limits}
			hog := busyboxPod("hog", 1, tc.hog)
			hog.Spec.Volumes = []corev1.Volume{{Name: "fill", VolumeSource: corev1.VolumeSource{
				EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMedium(tc.medium)}}}}
			hog.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "fill", MountPath: "/fill"}}
			for _, p := range []*corev1.Pod{guaranteed, hog} {
				if _, err := stack.client.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			waitForNodeCondition(ctx, t, tc.condition, corev1.ConditionTrue)
			evicted := waitForPod(ctx, t, ns, "hog", "evicted", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodFailed })
			if evicted.Status.Reason != "Evicted" || !strings.Contains(evicted.Status.Message, "The node was low on resource: "+tc.resource) {
				t.Errorf("evicted pod reason %q message %q", evicted.Status.Reason, evicted.Status.Message)
			}
			if !hasCondition(evicted, corev1.DisruptionTarget) {
				t.Errorf("evicted pod conditions %+v lack DisruptionTarget", evicted.Status.Conditions)
			}
			err = pollUntil(ctx, func() (bool, error) {
				events, err := stack.client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{
					FieldSelector: "involvedObject.name=hog,reason=Evicted"})
				return err == nil && len(events.Items) > 0, nil
			})
			if err != nil {
				t.Errorf("no Evicted event")
			}
			// The hog's volume is freed, so the pressure ends and nothing else is evicted.
			waitForNodeCondition(ctx, t, tc.condition, corev1.ConditionFalse)
			if p, err := stack.client.CoreV1().Pods(ns).Get(ctx, "guaranteed", metav1.GetOptions{}); err != nil ||
				p.Status.Phase != corev1.PodRunning {
				t.Errorf("the Guaranteed pod did not keep running: %v %+v", err, p.Status)
			}
		})
	}
}

// restartAgent kills the e2e agent and starts it again with extra flags; its pods keep running. It returns
// once the node API answers through the API server, as the tests that follow expect.
func restartAgent(t *testing.T, extra ...string) {
	t.Helper()
	if err := stack.killAgent(); err != nil {
		t.Fatal(err)
	}
	if err := stack.startAgent(extra...); err != nil {
		t.Fatal(err)
	}
	waitForNodeAPI(t)
}

// waitForNodeAPI returns once the agent's node API answers through the API server.
func waitForNodeAPI(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := pollUntil(ctx, func() (bool, error) {
		_, err := stack.client.CoreV1().RESTClient().Get().AbsPath("/api/v1/nodes", nodeName, "proxy", "healthz").DoRaw(ctx)
		return err == nil, nil
	}); err != nil {
		t.Fatalf("the restarted agent's node API does not answer (see %s/nodeagent.log): %v", runDir, err)
	}
}

func hasCondition(p *corev1.Pod, typ corev1.PodConditionType) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == typ && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

func waitForNodeCondition(ctx context.Context, t *testing.T, typ string, want corev1.ConditionStatus) {
	t.Helper()
	err := pollUntil(ctx, func() (bool, error) {
		n, err := stack.client.CoreV1().Nodes().Get(ctx, nodeName, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		for _, c := range n.Status.Conditions {
			if string(c.Type) == typ {
				return c.Status == want, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("node condition %s never became %s", typ, want)
	}
}

// A soft threshold evicts only once it has been met for its grace period, and gives the pod its own
// termination grace period up to evictionMaxPodGracePeriod (here 5 s of the pod's 60; sleep ignores
// SIGTERM, so the container dies when the grace period ends).
func TestSoftEvictionWaitsForItsGracePeriod(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ns := newNamespace(t)
	obs, err := (&eviction.NodeStats{RootDir: runDir + "/root"}).Observe()
	if err != nil {
		t.Fatal(err)
	}
	threshold := obs[eviction.SignalMemoryAvailable].Available - 300<<20
	restartAgent(t, "--eviction-soft", fmt.Sprintf("%s<%d", eviction.SignalMemoryAvailable, threshold),
		"--eviction-soft-grace-period", eviction.SignalMemoryAvailable+"=30s", "--eviction-max-pod-grace-period", "5")
	t.Cleanup(func() { restartAgent(t) })
	hog := busyboxPod("hog", 60, "dd if=/dev/zero of=/fill/data bs=1M count=700 && exec sleep 3600")
	hog.Spec.Volumes = []corev1.Volume{{Name: "fill", VolumeSource: corev1.VolumeSource{
		EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory}}}}
	hog.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "fill", MountPath: "/fill"}}
	if _, err := stack.client.CoreV1().Pods(ns).Create(ctx, hog, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	evicted := waitForPod(ctx, t, ns, "hog", "evicted", func(p *corev1.Pod) bool {
		return p.Status.Phase == corev1.PodFailed && len(p.Status.ContainerStatuses) == 1 &&
			p.Status.ContainerStatuses[0].State.Terminated != nil
	})
	var events *corev1.EventList
	err = pollUntil(ctx, func() (bool, error) { // Events are sent after the fact
		var err error
		events, err = stack.client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=hog,reason=Evicted"})
		return err == nil && len(events.Items) > 0, nil
	})
	if err != nil {
		t.Fatalf("no Evicted event: %v", err)
	}
	evictedAt := events.Items[0].FirstTimestamp.Time
	state := evicted.Status.ContainerStatuses[0].State.Terminated
	if met := evictedAt.Sub(state.StartedAt.Time); met < 29*time.Second {
		t.Errorf("evicted %v after the hog started, before the 30 s grace period", met)
	}
	if grace := state.FinishedAt.Sub(evictedAt); grace < 3*time.Second || grace > 30*time.Second {
		t.Errorf("the container stopped %v after the eviction, want about the 5 s maximum grace period", grace)
	}
}
