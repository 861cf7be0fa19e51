package podmanager

import (
	"context"
	"encoding/json"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"
)

// StatusSink is where the pod workers report what became of their pods: the API server (APIStatus), or for a
// node without one, a store of its own.
type StatusSink interface {
	// WriteStatus makes status the Pod's status; target is the Pod object as the node last saw it.
	WriteStatus(ctx context.Context, target *corev1.Pod, status *corev1.PodStatus) error
	// Finalize removes the Pod object of a pod of which nothing runs any more; a Pod already gone, or
	// replaced by another of the same name, is no error.
	Finalize(ctx context.Context, pod *corev1.Pod) error
}

// APIStatus reports to the API server, as the kubelet's status manager does.
type APIStatus struct{ Client kubernetes.Interface }

// WriteStatus sends a two-way strategic merge patch from the status the node last saw to the new one, so it
// carries only what changed (conditions merge by type: those others set, readiness gates, are never
// overwritten by a stale copy), with the UID as a precondition (it fails if the Pod was replaced by another
// of the same name meanwhile).
func (a APIStatus) WriteStatus(ctx context.Context, target *corev1.Pod, status *corev1.PodStatus) error {
	oldJSON, err := json.Marshal(corev1.Pod{Status: target.Status})
	if err != nil {
		return err
	}
	newJSON, err := json.Marshal(corev1.Pod{ObjectMeta: metav1.ObjectMeta{UID: target.UID}, Status: *status})
	if err != nil {
		return err
	}
	patch, err := strategicpatch.CreateTwoWayMergePatch(oldJSON, newJSON, corev1.Pod{})
	if err != nil {
		return fmt.Errorf("pod status patch: %w", err)
	}
	klog.V(3).InfoS("Patch status for pod", "pod", klog.KObj(target), "podUID", target.UID, "patch", string(patch))
	_, err = a.Client.CoreV1().Pods(target.Namespace).Patch(ctx, target.Name, types.StrategicMergePatchType, patch,
		metav1.PatchOptions{}, "status")
	if err != nil {
		return fmt.Errorf("patching pod status: %w", err)
	}
	return nil
}

// Finalize deletes the Pod with no grace period left, the UID as a precondition, as the kubelet does once a
// pod it was told to delete has stopped.
func (a APIStatus) Finalize(ctx context.Context, pod *corev1.Pod) error {
	err := a.Client.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{
		GracePeriodSeconds: new(int64), Preconditions: &metav1.Preconditions{UID: &pod.UID}})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("finalising pod deletion: %w", err)
	}
	return nil
}
