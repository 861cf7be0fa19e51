package podmanager

import (
	"errors"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// A container's AppArmor profile comes from its own field, else the deprecated annotation, else the pod's;
// the pod is refused on a host without AppArmor unless every profile is Unconfined, and a Localhost
// profile needs a name.
func TestAppArmorProfilesAndAdmission(t *testing.T) {
	runtimeDefault := &corev1.AppArmorProfile{Type: corev1.AppArmorProfileTypeRuntimeDefault}
	unconfined := &corev1.AppArmorProfile{Type: corev1.AppArmorProfileTypeUnconfined}
	pod := func(podProfile *corev1.AppArmorProfile, annotations map[string]string, own ...*corev1.AppArmorProfile) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Annotations: annotations},
			Spec: corev1.PodSpec{SecurityContext: &corev1.PodSecurityContext{AppArmorProfile: podProfile}}}
		for i, profile := range own {
			p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: string(rune('a' + i)),
				SecurityContext: &corev1.SecurityContext{AppArmorProfile: profile}})
		}
		return p
	}
	noHost := errors.New("AppArmor is not enabled on the host")
	empty := ""
	cases := []struct {
		name        string
		pod         *corev1.Pod
		wantType    runtimeapi.SecurityProfile_ProfileType // of container a
		wantRef     string
		refused     bool // on a host without AppArmor
		refusedHere bool // on a host with it
	}{
		{name: "none", pod: pod(nil, nil, nil), wantType: -1},
		{name: "pod's", pod: pod(runtimeDefault, nil, nil), wantType: runtimeapi.SecurityProfile_RuntimeDefault, refused: true},
		{name: "container's over pod's", pod: pod(runtimeDefault, nil, unconfined), wantType: runtimeapi.SecurityProfile_Unconfined, refused: true},
		{name: "all unconfined", pod: pod(unconfined, nil, unconfined), wantType: runtimeapi.SecurityProfile_Unconfined},
		{name: "annotation over pod's", pod: pod(unconfined, map[string]string{
			corev1.DeprecatedAppArmorBetaContainerAnnotationKeyPrefix + "a": "localhost/mine"}, nil),
			wantType: runtimeapi.SecurityProfile_Localhost, wantRef: "mine", refused: true},
		{name: "localhost without a name", pod: pod(nil, nil, &corev1.AppArmorProfile{Type: corev1.AppArmorProfileTypeLocalhost, LocalhostProfile: &empty}),
			wantType: runtimeapi.SecurityProfile_Localhost, refused: true, refusedHere: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, _ := criAppArmor(appArmorProfile(tc.pod, &tc.pod.Spec.Containers[0]))
			switch {
			case tc.wantType == -1 && got != nil:
				t.Errorf("profile %v, want none", got)
			case tc.wantType != -1 && (got == nil || got.ProfileType != tc.wantType || got.LocalhostRef != tc.wantRef):
				t.Errorf("profile %v, want %v %q", got, tc.wantType, tc.wantRef)
			}
			if err := appArmorAdmission(tc.pod, noHost); (err != nil) != tc.refused {
				t.Errorf("without AppArmor: %v, want refused %v", err, tc.refused)
			}
			if err := appArmorAdmission(tc.pod, nil); (err != nil) != tc.refusedHere {
				t.Errorf("with AppArmor: %v, want refused %v", err, tc.refusedHere)
			}
		})
	}
}
