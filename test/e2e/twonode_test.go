package e2e

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/nodeagent/nodeagent/internal/netnsutil"
	"github.com/nodeagent/nodeagent/internal/tcprelay"
	"github.com/nodeagent/nodeagent/pkg/podnet"
)

// Node B of the two-node test: a network namespace of its own, linked to the host (node A) by a veth pair,
// with its own containerd (hack/setup-containerd2.sh's instance nodeBContainerd). A process started from a
// thread inside the namespace (netnsutil.Do) runs in it: node B's containerd and agent do.
const (
	nodeBName       = "e2e-node-b"
	nodeBContainerd = "nodeagent-e2e-nodeb"
	nodeBSocket     = "/run/" + nodeBContainerd + "/containerd.sock"
	nodeAVethIP     = "10.98.0.1"
	nodeBVethIP     = "10.98.0.2"
	hostVeth        = "nae2e-b"
)

// Two nodes, each joined its own way, both on one API server: node B joins through `nodeagent join` from its
// own network namespace and containerd. A pod on node A reaches a pod on node B by pod IP, through a
// ClusterIP whose endpoints are all on node B, and by the Service's DNS name, over the routes the two agents
// made; deleting node B's Node removes node A's route to it.
func TestTwoNodesRouteBetweenTheirPods(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	b := newNodeBNamespace(t)
	// Node A's InternalIP on the link to node B, so that each node's route to the other's pods has a gateway
	// on a connected network (as nodes on one L2 network have, the case kindnet's routes serve).
	stack.configExtra = "nodeIP: " + nodeAVethIP + "\n"
	restartAgent(t)
	t.Cleanup(func() {
		stack.configExtra = ""
		restartAgent(t)
	})
	agentB := b.startAgent(t)

	var nodeB *corev1.Node
	if err := pollUntil(ctx, func() (bool, error) {
		n, err := stack.client.CoreV1().Nodes().Get(ctx, nodeBName, metav1.GetOptions{})
		nodeB = n
		return err == nil && nodeReady(n) && len(n.Spec.PodCIDRs) > 0, nil
	}); err != nil {
		t.Fatalf("node %s did not become Ready with a pod range (see %s): %v", nodeBName, b.agentLog, err)
	}
	nodeA, err := stack.client.CoreV1().Nodes().Get(ctx, nodeName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Each node routes to the other's pods via its InternalIP.
	waitForRoute(ctx, t, netns.None(), nodeB.Spec.PodCIDRs[0], nodeBVethIP)
	waitForRoute(ctx, t, b.ns, nodeA.Spec.PodCIDRs[0], nodeAVethIP)

	ns := newNamespace(t)
	server := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "on-b", Labels: map[string]string{"app": "on-b"}}, Spec: testPodSpec(testImage)}
	server.Spec.NodeName = nodeBName
	if _, err := stack.client.CoreV1().Pods(ns).Create(ctx, server, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Node B's pods go first, while its agent runs to remove them.
	t.Cleanup(func() { b.stop(t, agentB, ns) })
	server = waitForPod(ctx, t, ns, "on-b", "Running", podRunningAndReady)
	svc, err := stack.client.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "on-b"},
			Ports: []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080)}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// The client is the test server's own client mode (busybox's static wget cannot resolve in a bare image).
	client := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "on-a"}, Spec: testPodSpec(testImage)}
	if _, err := stack.client.CoreV1().Pods(ns).Create(ctx, client, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitForPod(ctx, t, ns, "on-a", "Running", podRunningAndReady)
	for _, target := range []string{
		server.Status.PodIP + ":8080",      // pod to pod across the nodes
		svc.Spec.ClusterIP,                 // a ClusterIP whose endpoints are all on node B
		"web." + ns + ".svc.cluster.local", // the same by name, from node A's DNS
	} {
		tctx, tcancel := context.WithTimeout(ctx, 30*time.Second)
		var out string
		if err := pollUntil(tctx, func() (bool, error) {
			out, _ = kubectl(tctx, t, ns, "", "exec", "on-a", "--", "/testserver", "--get", "http://"+target+"/hostname")
			return strings.TrimSpace(out) == "got on-b", nil
		}); err != nil {
			t.Errorf("from node A's pod, http://%s/hostname: %q, want node B's pod's name on-b", target, out)
		}
		tcancel()
	}

	// With node B's agent stopped and its Node deleted, node A's route to its pods goes.
	b.stop(t, agentB, ns)
	if err := stack.client.CoreV1().Nodes().Delete(ctx, nodeBName, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := pollUntil(ctx, func() (bool, error) {
		return !hasRoute(t, netns.None(), nodeB.Spec.PodCIDRs[0], nodeBVethIP), nil
	}); err != nil {
		t.Errorf("node A still routes %s via %s after node B's Node was deleted", nodeB.Spec.PodCIDRs[0], nodeBVethIP)
	}
}

// nodeBNamespace is node B's network namespace with what runs in it.
type nodeBNamespace struct {
	ns       netns.NsHandle
	root     string
	agentLog string
	stopped  bool
}

// newNodeBNamespace makes node B's network namespace: loopback, the veth pair to the host with node B's
// default route through it, forwarding, a relay from its 127.0.0.1:16443 to the API server (which listens on
// the host's loopback only, as cluster-info names it), and node B's containerd.
func newNodeBNamespace(t *testing.T) *nodeBNamespace {
	t.Helper()
	ns, err := netnsutil.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ns.Close() })
	b := &nodeBNamespace{ns: ns, root: filepath.Join(runDir, "root-b"), agentLog: filepath.Join(runDir, "nodeagent-b.log")}
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: hostVeth}, PeerName: "eth0", PeerNamespace: netlink.NsFd(ns)}
	_ = netlink.LinkDel(veth) // left by an earlier run that was killed
	must(t, netlink.LinkAdd(veth))
	t.Cleanup(func() { _ = netlink.LinkDel(veth) })
	must(t, linkUp(hostVeth, nodeAVethIP+"/30"))
	must(t, netnsutil.Do(ns, func() error {
		if err := linkUp("lo", ""); err != nil {
			return err
		}
		if err := linkUp("eth0", nodeBVethIP+"/30"); err != nil {
			return err
		}
		if err := netlink.RouteAdd(&netlink.Route{Gw: net.ParseIP(nodeAVethIP)}); err != nil {
			return err
		}
		return os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644)
	}))
	var ln net.Listener
	must(t, netnsutil.Do(ns, func() (err error) { ln, err = net.Listen("tcp", "127.0.0.1:16443"); return err }))
	t.Cleanup(tcprelay.Start(ln, "127.0.0.1:16443"))

	containerd := exec.Command("bash", filepath.Join(stack.repo, "hack/setup-containerd2.sh"), "up")
	containerd.Env = append(os.Environ(), "C2_NAME="+nodeBContainerd)
	containerd.Stdout, containerd.Stderr = os.Stdout, os.Stderr
	t.Cleanup(func() {
		down := exec.Command("bash", filepath.Join(stack.repo, "hack/setup-containerd2.sh"), "down")
		down.Env = containerd.Env
		_ = down.Run()
	})
	must(t, netnsutil.Do(ns, containerd.Start))
	if err := containerd.Wait(); err != nil {
		t.Fatalf("node B's containerd: %v", err)
	}
	return b
}

