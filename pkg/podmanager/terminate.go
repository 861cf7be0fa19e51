package podmanager

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"
)

// terminate stops the pod within its grace period, writes its final status (each container terminated, a
// terminal phase), removes it from the runtime and finalises the Pod object, as the kubelet does once a pod
// is marked for deletion: a Pod that a finalizer keeps shows how its containers ended.
func (w *worker) terminate(ctx context.Context, pod *corev1.Pod) (bool, error) {
	grace := terminationGrace(pod)
	if pod.DeletionGracePeriodSeconds != nil {
		grace = *pod.DeletionGracePeriodSeconds
	}
	containers, err := w.containers(ctx)
	if err != nil {
		return false, err
	}
	// Without containers there is nothing new to report (a worker started again for a Pod a finalizer keeps
	// must not overwrite its final status).
	if len(containers) > 0 {
		if err := w.stopAll(ctx, pod, containers, grace); err != nil {
			return false, err
		}
		if err := w.noneRunning(ctx); err != nil {
			return false, err
		}
		sandboxes, err := w.sandboxes(ctx)
		if err != nil {
			return false, err
		}
		var sandboxID *string
		if len(sandboxes) > 0 {
			sandboxID = &sandboxes[0].Id
		}
		o, err := w.observe(ctx, pod, sandboxID)
		if err != nil {
			return false, err
		}
		if err := w.writeStatus(ctx, pod, o); err != nil {
			return false, err
		}
	}
	if err := w.removeAll(ctx, pod, 0); err != nil {
		return false, err
	}
	if err := w.m.status.Finalize(ctx, pod); err != nil {
		return false, err
	}
	w.removePodDir()
	klog.InfoS("Pod terminated and removed", "pod", w.key, "podUID", w.uid)
	return true, nil
}

// noneRunning is an error while the runtime shows a container of the pod running. A stop can return
// before then (containerd answers while it is still processing the exit); the kubelet treats that as an
// error to retry (syncTerminatingPod) and so does the worker, since the final status must show every
// container terminated: written from such a view, a deleted pod went away with phase Running.
func (w *worker) noneRunning(ctx context.Context) error {
	containers, err := w.containers(ctx)
	if err != nil {
		return err
	}
	var running []string
	for _, ct := range containers {
		if ct.State == runtimeapi.ContainerState_CONTAINER_RUNNING {
			running = append(running, ct.Id)
		}
	}
	if len(running) > 0 {
		return fmt.Errorf("containers %v still running after they were stopped", running)
	}
	return nil
}

// minimumGrace is the least time a container gets between SIGTERM and SIGKILL, as in the kubelet.
const minimumGrace = 2

// removeAll stops the pod's containers within grace (see stopAll) and removes them and its sandboxes from the
// runtime. pod may be nil when the Pod is gone: then no hooks run.
func (w *worker) removeAll(ctx context.Context, pod *corev1.Pod, grace int64) error {
	containers, err := w.containers(ctx)
	if err != nil {
		return err
	}
	if err := w.stopAll(ctx, pod, containers, grace); err != nil {
		return err
	}
	for _, ct := range containers {
		if err := w.runtime.RemoveContainer(ctx, ct.Id); err != nil {
			return fmt.Errorf("removing container %s: %w", ct.Id, err)
		}
	}
	sandboxes, err := w.sandboxes(ctx)
	if err != nil {
		return err
	}
	for _, sb := range sandboxes {
		if err := w.runtime.StopPodSandbox(ctx, sb.Id); err != nil {
			return fmt.Errorf("stopping sandbox %s: %w", sb.Id, err)
		}
		if err := w.runtime.RemovePodSandbox(ctx, sb.Id); err != nil {
			return fmt.Errorf("removing sandbox %s: %w", sb.Id, err)
		}
	}
	return nil
}

// stopAll stops containers within grace, as the kubelet does: app and regular init containers first, then
// sidecars with what is left of it.
func (w *worker) stopAll(ctx context.Context, pod *corev1.Pod, containers []*runtimeapi.Container, grace int64) error {
	sidecars := map[string]bool{}
	if pod != nil {
		for i := range pod.Spec.InitContainers {
			sidecars[pod.Spec.InitContainers[i].Name] = isSidecar(&pod.Spec.InitContainers[i])
		}
	}
	var first, last []*runtimeapi.Container
	for _, ct := range containers {
		if sidecars[ct.GetMetadata().GetName()] {
			last = append(last, ct)
		} else {
			first = append(first, ct)
		}
	}
	started := time.Now()
	if err := w.stopContainers(ctx, pod, first, grace); err != nil {
		return err
	}
	remaining := max(grace-int64(time.Since(started).Seconds()), minimumGrace)
	return w.stopContainers(ctx, pod, last, remaining)
}

// stopContainers stops containers in parallel, each after its preStop hook; exited ones need no stop.
func (w *worker) stopContainers(ctx context.Context, pod *corev1.Pod, containers []*runtimeapi.Container, grace int64) error {
	errs := make(chan error, len(containers))
	for _, ct := range containers {
		if ct.State == runtimeapi.ContainerState_CONTAINER_EXITED {
			errs <- nil
			continue
		}
		go func() {
			left := grace
			if ct.State == runtimeapi.ContainerState_CONTAINER_RUNNING && pod != nil {
				w.m.recorder.Eventf(pod, corev1.EventTypeNormal, "Killing", "Stopping container %s", ct.GetMetadata().GetName())
				left = w.preStop(ctx, pod, ct.GetMetadata().GetName(), ct.Id, grace)
			}
			if err := w.runtime.StopContainer(ctx, ct.Id, left); err != nil {
				errs <- fmt.Errorf("stopping container %s: %w", ct.Id, err)
				return
			}
			errs <- nil
		}()
	}
	var all []error
	for range containers {
		all = append(all, <-errs)
	}
	return errors.Join(all...)
}

func (w *worker) stopSandboxes(ctx context.Context) error {
	sandboxes, err := w.sandboxes(ctx)
	if err != nil {
		return err
	}
	for _, sb := range sandboxes {
		if sb.State == runtimeapi.PodSandboxState_SANDBOX_READY {
			if err := w.runtime.StopPodSandbox(ctx, sb.Id); err != nil {
				return err
			}
		}
	}
	return nil
}
