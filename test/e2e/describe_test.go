package e2e

import (
	"context"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// nodeagent describe pod shows, through the agent's local socket, what each part of the node knows of a
// pod: its container and probe, the Service that selects it with its VIP and nft chain, its DNS names, and
// its log file shipped up to what the receiver acknowledged.
func TestDescribePodShowsEveryPartOfTheNode(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ns := newNamespace(t)
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "described", Labels: map[string]string{"app": "described"}}, Spec: testPodSpec(testImage)}
	if _, err := stack.client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	svc, err := stack.client.CoreV1().Services(ns).Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "described"},
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)}}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pod = waitForPod(ctx, t, ns, "described", "Running", podRunningAndReady)
	describe := func() string {
		out, _ := exec.CommandContext(ctx, stack.agentBin, "describe", "pod", ns+"/described", "--socket", localSocket).CombinedOutput()
		return string(out)
	}
	// The test server logs a line when it starts: shipped and acknowledged once the receiver has it.
	acked := regexp.MustCompile(`(?m)/server/0\.log\s+(\d+)\s+(\d+)\s+(\d+)$`)
	var out string
	if err := pollUntil(ctx, func() (bool, error) {
		out = describe()
		m := acked.FindStringSubmatch(out)
		return m != nil && m[1] != "0" && m[1] == m[3] && !strings.Contains(out, "never, in this run"), nil
	}); err != nil {
		t.Fatalf("describe never showed the log file acknowledged to its end:\n%s", out)
	}
	for _, want := range []string{
		"Name: " + ns + "/described", "UID: " + string(pod.UID), "Phase: Running",
		"readiness http-get :8080/healthz every 1s: passing",
		ns + "/web: " + svc.Spec.ClusterIP + ":80/TCP",
		"nft chain: inet nodeagent service-" + ns + "/web/tcp/http",
		"web." + ns + ".svc.cluster.local",
		strings.ReplaceAll(pod.Status.PodIP, ".", "-") + "." + ns + ".pod.cluster.local",
	} {
		if !strings.Contains(squashSpaces(out), want) {
			t.Errorf("nodeagent describe pod lacks %q:\n%s", want, out)
		}
	}
	if !regexp.MustCompile(`Normal\s+Started\s+x1\s+Started container server`).MatchString(out) {
		t.Errorf("nodeagent describe pod lacks the Started event:\n%s", out)
	}
	get, _ := exec.CommandContext(ctx, stack.agentBin, "get", "pods", "-n", ns, "--socket", localSocket).CombinedOutput()
	if !regexp.MustCompile(`(?m)^` + ns + `\s+described\s+1/1\s+Running\s+0\s+` + regexp.QuoteMeta(pod.Status.PodIP)).Match(get) {
		t.Errorf("nodeagent get pods -n %s:\n%s", ns, get)
	}
	if out, err := exec.CommandContext(ctx, stack.agentBin, "describe", "pod", ns+"/missing", "--socket", localSocket).CombinedOutput(); err == nil ||
		!strings.Contains(string(out), "is not on this node") {
		t.Errorf("describe of a missing pod: %v %s", err, out)
	}
}

// squashSpaces makes every run of spaces one, so that checks do not depend on a table's column widths.
func squashSpaces(s string) string { return regexp.MustCompile(` +`).ReplaceAllString(s, " ") }