// linkUp gives the link of the calling thread's namespace its address (if any) and brings it up.
func linkUp(name, cidr string) error {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return err
	}
	if cidr != "" {
		addr, err := netlink.ParseAddr(cidr)
		if err != nil {
			return err
		}
		if err := netlink.AddrAdd(l, addr); err != nil {
			return err
		}
	}
	return netlink.LinkSetUp(l)
}

// startAgent runs `nodeagent join` in node B's namespace with the arguments kubeadm prints, and node B's
// own runtime, directories, bridge and cgroups.
func (b *nodeBNamespace) startAgent(t *testing.T) *exec.Cmd {
	t.Helper()
	if err := os.RemoveAll(b.root); err != nil {
		t.Fatal(err)
	}
	config := filepath.Join(runDir, "nodeagent-b.yaml")
	must(t, os.WriteFile(config, []byte("apiVersion: nodeagent.io/v1alpha1\nkind: NodeAgentConfiguration\n"+
		"hostnameOverride: "+nodeBName+"\nnodeIP: "+nodeBVethIP+"\n"+
		"containerRuntimeEndpoint: unix://"+nodeBSocket+"\nrootDir: "+b.root+"\n"+
		"podLogsDir: "+filepath.Join(b.root, "pods")+"\ncontainerLogLinksDir: \"\"\nlocalAPISocket: "+filepath.Join(b.root, "nodeagent.sock")+"\n"+
		"cniConfDir: /etc/cni/"+nodeBContainerd+"\ncniBridge: nodeagentb\ncgroupRoot: /e2e-nodeb\n"+
		"imageGCHighThresholdPercent: 100\n"+
		// Node B's DNS forwards only inside its own namespace: nothing of the test leaves the machine.
		"dns:\n  upstreams: [\"127.0.0.1:53\"]\nlogs:\n  enabled: false\n"), 0o644))
	logFile, err := os.Create(b.agentLog)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	agent := exec.Command(stack.agentBin, append(append([]string{"join"}, joinCommand(t, "1h")...), "--config", config, "-v", "2")...)
	agent.Stdout, agent.Stderr = logFile, logFile
	must(t, netnsutil.Do(b.ns, agent.Start))
	return agent
}

