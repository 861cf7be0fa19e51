package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// Every probe handler against real containers: httpGet on a named port, tcpSocket and gRPC keep a test server
// ready and alive; an exec readiness probe holds a pod back until its file exists; an exec liveness probe
// that starts failing gets the container killed and restarted, with Unhealthy and Killing events.
func TestProbes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ns := newNamespace(t)
	pods := stack.client.CoreV1().Pods(ns)
	quick := func(h corev1.ProbeHandler) *corev1.Probe {
		return &corev1.Probe{ProbeHandler: h, PeriodSeconds: 1, FailureThreshold: 1, TimeoutSeconds: 1}
	}
	exec := func(cmd ...string) corev1.ProbeHandler {
		return corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: cmd}}
	}
	busybox := func(script string) []corev1.Container {
		return []corev1.Container{{Name: "c", Image: "localhost/busybox:local", ImagePullPolicy: corev1.PullNever,
			Command: []string{"sh", "-c", script}}}
	}
	server := testPodSpec(testImage)
	server.Containers[0].Args = []string{"--grpc-port=9000"}
	server.Containers[0].Ports = []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}
	server.Containers[0].ReadinessProbe = quick(corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
		Path: "/healthz", Port: intstr.FromString("http")}})
	server.Containers[0].LivenessProbe = quick(corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(8081)}})
	// A startup probe gives the server time to listen, as real ones do; the others may then be strict.
	server.Containers[0].StartupProbe = quick(corev1.ProbeHandler{GRPC: &corev1.GRPCAction{Port: 9000}})
	server.Containers[0].StartupProbe.FailureThreshold = 30

	lateReady := testPodSpec(testImage)
	lateReady.Containers = busybox("sleep 4; touch /tmp/ready; exec sleep 3600")
	lateReady.Containers[0].ReadinessProbe = quick(exec("test", "-f", "/tmp/ready"))

	dying := testPodSpec(testImage)
	dying.Containers = busybox("touch /tmp/alive; sleep 3; rm /tmp/alive; exec sleep 3600")
	dying.Containers[0].LivenessProbe = quick(exec("test", "-f", "/tmp/alive"))

	for name, spec := range map[string]corev1.PodSpec{"server": server, "late-ready": lateReady, "dying": dying} {
		if _, err := pods.Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: spec}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	var sawLateRunningUnready bool
	err := pollUntil(ctx, func() (bool, error) {
		p, err := pods.Get(ctx, "late-ready", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		if p.Status.Phase == corev1.PodRunning && !podReady(p) {
			sawLateRunningUnready = true
		}
		return podReady(p), nil
	})
	if err != nil || !sawLateRunningUnready {
		t.Errorf("late-ready: ready=%v, seen running but unready first=%v (%v)\n%s", err == nil, sawLateRunningUnready, err, describe(ns))
	}

	err = pollUntil(ctx, func() (bool, error) {
		p, err := pods.Get(ctx, "server", metav1.GetOptions{})
		return err == nil && podRunningAndReady(p) && *p.Status.ContainerStatuses[0].Started, nil
	})
	if err != nil {
		t.Errorf("server with httpGet/tcpSocket/grpc probes never ready: %v\n%s", err, describe(ns))
	}

	err = pollUntil(ctx, func() (bool, error) {
		p, err := pods.Get(ctx, "dying", metav1.GetOptions{})
		return err == nil && len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].RestartCount >= 1, nil
	})
	if err != nil {
		t.Errorf("dying pod was not restarted after its liveness probe failed: %v\n%s", err, describe(ns))
	}
	// Events are sent after the fact (and held while pods start): poll for them too.
	var unhealthy, killing bool
	err = pollUntil(ctx, func() (bool, error) {
		events, err := stack.client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=dying"})
		if err != nil {
			return false, err
		}
		for _, e := range events.Items {
			unhealthy = unhealthy || (e.Reason == "Unhealthy" && strings.Contains(e.Message, "Liveness probe failed"))
			killing = killing || (e.Reason == "Killing" && strings.Contains(e.Message, "failed liveness probe"))
		}
		return unhealthy && killing, nil
	})
	if err != nil {
		t.Errorf("events: Unhealthy=%v Killing=%v, want both\n%s", unhealthy, killing, describe(ns))
	}
	// The kubelet's probe metrics on /metrics/probes, through the API server's node proxy.
	raw, err := stack.client.CoreV1().RESTClient().Get().AbsPath("/api/v1/nodes", nodeName, "proxy", "metrics", "probes").DoRaw(ctx)
	for _, want := range []string{
		`prober_probe_total{container="c",namespace="` + ns + `",pod="dying",pod_uid=`,
		`probe_type="Liveness",result="failed"}`,
		`prober_probe_duration_seconds_count{container="server",namespace="` + ns + `",pod="server",probe_type="Readiness"}`,
	} {
		if err != nil || !strings.Contains(string(raw), want) {
			t.Errorf("/metrics/probes (%v) lacks %s", err, want)
		}
	}
	// The healthy server was never restarted by its probes.
	if p, _ := pods.Get(ctx, "server", metav1.GetOptions{}); p.Status.ContainerStatuses[0].RestartCount != 0 {
		t.Errorf("server restarted %d times, want 0", p.Status.ContainerStatuses[0].RestartCount)
	}
}
