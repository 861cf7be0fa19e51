package podmanager

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// setConditions sets the pod's conditions as the kubelet's status generator does, with the reasons and
// messages users read ("containers with unready status: [app]") and the pod's generation as each
// condition's observedGeneration, PodScheduled's included (the binding that sets it carries none). The
// phase must already be set.
func setConditions(status *corev1.PodStatus, pod *corev1.Pod, sandboxReady bool, inits, containers []corev1.ContainerStatus) {
	set := func(typ corev1.PodConditionType, ok bool, reason, message string) {
		setCondition(status, corev1.PodCondition{Type: typ, Status: conditionStatus(ok), Reason: reason,
			Message: message, ObservedGeneration: pod.Generation})
	}
	set(corev1.PodReadyToStartContainers, sandboxReady, "", "")

	var incomplete []string
	for i := range pod.Spec.InitContainers {
		c, cs := &pod.Spec.InitContainers[i], &inits[i]
		if isSidecar(c) && (cs.Started == nil || !*cs.Started) || !isSidecar(c) && !cs.Ready {
			incomplete = append(incomplete, c.Name)
		}
	}
	switch {
	case status.Phase == corev1.PodSucceeded:
		set(corev1.PodInitialized, true, "PodCompleted", "")
	case len(incomplete) == 0 || anyStarted(containers):
		// Once an app container started the pod stays initialized while its sidecars restart.
		set(corev1.PodInitialized, true, "", "")
	default:
		set(corev1.PodInitialized, false, "ContainersNotInitialized", containersMessage("incomplete", incomplete))
	}

	var unready []string
	for i := range pod.Spec.InitContainers {
		if isSidecar(&pod.Spec.InitContainers[i]) && !inits[i].Ready {
			unready = append(unready, pod.Spec.InitContainers[i].Name)
		}
	}
	for i := range pod.Spec.Containers {
		if !containers[i].Ready {
			unready = append(unready, pod.Spec.Containers[i].Name)
		}
	}
	ready, reason, message := len(unready) == 0, "", ""
	switch {
	case status.Phase == corev1.PodSucceeded:
		ready, reason = false, "PodCompleted"
	case status.Phase == corev1.PodFailed:
		ready, reason = false, "PodFailed"
	case !ready:
		reason, message = "ContainersNotReady", containersMessage("unready", unready)
	}
	set(corev1.ContainersReady, ready, reason, message)
	if ready {
		ready, reason, message = readinessGates(pod, status.Conditions)
	}
	set(corev1.PodReady, ready, reason, message)
	set(corev1.PodScheduled, true, "", "")
}

// readinessGates says whether the pod's readiness gates are all True, and if not why, as the kubelet words it.
func readinessGates(pod *corev1.Pod, conditions []corev1.PodCondition) (ok bool, reason, message string) {
	var unready []string
	for _, rg := range pod.Spec.ReadinessGates {
		var found *corev1.PodCondition
		for i := range conditions {
			if conditions[i].Type == rg.ConditionType {
				found = &conditions[i]
			}
		}
		switch {
		case found == nil:
			unready = append(unready, fmt.Sprintf("corresponding condition of pod readiness gate %q does not exist.", rg.ConditionType))
		case found.Status != corev1.ConditionTrue:
			unready = append(unready, fmt.Sprintf("the status of pod readiness gate %q is not \"True\", but %v", rg.ConditionType, found.Status))
		}
	}
	if len(unready) > 0 {
		return false, "ReadinessGatesNotReady", strings.Join(unready, ", ")
	}
	return true, "", ""
}

// containersMessage is the kubelet's "containers with <state> status: [a b]".
func containersMessage(state string, names []string) string {
	return fmt.Sprintf("containers with %s status: %s", state, names)
}

func anyStarted(statuses []corev1.ContainerStatus) bool {
	for _, cs := range statuses {
		if cs.State.Running != nil || cs.State.Terminated != nil {
			return true
		}
	}
	return false
}

func conditionStatus(ok bool) corev1.ConditionStatus {
	if ok {
		return corev1.ConditionTrue
	}
	return corev1.ConditionFalse
}

// setCondition sets a condition, keeping its transition time when its status did not change.
func setCondition(status *corev1.PodStatus, want corev1.PodCondition) {
	for i := range status.Conditions {
		c := &status.Conditions[i]
		if c.Type != want.Type {
			continue
		}
		if c.Status == want.Status {
			want.LastTransitionTime = c.LastTransitionTime
		} else {
			want.LastTransitionTime = metav1.Now()
		}
		*c = want
		return
	}
	want.LastTransitionTime = metav1.Now()
	status.Conditions = append(status.Conditions, want)
}
