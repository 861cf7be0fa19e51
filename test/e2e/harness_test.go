// Package e2e tests nodeagent on the real stack: the v1.37 control plane from hack/controlplane.sh, containerd
// from hack/setup-node.sh, and the agent binary built from this tree, joined as node "e2e-node". The harness
// keeps everything apart from `make run`'s cluster (own run dir, ports and cluster CIDR) and stops what it
// started by PID. Run it with `make e2e` (or `make test`), as root, after the node is set up.
package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nodeagent/nodeagent/internal/dnsnet"
	"github.com/nodeagent/nodeagent/internal/testutil"
	"github.com/nodeagent/nodeagent/pkg/dns"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

const (
	nodeName = "e2e-node"
	// nodeNameV2 is a second node, run by a second agent on containerd v2 (hack/setup-containerd2.sh).
	nodeNameV2  = "e2e-node-v2"
	clusterCIDR = "10.245.0.0/16"
	maxPods     = 50
	runDir      = "/var/run/nodeagent-e2e"
	manifestDir = runDir + "/manifests"
	devAgentPID = "/var/run/nodeagent-dev/nodeagent.pid"
	cniConfFile = "/etc/cni/net.d/10-nodeagent.conflist"
	// localSocket is the e2e node's local API socket (nodeagent get, describe).
	localSocket = runDir + "/nodeagent.sock"
	// testImage is built by hack/imagebuild.
	testImage = "localhost/testserver:local"
)

// harness is the running stack shared by the tests of this package.
type harness struct {
	repo   string
	env    []string
	client kubernetes.Interface
	// restConfig is the admin's, for clients beyond the typed one (exec streams).
	restConfig *rest.Config
	// agentBin is the nodeagent binary built from this tree; agent is its running process.
	agentBin string
	agent    *exec.Cmd
	// kubectl is the v1.37 kubectl built with the control plane, run with the admin kubeconfig.
	kubectl string
	admin   string
	// upstream is the DNS resolver on loopback that the agent forwards names outside the cluster to, so
	// that no test query leaves the machine.
	upstream *dnsnet.Stub
	// receiver is the Fluentd forward receiver the agent ships its pods' logs to.
	receiver *testutil.FluentReceiver
	// configExtra is YAML added to the agent's configuration file at its next start.
	configExtra string
	// join, when set, starts the agent as `nodeagent join` with these arguments instead of with the
	// node's kubeconfig from hack/pki.
	join []string
	// agentEnv is added to the agent's environment at its next start (NOTIFY_SOCKET, as systemd sets it).
	agentEnv []string
}

var stack *harness

func TestMain(m *testing.M) {
	if os.Getenv("NODEAGENT_E2E") != "1" {
		fmt.Println("e2e: skipped; run `make e2e` (sets NODEAGENT_E2E=1) as root on a set-up node")
		os.Exit(0)
	}
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	h, err := startHarness()
	defer h.stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: starting the stack: %v\n", err)
		return 1
	}
	stack = h
	return m.Run()
}

