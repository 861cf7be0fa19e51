package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/cgroups/manager"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
)

// The benchmark's own cluster, apart from `make run` and the e2e tests (run dir, ports, pod CIDR).
const (
	runDir      = "/var/run/nodeagent-bench"
	agentNode   = "bench-agent"
	kubeletNode = "bench-kubelet"
	namespace   = "bench"
	// kubeletCgroupRoot keeps the kubelet's kubepods apart from the agent's.
	kubeletCgroupRoot = "/kubelet-bench"
)

var clusterEnv = []string{
	"NODEAGENT_RUN=" + runDir, "APISERVER_PORT=26443", "ETCD_PORT=22379", "KCM_PORT=30257",
	"SCHEDULER_PORT=30259", "CLUSTER_CIDR=10.246.0.0/16", "NODE_NAMES=" + agentNode + " " + kubeletNode + " " + minimalNodeName,
}

// runtimeTarget is the container runtime both nodes use, one after the other.
type runtimeTarget struct {
	description string
	endpoint    string // the CRI socket
	cniDir      string // the runtime's CNI conf dir, where the agent writes its conflist
	bridge      string
	setup       string // the command that starts the runtime, if the benchmark must
}

var runtimes = map[string]runtimeTarget{
	"containerd": {description: "the machine's containerd 1.6", endpoint: "unix:///run/containerd/containerd.sock",
		cniDir: "/etc/cni/net.d", bridge: "nodeagent0"},
	"containerd2": {description: "containerd v2.4 from hack/setup-containerd2.sh (CRI container events)",
		endpoint: "unix:///run/nodeagent-containerd2/containerd.sock", cniDir: "/etc/cni/nodeagent-containerd2",
		bridge: "nodeagent1", setup: "hack/setup-containerd2.sh up"},
}

// burstResult is one node's figures over all rounds.
type burstResult struct {
	latencies []time.Duration
	cpu       []float64 // the agent's CPU seconds per burst
	// controlPlaneCPU is the control plane's CPU seconds per burst; updatesPerPod, the changes to each pod
	// that a watch saw before all were Running and Ready.
	controlPlaneCPU, updatesPerPod []float64
	peakRSS                        int64 // highest peak RSS of any burst
}

// runPods runs the bursts of each size on each node; with profile, the agent serves /debug/pprof/ and a CPU
// profile of its first burst of each size is saved in runDir.
func runPods(ctx context.Context, sizes []int, rounds int, runtimeName string, profile bool) error {
	c, err := startPodCluster(ctx, runtimeName)
	if err != nil {
		return err
	}
	defer c.down()
	startAgent := func() (*process, error) { return c.startAgent(c.rt.endpoint) }
	if profile {
		startAgent = func() (*process, error) {
			return c.startAgentWith(c.rt.endpoint, "enableProfiling: true\n", "--enable-proxy=false", "--enable-dns=false")
		}
	}
	for _, pods := range sizes {
		var onFirstBurst func()
		if profile {
			onFirstBurst = func() { profileBurst(pods) }
		}
		agent, err := benchNode(ctx, c.client, agentNode, pods, rounds, startAgent, onFirstBurst)
		if err != nil {
			return fmt.Errorf("nodeagent, %d pods: %w", pods, err)
		}
		// Between the two nodes, when neither owns the runtime's pods; the agent's CNI conflist is in place.
		bounds := []int{1, 2, 2 * runtime.NumCPU(), pods}
		slices.Sort(bounds)
		floor, err := runtimeFloor(ctx, c.rt.endpoint, pods, rounds, slices.Compact(bounds))
		if err != nil {
			return err
		}
		best := bestFloor(floor)
		minimal, err := runMinimalNode(ctx, c.client, c.pki, c.rt.endpoint, pods, rounds, best.parallel)
		if err != nil {
			return err
		}
		kubelet, err := benchNode(ctx, c.client, kubeletNode, pods, rounds, func() (*process, error) { return c.startKubelet(c.rt.endpoint) }, nil)
		if err != nil {
			return fmt.Errorf("kubelet, %d pods: %w", pods, err)
		}
		report(pods, rounds, c.rt.description, agent, kubelet, floor, minimal)
	}
	return nil
}

