package podmanager

import (
	"context"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// applyProbes starts and stops the probers of the pod's running containers and then lets their results
// decide each status's Started and Ready, as the kubelet's probe manager does: liveness and readiness
// probes begin once the startup probe (if any) succeeded; a container with a readiness probe is not ready
// until it succeeds.
func (w *worker) applyProbes(pod *corev1.Pod, podIP string, inits, containers []corev1.ContainerStatus) {
	type entry struct {
		spec   *corev1.Container
		status *corev1.ContainerStatus
	}
	var entries []entry
	for i := range pod.Spec.InitContainers {
		if isSidecar(&pod.Spec.InitContainers[i]) {
			entries = append(entries, entry{&pod.Spec.InitContainers[i], &inits[i]})
		}
	}
	for i := range pod.Spec.Containers {
		entries = append(entries, entry{&pod.Spec.Containers[i], &containers[i]})
	}
	wanted := map[string]bool{}
	for _, e := range entries {
		running := e.status.State.Running != nil
		id := ""
		if running {
			id = strings.TrimPrefix(e.status.ContainerID, w.m.cfg.RuntimeType+"://")
		}
		started := running && w.probeOK(e.spec.Name, id, startupProbe, e.spec.StartupProbe)
		for kind, probe := range map[probeKind]*corev1.Probe{
			startupProbe: e.spec.StartupProbe, livenessProbe: e.spec.LivenessProbe, readinessProbe: e.spec.ReadinessProbe,
		} {
			if probe == nil || !running || (kind != startupProbe && !started) {
				continue
			}
			key := proberKey(kind, e.spec.Name)
			wanted[key] = true
			if p := w.probers[key]; p != nil && p.containerID == id {
				continue
			}
			w.stopProber(key)
			w.probers[key] = startProber(kind, probe, probeTarget{podIP: podIP, containerID: id, ports: e.spec.Ports,
				exec: w.execProbe}, w.onProbeChange(pod, e.spec.Name), w.m.metrics.probeRecord(kind, e.spec.Name, pod))
		}
		e.status.Started = &started
		e.status.Ready = started && w.probeOK(e.spec.Name, id, readinessProbe, e.spec.ReadinessProbe)
	}
	for key := range w.probers {
		if !wanted[key] {
			w.stopProber(key)
		}
	}
}

func proberKey(kind probeKind, container string) string { return string(kind) + "/" + container }

// probeOK is true when the container has no such probe, or the probe of this very container succeeded.
func (w *worker) probeOK(container, id string, kind probeKind, probe *corev1.Probe) bool {
	if probe == nil {
		return true
	}
	p := w.probers[proberKey(kind, container)]
	return p != nil && p.containerID == id && p.current() == probeSuccess
}

// probeFailed is true when a liveness or startup probe of this very container gave up on it.
func (w *worker) probeFailed(container, id string) (probeKind, bool) {
	for _, kind := range []probeKind{livenessProbe, startupProbe} {
		if p := w.probers[proberKey(kind, container)]; p != nil && p.containerID == id && p.current() == probeFailure {
			return kind, true
		}
	}
	return "", false
}

func (w *worker) stopProber(key string) {
	if p := w.probers[key]; p != nil {
		p.stop()
		delete(w.probers, key)
	}
}

func (w *worker) stopProbers() {
	for key := range w.probers {
		w.stopProber(key)
	}
}

// onProbeChange is called from a prober's goroutine: failures and warnings become events, and a changed
// verdict makes the worker sync.
func (w *worker) onProbeChange(pod *corev1.Pod, container string) probeNotice {
	return func(kind probeKind, reason, msg string) {
		if reason != "" {
			w.m.recorder.Eventf(pod, corev1.EventTypeWarning, reason, "%s (container %s)", msg, container)
			return
		}
		w.poke()
	}
}

func (w *worker) execProbe(ctx context.Context, containerID string, cmd []string, timeout time.Duration) error {
	_, _, err := w.m.runtime.ExecSync(ctx, containerID, cmd, timeout)
	return err
}
