package podmanager

import (
	"errors"
	"fmt"
	"os"
	"strings"

	corev1 "k8s.io/api/core/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// appArmorHostError says why this host cannot enforce AppArmor profiles, nil when it can: the kubelet's
// check, done once at start-up (enabling AppArmor takes a reboot).
func appArmorHostError() error {
	if _, err := os.Stat("/sys/kernel/security/apparmor"); err == nil {
		if enabled, err := os.ReadFile("/sys/module/apparmor/parameters/enabled"); err == nil && len(enabled) > 1 && enabled[0] == 'Y' {
			return nil
		}
	}
	return errors.New("AppArmor is not enabled on the host")
}

// appArmorAdmission refuses, as the kubelet's admission does, a pod that asks for an AppArmor profile other
// than Unconfined on a host that cannot enforce one, and a Localhost profile without a name; hostErr is
// appArmorHostError's.
func appArmorAdmission(pod *corev1.Pod, hostErr error) error {
	if !appArmorRequired(pod) {
		return nil
	}
	if hostErr != nil {
		return hostErr
	}
	for _, c := range allContainers(pod) {
		if p := appArmorProfile(pod, c); p != nil && p.Type == corev1.AppArmorProfileTypeLocalhost &&
			(p.LocalhostProfile == nil || strings.TrimSpace(*p.LocalhostProfile) == "") {
			return fmt.Errorf("invalid empty AppArmor profile name for container %q", c.Name)
		}
	}
	return nil
}

// appArmorRequired reports whether any profile of the pod (its own, a container's, or a deprecated
// annotation's) is other than Unconfined.
func appArmorRequired(pod *corev1.Pod) bool {
	if sc := pod.Spec.SecurityContext; sc != nil && sc.AppArmorProfile != nil && sc.AppArmorProfile.Type != corev1.AppArmorProfileTypeUnconfined {
		return true
	}
	for _, c := range allContainers(pod) {
		if p := appArmorProfile(pod, c); p != nil && p.Type != corev1.AppArmorProfileTypeUnconfined {
			return true
		}
	}
	return false
}

// appArmorProfile is the container's profile: its own, else the deprecated per-container annotation's
// (static pods may still carry one), else the pod's; nil for none.
func appArmorProfile(pod *corev1.Pod, c *corev1.Container) *corev1.AppArmorProfile {
	if c.SecurityContext != nil && c.SecurityContext.AppArmorProfile != nil {
		return c.SecurityContext.AppArmorProfile
	}
	if value, ok := pod.Annotations[corev1.DeprecatedAppArmorBetaContainerAnnotationKeyPrefix+c.Name]; ok {
		switch {
		case value == corev1.DeprecatedAppArmorBetaProfileRuntimeDefault:
			return &corev1.AppArmorProfile{Type: corev1.AppArmorProfileTypeRuntimeDefault}
		case value == corev1.DeprecatedAppArmorBetaProfileNameUnconfined:
			return &corev1.AppArmorProfile{Type: corev1.AppArmorProfileTypeUnconfined}
		case strings.HasPrefix(value, corev1.DeprecatedAppArmorBetaProfileNamePrefix):
			name := strings.TrimPrefix(value, corev1.DeprecatedAppArmorBetaProfileNamePrefix)
			return &corev1.AppArmorProfile{Type: corev1.AppArmorProfileTypeLocalhost, LocalhostProfile: &name}
		}
	}
	if sc := pod.Spec.SecurityContext; sc != nil {
		return sc.AppArmorProfile
	}
	return nil
}

// criAppArmor is the CRI form of the container's profile, in the field and in the deprecated string the
// kubelet fills too; nil and "" leave it to the runtime.
func criAppArmor(p *corev1.AppArmorProfile) (*runtimeapi.SecurityProfile, string) {
	if p == nil {
		return nil, ""
	}
	switch p.Type {
	case corev1.AppArmorProfileTypeRuntimeDefault:
		return &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault},
			corev1.DeprecatedAppArmorBetaProfileRuntimeDefault
	case corev1.AppArmorProfileTypeLocalhost:
		if p.LocalhostProfile == nil {
			return nil, ""
		}
		return &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: *p.LocalhostProfile},
			corev1.DeprecatedAppArmorBetaProfileNamePrefix + *p.LocalhostProfile
	}
	return &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Unconfined},
		corev1.DeprecatedAppArmorBetaProfileNameUnconfined
}

// allContainers are the pod's init and app containers.
func allContainers(pod *corev1.Pod) []*corev1.Container {
	var out []*corev1.Container
	for _, list := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for i := range list {
			out = append(out, &list[i])
		}
	}
	return out
}
