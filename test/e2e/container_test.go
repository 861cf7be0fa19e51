package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/remotecommand"
	statsapi "k8s.io/kubelet/pkg/apis/stats/v1alpha1"
	utilexec "k8s.io/utils/exec"
)

// A busybox container shows that command, args and env reach the process and its output reaches the CRI log
// file, and that deletion waits out the grace period before SIGKILL and then finalises the Pod.
func TestContainerCommandEnvLogsAndGracefulDeletion(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ns := newNamespace(t)
	grace := int64(3)
	spec := busyboxPod("shell", grace, "")
	spec.Spec.Containers[0].Command = []string{"sh", "-c"}
	spec.Spec.Containers[0].Args = []string{`echo "$GREETING from $POD_NAME in $POD_NAMESPACE"; exec sleep 3600`}
	spec.Spec.Containers[0].Env = []corev1.EnvVar{
		{Name: "GREETING", Value: "hello"},
		{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
		{Name: "POD_NAMESPACE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
	}
	pod, err := stack.client.CoreV1().Pods(ns).Create(ctx, spec, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// The kubelet's layout: /var/log/pods/<ns>_<name>_<uid>/<container>/<restartCount>.log in CRI format.
	waitForLog(ctx, t, logFile(pod, "c"), "stdout F hello from shell in "+ns)
	err = pollUntil(ctx, func() (bool, error) {
		p, err := stack.client.CoreV1().Pods(ns).Get(ctx, "shell", metav1.GetOptions{})
		return err == nil && podRunningAndReady(p), nil
	})
	if err != nil {
		t.Fatalf("pod not Running: %v\n%s", err, describe(ns))
	}
	// Log shippers set up for the kubelet tail its links, /var/log/containers/<pod>_<ns>_<container>-<id>.log.
	running, err := stack.client.CoreV1().Pods(ns).Get(ctx, "shell", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	id := strings.TrimPrefix(running.Status.ContainerStatuses[0].ContainerID, "containerd://")
	link := filepath.Join("/var/log/containers", "shell_"+ns+"_c-"+id+".log")
	if target, err := os.Readlink(link); err != nil || target != logFile(pod, "c") {
		t.Errorf("%s → %q (%v), want → %s", link, target, err, logFile(pod, "c"))
	}
	waitForLog(ctx, t, link, "stdout F hello from shell in "+ns)

	took := deletePod(ctx, t, ns, "shell")
	// exec makes sleep PID 1 of the container, and PID 1 has no default action for SIGTERM: only the
	// SIGKILL after the grace period ends it.
	if took < time.Duration(grace)*time.Second {
		t.Errorf("pod finalised after %v, before its %ds grace period: SIGKILL came early", took, grace)
	}
	if took > time.Duration(grace)*time.Second+15*time.Second {
		t.Errorf("pod finalised after %v, long after its %ds grace period", took, grace)
	}
	if got := crictl(t, "ps", "-a", "--label", "io.kubernetes.pod.uid="+string(pod.UID), "-q"); len(got) != 0 {
		t.Errorf("containers left after deletion: %v", got)
	}
}

// Environment from a ConfigMap and a Secret (read by the agent as system:node under the Node authorizer),
// with $(VAR) expansion in env values and args, as the container sees it.
func TestEnvironmentFromConfigMapAndSecret(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ns := newNamespace(t)
	core := stack.client.CoreV1()
	if _, err := core.ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "settings"},
		Data: map[string]string{"mode": "fast"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := core.Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "creds"},
		Data: map[string][]byte{"password": []byte("s3cret")}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ref := func(name string) corev1.LocalObjectReference { return corev1.LocalObjectReference{Name: name} }
	pod, err := core.Pods(ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "env"},
		Spec: corev1.PodSpec{
			NodeName: nodeName,
			Containers: []corev1.Container{{
				Name: "sh", Image: "localhost/busybox:local", ImagePullPolicy: corev1.PullNever,
				Command: []string{"sh", "-c"},
				Args:    []string{`echo "args=$(URL) shell=$CFG_mode/$PASSWORD"; exec sleep 3600`},
				EnvFrom: []corev1.EnvFromSource{{Prefix: "CFG_", ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: ref("settings")}}},
				Env: []corev1.EnvVar{
					{Name: "PASSWORD", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
						LocalObjectReference: ref("creds"), Key: "password"}}},
					{Name: "URL", Value: "db://$(PASSWORD)@$(CFG_mode)"},
				},
			}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitForLog(ctx, t, logFile(pod, "sh"), "args=db://s3cret@fast shell=fast/s3cret")
}

// postStart and preStop exec hooks run in the container (they write to PID 1's stdout, so to the CRI log):
// postStart before the pod counts as running, preStop before SIGTERM on deletion.
func TestLifecycleHooks(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ns := newNamespace(t)
	grace := int64(10)
	hook := func(msg string) *corev1.LifecycleHandler {
		return &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"sh", "-c", "echo " + msg + " > /proc/1/fd/1"}}}
	}
	spec := busyboxPod("hooks", grace, "echo main-started; exec sleep 3600")
	spec.Spec.Containers[0].Lifecycle = &corev1.Lifecycle{PostStart: hook("poststart-ran"), PreStop: hook("prestop-ran")}
	pod, err := stack.client.CoreV1().Pods(ns).Create(ctx, spec, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	hookLog := logFile(pod, "c")
	err = pollUntil(ctx, func() (bool, error) {
		p, err := stack.client.CoreV1().Pods(ns).Get(ctx, "hooks", metav1.GetOptions{})
		return err == nil && podRunningAndReady(p), nil
	})
	if err != nil {
		t.Fatalf("pod not running: %v\n%s", err, describe(ns))
	}
	if data, _ := os.ReadFile(hookLog); !strings.Contains(string(data), "poststart-ran") {
		t.Errorf("pod Running before its postStart hook ran: log %q", data)
	}
	took := deletePod(ctx, t, ns, "hooks")
	data, _ := os.ReadFile(hookLog)
	if !strings.Contains(string(data), "prestop-ran") {
		t.Errorf("preStop hook output missing from the log: %q", data)
	}
	// sleep is PID 1 and ignores SIGTERM: the pod is gone only after the grace period, hook included.
	if took < time.Duration(grace)*time.Second {
		t.Errorf("pod gone after %v, before the %ds grace period", took, grace)
	}
}