// podCluster is what the pod benchmarks share: a control plane of their own with the benchmark namespace,
// the runtime, and the two node agents built.
type podCluster struct {
	repo, pki, agentBin, kubeletBin string
	rt                              runtimeTarget
	client                          kubernetes.Interface
	down                            func() // removes the pods left in the runtime and the control plane
}

// startPodCluster checks that the runtime runs no pods (the kubelet peer would kill them), builds both
// agents and starts the control plane.
func startPodCluster(ctx context.Context, runtimeName string, extraEnv ...string) (*podCluster, error) {
	rt, ok := runtimes[runtimeName]
	if !ok {
		return nil, fmt.Errorf("--runtime %q: want containerd or containerd2", runtimeName)
	}
	repo, err := os.Getwd()
	if err != nil {
		return nil, err
	}
	if rt.setup != "" {
		if _, err := shell(repo, nil, rt.setup); err != nil {
			return nil, err
		}
	}
	crictl := "source hack/lib/common.sh && crictl --runtime-endpoint " + rt.endpoint
	if out, err := shell(repo, nil, crictl+" pods --state ready -q"); err != nil || strings.TrimSpace(out) != "" {
		return nil, fmt.Errorf("containerd already runs pods (or crictl failed: %v): stop them first (`make stop`); "+
			"the kubelet peer would kill them", err)
	}
	k8sBin, err := shell(repo, nil, "source hack/lib/common.sh && echo $K8S_BIN")
	if err != nil {
		return nil, err
	}
	if _, err := shell(repo, nil, "hack/build-k8s.sh kubelet"); err != nil {
		return nil, err
	}
	agentBin, err := buildAgent(repo, runDir)
	if err != nil {
		return nil, err
	}
	env := append(slices.Clone(clusterEnv), extraEnv...)
	if _, err := shell(repo, env, "hack/controlplane.sh up"); err != nil {
		return nil, err
	}
	cniConfFile := filepath.Join(rt.cniDir, "10-nodeagent.conflist")
	_, hadCNIConf := os.Stat(cniConfFile)
	down := func() {
		// The kubelet leaves its pods' stopped sandboxes to its garbage collector, which stopped with it.
		_, _ = shell(repo, nil, crictl+` pods --namespace `+namespace+` -q | xargs -r `+
			strings.TrimPrefix(crictl, "source hack/lib/common.sh && ")+` rmp -f >/dev/null`)
		if hadCNIConf != nil {
			_ = os.Remove(cniConfFile)
		}
		// The kubelet leaves its (empty) kubepods tree under the cgroup root it was given.
		if root, err := manager.New(&cgroups.Cgroup{Path: kubeletCgroupRoot, Resources: &cgroups.Resources{SkipDevices: true}}); err == nil {
			_ = root.Destroy()
		}
		_, _ = shell(repo, append(env, "CLEAN=1"), "hack/controlplane.sh down")
	}
	c := &podCluster{repo: repo, rt: rt, agentBin: agentBin, kubeletBin: filepath.Join(strings.TrimSpace(k8sBin), "kubelet"),
		pki: filepath.Join(runDir, "cluster", "pki"), down: down}
	restConfig, err := clientcmd.BuildConfigFromFlags("", filepath.Join(c.pki, "admin.kubeconfig"))
	if err != nil {
		down()
		return nil, err
	}
	restConfig.QPS, restConfig.Burst = 200, 400 // creating the burst must not be throttled by the client
	if c.client, err = kubernetes.NewForConfig(restConfig); err != nil {
		down()
		return nil, err
	}
	if _, err := c.client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}},
		metav1.CreateOptions{}); err != nil {
		down()
		return nil, err
	}
	return c, nil
}

// startAgent runs nodeagent as the benchmark's agent node on the CRI socket endpoint, as a kubelet: without
// its proxy and DNS, for the kubelet beside it proxies and serves DNS for nothing either.
func (c *podCluster) startAgent(endpoint string) (*process, error) {
	return c.startAgentWith(endpoint, "", "--enable-proxy=false", "--enable-dns=false")
}