func startHarness() (*harness, error) {
	repo, err := filepath.Abs("../..")
	if err != nil {
		return nil, err
	}
	h := &harness{repo: repo}
	if data, err := os.ReadFile(devAgentPID); err == nil {
		var pid int
		if _, err := fmt.Sscan(string(data), &pid); err == nil && syscall.Kill(pid, 0) == nil {
			return h, fmt.Errorf("the `make run` agent (pid %d) is running and shares containerd's CNI config; run `make stop` first", pid)
		}
	}
	h.env = append(os.Environ(),
		"NODEAGENT_RUN="+runDir, "NODE_NAMES="+nodeName+" "+nodeNameV2, "CLUSTER_CIDR="+clusterCIDR,
		"APISERVER_PORT=16443", "ETCD_PORT=12379", "KCM_PORT=20257", "SCHEDULER_PORT=20259",
		// Short-lived CSR certificates, so that a rotation shows within a test: the signer backdates them by
		// 5 minutes, so a node rotates a 3-minute certificate 0.6 to 1.7 minutes after it was issued.
		"SIGNING_DURATION=3m")
	if err := h.script("hack/controlplane.sh", "up"); err != nil {
		return h, err
	}
	k8sBin := exec.Command("bash", "-c", "source hack/lib/common.sh && echo $K8S_BIN")
	k8sBin.Dir, k8sBin.Env = repo, h.env
	out, err := k8sBin.Output()
	if err != nil {
		return h, fmt.Errorf("reading K8S_BIN from hack/lib/common.sh: %w", err)
	}
	h.kubectl = filepath.Join(strings.TrimSpace(string(out)), "kubectl")
	h.admin = filepath.Join(runDir, "cluster/pki/admin.kubeconfig")
	if h.restConfig, err = clientcmd.BuildConfigFromFlags("", h.admin); err != nil {
		return h, err
	}
	if h.client, err = kubernetes.NewForConfig(h.restConfig); err != nil {
		return h, err
	}

	if h.upstream, err = startUpstreamStub(); err != nil {
		return h, err
	}
	if h.receiver, err = startLogReceiver(repo); err != nil {
		return h, err
	}
	h.agentBin = filepath.Join(runDir, "nodeagent")
	build := exec.Command("go", "build", "-o", h.agentBin, "./cmd/nodeagent")
	build.Dir, build.Stdout, build.Stderr = repo, os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		return h, fmt.Errorf("building nodeagent: %w", err)
	}
	if err := h.startAgent(); err != nil {
		return h, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	err = pollUntil(ctx, func() (bool, error) {
		n, err := h.client.CoreV1().Nodes().Get(ctx, nodeName, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		return nodeReady(n), nil
	})
	if err != nil {
		return h, fmt.Errorf("node %s did not become Ready (see %s/nodeagent.log): %w", nodeName, runDir, err)
	}
	return h, nil
}

// startAgent starts the agent as the e2e node, with extra flags after the harness's own.
func (h *harness) startAgent(extra ...string) error {
	// Small logs and a fast check, so log rotation shows within a test; given as a config file, as users do.
	config := filepath.Join(runDir, "nodeagent.yaml")
	if err := os.WriteFile(config, []byte("apiVersion: nodeagent.io/v1alpha1\nkind: NodeAgentConfiguration\n"+
		"containerLogMaxSize: 256Ki\ncontainerLogMaxFiles: 3\ncontainerLogMonitorInterval: 1s\n"+
		"evictionPressureTransitionPeriod: 5s\nlocalAPISocket: "+localSocket+"\n"+
		// The tests' images are imported once and run with imagePullPolicy Never: a full disk on the test
		// machine must not collect them between tests.
		"imageGCHighThresholdPercent: 100\n"+
		// NodePorts on the node's bridge address only, so tests reach them without touching the host's
		// own interfaces.
		"proxy:\n  nodePortAddresses: ["+clusterCIDR+"]\n"+
		"dns:\n  upstreams: [\""+h.upstream.Addr+"\"]\n"+
		"logs:\n  enabled: true\n  receivers: [\""+h.receiver.Addr+"\"]\n  flushInterval: 200ms\n"+h.configExtra), 0o644); err != nil {
		return err
	}
	args := []string{"--kubeconfig", filepath.Join(runDir, "cluster/pki", nodeName+".kubeconfig")}
	if h.join != nil {
		args = append([]string{"join"}, h.join...)
	}
	args = append(args, "--config", config,
		"--hostname-override", nodeName, "--root-dir", filepath.Join(runDir, "root"),
		"--max-pods", fmt.Sprint(maxPods), "--pod-manifest-path", manifestDir, "-v", "2")
	return h.launchAgent(append(args, extra...)...)
}

// launchAgent starts the agent binary with exactly args, logging to the harness's agent log.
func (h *harness) launchAgent(args ...string) error {
	logFile, err := os.OpenFile(filepath.Join(runDir, "nodeagent.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logFile.Close()
	h.agent = exec.Command(h.agentBin, args...)
	h.agent.Env = append(os.Environ(), h.agentEnv...)
	h.agent.Stdout, h.agent.Stderr = logFile, logFile
	if err := h.agent.Start(); err != nil {
		return fmt.Errorf("starting nodeagent: %w", err)
	}
	return nil
}

// stopProcess ends a process the tests started: SIGTERM, then SIGKILL after 10 s; it waits for the end.
func stopProcess(cmd *exec.Cmd) {
	_ = cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

// killAgent ends the agent with SIGKILL, as a crash or the OOM killer would, and waits for it to be gone.
func (h *harness) killAgent() error {
	if err := h.agent.Process.Kill(); err != nil {
		return err
	}
	_ = h.agent.Wait() // "signal: killed" is the expected outcome
	return nil
}

// stop removes the tests' pods while the agent still runs, then stops the agent and the control plane, and
// removes what the e2e node left in containerd and the CNI directory.
func (h *harness) stop() {
	if h.client != nil && h.agent != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		nss, _ := h.client.CoreV1().Namespaces().List(ctx, metav1.ListOptions{LabelSelector: "nodeagent-e2e=true"})
		for _, ns := range nss.Items {
			_ = h.client.CoreV1().Namespaces().Delete(ctx, ns.Name, metav1.DeleteOptions{})
		}
		_ = pollUntil(ctx, func() (bool, error) {
			pods, err := h.client.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=" + nodeName})
			return err == nil && len(pods.Items) == 0, nil
		})
		cancel()
	}
	if h.agent != nil && h.agent.Process != nil {
		stopProcess(h.agent)
		// The agent leaves its nftables table for its next start; the tests end here, so it goes.
		if out, err := exec.Command(h.agentBin, "--cleanup-proxy").CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: nodeagent --cleanup-proxy: %v\n%s", err, out)
		}
		// And the link holding its DNS address.
		_ = exec.Command("ip", "link", "del", dns.LocalServiceLink).Run()
	}
	// Anything still in the runtime for this node (a failed test's pods) goes, by the agent's node label.
	_ = exec.Command("bash", "-c", `ids=$(crictl pods --label io.nodeagent.node=`+nodeName+` -q);
		[ -z "$ids" ] || { crictl stopp $ids; crictl rmp -f $ids; }`).Run()
	_ = os.Remove(cniConfFile)
	if h.upstream != nil {
		h.upstream.Stop()
	}
	if h.receiver != nil {
		h.receiver.Stop()
	}
	if h.env != nil {
		h.env = append(h.env, "CLEAN=1")
		if err := h.script("hack/controlplane.sh", "down"); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: stopping the control plane: %v\n", err)
		}
	}
}

func (h *harness) script(path string, args ...string) error {
	cmd := exec.Command(filepath.Join(h.repo, path), args...)
	cmd.Dir, cmd.Env, cmd.Stdout, cmd.Stderr = h.repo, h.env, os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w", path, strings.Join(args, " "), err)
	}
	return nil
}