// A container's termination message comes from its terminationMessagePath file, or with
// FallbackToLogsOnError from the end of its log; the pod (restartPolicy Never) fails with both.
func TestTerminationMessages(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ns := newNamespace(t)
	pod := busyboxPod("ending", 1, "printf 'custom goodbye' > /dev/termination-log; exit 3")
	pod.Spec.RestartPolicy = corev1.RestartPolicyNever
	second := pod.Spec.Containers[0]
	second.Name = "fallback"
	second.Command = []string{"sh", "-c", "echo first line; echo last words; exit 1"}
	second.TerminationMessagePolicy = corev1.TerminationMessageFallbackToLogsOnError
	pod.Spec.Containers = append(pod.Spec.Containers, second)
	if _, err := stack.client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var p *corev1.Pod
	err := pollUntil(ctx, func() (bool, error) {
		var err error
		p, err = stack.client.CoreV1().Pods(ns).Get(ctx, "ending", metav1.GetOptions{})
		return err == nil && p.Status.Phase == corev1.PodFailed, nil
	})
	if err != nil {
		t.Fatalf("pod never Failed: %v\n%s", err, describe(ns))
	}
	byName := map[string]*corev1.ContainerStateTerminated{}
	for _, cs := range p.Status.ContainerStatuses {
		byName[cs.Name] = cs.State.Terminated
	}
	if c := byName["c"]; c == nil || c.Message != "custom goodbye" || c.ExitCode != 3 || c.Reason != "Error" {
		t.Errorf("container c terminated = %+v, want message %q, exit 3, reason Error", c, "custom goodbye")
	}
	if c := byName["fallback"]; c == nil || c.Message != "first line\nlast words\n" && c.Message != "first line\nlast words" {
		t.Errorf("container fallback terminated = %+v, want its log lines as the message", c)
	}
}