// startAgentWith runs nodeagent as the benchmark's agent node with extra configuration (YAML lines of its
// config file) and flags. Its node API lets the client CA's certificates do anything and takes no tokens, as
// the kubelet beside it is set up.
func (c *podCluster) startAgentWith(endpoint, extraConfig string, args ...string) (*process, error) {
	config := filepath.Join(runDir, "nodeagent.yaml")
	if err := os.WriteFile(config, []byte("apiVersion: nodeagent.io/v1alpha1\nkind: NodeAgentConfiguration\n"+
		"authentication: {webhook: {enabled: false}}\nauthorization: {mode: AlwaysAllow}\n"+extraConfig), 0o644); err != nil {
		return nil, err
	}
	return startProcess("nodeagent", filepath.Join(runDir, "nodeagent.log"), append([]string{c.agentBin, "--config", config,
		"--kubeconfig", filepath.Join(c.pki, agentNode+".kubeconfig"), "--hostname-override", agentNode,
		"--root-dir", filepath.Join(runDir, "agent"), "--container-runtime-endpoint", endpoint,
		"--cni-conf-dir", c.rt.cniDir, "--cni-bridge", c.rt.bridge,
		"--image-gc-high-threshold=100"}, // the benchmark's images are imported, not pullable
		args...)...)
}

// shell runs a bash command line in the repository with extra environment and returns its output; the
// command's progress goes to stderr.
func shell(repo string, env []string, command string) (string, error) {
	cmd := exec.Command("bash", "-c", command)
	cmd.Dir, cmd.Env, cmd.Stderr = repo, append(os.Environ(), env...), os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%s: %w", command, err)
	}
	return string(out), nil
}

