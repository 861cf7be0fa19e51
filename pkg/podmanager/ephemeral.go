package podmanager

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// ephemeralSpecs are the pod's ephemeral containers (kubectl debug) as containers, which they are to the
// runtime: they run once in the pod's sandbox and are never restarted.
func ephemeralSpecs(pod *corev1.Pod) []corev1.Container {
	var out []corev1.Container
	for _, ec := range pod.Spec.EphemeralContainers {
		out = append(out, corev1.Container(ec.EphemeralContainerCommon))
	}
	return out
}

func neverRestart(int32) bool { return false }

// runEphemeralContainers starts the ephemeral containers that have not run yet; they may start before the
// pod is initialized, as with the kubelet.
func (w *worker) runEphemeralContainers(ctx context.Context, pod *corev1.Pod, sandboxID string,
	sandboxConfig *runtimeapi.PodSandboxConfig) {
	specs := ephemeralSpecs(pod)
	for i := range specs {
		w.ensureContainer(ctx, pod, &specs[i], neverRestart, sandboxID, sandboxConfig)
	}
}

// shareTargetProcesses puts an ephemeral container with a targetContainerName into its target's process
// namespace, so a debugger sees the target's processes, as the kubelet does.
func shareTargetProcesses(pod *corev1.Pod, name string, config *runtimeapi.ContainerConfig, sandboxID string,
	all []*runtimeapi.Container) {
	target := ""
	for _, ec := range pod.Spec.EphemeralContainers {
		if ec.Name == name {
			target = ec.TargetContainerName
		}
	}
	if target == "" || config.GetLinux().GetSecurityContext().GetNamespaceOptions() == nil {
		return
	}
	for _, ct := range all { // newest first
		if ct.PodSandboxId == sandboxID && ct.GetMetadata().GetName() == target &&
			ct.State == runtimeapi.ContainerState_CONTAINER_RUNNING {
			ns := config.Linux.SecurityContext.NamespaceOptions
			ns.Pid, ns.TargetId = runtimeapi.NamespaceMode_TARGET, ct.Id
			return
		}
	}
}
