package e2e

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// securityReport prints, on one line, what a container's securityContext decides, as the process sees it.
const securityReport = `echo "id=$(id -u):$(id -g) groups=$(id -G) rootfs=$(touch /x 2>&1 | grep -q Read-only && echo ro || echo rw) ` +
	`$(grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status | tr -s '\t\n' '  ')` +
	`port_start=$(cat /proc/sys/net/ipv4/ip_unprivileged_port_start) mkdir=$(mkdir /scratch/$NAME 2>/dev/null && echo ok || echo denied)"; ` +
	`exec sleep 3600`

// The pod's and containers' securityContext reach the process: user, groups (fsGroup, supplementalGroups),
// read-only root, capabilities, no_new_privs, seccomp (RuntimeDefault, Unconfined, Localhost), privileged,
// and a safe sysctl in the pod's network namespace.
func TestSecurityContext(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ns := newNamespace(t)
	// A Localhost profile, looked up under the agent's <root-dir>/seccomp as the kubelet does.
	profileDir := filepath.Join(runDir, "root", "seccomp")
	if err := os.MkdirAll(profileDir, 0o755); err != nil {
		t.Fatal(err)
	}
	profile := `{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO"}]}`
	if err := os.WriteFile(filepath.Join(profileDir, "deny-mkdir.json"), []byte(profile), 0o644); err != nil {
		t.Fatal(err)
	}
	user, group, fsGroup, root := int64(1000), int64(3000), int64(2000), int64(0)
	no, yes := false, true
	localhost := "deny-mkdir.json"
	container := func(name string, sc *corev1.SecurityContext) corev1.Container {
		return corev1.Container{Name: name, Image: "localhost/busybox:local", ImagePullPolicy: corev1.PullNever,
			Command: []string{"sh", "-c", securityReport}, SecurityContext: sc, Env: []corev1.EnvVar{{Name: "NAME", Value: name}},
			VolumeMounts: []corev1.VolumeMount{{Name: "scratch", MountPath: "/scratch"}}}
	}
	grace := int64(1)
	pod, err := stack.client.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "secure"},
		Spec: corev1.PodSpec{
			NodeName: nodeName, TerminationGracePeriodSeconds: &grace,
			Volumes: []corev1.Volume{{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
			SecurityContext: &corev1.PodSecurityContext{RunAsUser: &user, FSGroup: &fsGroup, SupplementalGroups: []int64{4000},
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
				Sysctls:        []corev1.Sysctl{{Name: "net.ipv4.ip_unprivileged_port_start", Value: "80"}}},
			Containers: []corev1.Container{
				container("locked", &corev1.SecurityContext{RunAsGroup: &group, ReadOnlyRootFilesystem: &yes,
					AllowPrivilegeEscalation: &no, Capabilities: &corev1.Capabilities{
						Drop: []corev1.Capability{"ALL"}, Add: []corev1.Capability{"NET_BIND_SERVICE"}}}),
				container("unconfined", &corev1.SecurityContext{
					SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeUnconfined}}),
				container("localhost", &corev1.SecurityContext{
					SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeLocalhost, LocalhostProfile: &localhost}}),
				container("privileged", &corev1.SecurityContext{RunAsUser: &root, Privileged: &yes}),
			},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	hostCaps := statusField(t, "/proc/self/status", "CapBnd") // the test runs as root with every capability
	for name, want := range map[string]string{
		"locked": "id=1000:3000 groups=3000 2000 4000 rootfs=ro CapEff: 0000000000000000 CapBnd: 0000000000000400 " +
			"NoNewPrivs: 1 Seccomp: 2 port_start=80 mkdir=ok",
		"unconfined": "id=1000:0 groups=0 2000 4000 rootfs=rw",
		"localhost":  "Seccomp: 2 port_start=80 mkdir=denied",
		"privileged": "id=0:0 groups=0 2000 4000 rootfs=rw CapEff: " + hostCaps + " CapBnd: " + hostCaps + " NoNewPrivs: 0 Seccomp: 0",
	} {
		waitForLog(ctx, t, logFile(pod, name), want)
	}
	waitForLog(ctx, t, logFile(pod, "unconfined"), "NoNewPrivs: 0 Seccomp: 0 port_start=80 mkdir=ok")
}

// The pod's fsGroup owns its volumes, as with the kubelet: emptyDirs (disk and memory) are the group's and
// setgid, so what the container creates there is the group's; a Secret's 0400 key becomes the group's and
// 0440, so a container running as another user in that group reads it.
func TestFSGroupOwnsThePodsVolumes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ns := newNamespace(t)
	if _, err := stack.client.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "creds"},
		Data: map[string][]byte{"key": []byte("s3cret")}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	user, group, fsGroup, keyMode := int64(1000), int64(3000), int64(2000), int32(0o400)
	grace := int64(1)
	report := `touch /scratch/new /mem/new; echo "scratch=$(stat -c %g:%a /scratch) new=$(stat -c %g /scratch/new) ` +
		`mem=$(stat -c %g:%a /mem) memnew=$(stat -c %g /mem/new) key=$(stat -L -c %g:%a /creds/key) read=$(cat /creds/key)"; ` +
		`exec sleep 3600`
	pod, err := stack.client.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "fsgroup"},
		Spec: corev1.PodSpec{
			NodeName: nodeName, TerminationGracePeriodSeconds: &grace,
			SecurityContext: &corev1.PodSecurityContext{RunAsUser: &user, RunAsGroup: &group, FSGroup: &fsGroup},
			Volumes: []corev1.Volume{
				{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
				{Name: "mem", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory}}},
				{Name: "creds", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "creds", DefaultMode: &keyMode}}},
			},
			Containers: []corev1.Container{{Name: "c", Image: "localhost/busybox:local", ImagePullPolicy: corev1.PullNever,
				Command: []string{"sh", "-c", report},
				VolumeMounts: []corev1.VolumeMount{{Name: "scratch", MountPath: "/scratch"}, {Name: "mem", MountPath: "/mem"},
					{Name: "creds", MountPath: "/creds"}}}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// The memory emptyDir keeps tmpfs's sticky bit (3777), as with the kubelet (upstream's EmptyDir FSGroup
	// specs expect dgtrwxrwxrwx).
	waitForLog(ctx, t, logFile(pod, "c"), "scratch=2000:2777 new=2000 mem=2000:3777 memnew=2000 key=2000:440 read=s3cret")
}

