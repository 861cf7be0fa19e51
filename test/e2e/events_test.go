package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Where hack/setup-containerd2.sh runs containerd v2.
const (
	containerd2Socket  = "/run/nodeagent-containerd2/containerd.sock"
	containerd2CNIDir  = "/etc/cni/nodeagent-containerd2"
	containerd2Bridge  = "nodeagent1"
	containerd2CgroupR = "/e2e-containerd2"
)

// On a runtime that streams CRI container events (containerd v2), a second agent runs node e2e-node-v2 from
// them: it receives the events of its pods' containers and a container's exit reaches the Pod status. (The
// main e2e node runs on containerd 1.6, which has no such stream: there the agent relists.)
func TestContainerEventsFromContainerdV2(t *testing.T) {
	if _, err := os.Stat(containerd2Socket); err != nil {
		t.Fatalf("containerd v2 is not running (hack/setup-containerd2.sh up, which make test runs): %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	logPath := filepath.Join(runDir, "nodeagent-v2.log")
	agent := startSecondAgent(t, logPath)
	ns := newNamespace(t)
	t.Cleanup(func() { stopSecondAgent(t, agent, ns) })
	err := pollUntil(ctx, func() (bool, error) {
		n, err := stack.client.CoreV1().Nodes().Get(ctx, nodeNameV2, metav1.GetOptions{})
		return err == nil && nodeReady(n), nil
	})
	if err != nil {
		t.Fatalf("node %s never became Ready (see %s)", nodeNameV2, logPath)
	}

	pod := busyboxPod("exits", 1, "echo started; sleep 2; exit 3")
	pod.Spec.NodeName, pod.Spec.RestartPolicy = nodeNameV2, corev1.RestartPolicyNever
	created, err := stack.client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	failed := waitForPod(ctx, t, ns, "exits", "Failed", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodFailed })
	if cs := failed.Status.ContainerStatuses; len(cs) != 1 || cs[0].State.Terminated == nil || cs[0].State.Terminated.ExitCode != 3 {
		t.Errorf("container statuses %+v, want terminated with exit code 3", cs)
	}
	data, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	log := string(data)
	if !strings.Contains(log, "Receiving container events from the runtime") {
		t.Errorf("the agent on containerd v2 did not open the container events stream (see %s)", logPath)
	}
	if !strings.Contains(log, `"Container event" type="CONTAINER_STOPPED_EVENT"`) ||
		!strings.Contains(log, `podUID="`+string(created.UID)+`"`) {
		t.Errorf("no CONTAINER_STOPPED_EVENT for pod %s in %s", created.UID, logPath)
	}
}

// startSecondAgent runs an agent for node e2e-node-v2 on containerd v2, with its own root dir, CNI conf dir,
// bridge and cgroup root, so it shares nothing with the main e2e node.
func startSecondAgent(t *testing.T, logPath string) *exec.Cmd {
	t.Helper()
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	cmd := exec.Command(stack.agentBin, "--config", filepath.Join(runDir, "nodeagent.yaml"),
		"--kubeconfig", filepath.Join(runDir, "cluster/pki", nodeNameV2+".kubeconfig"),
		"--hostname-override", nodeNameV2, "--root-dir", filepath.Join(runDir, "root-v2"),
		"--enable-proxy=false",      // one proxy per network namespace: the first node's agent has it
		"--enable-pod-routes=false", // and one pod network: the two nodes share the host
		"--enable-dns=false",        // and one DNS server on 169.254.20.10:53
		"--metrics-bind-address=",   // the first node's agent serves 10249
		"--port=10251",              // and the node API on 10250
		"--healthz-port=0",          // and the node healthz on 10248
		"--container-runtime-endpoint", "unix://"+containerd2Socket, "--cni-conf-dir", containerd2CNIDir,
		"--cni-bridge", containerd2Bridge, "--cgroup-root", containerd2CgroupR, "-v", "2")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd
}

// stopSecondAgent removes the test's pods while the agent runs, then stops it by PID and removes its CNI
// config and its Node, so nothing of node e2e-node-v2 is left.
func stopSecondAgent(t *testing.T, agent *exec.Cmd, ns string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pods := stack.client.CoreV1().Pods(ns)
	_ = pods.DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{})
	// Terminal pods leave the API at once; the agent removes their sandboxes just after.
	if err := pollUntil(ctx, func() (bool, error) {
		list, err := pods.List(ctx, metav1.ListOptions{})
		sandboxes := crictl(t, "--runtime-endpoint", "unix://"+containerd2Socket, "pods", "-q",
			"--label", "io.nodeagent.node="+nodeNameV2)
		return err == nil && len(list.Items) == 0 && len(sandboxes) == 0, nil
	}); err != nil {
		t.Errorf("pods of %s not removed before stopping its agent", nodeNameV2)
	}
	stopProcess(agent)
	_ = os.Remove(filepath.Join(containerd2CNIDir, "10-nodeagent.conflist"))
	// Its bridge too: its address would claim the node's pod range on this host for whoever gets it next.
	_ = exec.Command("ip", "link", "del", containerd2Bridge).Run()
	// A Node without its agent would still get pods from the scheduler, which would never start.
	if err := stack.client.CoreV1().Nodes().Delete(ctx, nodeNameV2, metav1.DeleteOptions{}); err != nil {
		t.Errorf("deleting node %s: %v", nodeNameV2, err)
	}
}
