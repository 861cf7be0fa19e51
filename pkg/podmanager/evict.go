package podmanager

import (
	"context"
	"fmt"
	"path/filepath"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/klog/v2"

	"github.com/nodeagent/nodeagent/pkg/source"
)

// ActivePods are the pods that may be running: those with a worker that have not finished.
func (m *Manager) ActivePods() []*corev1.Pod {
	m.mu.Lock()
	keys := make([]*worker, 0, len(m.workers))
	for _, w := range m.workers {
		keys = append(keys, w)
	}
	m.mu.Unlock()
	var out []*corev1.Pod
	for _, w := range keys {
		pod, err := m.getPod(w.key)
		if err != nil || pod.UID != w.uid || pod.DeletionTimestamp != nil ||
			pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
			continue
		}
		out = append(out, pod)
	}
	return out
}

// PodDirs are the directories whose size is the pod's disk use: its volumes and other files, and its logs.
func (m *Manager) PodDirs(pod *corev1.Pod) []string {
	return []string{m.podDir(string(pod.UID)), m.PodLogDir(pod)}
}

// PodLogDir is the directory of the pod's container logs, in the kubelet's layout.
func (m *Manager) PodLogDir(pod *corev1.Pod) string {
	return filepath.Join(m.cfg.PodLogsDir, fmt.Sprintf("%s_%s_%s", pod.Namespace, pod.Name, pod.UID))
}

// Evict stops the pod for node pressure, as the kubelet does: its containers are killed and its status
// becomes Failed with reason Evicted and a DisruptionTarget condition; the Pod object stays for its owner
// (a ReplicaSet replaces it) to see and delete. Its containers get grace seconds to stop.
func (m *Manager) Evict(_ context.Context, pod *corev1.Pod, message string, grace int64) error {
	if source.IsStaticPod(pod) {
		return fmt.Errorf("static pod %s/%s is not evicted", pod.Namespace, pod.Name)
	}
	m.mu.Lock()
	w, ok := m.workers[pod.UID]
	if ok {
		m.evictions[pod.UID] = eviction{message: message, grace: grace}
	}
	m.mu.Unlock()
	if !ok {
		return fmt.Errorf("pod %s/%s has no worker", pod.Namespace, pod.Name)
	}
	klog.InfoS("Evicting pod", "pod", klog.KObj(pod), "message", message)
	m.recorder.Event(pod, corev1.EventTypeWarning, "Evicted", message)
	w.poke()
	return nil
}

// eviction is what Evict asked of a pod's worker.
type eviction struct {
	message string
	grace   int64
}

// podKill is why the node stopped a pod for good: its status becomes Failed with this reason and message;
// disruption adds the DisruptionTarget condition (an eviction for node pressure); announce records them as
// a Normal event too (the eviction manager records its own).
type podKill struct {
	reason, message string
	disruption      bool
	announce        bool
	grace           int64
}

// evictionOf is the worker's pod's eviction; ok is false if it is not being evicted.
func (m *Manager) evictionOf(w *worker) (ev eviction, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ev, ok = m.evictions[w.uid]
	return ev, ok
}

// kill stops the pod's containers within the kill's grace period, keeping their records for the status,
// which from then on says Failed with the kill's reason.
func (w *worker) kill(ctx context.Context, k podKill) error {
	w.stopProbers()
	containers, err := w.containers(ctx)
	if err != nil {
		return err
	}
	for _, c := range containers {
		if c.State == runtimeRunning {
			if err := w.runtime.StopContainer(ctx, c.Id, k.grace); err != nil {
				return fmt.Errorf("stopping container %s: %w", c.Id, err)
			}
		}
	}
	if err := w.stopSandboxes(ctx); err != nil {
		return err
	}
	// The pod's emptyDirs hold what an eviction means to free.
	if err := w.releaseEmptyDirs(); err != nil {
		return err
	}
	// Only now, with its containers stopped, may the status say Failed: a Failed pod is never synced again.
	w.killed = &k
	return nil
}