// stop removes node B's pods while its agent runs, then stops the agent by PID and removes what the agent
// left in node B's runtime and CNI directory; a second call does nothing.
func (b *nodeBNamespace) stop(t *testing.T, agent *exec.Cmd, ns string) {
	if b.stopped {
		return
	}
	b.stopped = true
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pods := stack.client.CoreV1().Pods(ns)
	_ = pods.Delete(ctx, "on-b", metav1.DeleteOptions{})
	_ = pollUntil(ctx, func() (bool, error) {
		list, err := pods.List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=" + nodeBName})
		return err == nil && len(list.Items) == 0, nil
	})
	stopProcess(agent)
	// Node B's tables, routes and DNS socket holder, as `nodeagent --cleanup-proxy` on that node.
	cleanup := exec.Command(stack.agentBin, "--cleanup-proxy")
	if err := netnsutil.Do(b.ns, cleanup.Start); err == nil {
		_ = cleanup.Wait()
	}
	_ = exec.Command("bash", "-c", `ids=$(crictl --runtime-endpoint unix://`+nodeBSocket+` pods -q);
		[ -z "$ids" ] || { crictl --runtime-endpoint unix://`+nodeBSocket+` stopp $ids; crictl --runtime-endpoint unix://`+nodeBSocket+` rmp -f $ids; }`).Run()
	_ = os.Remove(filepath.Join("/etc/cni", nodeBContainerd, "10-nodeagent.conflist"))
}

// waitForRoute waits for the agent's route to cidr via gw in the namespace ns (netns.None(): the host's).
func waitForRoute(ctx context.Context, t *testing.T, ns netns.NsHandle, cidr, gw string) {
	t.Helper()
	if err := pollUntil(ctx, func() (bool, error) { return hasRoute(t, ns, cidr, gw), nil }); err != nil {
		t.Fatalf("no route to %s via %s with protocol %d: %v", cidr, gw, podnet.RouteProtocol, err)
	}
}

func hasRoute(t *testing.T, ns netns.NsHandle, cidr, gw string) bool {
	t.Helper()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	routes, err := h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Protocol: podnet.RouteProtocol}, netlink.RT_FILTER_PROTOCOL)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range routes {
		if r.Dst != nil && r.Dst.String() == cidr && r.Gw.String() == gw {
			return true
		}
	}
	return false
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