// startKubelet runs the kubelet peer as a node of the benchmark cluster, on this machine's containerd with
// the cgroupfs driver and its pods' cgroups under a root of its own.
func (c *podCluster) startKubelet(endpoint string) (*process, error) {
	bin, pki := c.kubeletBin, c.pki
	root, err := manager.New(&cgroups.Cgroup{Path: kubeletCgroupRoot, Resources: &cgroups.Resources{SkipDevices: true}})
	if err != nil {
		return nil, err
	}
	if err := root.Apply(-1); err != nil {
		return nil, fmt.Errorf("creating cgroup %s: %w", kubeletCgroupRoot, err)
	}
	dir := filepath.Join(runDir, "kubelet")
	if err := unmountUnder(dir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	config := filepath.Join(runDir, "kubelet.yaml")
	// Eviction thresholds are lowered so the shared VM's disk and memory never evict during the run.
	if err := os.WriteFile(config, []byte(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
failSwapOn: false
cgroupDriver: cgroupfs
cgroupRoot: `+kubeletCgroupRoot+`
containerRuntimeEndpoint: `+endpoint+`
address: 127.0.0.1
port: 20250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 20248
authentication: {anonymous: {enabled: false}, webhook: {enabled: false}, x509: {clientCAFile: `+filepath.Join(pki, "ca.crt")+`}}
authorization: {mode: AlwaysAllow}
evictionHard: {memory.available: 1Mi, nodefs.available: 1%, imagefs.available: 1%}
imageGCHighThresholdPercent: 100
`), 0o644); err != nil {
		return nil, err
	}
	return startProcess("kubelet", filepath.Join(runDir, "kubelet.log"), bin, "--config", config,
		"--kubeconfig", filepath.Join(pki, kubeletNode+".kubeconfig"), "--hostname-override", kubeletNode,
		"--root-dir", dir, "--v", "1")
}

// profileBurst saves a CPU profile of the agent (its metricsBindAddress, the default) over a burst's first
// seconds, one for every 11 pods: about until the last pod is Ready on a two-core machine.
func profileBurst(pods int) {
	path := filepath.Join(runDir, fmt.Sprintf("nodeagent-cpu-%dpods.pprof", pods))
	if err := saveProfile(fmt.Sprintf("profile?seconds=%d", max(2, pods/11)), path); err != nil {
		fmt.Fprintf(os.Stderr, "bench: no profile of the agent: %v\n", err)
	}
}

// benchNode starts a node's agent, waits for the Node to be Ready, runs one warm-up pod, then the bursts,
// and stops the agent again. onFirstBurst, when not nil, runs beside the first burst; the round waits for it.
func benchNode(ctx context.Context, client kubernetes.Interface, node string, pods, rounds int,
	start func() (*process, error), onFirstBurst func()) (burstResult, error) {
	var res burstResult
	p, err := startReadyNode(ctx, client, node, start)
	if err != nil {
		return res, err
	}
	defer p.stop()
	if _, _, err := burst(ctx, client, node, "warmup", 1); err != nil {
		return res, fmt.Errorf("warm-up: %w", err)
	}
	for r := range rounds {
		before, err := p.cpuSeconds()
		if err != nil {
			return res, err
		}
		controlPlaneBefore, err := controlPlaneCPU()
		if err != nil {
			return res, err
		}
		if err := p.resetPeakRSS(); err != nil {
			return res, err
		}
		var beside sync.WaitGroup
		if r == 0 && onFirstBurst != nil {
			beside.Go(onFirstBurst)
		}
		lat, updates, err := burst(ctx, client, node, fmt.Sprintf("r%d", r), pods)
		beside.Wait()
		if err != nil {
			return res, fmt.Errorf("round %d: %w", r, err)
		}
		after, err := p.cpuSeconds()
		if err != nil {
			return res, err
		}
		controlPlaneAfter, err := controlPlaneCPU()
		if err != nil {
			return res, err
		}
		rss, err := p.peakRSS()
		if err != nil {
			return res, err
		}

		res.latencies = append(res.latencies, lat...)
		res.cpu = append(res.cpu, after-before)
		res.controlPlaneCPU = append(res.controlPlaneCPU, controlPlaneAfter-controlPlaneBefore)
		res.updatesPerPod = append(res.updatesPerPod, float64(updates)/float64(pods))
		res.peakRSS = max(res.peakRSS, rss)
		fmt.Fprintf(os.Stderr, "bench: %s round %d: p50 %s p99 %s, %.2f CPU s, control plane %.2f CPU s, %.1f pod updates per pod, peak RSS %d MiB\n",
			node, r, percentile(lat, 50), percentile(lat, 99), after-before, controlPlaneAfter-controlPlaneBefore,
			float64(updates)/float64(pods), rss>>20)
	}
	return res, nil
}

// controlPlaneCPU is the CPU seconds the benchmark cluster's etcd, API server, controller-manager and
// scheduler have used so far: work the runtime alone does not have, on the same cores.
func controlPlaneCPU() (float64, error) {
	files, err := filepath.Glob(filepath.Join(runDir, "cluster", "pids", "*.pid"))
	if err != nil || len(files) == 0 {
		return 0, fmt.Errorf("the control plane's pid files in %s: %v", filepath.Join(runDir, "cluster", "pids"), err)
	}
	var sum float64
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return 0, err
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
		if err != nil {
			return 0, fmt.Errorf("%s: %w", f, err)
		}
		cpu, err := cpuSecondsOf(pid)
		if err != nil {
			return 0, err
		}
		sum += cpu
	}
	return sum, nil
}

// startReadyNode starts a node's agent and waits until its Node is Ready; the caller stops it.
func startReadyNode(ctx context.Context, client kubernetes.Interface, node string, start func() (*process, error)) (*process, error) {
	p, err := start()
	if err != nil {
		return nil, err
	}
	if err := poll(ctx, 2*time.Minute, func() bool {
		n, err := client.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
		return err == nil && nodeReady(n)
	}); err != nil {
		p.stop()
		return nil, fmt.Errorf("node %s never became Ready: %w", node, err)
	}
	return p, nil
}

// burst is createReady, then deletes the pods and waits until they are gone.
func burst(ctx context.Context, client kubernetes.Interface, node, tag string, n int) ([]time.Duration, int, error) {
	lat, updates, err := createReady(ctx, client, node, tag, n)
	if err != nil {
		return nil, 0, err
	}
	return lat, updates, deleteBenchPods(ctx, client, node, tag)
}

// benchSelector labels the pods of one burst.
func benchSelector(node, tag string) string { return "bench=" + node + "-" + tag }

// createReady creates n pods on node at once and returns, per pod, the time from just before its create
// request to the watch event that showed it Running and Ready, and the number of changes to the pods the
// watch saw until then (status writes, mostly: the API server's work for the node agent).
func createReady(ctx context.Context, client kubernetes.Interface, node, tag string, n int) ([]time.Duration, int, error) {
	pods := client.CoreV1().Pods(namespace)
	selector := benchSelector(node, tag)
	var mu sync.Mutex
	created := map[string]time.Time{}
	ready := map[string]time.Duration{}
	updates := 0
	allReady := make(chan struct{})
	// An informer is a watch that re-establishes itself; its handler sees every change as it arrives.
	informer := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace(namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = selector })).Core().V1().Pods().Informer()
	observe := func(obj any) {
		pod, ok := obj.(*corev1.Pod)
		if !ok || !runningAndReady(pod) {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if _, seen := ready[pod.Name]; !seen {
			ready[pod.Name] = time.Since(created[pod.Name])
			if len(ready) == n {
				close(allReady)
			}
		}
	}
	if _, err := informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: observe, UpdateFunc: func(_, obj any) {
			mu.Lock()
			if len(ready) < n {
				updates++
			}
			mu.Unlock()
			observe(obj)
		}}); err != nil {
		return nil, 0, err
	}
	stop := make(chan struct{})
	defer close(stop)
	go informer.Run(stop)
	if !cache.WaitForCacheSync(ctx.Done(), informer.HasSynced) {
		return nil, 0, errors.New("pod informer did not sync")
	}
	errs := make(chan error, n)
	for i := range n {
		name := fmt.Sprintf("%s-%s-%d", node, tag, i)
		go func() {
			mu.Lock()
			created[name] = time.Now()
			mu.Unlock()
			_, err := pods.Create(ctx, benchPod(name, node, selector), metav1.CreateOptions{})
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			return nil, 0, err
		}
	}
	select {
	case <-allReady:
	case <-time.After(3 * time.Minute):
		mu.Lock()
		defer mu.Unlock()
		return nil, 0, fmt.Errorf("%d of %d pods Running and Ready after 3 minutes", len(ready), n)
	case <-ctx.Done():
		return nil, 0, ctx.Err()
	}
	mu.Lock()
	defer mu.Unlock()
	out := make([]time.Duration, 0, n)
	for _, d := range ready {
		out = append(out, d)
	}
	return out, updates, nil
}

// deleteBenchPods deletes the pods of one burst and waits until they are gone.
func deleteBenchPods(ctx context.Context, client kubernetes.Interface, node, tag string) error {
	pods := client.CoreV1().Pods(namespace)
	selector := benchSelector(node, tag)
	if err := pods.DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{LabelSelector: selector}); err != nil {
		return err
	}
	if err := poll(ctx, 3*time.Minute, func() bool {
		list, err := pods.List(ctx, metav1.ListOptions{LabelSelector: selector})
		return err == nil && len(list.Items) == 0
	}); err != nil {
		return fmt.Errorf("pods not deleted: %w", err)
	}
	return nil
}

// benchPod is the measured pod: one busybox container from the local image, no probes, so Ready means
// the node started it and reported it.
func benchPod(name, node, selector string) *corev1.Pod {
	key, value, _ := strings.Cut(selector, "=")
	grace := int64(1)
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{key: value}},
		Spec: corev1.PodSpec{
			NodeName:                      node,
			TerminationGracePeriodSeconds: &grace,
			Containers: []corev1.Container{{Name: "c", Image: "localhost/busybox:local",
				ImagePullPolicy: corev1.PullNever, Command: []string{"sleep", "3600"}}},
		},
	}
}

func runningAndReady(p *corev1.Pod) bool {
	if p.Status.Phase != corev1.PodRunning {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// poll checks cond every 100 ms until it holds, the timeout passes or ctx ends.
func poll(ctx context.Context, timeout time.Duration, cond func() bool) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for !cond() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return nil
}

func percentile(d []time.Duration, p int) time.Duration {
	return quantile(d, p).Round(time.Millisecond)
}

// quantile is the nearest-rank p-th percentile of d; 0 when d is empty.
func quantile(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := (len(s)*p + 99) / 100
	return s[max(i-1, 0)]
}

func mean(v []float64) float64 {
	var sum float64
	for _, x := range v {
		sum += x
	}
	return sum / float64(max(len(v), 1))
}

// report prints both columns and nodeagent's ratio to the kubelet (below 1 is better), then the runtime's
// own start-up for each bound on pods starting at once, then the minimal node's.
func report(pods, rounds int, runtime string, agent, kubelet burstResult, floor []floorResult, minimal burstResult) {
	fmt.Printf("pods: %d pods created at once, %d rounds per node, on %s; creation request → Running and Ready (watch)\n",
		pods, rounds, runtime)
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 3, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "\tnodeagent\tkubelet v1.37.2\tratio\t")
	for _, p := range []int{50, 99} {
		a, k := percentile(agent.latencies, p), percentile(kubelet.latencies, p)
		fmt.Fprintf(tw, "p%d\t%s\t%s\t%.2f\t\n", p, a, k, a.Seconds()/k.Seconds())
	}
	a, k := mean(agent.cpu), mean(kubelet.cpu)
	fmt.Fprintf(tw, "CPU s per burst\t%.2f\t%.2f\t%.2f\t\n", a, k, a/k)
	fmt.Fprintf(tw, "peak RSS MiB\t%d\t%d\t%.2f\t\n", agent.peakRSS>>20, kubelet.peakRSS>>20,
		float64(agent.peakRSS)/float64(kubelet.peakRSS))
	a, k = mean(agent.controlPlaneCPU), mean(kubelet.controlPlaneCPU)
	fmt.Fprintf(tw, "control plane CPU s per burst\t%.2f\t%.2f\t%.2f\t\n", a, k, a/k)
	a, k = mean(agent.updatesPerPod), mean(kubelet.updatesPerPod)
	fmt.Fprintf(tw, "pod updates per pod to Ready\t%.1f\t%.1f\t%.2f\t\n", a, k, a/k)
	_ = tw.Flush()
	fmt.Printf("the runtime alone (CRI calls from the benchmark: no node agent, no API server), burst start → StartContainer returned\n")
	tw = tabwriter.NewWriter(os.Stdout, 0, 0, 3, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "pods starting at once	p50	p99	p99 / kubelet's p99	")
	agentP99, kubeletP99 := percentile(agent.latencies, 99), percentile(kubelet.latencies, 99)
	for _, f := range floor {
		p99 := percentile(f.latencies, 99)
		fmt.Fprintf(tw, "%d	%s	%s	%.2f	\n", f.parallel, percentile(f.latencies, 50), p99, p99.Seconds()/kubeletP99.Seconds())
	}
	_ = tw.Flush()
	best := bestFloor(floor)
	bestP99 := percentile(best.latencies, 99)
	fmt.Printf("p99 as a multiple of the runtime alone's best p99 (%s): nodeagent %.2f, kubelet %.2f\n", bestP99,
		agentP99.Seconds()/bestP99.Seconds(), kubeletP99.Seconds()/bestP99.Seconds())
	minimalP99 := percentile(minimal.latencies, 99)
	fmt.Printf("the minimal node (the benchmark: one watch, its ServiceAccount token, the runtime alone's CRI calls %d at once and the sandbox's IP, one status write per pod), timed as the agents\n",
		best.parallel)
	fmt.Printf("   p50 %s, p99 %s, control plane CPU s per burst %.2f, pod updates per pod to Ready %.1f\n",
		percentile(minimal.latencies, 50), minimalP99, mean(minimal.controlPlaneCPU), mean(minimal.updatesPerPod))
	fmt.Printf("p99 as a multiple of the minimal node's p99 (%s): nodeagent %.2f, kubelet %.2f\n", minimalP99,
		agentP99.Seconds()/minimalP99.Seconds(), kubeletP99.Seconds()/minimalP99.Seconds())
}

// bestFloor is the bound on pods starting at once with the lowest p99: the runtime's best.
func bestFloor(floor []floorResult) floorResult {
	best := floor[0]
	for _, f := range floor[1:] {
		if percentile(f.latencies, 99) < percentile(best.latencies, 99) {
			best = f
		}
	}
	return best
}
