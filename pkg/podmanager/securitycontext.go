package podmanager

import (
	"fmt"
	"path/filepath"
	"strings"

	corev1 "k8s.io/api/core/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// effectiveSecurityContext merges the pod's securityContext into the container's: a field the container
// sets wins, as in the kubelet.
func effectiveSecurityContext(pod *corev1.Pod, c *corev1.Container) corev1.SecurityContext {
	var sc corev1.SecurityContext
	if c.SecurityContext != nil {
		sc = *c.SecurityContext.DeepCopy()
	}
	podSC := pod.Spec.SecurityContext
	if podSC == nil {
		return sc
	}
	if sc.RunAsUser == nil {
		sc.RunAsUser = podSC.RunAsUser
	}
	if sc.RunAsGroup == nil {
		sc.RunAsGroup = podSC.RunAsGroup
	}
	if sc.RunAsNonRoot == nil {
		sc.RunAsNonRoot = podSC.RunAsNonRoot
	}
	if sc.SELinuxOptions == nil {
		sc.SELinuxOptions = podSC.SELinuxOptions
	}
	if sc.SeccompProfile == nil {
		sc.SeccompProfile = podSC.SeccompProfile
	}
	return sc
}

// imageUser is the user an image runs as when the pod does not say: a numeric uid, or a name.
type imageUser struct {
	uid      *int64
	username string
}

// userOf reads the image's user from its CRI status; an image that sets none runs as root.
func userOf(img *runtimeapi.Image) imageUser {
	switch {
	case img.GetUid() != nil:
		uid := img.GetUid().GetValue()
		return imageUser{uid: &uid}
	case img.GetUsername() != "":
		return imageUser{username: img.GetUsername()}
	}
	return imageUser{uid: new(int64)}
}

// verifyRunAsNonRoot refuses a container that has runAsNonRoot but would run as root, with the kubelet's
// messages; a named image user cannot be checked and is refused too.
func verifyRunAsNonRoot(pod *corev1.Pod, c *corev1.Container, sc corev1.SecurityContext, user imageUser) error {
	if sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
		return nil
	}
	who := fmt.Sprintf("(pod: %q, container: %s)", fmt.Sprintf("%s_%s(%s)", pod.Name, pod.Namespace, pod.UID), c.Name)
	switch {
	case sc.RunAsUser != nil && *sc.RunAsUser == 0:
		return fmt.Errorf("container's runAsUser breaks non-root policy %s", who)
	case sc.RunAsUser != nil:
		return nil
	case user.uid != nil && *user.uid == 0:
		return fmt.Errorf("container has runAsNonRoot and image will run as root %s", who)
	case user.uid == nil && user.username != "":
		return fmt.Errorf("container has runAsNonRoot and image has non-numeric user (%s), cannot verify user is non-root %s",
			user.username, who)
	}
	return nil
}

// containerSecurityContext is the CRI form of the container's effective securityContext.
func (w *worker) containerSecurityContext(pod *corev1.Pod, c *corev1.Container, sc corev1.SecurityContext,
	user imageUser) *runtimeapi.LinuxContainerSecurityContext {
	out := &runtimeapi.LinuxContainerSecurityContext{
		NamespaceOptions:   w.namespaceOptions(pod),
		Privileged:         isTrue(sc.Privileged),
		ReadonlyRootfs:     isTrue(sc.ReadOnlyRootFilesystem),
		NoNewPrivs:         sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation,
		Seccomp:            w.seccompProfile(sc.SeccompProfile),
		SupplementalGroups: supplementalGroups(pod),
		SelinuxOptions:     selinuxOptions(sc.SELinuxOptions),
	}
	// The string too, as the kubelet sends it: runtimes older than the SecurityProfile field read only it.
	//lint:ignore SA1019 older runtimes read only the deprecated string
	out.Apparmor, out.ApparmorProfile = criAppArmor(appArmorProfile(pod, c))
	if sc.Capabilities != nil {
		out.Capabilities = &runtimeapi.Capability{
			AddCapabilities:  capabilityNames(sc.Capabilities.Add),
			DropCapabilities: capabilityNames(sc.Capabilities.Drop),
		}
	}
	switch {
	case sc.RunAsUser != nil:
		out.RunAsUser = &runtimeapi.Int64Value{Value: *sc.RunAsUser}
	case user.uid != nil:
		out.RunAsUser = &runtimeapi.Int64Value{Value: *user.uid}
	default:
		out.RunAsUsername = user.username
	}
	if sc.RunAsGroup != nil {
		out.RunAsGroup = &runtimeapi.Int64Value{Value: *sc.RunAsGroup}
	}
	if sc.ProcMount != nil && *sc.ProcMount == corev1.UnmaskedProcMount {
		// An empty (non-nil) list tells the runtime to mask nothing; nil keeps its defaults.
		out.MaskedPaths, out.ReadonlyPaths = []string{}, []string{}
	}
	return out
}

