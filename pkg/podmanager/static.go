package podmanager

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"

	"github.com/nodeagent/nodeagent/pkg/podcgroup"
	"github.com/nodeagent/nodeagent/pkg/source"
)

// StaticPods are the pods of the node's manifest directory.
type StaticPods interface {
	Get(namespace, name string) (*corev1.Pod, bool)
	List() []*corev1.Pod
}

// getPod returns the pod a worker converges: a static pod (with the status of its mirror pod, once the
// API has one) or a Pod from the API. Mirror pods are never run themselves: for them it is NotFound.
func (m *Manager) getPod(key types.NamespacedName) (*corev1.Pod, error) {
	apiPod, err := m.pods.Pods(key.Namespace).Get(key.Name)
	if err != nil && !apierrors.IsNotFound(err) {
		return nil, err
	}
	if m.static != nil {
		if static, ok := m.static.Get(key.Namespace, key.Name); ok {
			pod := static.DeepCopy()
			if mirror := m.mirrorFor(static, apiPod); mirror != nil {
				pod.Status = *mirror.Status.DeepCopy()
			}
			if pod.Status.QOSClass == "" {
				pod.Status.QOSClass = podcgroup.QOSClass(pod)
			}
			return pod, nil
		}
	}
	if err != nil {
		return nil, err
	}
	if source.IsMirrorPod(apiPod) {
		return nil, apierrors.NewNotFound(corev1.Resource("pods"), key.Name)
	}
	if apiPod.Status.QOSClass == "" { // a Pod no API server admitted (standalone mode): the class it would set
		apiPod = apiPod.DeepCopy()
		apiPod.Status.QOSClass = podcgroup.QOSClass(apiPod)
	}
	return apiPod, nil
}

// mirrorFor returns apiPod when it is the current mirror of static (same config hash, not being deleted).
func (m *Manager) mirrorFor(static, apiPod *corev1.Pod) *corev1.Pod {
	if apiPod == nil || !source.IsMirrorPod(apiPod) || apiPod.DeletionTimestamp != nil ||
		apiPod.Annotations[source.AnnotationConfigMirror] != static.Annotations[source.AnnotationConfigHash] {
		return nil
	}
	return apiPod
}

// statusTarget is the API object whose status shows pod: the pod itself, or a static pod's mirror (nil while
// there is none yet).
func (m *Manager) statusTarget(pod *corev1.Pod) *corev1.Pod {
	if !source.IsStaticPod(pod) {
		return pod
	}
	apiPod, err := m.pods.Pods(pod.Namespace).Get(pod.Name)
	if err != nil {
		return nil
	}
	return m.mirrorFor(pod, apiPod)
}

// syncMirrorPods makes the API show one current mirror pod per static pod, as the kubelet does: a missing
// one is created, an outdated or deleted one replaced, one whose static pod is gone deleted.
func (m *Manager) syncMirrorPods(ctx context.Context) {
	node := m.node()
	if m.static == nil || node == nil {
		return
	}
	statics := map[types.NamespacedName]*corev1.Pod{}
	for _, static := range m.static.List() {
		key := types.NamespacedName{Namespace: static.Namespace, Name: static.Name}
		statics[key] = static
		apiPod, err := m.pods.Pods(key.Namespace).Get(key.Name)
		switch {
		case err == nil && m.mirrorFor(static, apiPod) != nil:
			continue
		case err == nil && !source.IsMirrorPod(apiPod):
			klog.ErrorS(nil, "A Pod of the API has the static pod's name; not creating its mirror pod", "pod", key)
			continue
		case err == nil:
			if err := m.deleteMirror(ctx, apiPod); err != nil {
				klog.ErrorS(err, "Unable to replace an outdated mirror pod", "pod", key)
				continue
			}
		}
		if _, err := m.client.CoreV1().Pods(key.Namespace).Create(ctx, source.MirrorOf(static, node), metav1.CreateOptions{}); err != nil &&
			!apierrors.IsAlreadyExists(err) {
			klog.ErrorS(err, "Unable to create the mirror pod", "pod", key)
			continue
		}
		klog.InfoS("Created mirror pod", "pod", key)
	}
	pods, err := m.pods.List(everything())
	if err != nil {
		klog.ErrorS(err, "Unable to list pods from the cache")
		return
	}
	for _, p := range pods {
		if _, ok := statics[types.NamespacedName{Namespace: p.Namespace, Name: p.Name}]; !ok && source.IsMirrorPod(p) {
			if err := m.deleteMirror(ctx, p); err != nil {
				klog.ErrorS(err, "Unable to delete an orphaned mirror pod", "pod", klog.KObj(p))
			}
		}
	}
}

// deleteMirror removes a mirror pod at once: nothing runs for it, so there is no grace period to wait out.
func (m *Manager) deleteMirror(ctx context.Context, mirror *corev1.Pod) error {
	err := m.client.CoreV1().Pods(mirror.Namespace).Delete(ctx, mirror.Name, metav1.DeleteOptions{
		GracePeriodSeconds: new(int64), Preconditions: &metav1.Preconditions{UID: &mirror.UID}})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("deleting mirror pod %s/%s: %w", mirror.Namespace, mirror.Name, err)
	}
	return nil
}
