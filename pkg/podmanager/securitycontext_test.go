package podmanager

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestRunAsNonRootRefusesRootWithTheKubeletsMessages(t *testing.T) {
	pod := testPod("img")
	c := &pod.Spec.Containers[0]
	yes := true
	uid := func(v int64) *int64 { return &v }
	for _, tc := range []struct {
		name string
		sc   corev1.SecurityContext
		user imageUser
		want string // empty: allowed
	}{
		{"not asked", corev1.SecurityContext{}, imageUser{uid: uid(0)}, ""},
		{"runAsUser 0", corev1.SecurityContext{RunAsNonRoot: &yes, RunAsUser: uid(0)}, imageUser{uid: uid(1000)}, "runAsUser breaks non-root policy"},
		{"runAsUser 1000 over a root image", corev1.SecurityContext{RunAsNonRoot: &yes, RunAsUser: uid(1000)}, imageUser{uid: uid(0)}, ""},
		{"root image", corev1.SecurityContext{RunAsNonRoot: &yes}, imageUser{uid: uid(0)}, "image will run as root"},
		{"named image user", corev1.SecurityContext{RunAsNonRoot: &yes}, imageUser{username: "app"}, "non-numeric user (app)"},
		{"numeric non-root image user", corev1.SecurityContext{RunAsNonRoot: &yes}, imageUser{uid: uid(65534)}, ""},
	} {
		err := verifyRunAsNonRoot(pod, c, tc.sc, tc.user)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: refused: %v", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: err = %v, want one containing %q", tc.name, err, tc.want)
		}
	}
	if got := userOf(&runtimeapi.Image{}); got.uid == nil || *got.uid != 0 {
		t.Errorf("an image without a user runs as %+v, want uid 0", got)
	}
}

func TestSysctlAdmission(t *testing.T) {
	pod := testPod("img")
	withSysctls := func(names ...string) *corev1.Pod {
		p := pod.DeepCopy()
		p.Spec.SecurityContext = &corev1.PodSecurityContext{}
		for _, n := range names {
			p.Spec.SecurityContext.Sysctls = append(p.Spec.SecurityContext.Sysctls, corev1.Sysctl{Name: n, Value: "1"})
		}
		return p
	}
	if err := sysctlsAllowed(withSysctls("net.ipv4.ip_unprivileged_port_start", "kernel.shm_rmid_forced"), nil); err != nil {
		t.Errorf("safe sysctls refused: %v", err)
	}
	if err := sysctlsAllowed(withSysctls("kernel.msgmax"), nil); err == nil || !strings.Contains(err.Error(), "not allowlisted") {
		t.Errorf("unsafe sysctl: err = %v, want not allowlisted", err)
	}
	if err := sysctlsAllowed(withSysctls("kernel.msgmax"), []string{"kernel.msg*"}); err != nil {
		t.Errorf("allowlisted unsafe sysctl refused: %v", err)
	}
	host := withSysctls("net.ipv4.tcp_syncookies")
	host.Spec.HostNetwork = true
	if err := sysctlsAllowed(host, nil); err == nil || !strings.Contains(err.Error(), "host net") {
		t.Errorf("net sysctl with hostNetwork: err = %v, want refused", err)
	}
}

func TestSecurityContextReachesCRI(t *testing.T) {
	pod := testPod("localhost/testserver:local")
	user, group, fsGroup := int64(1000), int64(3000), int64(2000)
	no, yes := false, true
	pod.Spec.SecurityContext = &corev1.PodSecurityContext{RunAsUser: &user, FSGroup: &fsGroup, SupplementalGroups: []int64{4000},
		SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		Sysctls:        []corev1.Sysctl{{Name: "net.ipv4.ip_unprivileged_port_start", Value: "80"}}}
	pod.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{RunAsGroup: &group, ReadOnlyRootFilesystem: &yes,
		AllowPrivilegeEscalation: &no, Capabilities: &corev1.Capabilities{Add: []corev1.Capability{"NET_BIND_SERVICE"},
			Drop: []corev1.Capability{"ALL"}}}
	f := newFixture(t, pod)
	f.runtime.SetFakeImages([]string{"localhost/testserver:local"})
	if _, err := f.worker.sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(*f.runtime.created) != 1 {
		t.Fatalf("created %d containers, want 1", len(*f.runtime.created))
	}
	sc := (*f.runtime.created)[0].Linux.SecurityContext
	if sc.RunAsUser.GetValue() != 1000 || sc.RunAsGroup.GetValue() != 3000 || !sc.ReadonlyRootfs || !sc.NoNewPrivs || sc.Privileged {
		t.Errorf("security context = %+v", sc)
	}
	if len(sc.SupplementalGroups) != 2 || sc.SupplementalGroups[0] != 2000 || sc.SupplementalGroups[1] != 4000 {
		t.Errorf("supplemental groups = %v, want [2000 4000] (fsGroup first)", sc.SupplementalGroups)
	}
	if sc.Capabilities.AddCapabilities[0] != "NET_BIND_SERVICE" || sc.Capabilities.DropCapabilities[0] != "ALL" {
		t.Errorf("capabilities = %+v", sc.Capabilities)
	}
	if sc.Seccomp.ProfileType != runtimeapi.SecurityProfile_RuntimeDefault {
		t.Errorf("seccomp = %v, want the pod's RuntimeDefault", sc.Seccomp)
	}
}