// Requests and limits reach the container's cgroup (cgroup v1 here, cgroupfs driver) as the kubelet sets them.
func TestResourceLimitsReachTheCgroup(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ns := newNamespace(t)
	pod := busyboxPod("limited", 1, `echo "memory=$(cat /sys/fs/cgroup/memory/memory.limit_in_bytes) `+
		`quota=$(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us) shares=$(cat /sys/fs/cgroup/cpu/cpu.shares)"; exec sleep 3600`)
	pod.Spec.Containers[0].Resources = corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("32Mi")},
		Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("500m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
	}
	created, err := stack.client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if created.Status.QOSClass != corev1.PodQOSBurstable {
		t.Errorf("qosClass = %q, want Burstable", created.Status.QOSClass)
	}
	waitForLog(ctx, t, logFile(created, "c"), "memory=67108864 quota=50000 shares=102")
}

// Service links (a Service of the pod's namespace and the API server's `kubernetes` Service) and the
// downward API's resource fields, in env and in a downwardAPI volume, as the container sees them.
func TestServiceLinksAndResourceFieldRefs(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ns := newNamespace(t)
	core := stack.client.CoreV1()
	svc, err := core.Services(ns).Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web-front"},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 8080}}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	api, err := core.Services(metav1.NamespaceDefault).Get(ctx, "kubernetes", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pod := busyboxPod("links", 1, `echo "web=$WEB_FRONT_SERVICE_HOST:$WEB_FRONT_SERVICE_PORT_HTTP $WEB_FRONT_PORT `+
		`api=$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT mem=$MEM_MI cpu=$CPU_LIMIT `+
		`file=$(cat /etc/podinfo/cpu_request)"; exec sleep 3600`)
	c := &pod.Spec.Containers[0]
	c.Resources.Requests = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("250m")}
	c.Resources.Limits = corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("48Mi")}
	c.Env = []corev1.EnvVar{
		{Name: "MEM_MI", ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{
			Resource: "limits.memory", Divisor: resource.MustParse("1Mi")}}},
		{Name: "CPU_LIMIT", ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{
			Resource: "limits.cpu"}}},
	}
	c.VolumeMounts = []corev1.VolumeMount{{Name: "podinfo", MountPath: "/etc/podinfo"}}
	pod.Spec.Volumes = []corev1.Volume{{Name: "podinfo", VolumeSource: corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{
		Items: []corev1.DownwardAPIVolumeFile{{Path: "cpu_request", ResourceFieldRef: &corev1.ResourceFieldSelector{
			ContainerName: "c", Resource: "requests.cpu", Divisor: resource.MustParse("1m")}}}}}}}
	created, err := core.Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	node, err := core.Nodes().Get(ctx, nodeName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cpus := node.Status.Allocatable.Cpu().Value() // an unset limit is the node's allocatable
	want := fmt.Sprintf("web=%s:8080 tcp://%s:8080 api=%s:443 mem=48 cpu=%d file=250",
		svc.Spec.ClusterIP, svc.Spec.ClusterIP, api.Spec.ClusterIP, cpus)
	waitForLog(ctx, t, logFile(created, "c"), want)
}