// sandboxSecurityContext is the CRI form of the pod-level securityContext, for the sandbox (pause) process.
// The sandbox is privileged when any container is, which the runtime requires of a privileged container.
func (w *worker) sandboxSecurityContext(pod *corev1.Pod) *runtimeapi.LinuxSandboxSecurityContext {
	out := &runtimeapi.LinuxSandboxSecurityContext{
		NamespaceOptions:   w.namespaceOptions(pod),
		SupplementalGroups: supplementalGroups(pod),
		Privileged:         anyPrivileged(pod),
	}
	if sc := pod.Spec.SecurityContext; sc != nil {
		if sc.RunAsUser != nil {
			out.RunAsUser = &runtimeapi.Int64Value{Value: *sc.RunAsUser}
		}
		if sc.RunAsGroup != nil {
			out.RunAsGroup = &runtimeapi.Int64Value{Value: *sc.RunAsGroup}
		}
		out.Seccomp = w.seccompProfile(sc.SeccompProfile)
		out.SelinuxOptions = selinuxOptions(sc.SELinuxOptions)
	} else {
		out.Seccomp = w.seccompProfile(nil)
	}
	return out
}

func anyPrivileged(pod *corev1.Pod) bool {
	for _, c := range allContainers(pod) {
		if c.SecurityContext != nil && isTrue(c.SecurityContext.Privileged) {
			return true
		}
	}
	return false
}

// supplementalGroups are the pod's fsGroup and supplementalGroups, which every container process joins.
func supplementalGroups(pod *corev1.Pod) []int64 {
	sc := pod.Spec.SecurityContext
	if sc == nil {
		return nil
	}
	var groups []int64
	if sc.FSGroup != nil {
		groups = append(groups, *sc.FSGroup)
	}
	return append(groups, sc.SupplementalGroups...)
}

// seccompProfile maps a seccompProfile to CRI. Without one the container is Unconfined, the kubelet's
// default while its seccompDefault setting is off; Localhost profiles live under <root-dir>/seccomp.
func (w *worker) seccompProfile(p *corev1.SeccompProfile) *runtimeapi.SecurityProfile {
	if p == nil {
		return &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Unconfined}
	}
	switch p.Type {
	case corev1.SeccompProfileTypeRuntimeDefault:
		return &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault}
	case corev1.SeccompProfileTypeLocalhost:
		ref := ""
		if p.LocalhostProfile != nil {
			ref = filepath.Join(w.m.cfg.RootDir, "seccomp", *p.LocalhostProfile)
		}
		return &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: ref}
	}
	return &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Unconfined}
}

func selinuxOptions(o *corev1.SELinuxOptions) *runtimeapi.SELinuxOption {
	if o == nil {
		return nil
	}
	return &runtimeapi.SELinuxOption{User: o.User, Role: o.Role, Type: o.Type, Level: o.Level}
}

func capabilityNames(caps []corev1.Capability) []string {
	out := make([]string, len(caps))
	for i, c := range caps {
		out[i] = string(c)
	}
	return out
}

// The sysctls the kubelet allows every pod (namespaced, isolated from the host and other pods).
var safeSysctls = []string{
	"kernel.shm_rmid_forced",
	"net.ipv4.ip_local_port_range",
	"net.ipv4.tcp_syncookies",
	"net.ipv4.ping_group_range",
	"net.ipv4.ip_unprivileged_port_start",
	"net.ipv4.ip_local_reserved_ports",
	"net.ipv4.tcp_keepalive_time",
	"net.ipv4.tcp_fin_timeout",
	"net.ipv4.tcp_keepalive_intvl",
	"net.ipv4.tcp_keepalive_probes",
	"net.ipv4.tcp_rmem",
	"net.ipv4.tcp_wmem",
}

// sysctlsAllowed checks the pod's sysctls as the kubelet's admission does: each must be safe or match the
// node's allowedUnsafeSysctls (a trailing * matches a prefix), and none may reach into a host namespace the
// pod shares.
func sysctlsAllowed(pod *corev1.Pod, allowedUnsafe []string) error {
	if pod.Spec.SecurityContext == nil {
		return nil
	}
	for _, s := range pod.Spec.SecurityContext.Sysctls {
		name := strings.ReplaceAll(s.Name, "/", ".")
		if pod.Spec.HostNetwork && strings.HasPrefix(name, "net.") {
			return fmt.Errorf("forbidden sysctl: %q not allowed with host net enabled", s.Name)
		}
		if pod.Spec.HostIPC && (strings.HasPrefix(name, "kernel.shm") || strings.HasPrefix(name, "kernel.msg") ||
			strings.HasPrefix(name, "kernel.sem") || strings.HasPrefix(name, "fs.mqueue.")) {
			return fmt.Errorf("forbidden sysctl: %q not allowed with host ipc enabled", s.Name)
		}
		if !matchesAny(name, safeSysctls) && !matchesAny(name, allowedUnsafe) {
			return fmt.Errorf("forbidden sysctl: %q not allowlisted", s.Name)
		}
	}
	return nil
}

func matchesAny(name string, patterns []string) bool {
	for _, p := range patterns {
		if prefix, ok := strings.CutSuffix(p, "*"); ok && strings.HasPrefix(name, prefix) || p == name {
			return true
		}
	}
	return false
}

// sysctls is the pod's sysctls as CRI wants them, for the sandbox.
func sysctls(pod *corev1.Pod) map[string]string {
	if pod.Spec.SecurityContext == nil || len(pod.Spec.SecurityContext.Sysctls) == 0 {
		return nil
	}
	out := map[string]string{}
	for _, s := range pod.Spec.SecurityContext.Sysctls {
		out[s.Name] = s.Value
	}
	return out
}
