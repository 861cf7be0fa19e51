package podmanager

import (
	"context"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// probedContainer is a container that probes may watch (an app container or a sidecar) with its status.
type probedContainer struct {
	spec   *corev1.Container
	status *corev1.ContainerStatus
}

func probedContainers(pod *corev1.Pod, inits, containers []corev1.ContainerStatus) []probedContainer {
	var out []probedContainer
	for i := range pod.Spec.InitContainers {
		if isSidecar(&pod.Spec.InitContainers[i]) {
			out = append(out, probedContainer{&pod.Spec.InitContainers[i], &inits[i]})
		}
	}
	for i := range pod.Spec.Containers {
		out = append(out, probedContainer{&pod.Spec.Containers[i], &containers[i]})
	}
	return out
}

// runningID is the runtime's ID of a running container; "" when it is not running.
func (w *worker) runningID(st *corev1.ContainerStatus) string {
	if st.State.Running == nil {
		return ""
	}
	return strings.TrimPrefix(st.ContainerID, w.m.cfg.RuntimeType+"://")
}

// syncProbers starts and stops the probers of the pod's running containers, as the kubelet's probe manager
// does: liveness and readiness probes begin once the startup probe (if any) succeeded; a container that is
// not running has none.
func (w *worker) syncProbers(pod *corev1.Pod, o *observed) {
	wanted := map[string]bool{}
	for _, c := range probedContainers(pod, o.inits, o.containers) {
		id := w.runningID(c.status)
		if id == "" {
			continue
		}
		started := w.probeOK(c.spec.Name, id, startupProbe, c.spec.StartupProbe)
		for kind, probe := range map[probeKind]*corev1.Probe{
			startupProbe: c.spec.StartupProbe, livenessProbe: c.spec.LivenessProbe, readinessProbe: c.spec.ReadinessProbe,
		} {
			if probe == nil || (kind != startupProbe && !started) {
				continue
			}
			key := proberKey(kind, c.spec.Name)
			wanted[key] = true
			if p := w.probers[key]; p != nil && p.containerID == id {
				continue
			}
			w.stopProber(key)
			w.probers[key] = startProber(kind, probe, probeTarget{podIP: o.probeIP(), containerID: id, ports: c.spec.Ports,
				exec: w.execProbe}, w.onProbeChange(pod, c.spec.Name), w.m.metrics.probeRecord(kind, c.spec.Name, pod))
		}
	}
	for key := range w.probers {
		if !wanted[key] {
			w.stopProber(key)
		}
	}
}

// probeVerdicts sets each probed container's Started and Ready from its probers' results: a container with
// a readiness probe is not ready until it succeeds.
func (w *worker) probeVerdicts(pod *corev1.Pod, inits, containers []corev1.ContainerStatus) {
	for _, c := range probedContainers(pod, inits, containers) {
		id := w.runningID(c.status)
		started := id != "" && w.probeOK(c.spec.Name, id, startupProbe, c.spec.StartupProbe)
		c.status.Started = &started
		c.status.Ready = started && w.probeOK(c.spec.Name, id, readinessProbe, c.spec.ReadinessProbe)
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
