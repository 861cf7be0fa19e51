package podmanager

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// A pod for another operating system is rejected before anything of it runs, with the kubelet's reason.
func TestPodForAnotherOSIsRejected(t *testing.T) {
	for _, tc := range []struct {
		name, reason string
		edit         func(*corev1.Pod)
	}{
		{"spec.os.name windows", "PodOSNotSupported", func(p *corev1.Pod) { p.Spec.OS = &corev1.PodOS{Name: corev1.Windows} }},
		{"kubernetes.io/os label windows", "PodOSSelectorNodeLabelDoesNotMatch",
			func(p *corev1.Pod) { p.Labels = map[string]string{corev1.LabelOSStable: "windows"} }},
		{"spec.os.name linux", "", func(p *corev1.Pod) { p.Spec.OS = &corev1.PodOS{Name: corev1.Linux} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := testPod("busybox")
			tc.edit(pod)
			f := newFixture(t, pod)
			f.runtime.SetFakeImages([]string{"busybox"})
			if _, err := f.worker.sync(context.Background()); err != nil {
				t.Fatal(err)
			}
			status := f.postedStatus(t)
			sandboxes, _ := f.runtime.ListPodSandbox(context.Background(), nil)
			if tc.reason == "" {
				if status.Phase == corev1.PodFailed || len(sandboxes) != 1 {
					t.Errorf("phase %s (%s), %d sandboxes: want the pod admitted", status.Phase, status.Reason, len(sandboxes))
				}
				return
			}
			if status.Phase != corev1.PodFailed || status.Reason != tc.reason || len(sandboxes) != 0 {
				t.Errorf("phase %s, reason %q, %d sandboxes; want Failed, %s, none", status.Phase, status.Reason, len(sandboxes), tc.reason)
			}
		})
	}
}
