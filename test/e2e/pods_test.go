package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func testPodSpec(image string) corev1.PodSpec {
	grace := int64(5)
	return corev1.PodSpec{
		NodeName:                      nodeName,
		TerminationGracePeriodSeconds: &grace,
		Containers: []corev1.Container{{
			Name: "server", Image: image, ImagePullPolicy: corev1.PullIfNotPresent,
			Ports: []corev1.ContainerPort{{ContainerPort: 8080}},
			// Without it a pod is Ready once its process runs, possibly before the server listens.
			ReadinessProbe: &corev1.Probe{PeriodSeconds: 1, ProbeHandler: corev1.ProbeHandler{
				HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromInt32(8080)}}},
		}},
	}
}

func podRunningAndReady(p *corev1.Pod) bool {
	return p.Status.Phase == corev1.PodRunning && p.Status.PodIP != "" && podReady(p)
}

func TestDeploymentRunsServesAndIsCleanedUp(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ns := newNamespace(t)
	replicas := int32(3)
	labels := map[string]string{"app": "web"}
	spec := testPodSpec(testImage)
	spec.NodeName = "" // the real scheduler places them
	_, err := stack.client.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: spec},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating deployment: %v", err)
	}
	var pods []corev1.Pod
	err = pollUntil(ctx, func() (bool, error) {
		list, err := stack.client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
		if err != nil {
			return false, err
		}
		pods = list.Items
		ready := 0
		for i := range pods {
			if podRunningAndReady(&pods[i]) {
				ready++
			}
		}
		return ready == int(replicas) && len(pods) == int(replicas), nil
	})
	if err != nil {
		t.Fatalf("pods not Running and Ready: %v\n%s", err, describe(ns))
	}
	node, err := stack.client.CoreV1().Nodes().Get(ctx, nodeName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, podCIDR, _ := net.ParseCIDR(node.Spec.PodCIDR)
	httpClient := &http.Client{Timeout: 5 * time.Second}
	for _, p := range pods {
		if p.Spec.NodeName != nodeName {
			t.Errorf("pod %s scheduled to %q, want %s", p.Name, p.Spec.NodeName, nodeName)
		}
		if ip := net.ParseIP(p.Status.PodIP); podCIDR == nil || !podCIDR.Contains(ip) {
			t.Errorf("pod %s IP %s not in the node's podCIDR %s", p.Name, p.Status.PodIP, node.Spec.PodCIDR)
		}
		cs := p.Status.ContainerStatuses
		if len(cs) != 1 || !strings.HasPrefix(cs[0].ContainerID, "containerd://") || cs[0].ImageID == "" ||
			!cs[0].Ready || cs[0].State.Running == nil || cs[0].Started == nil || !*cs[0].Started {
			t.Errorf("pod %s container status incomplete: %+v", p.Name, cs)
		}
		// The pod bridge is created by this test's node on this machine: traffic stays local.
		resp, err := httpClient.Get(fmt.Sprintf("http://%s:8080/hostname", p.Status.PodIP))
		if err != nil {
			t.Errorf("GET pod %s at %s: %v", p.Name, p.Status.PodIP, err)
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || string(body) != p.Name {
			t.Errorf("pod %s answered %d %q, want 200 %q", p.Name, resp.StatusCode, body, p.Name)
		}
	}
	nsLabel := "io.kubernetes.pod.namespace=" + ns
	if got := crictl(t, "pods", "--label", nsLabel, "-q"); len(got) != int(replicas) {
		t.Errorf("crictl pods shows %d sandboxes for the namespace, want %d", len(got), replicas)
	}

	out, err := exec.CommandContext(ctx, stack.kubectl, "--kubeconfig", stack.admin, "-n", ns, "delete",
		"deployment", "web").CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl delete: %v: %s", err, out)
	}
	// Grace period 5 s; the pods must be finalised, not merely marked for deletion.
	deleteCtx, cancelDelete := context.WithTimeout(ctx, 30*time.Second)
	defer cancelDelete()
	err = pollUntil(deleteCtx, func() (bool, error) {
		list, err := stack.client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		return err == nil && len(list.Items) == 0, nil
	})
	if err != nil {
		t.Fatalf("pods still in the API after the grace period: %v\n%s", err, describe(ns))
	}
	if got := crictl(t, "ps", "-a", "--label", nsLabel, "-q"); len(got) != 0 {
		t.Errorf("crictl ps -a still shows containers %v", got)
	}
	if got := crictl(t, "pods", "--label", nsLabel, "-q"); len(got) != 0 {
		t.Errorf("crictl pods still shows sandboxes %v", got)
	}
}

func TestMissingImageIsReportedAndOtherPodsStillStart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ns := newNamespace(t)
	pods := stack.client.CoreV1().Pods(ns)
	// Pulling from "localhost" is refused on loopback at once: nothing leaves the machine.
	for name, image := range map[string]string{"broken": "localhost/nodeagent-e2e-missing:v1", "healthy": testImage} {
		_, err := pods.Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: testPodSpec(image)},
			metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("creating pod %s: %v", name, err)
		}
	}
	seen := map[string]bool{}
	err := pollUntil(ctx, func() (bool, error) {
		p, err := pods.Get(ctx, "broken", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		if cs := p.Status.ContainerStatuses; len(cs) == 1 && cs[0].State.Waiting != nil {
			w := cs[0].State.Waiting
			if w.Reason == "ErrImagePull" || w.Reason == "ImagePullBackOff" {
				if !strings.Contains(w.Message, "nodeagent-e2e-missing") {
					return false, fmt.Errorf("waiting message %q does not name the image", w.Message)
				}
				seen[w.Reason] = true
			}
		}
		return seen["ErrImagePull"] || seen["ImagePullBackOff"], nil
	})
	if err != nil {
		t.Fatalf("broken pod never showed ErrImagePull/ImagePullBackOff: %v\n%s", err, describe(ns))
	}
	if p, _ := pods.Get(ctx, "broken", metav1.GetOptions{}); p.Status.Phase != corev1.PodPending {
		t.Errorf("broken pod phase = %s, want Pending", p.Status.Phase)
	}
	err = pollUntil(ctx, func() (bool, error) {
		p, err := pods.Get(ctx, "healthy", metav1.GetOptions{})
		return err == nil && podRunningAndReady(p), nil
	})
	if err != nil {
		t.Fatalf("healthy pod did not start beside the broken one: %v\n%s", err, describe(ns))
	}
	err = pollUntil(ctx, func() (bool, error) {
		events, err := stack.client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{
			FieldSelector: "involvedObject.name=broken,reason=Failed,source=kubelet"}) // as users filter a node's events
		return err == nil && len(events.Items) > 0, nil
	})
	if err != nil {
		t.Errorf("no Failed event for the broken pod: %v", err)
	}
}

// describe returns kubectl's view of a namespace's pods, for failure messages.
func describe(ns string) string {
	out, _ := exec.Command(stack.kubectl, "--kubeconfig", stack.admin, "-n", ns, "get", "pods,events", "-o", "wide").CombinedOutput()
	return string(out)
}
