package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestVolumes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ns := newNamespace(t)
	core := stack.client.CoreV1()
	hostDir := filepath.Join(os.TempDir(), "nodeagent-e2e-"+ns)
	t.Cleanup(func() { os.RemoveAll(hostDir) })
	if _, err := core.ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "app-config"},
		Data: map[string]string{"greeting": "hello", "unused": "x"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := core.Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "app-secret"},
		Data: map[string][]byte{"password": []byte("s3cret")}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	size := resource.MustParse("16Mi")
	readOnly := int32(0o400)
	dirOrCreate := corev1.HostPathDirectoryOrCreate
	pod := busyboxPod("volumes", 1, `cat /scratch/handoff; grep ' /mem ' /proc/mounts; `+
		`echo "secret-mode=$(stat -L -c %a /sec/password) secret=$(cat /sec/password)"; echo from-pod > /host/out; `+
		`while true; do echo "greeting=$(cat /cfg/conf/greeting.txt)"; sleep 1; done`)
	pod.Spec.Volumes = []corev1.Volume{
		{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		{Name: "mem", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory, SizeLimit: &size}}},
		{Name: "cfg", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: "app-config"},
			Items:                []corev1.KeyToPath{{Key: "greeting", Path: "conf/greeting.txt"}}}}},
		{Name: "sec", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "app-secret", DefaultMode: &readOnly}}},
		{Name: "host", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: hostDir, Type: &dirOrCreate}}},
	}
	mounts := []corev1.VolumeMount{{Name: "scratch", MountPath: "/scratch"}, {Name: "mem", MountPath: "/mem"},
		{Name: "cfg", MountPath: "/cfg"}, {Name: "sec", MountPath: "/sec"}, {Name: "host", MountPath: "/host"}}
	pod.Spec.Containers[0].VolumeMounts = mounts
	initC := pod.Spec.Containers[0]
	initC.Name, initC.Command = "init", []string{"sh", "-c", "echo from-init > /scratch/handoff"}
	pod.Spec.InitContainers = []corev1.Container{initC}
	created, err := core.Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	log := logFile(created, "c")
	for _, want := range []string{"stdout F from-init", "tmpfs /mem tmpfs", "size=16384k",
		"secret-mode=400 secret=s3cret", "greeting=hello"} {
		waitForLog(ctx, t, log, want)
	}
	if data, err := os.ReadFile(filepath.Join(hostDir, "out")); err != nil || string(data) != "from-pod\n" {
		t.Errorf("hostPath file = %q, %v; want from-pod", data, err)
	}

	// A ConfigMap update reaches the mounted file while the container runs.
	cm, err := core.ConfigMaps(ns).Get(ctx, "app-config", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cm.Data["greeting"] = "bonjour"
	if _, err := core.ConfigMaps(ns).Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	updateCtx, cancelUpdate := context.WithTimeout(ctx, 60*time.Second)
	defer cancelUpdate()
	waitForLog(updateCtx, t, log, "greeting=bonjour")

	// A hostPath of type File that does not exist keeps the pod from starting, with a FailedMount event.
	fileType := corev1.HostPathFile
	broken := busyboxPod("broken-mount", 1, "echo should-not-run")
	broken.Spec.Volumes = []corev1.Volume{{Name: "missing", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{
		Path: filepath.Join(hostDir, "no-such-file"), Type: &fileType}}}}
	broken.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "missing", MountPath: "/missing"}}
	if _, err := core.Pods(ns).Create(ctx, broken, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	err = pollUntil(ctx, func() (bool, error) {
		events, err := core.Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=broken-mount,reason=FailedMount"})
		return err == nil && len(events.Items) > 0 && strings.Contains(events.Items[0].Message, "no-such-file"), nil
	})
	if err != nil {
		t.Errorf("no FailedMount event naming the path: %v\n%s", err, describe(ns))
	}
	if p, _ := core.Pods(ns).Get(ctx, "broken-mount", metav1.GetOptions{}); p.Status.Phase != corev1.PodPending {
		t.Errorf("broken-mount phase = %s, want Pending", p.Status.Phase)
	}

	// Deleting the pod unmounts its tmpfs and removes its volumes from the agent's root dir.
	if err := core.Pods(ns).Delete(ctx, "volumes", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	podDir := filepath.Join(runDir, "root", "pods", string(created.UID))
	err = pollUntil(ctx, func() (bool, error) {
		_, err := os.Stat(podDir)
		return os.IsNotExist(err), nil
	})
	if err != nil {
		t.Errorf("%s still exists after the pod was deleted", podDir)
	}
	if mounts, _ := os.ReadFile("/proc/self/mounts"); strings.Contains(string(mounts), string(created.UID)) {
		t.Error("a mount of the deleted pod is still there")
	}
}

// The projected kube-api-access volume that ServiceAccount admission adds to every pod gets a bound token
// from TokenRequest that the API server accepts, the cluster CA and the namespace; a downwardAPI volume
// shows the pod's labels in the kubelet's format.
func TestServiceAccountTokenAndDownwardAPIVolumes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ns := newNamespace(t)
	// The ServiceAccount controller creates "default" shortly after the namespace; admission needs it.
	err := pollUntil(ctx, func() (bool, error) {
		_, err := stack.client.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
		return err == nil, nil
	})
	if err != nil {
		t.Fatalf("no default ServiceAccount: %v", err)
	}
	sa := "/var/run/secrets/kubernetes.io/serviceaccount"
	pod := busyboxPod("identity", 1, `echo "ns=$(cat `+sa+`/namespace) ca-lines=$(grep -c CERTIFICATE `+sa+`/ca.crt)"; `+
		`echo "token=$(cat `+sa+`/token)"; echo "labels=$(cat /info/labels | tr '\n' ',')"; exec sleep 3600`)
	pod.Labels = map[string]string{"app": "demo", "tier": "web"}
	pod.Spec.Volumes = []corev1.Volume{{Name: "info", VolumeSource: corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{
		Items: []corev1.DownwardAPIVolumeFile{{Path: "labels", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels"}}}}}}}
	pod.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "info", MountPath: "/info"}}
	created, err := stack.client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	log := logFile(created, "c")
	waitForLog(ctx, t, log, "ns="+ns+" ca-lines=2")
	waitForLog(ctx, t, log, `labels=app="demo",tier="web"`)
	waitForLog(ctx, t, log, "token=ey")
	data, _ := os.ReadFile(log)
	token := strings.Fields(strings.SplitN(string(data), "token=", 2)[1])[0]

	review, err := stack.client.AuthenticationV1().TokenReviews().Create(ctx, &authenticationv1.TokenReview{
		Spec: authenticationv1.TokenReviewSpec{Token: token}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !review.Status.Authenticated || review.Status.User.Username != "system:serviceaccount:"+ns+":default" {
		t.Fatalf("token review = %+v, want authenticated as %s's default ServiceAccount", review.Status, ns)
	}
	if got := review.Status.User.Extra["authentication.kubernetes.io/pod-name"]; len(got) != 1 || got[0] != "identity" {
		t.Errorf("token not bound to the pod: extra = %v", review.Status.User.Extra)
	}
}

// A pod that ran to completion keeps its Pod object and container records but not its emptyDirs: the
// memory-backed one is unmounted and both are deleted, as the kubelet tears down a terminated pod's volumes.
func TestCompletedPodReleasesItsEmptyDirs(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ns := newNamespace(t)
	pod := busyboxPod("done", 1, "echo data > /mem/file && echo data > /disk/file")
	pod.Spec.RestartPolicy = corev1.RestartPolicyNever
	pod.Spec.Volumes = []corev1.Volume{
		{Name: "mem", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory}}},
		{Name: "disk", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
	}
	pod.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "mem", MountPath: "/mem"}, {Name: "disk", MountPath: "/disk"}}
	created, err := stack.client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitForPod(ctx, t, ns, "done", "Succeeded", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodSucceeded })
	emptyDirs := filepath.Join(runDir, "root", "pods", string(created.UID), "volumes", "kubernetes.io~empty-dir")
	err = pollUntil(ctx, func() (bool, error) {
		_, err := os.Stat(emptyDirs)
		return os.IsNotExist(err) && !isMounted(t, filepath.Join(emptyDirs, "mem")), nil
	})
	if err != nil {
		t.Errorf("the completed pod's emptyDirs are still there: %s", emptyDirs)
	}
}