// A deleted Pod that a finalizer keeps shows how its container ended and a terminal phase, as the kubelet
// writes it before the Pod is removed, instead of a running container forever.
func TestDeletedPodHeldByAFinalizerShowsItsFinalStatus(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ns := newNamespace(t)
	pods := stack.client.CoreV1().Pods(ns)
	spec := busyboxPod("held", 1, "exec sleep 3600")
	spec.Finalizers = []string{"e2e.nodeagent.io/hold"}
	if _, err := pods.Create(ctx, spec, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitForPod(ctx, t, ns, "held", "Running", podRunningAndReady)
	if err := pods.Delete(ctx, "held", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	final := waitForPod(ctx, t, ns, "held", "terminal with its container terminated", func(p *corev1.Pod) bool {
		return (p.Status.Phase == corev1.PodFailed || p.Status.Phase == corev1.PodSucceeded) &&
			len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].State.Terminated != nil
	})
	// sleep as PID 1 ignores SIGTERM: SIGKILL after the grace period, exit code 137.
	if term := final.Status.ContainerStatuses[0].State.Terminated; term.ExitCode != 137 || final.Status.Phase != corev1.PodFailed {
		t.Errorf("phase %s, container exit code %d; want Failed, 137", final.Status.Phase, term.ExitCode)
	}
	// A patch, as kubectl patch does: the agent may still be writing the Pod's status, and an Update of the
	// object read above then conflicts.
	if _, err := pods.Patch(ctx, "held", types.MergePatchType, []byte(`{"metadata":{"finalizers":null}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	waitForPodGone(ctx, t, ns, "held") // removed once its finalizer is
}

// kubectl logs works: the API server reaches the node API with its kubelet client certificate, and the agent
// serves the container's log with the kubelet's options.
func TestPodLogsThroughTheAPIServer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ns := newNamespace(t)
	pods := stack.client.CoreV1().Pods(ns)
	startBusybox(ctx, t, ns, "talker", `echo one; echo two; echo three; exec sleep 3600`)
	tail := int64(2)
	var got string
	err := pollUntil(ctx, func() (bool, error) {
		out, err := pods.GetLogs("talker", &corev1.PodLogOptions{Container: "c", TailLines: &tail}).DoRaw(ctx)
		got = string(out)
		if err != nil {
			got = err.Error()
		}
		return err == nil && got == "two\nthree\n", nil
	})
	if err != nil {
		t.Fatalf("logs through the API server: %q, want the last two lines", got)
	}
}

// kubectl exec works: the API server upgrades to the node API, which hands the stream to the runtime's.
func TestExecThroughTheAPIServer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ns := newNamespace(t)
	startBusybox(ctx, t, ns, "shell", "exec sleep 3600")
	req := stack.client.CoreV1().RESTClient().Post().Resource("pods").Namespace(ns).Name("shell").
		SubResource("exec").VersionedParams(&corev1.PodExecOptions{Container: "c",
		Command: []string{"sh", "-c", "echo out-$((6*7)); echo err >&2"}, Stdout: true, Stderr: true}, scheme.ParameterCodec)
	exec, err := remotecommand.NewSPDYExecutor(stack.restConfig, "POST", req.URL())
	if err != nil {
		t.Fatal(err)
	}
	var stdout, stderr strings.Builder
	if err := exec.StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: &stdout, Stderr: &stderr}); err != nil {
		t.Fatalf("exec: %v (stderr %q)", err, stderr.String())
	}
	if stdout.String() != "out-42\n" || stderr.String() != "err\n" {
		t.Errorf("exec printed %q and %q, want out-42 and err", stdout.String(), stderr.String())
	}
}

// The node declares ExtendWebSocketsToKubelet, so the API server passes WebSocket (v5) exec requests (and
// kubectl's SPDY-over-WebSocket port forwards, TestKubectlPortForward) on to the node API as they come, and the
// node translates them to the runtime's SPDY, as the kubelet v1.37 does: an exec with stdin and an exit code,
// which the API server counts proxied_to_kubelet rather than translated at itself.
func TestWebSocketStreamsReachTheNodeAsTheyCome(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	node, err := stack.client.CoreV1().Nodes().Get(ctx, nodeName, metav1.GetOptions{})
	if err != nil || !slices.Contains(node.Status.DeclaredFeatures, "ExtendWebSocketsToKubelet") {
		t.Fatalf("the Node declares %v (%v), want ExtendWebSocketsToKubelet", node.Status.DeclaredFeatures, err)
	}
	ns := newNamespace(t)
	startBusybox(ctx, t, ns, "shell", "exec sleep 3600")
	req := stack.client.CoreV1().RESTClient().Post().Resource("pods").Namespace(ns).Name("shell").
		SubResource("exec").VersionedParams(&corev1.PodExecOptions{Container: "c",
		Command: []string{"sh", "-c", "read x; echo got-$x; exit 3"}, Stdin: true, Stdout: true, Stderr: true}, scheme.ParameterCodec)
	executor, err := remotecommand.NewWebSocketExecutor(stack.restConfig, "GET", req.URL().String())
	if err != nil {
		t.Fatal(err)
	}
	var stdout, stderr strings.Builder
	err = executor.StreamWithContext(ctx, remotecommand.StreamOptions{Stdin: strings.NewReader("hello\n"), Stdout: &stdout, Stderr: &stderr})
	var exit utilexec.ExitError
	if !errors.As(err, &exit) || exit.ExitStatus() != 3 || stdout.String() != "got-hello\n" {
		t.Errorf("WebSocket exec: %v (exit %v), printed %q and %q; want got-hello and exit 3", err, exit, stdout.String(), stderr.String())
	}
	metrics, err := stack.client.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(metrics), "\n") {
		if strings.HasPrefix(line, "apiserver_websocket_streaming_requests_total{") && strings.Contains(line, "translated_at_apiserver") &&
			!strings.HasSuffix(line, " 0") {
			t.Errorf("the API server translated streams itself: %s", line)
		}
	}
	if !strings.Contains(string(metrics), `apiserver_websocket_streaming_requests_total{proxy_type="proxied_to_kubelet",subresource="exec"}`) {
		t.Errorf("the API server counted no exec proxied to the node")
	}
}

// The node API's legacy /run runs a command to its end and answers with its output (the API server's node
// proxy reaches it; no kubectl command does); a failing command is an error.
func TestRunThroughTheAPIServer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ns := newNamespace(t)
	startBusybox(ctx, t, ns, "runner", "exec sleep 3600")
	run := func(cmd string) ([]byte, error) {
		return stack.client.CoreV1().RESTClient().Post().AbsPath("/api/v1/nodes", nodeName, "proxy", "run", ns, "runner", "c").
			Param("cmd", cmd).DoRaw(ctx)
	}
	if out, err := run("echo ran-in-runner"); err != nil || string(out) != "ran-in-runner\n" {
		t.Errorf("/run echo: %q, %v; want ran-in-runner", out, err)
	}
	if out, err := run("false"); err == nil {
		t.Errorf("/run false: %q without an error, want the exit reported", out)
	}
}

// The node's own views, as a kubelet's: /pods (the pods with their status), /runningpods/ (what the
// runtime runs), /metrics (the kubelet's series), /metrics/resource and /stats/summary through the API
// server's node proxy, and the unauthenticated /healthz on 127.0.0.1:10248.
func TestNodePodsRunningPodsMetricsAndHealthz(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ns := newNamespace(t)
	listedPod := busyboxPod("listed", 0, "dd if=/dev/zero of=/scratch/f bs=1024 count=1024 && exec sleep 3600")
	listedPod.Spec.Volumes = []corev1.Volume{{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
	listedPod.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "scratch", MountPath: "/scratch"}}
	if _, err := stack.client.CoreV1().Pods(ns).Create(ctx, listedPod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod := waitForPod(ctx, t, ns, "listed", "Running", podRunningAndReady)
	nodeProxy := func(path string) (corev1.PodList, error) {
		var list corev1.PodList
		raw, err := stack.client.CoreV1().RESTClient().Get().AbsPath("/api/v1/nodes", nodeName, "proxy", path).DoRaw(ctx)
		if err == nil {
			err = json.Unmarshal(raw, &list)
		}
		return list, err
	}
	find := func(list corev1.PodList) *corev1.Pod {
		for i := range list.Items {
			if list.Items[i].UID == pod.UID {
				return &list.Items[i]
			}
		}
		return nil
	}
	list, err := nodeProxy("pods")
	if p := find(list); err != nil || p == nil || p.Status.Phase != corev1.PodRunning {
		t.Errorf("/pods: %v; the pod %v, want it Running", err, p)
	}
	// The runtime cache is relisted every second.
	var running *corev1.Pod
	err = pollUntil(ctx, func() (bool, error) {
		list, err := nodeProxy("runningpods/")
		running = find(list)
		return err == nil && running != nil, nil
	})
	if err != nil || running.Name != "listed" || len(running.Spec.Containers) != 1 || running.Spec.Containers[0].Name != "c" {
		t.Errorf("/runningpods/: %v; the pod %+v, want it with its running container c", err, running)
	}
	raw, err := stack.client.CoreV1().RESTClient().Get().AbsPath("/api/v1/nodes", nodeName, "proxy", "metrics").DoRaw(ctx)
	for _, want := range []string{`kubelet_node_name{node="` + nodeName + `"} 1`, "kubelet_running_pods ",
		`kubelet_running_containers{container_state="running"}`, "kubelet_pod_start_duration_seconds_count ",
		`kubelet_http_requests_total{long_running="false",method="GET",path="pods",server_type="readwrite"}`,
		`kubelet_runtime_operations_total{operation_type="list_podsandbox"}`,
		"kubelet_pleg_relist_duration_seconds_count ", "kubeproxy_sync_proxy_rules_duration_seconds_count"} {
		if err != nil || !strings.Contains(string(raw), want) {
			t.Errorf("/metrics through the API server (%v) lacks %s", err, want)
		}
	}
	// metrics-server's series, with the container's CPU and memory from the runtime.
	wantResource := []string{"node_cpu_usage_seconds_total ", "node_memory_working_set_bytes ",
		`container_cpu_usage_seconds_total{container="c",namespace="` + ns + `",pod="listed"}`,
		`container_memory_working_set_bytes{container="c",namespace="` + ns + `",pod="listed"}`,
		`pod_memory_working_set_bytes{namespace="` + ns + `",pod="listed"}`, "resource_scrape_error 0"}
	var resource string
	err = pollUntil(ctx, func() (bool, error) {
		raw, err := stack.client.CoreV1().RESTClient().Get().AbsPath("/api/v1/nodes", nodeName, "proxy", "metrics", "resource").DoRaw(ctx)
		resource = string(raw)
		for _, want := range wantResource {
			if err != nil || !strings.Contains(resource, want) {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		t.Errorf("/metrics/resource lacks one of %q:\n%s", wantResource, resource)
	}
	// The kubelet's stats summary: the node, and the pod with its container's CPU and memory.
	var summary statsapi.Summary
	raw, err = stack.client.CoreV1().RESTClient().Get().AbsPath("/api/v1/nodes", nodeName, "proxy", "stats", "summary").DoRaw(ctx)
	if err == nil {
		err = json.Unmarshal(raw, &summary)
	}
	var listed *statsapi.PodStats
	for i := range summary.Pods {
		if summary.Pods[i].PodRef.UID == string(pod.UID) {
			listed = &summary.Pods[i]
		}
	}
	switch {
	case err != nil || summary.Node.NodeName != nodeName || summary.Node.CPU == nil || summary.Node.Memory == nil || summary.Node.Fs == nil:
		t.Errorf("/stats/summary: %v; node %+v", err, summary.Node)
	case listed == nil || len(listed.Containers) != 1 || listed.Containers[0].Name != "c" || listed.Containers[0].CPU == nil ||
		listed.Containers[0].Memory == nil || listed.Containers[0].Memory.WorkingSetBytes == nil || *listed.Containers[0].Memory.WorkingSetBytes == 0:
		t.Errorf("/stats/summary: the pod %+v, want its container c with CPU and memory", listed)
	}
	// Its volumes and ephemeral storage: the emptyDir with the 1 MiB the container wrote.
	if listed != nil {
		checkPodStorage(t, listed)
	}
	resp, err := http.Get("http://127.0.0.1:10248/healthz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || string(body) != "ok" {
		t.Errorf("127.0.0.1:10248/healthz: %d %q, want 200 ok", resp.StatusCode, body)
	}
}

// checkPodStorage checks a pod's /stats/summary storage: its emptyDir scratch holds the 1 MiB its container
// wrote, which its ephemeral storage counts.
func checkPodStorage(t *testing.T, pod *statsapi.PodStats) {
	t.Helper()
	var scratch *statsapi.VolumeStats
	for i := range pod.VolumeStats {
		if pod.VolumeStats[i].Name == "scratch" {
			scratch = &pod.VolumeStats[i]
		}
	}
	if scratch == nil || scratch.UsedBytes == nil || *scratch.UsedBytes < 1<<20 || scratch.CapacityBytes == nil {
		t.Errorf("/stats/summary: volumes %+v, want scratch holding 1 MiB or more", pod.VolumeStats)
	}
	if eph := pod.EphemeralStorage; eph == nil || eph.UsedBytes == nil || *eph.UsedBytes < 1<<20 {
		t.Errorf("/stats/summary: ephemeral storage %+v, want 1 MiB or more (the emptyDir)", eph)
	}
}
