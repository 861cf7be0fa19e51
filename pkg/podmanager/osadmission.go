package podmanager

import (
	"runtime"

	corev1 "k8s.io/api/core/v1"
)

// osAdmission refuses, as the kubelet's admission does, a pod meant for another operating system: by its
// kubernetes.io/os label (the kubelet compares it with its own OS whatever the Node's label says) or by
// spec.os.name. It returns the rejection's reason and message, or "" to admit.
func osAdmission(pod *corev1.Pod) (reason, message string) {
	if podOS, ok := pod.Labels[corev1.LabelOSStable]; ok && podOS != runtime.GOOS {
		return "PodOSSelectorNodeLabelDoesNotMatch", "Failed to admit pod as the `kubernetes.io/os` label doesn't match node label"
	}
	if pod.Spec.OS != nil && string(pod.Spec.OS.Name) != runtime.GOOS {
		return "PodOSNotSupported", "Failed to admit pod as the OS field doesn't match node OS"
	}
	return "", ""
}