// pollUntil calls cond every 250 ms until it returns true, returns an error, or ctx ends.
func pollUntil(ctx context.Context, cond func() (bool, error)) error {
	ticker := time.NewTicker(250 * time.Millisecond)
	defer ticker.Stop()
	for {
		ok, err := cond()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return errors.New("condition not met before the deadline")
		case <-ticker.C:
		}
	}
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// newNamespace creates a namespace for one test and deletes it (and so its pods) when the test ends: the
// node holds at most maxPods pods, and the tests together create more than that. The harness deletes what is
// left at the end.
func newNamespace(t *testing.T) string {
	t.Helper()
	ns, err := stack.client.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "e2e-", Labels: map[string]string{"nodeagent-e2e": "true"}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating namespace: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := stack.client.CoreV1().Namespaces().Delete(ctx, ns.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			t.Logf("deleting namespace %s: %v", ns.Name, err)
		}
	})
	return ns.Name
}

// crictl runs crictl and returns the IDs it printed, one per line.
func crictl(t *testing.T, args ...string) []string {
	t.Helper()
	out, err := exec.Command("crictl", args...).Output()
	if err != nil {
		t.Fatalf("crictl %s: %v", strings.Join(args, " "), err)
	}
	return strings.Fields(string(out))
}

// busyboxPod is a pod on the e2e node whose one container "c" runs script with busybox's sh.
func busyboxPod(name string, grace int64, script string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{
			NodeName:                      nodeName,
			TerminationGracePeriodSeconds: &grace,
			Containers: []corev1.Container{{Name: "c", Image: "localhost/busybox:local",
				ImagePullPolicy: corev1.PullNever, Command: []string{"sh", "-c", script}}},
		},
	}
}

// logFile is the kubelet-layout CRI log of a container's first run.
func logFile(pod *corev1.Pod, container string) string {
	return filepath.Join("/var/log/pods", pod.Namespace+"_"+pod.Name+"_"+string(pod.UID), container, "0.log")
}

// waitForLog polls a CRI log file until it contains want, and fails the test if it never does.
func waitForLog(ctx context.Context, t *testing.T, path, want string) {
	t.Helper()
	var content []byte
	err := pollUntil(ctx, func() (bool, error) {
		content, _ = os.ReadFile(path)
		return strings.Contains(string(content), want), nil
	})
	if err != nil {
		t.Fatalf("log %s never held %q (has %q)", path, want, content)
	}
}

// deletePod deletes a pod with its own grace period and waits until the API no longer has it (the agent
// finalised it); it returns how long that took.
func deletePod(ctx context.Context, t *testing.T, ns, name string) time.Duration {
	t.Helper()
	started := time.Now()
	pods := stack.client.CoreV1().Pods(ns)
	if err := pods.Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitForPodGone(ctx, t, ns, name)
	return time.Since(started)
}

// waitForPodGone polls until the API no longer has the pod, and fails the test if it stays.
func waitForPodGone(ctx context.Context, t *testing.T, ns, name string) {
	t.Helper()
	err := pollUntil(ctx, func() (bool, error) {
		_, err := stack.client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		return err != nil, nil
	})
	if err != nil {
		t.Fatalf("pod %s/%s not finalised: %v\n%s", ns, name, err, describe(ns))
	}
}

// waitForPod polls a pod until cond holds and returns it; the test fails with what kubectl shows if it never does.
func waitForPod(ctx context.Context, t *testing.T, ns, name, want string, cond func(*corev1.Pod) bool) *corev1.Pod {
	t.Helper()
	var pod *corev1.Pod
	err := pollUntil(ctx, func() (bool, error) {
		p, err := stack.client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		pod = p
		return cond(p), nil
	})
	if err != nil {
		t.Fatalf("pod %s/%s never became %s: %v\n%s", ns, name, want, err, describe(ns))
	}
	return pod
}

// startBusybox creates a busybox pod running script in ns and returns it once it is Running and Ready.
func startBusybox(ctx context.Context, t *testing.T, ns, name, script string) *corev1.Pod {
	t.Helper()
	if _, err := stack.client.CoreV1().Pods(ns).Create(ctx, busyboxPod(name, 0, script), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return waitForPod(ctx, t, ns, name, "Running", podRunningAndReady)
}