// statusField reads one field of a /proc/<pid>/status file.
func statusField(t *testing.T, path, field string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^` + field + `:\s*(\S+)$`).FindStringSubmatch(string(data))
	if m == nil {
		t.Fatalf("%s has no %s", path, field)
	}
	return m[1]
}

// A container with runAsNonRoot whose image runs as root is refused with the kubelet's reason and message,
// and a pod asking for an unsafe sysctl is rejected by admission: Failed, SysctlForbidden, nothing started.
func TestSecurityRefusals(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ns := newNamespace(t)
	pods := stack.client.CoreV1().Pods(ns)
	yes := true
	nonRoot := busyboxPod("nonroot", 1, "exec sleep 3600")
	nonRoot.Spec.SecurityContext = &corev1.PodSecurityContext{RunAsNonRoot: &yes}
	if _, err := pods.Create(ctx, nonRoot, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	unsafe := busyboxPod("unsafe-sysctl", 1, "exec sleep 3600")
	unsafe.Spec.SecurityContext = &corev1.PodSecurityContext{Sysctls: []corev1.Sysctl{{Name: "kernel.msgmax", Value: "65536"}}}
	if _, err := pods.Create(ctx, unsafe, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	p := waitForPod(ctx, t, ns, "nonroot", "refused with CreateContainerConfigError", func(p *corev1.Pod) bool {
		return len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].State.Waiting != nil &&
			p.Status.ContainerStatuses[0].State.Waiting.Reason == "CreateContainerConfigError"
	})
	if msg := p.Status.ContainerStatuses[0].State.Waiting.Message; !strings.Contains(msg, "container has runAsNonRoot and image will run as root") {
		t.Errorf("waiting message = %q", msg)
	}
	p = waitForPod(ctx, t, ns, "unsafe-sysctl", "Failed with SysctlForbidden", func(p *corev1.Pod) bool {
		return p.Status.Phase == corev1.PodFailed
	})
	if p.Status.Reason != "SysctlForbidden" || !strings.Contains(p.Status.Message, `forbidden sysctl: "kernel.msgmax" not allowlisted`) {
		t.Errorf("status reason %q message %q", p.Status.Reason, p.Status.Message)
	}
	if ids := crictl(t, "pods", "-q", "--label", "io.kubernetes.pod.uid="+string(p.UID)); len(ids) != 0 {
		t.Errorf("the rejected pod has sandboxes %v", ids)
	}
	err := pollUntil(ctx, func() (bool, error) {
		events, err := stack.client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{
			FieldSelector: "involvedObject.name=unsafe-sysctl,reason=SysctlForbidden"})
		return err == nil && len(events.Items) > 0, nil
	})
	if err != nil {
		t.Errorf("no SysctlForbidden event: %v", err)
	}
}

// An AppArmor profile is enforced where the host can (the container runs confined) and refused where it
// cannot, as the kubelet's admission does: Failed with reason AppArmor, nothing started.
func TestAppArmorProfile(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ns := newNamespace(t)
	confined := busyboxPod("confined", 1, "echo profile=$(cat /proc/self/attr/current); exec sleep 3600")
	confined.Spec.SecurityContext = &corev1.PodSecurityContext{
		AppArmorProfile: &corev1.AppArmorProfile{Type: corev1.AppArmorProfileTypeRuntimeDefault}}
	pod, err := stack.client.CoreV1().Pods(ns).Create(ctx, confined, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	enabled, _ := os.ReadFile("/sys/module/apparmor/parameters/enabled")
	if strings.HasPrefix(string(enabled), "Y") {
		waitForLog(ctx, t, logFile(pod, "c"), "(enforce)")
		return
	}
	p := waitForPod(ctx, t, ns, "confined", "Failed with AppArmor", func(p *corev1.Pod) bool {
		return p.Status.Phase == corev1.PodFailed
	})
	if want := "Pod was rejected: Cannot enforce AppArmor: AppArmor is not enabled on the host"; p.Status.Reason != "AppArmor" || p.Status.Message != want {
		t.Errorf("status reason %q message %q, want AppArmor and %q", p.Status.Reason, p.Status.Message, want)
	}
	if ids := crictl(t, "pods", "-q", "--label", "io.kubernetes.pod.uid="+string(p.UID)); len(ids) != 0 {
		t.Errorf("the rejected pod has sandboxes %v", ids)
	}
}
