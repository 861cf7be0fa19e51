package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	agentdns "github.com/nodeagent/nodeagent/pkg/dns"
	"github.com/nodeagent/nodeagent/pkg/node"
	"github.com/nodeagent/nodeagent/test/forwardspec"
)

// The footprint benchmark's addresses, all on loopback but the agent's DNS (its usual link-local address on
// a link of its own in this network namespace): the peers' metrics and CoreDNS's port stay clear of the
// agent's.
const (
	agentMetricsAddr     = "127.0.0.1:10249"
	kubeProxyMetricsAddr = "127.0.0.1:20249"
	coreDNSFootprintPort = 5303
	agentDNSAddr         = "169.254.20.10:53"
	// settle is how long a side runs after its pods are Running before the idle window: start-up work (status
	// posts, first probes, log links, the proxy's sync after the pods' Services) is done within it.
	settle = 30 * time.Second
)

// auditPolicy records, without bodies, every request but the control plane's own: the benchmark counts the
// node daemons' requests and watches from it.
const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: None
  users: [system:kube-controller-manager, system:kube-scheduler, system:apiserver]
- level: None
  userGroups: [system:serviceaccounts:kube-system]
- level: Metadata
`

// footprintDaemon is one process of a side: a daemon the benchmark started, or one that a daemon started
// and that outlives it (the agent's DNS socket holder).
type footprintDaemon struct {
	name      string
	pid       int
	userAgent string // the prefix of its API clients' user agents, as the audit log records them; "" for none
	// anonymousOnly counts only its anonymous memory (RssAnon): the holder is the agent's binary, whose
	// pages in memory (about 38 of its 43 MiB of RSS) are the page cache's copy the agent maps too.
	anonymousOnly bool
}

// footprintSide is what gives a node its pods, Service VIPs and cluster DNS: nodeagent alone, or the
// kubelet, kube-proxy and CoreDNS together.
type footprintSide struct {
	name  string
	node  string
	start func() ([]*process, error)
	// daemons names the processes once started, with any they started themselves.
	daemons func(procs []*process) []footprintDaemon
	ready   func(ctx context.Context) error // the proxy has synced and DNS answers for a Service
	// notReady, if set, is given the side's Node while it is not Ready.
	notReady func(n *corev1.Node) error
	cleanup  func() // what the side leaves in the kernel goes
	// profile, if set, runs for the idle window (the agent's CPU profile, then its heap profile).
	profile func(window time.Duration) error
}

// daemonFigures are one daemon's results.
type daemonFigures struct {
	name               string
	peakRSS, steadyRSS int64
	cpuPerMinute       float64
	watches            int            // watches open at the end of the window
	requestsPerMinute  float64        // during the window, watches started included
	startupRequests    int            // from its start to the end of the settling, watches included
	idleRequests       map[string]int // during the window, by verb and resource
	sawRequests        bool
}

// runFootprint compares, on one API server and one runtime, nodeagent with every component on against the
// kubelet, kube-proxy (nftables) and CoreDNS (one replica) together: each side starts while the cluster holds
// the Services, runs the pods, settles, and is measured at rest over the window. The sides run one after the
// other (a kubelet kills the pods it does not own).
func runFootprint(ctx context.Context, services, pods int, window time.Duration, runtimeName, first string, agentOnly, profile bool) error {
	if err := os.MkdirAll(runDir, 0o755); err != nil {
		return err
	}
	policy, auditLog := filepath.Join(runDir, "audit-policy.yaml"), filepath.Join(runDir, "audit.log")
	if err := os.WriteFile(policy, []byte(auditPolicy), 0o644); err != nil {
		return err
	}
	_ = os.Remove(auditLog)
	c, err := startPodCluster(ctx, runtimeName,
		"APISERVER_EXTRA_ARGS=--audit-policy-file "+policy+" --audit-log-path "+auditLog+" --audit-log-maxsize 0")
	if err != nil {
		return err
	}
	defer c.down()
	k8sBin := filepath.Dir(c.kubeletBin)
	if _, err := shell(c.repo, nil, "hack/build-k8s.sh kube-proxy"); err != nil {
		return err
	}
	coreDNSBin, err := buildCoreDNS(c.repo)
	if err != nil {
		return err
	}
	if err := createServices(ctx, c.client, 0, services, 10); err != nil {
		return err
	}
	stub, err := startExternalStub()
	if err != nil {
		return err
	}
	defer stub.Stop()
	sink, err := forwardspec.Listen("127.0.0.1:0", forwardspec.Config{})
	if err != nil {
		return err
	}
	defer sink.Close()

	agent := footprintSide{name: "nodeagent", node: agentNode,
		start: func() ([]*process, error) {
			p, err := c.startAgentWith(c.rt.endpoint,
				"logs: {enabled: true, receivers: [\""+sink.Addr()+"\"]}\ndns: {upstreams: [\""+stub.Addr+"\"]}\n",
				"--healthz-bind-address", "127.0.0.1:10256", "--metrics-bind-address", agentMetricsAddr,
				"--enable-pod-routes=false", // the peers run no kindnet either
				fmt.Sprintf("--profiling=%t", profile))
			return []*process{p}, err
		},
		daemons: func(procs []*process) []footprintDaemon {
			d := []footprintDaemon{{name: "nodeagent", pid: procs[0].cmd.Process.Pid, userAgent: "nodeagent/"}}
			if pid := holderPID(c.agentBin); pid != 0 {
				d = append(d, footprintDaemon{name: "its DNS socket holder", pid: pid, anonymousOnly: true})
			}
			return d
		},
		ready: func(ctx context.Context) error { return proxyAndDNSReady(ctx, agentMetricsAddr, agentDNSAddr) },
		cleanup: func() {
			_ = agentdns.StopHolders()
			_ = exec.Command(c.agentBin, "--cleanup-proxy").Run()
			_ = exec.Command("ip", "link", "del", agentdns.LocalServiceLink).Run()
		},
	}
	corefile := filepath.Join(runDir, "Corefile")
	if err := writeCorefile(corefile, coreDNSFootprintPort, filepath.Join(c.pki, "admin.kubeconfig"), stub.Addr); err != nil {
		return err
	}
	const peersBridge = "bench-peers0"
	wrotePeersCNI := false
	peers := footprintSide{name: "kubelet + kube-proxy + CoreDNS", node: kubeletNode,
		start: func() ([]*process, error) {
			var procs []*process
			kubelet, err := c.startKubelet(c.rt.endpoint)
			if err != nil {
				return nil, err
			}
			procs = append(procs, kubelet)
			proxy, err := startProcess("kube-proxy", filepath.Join(runDir, "kube-proxy.log"), filepath.Join(k8sBin, "kube-proxy"),
				"--proxy-mode", "nftables", "--kubeconfig", filepath.Join(c.pki, kubeletNode+".kubeconfig"),
				"--hostname-override", kubeletNode, "--cluster-cidr", "10.246.0.0/16",
				"--metrics-bind-address", kubeProxyMetricsAddr, "--healthz-bind-address", "127.0.0.1:20256",
				// The host's conntrack table and timeouts are not the benchmark's to change.
				"--conntrack-max-per-core", "0", "--conntrack-tcp-timeout-established", "0",
				"--conntrack-tcp-timeout-close-wait", "0", "--conntrack-udp-timeout", "0", "--conntrack-udp-timeout-stream", "0")
			if err != nil {
				return procs, err
			}
			procs = append(procs, proxy)
			coreDNS, err := startProcess("coredns", filepath.Join(runDir, "coredns.log"), coreDNSBin, "-conf", corefile)
			return append(procs, coreDNS), err
		},
		daemons: func(procs []*process) []footprintDaemon {
			return []footprintDaemon{{name: "kubelet", pid: procs[0].cmd.Process.Pid, userAgent: "kubelet/"},
				{name: "kube-proxy", pid: procs[1].cmd.Process.Pid, userAgent: "kube-proxy/"},
				{name: "CoreDNS", pid: procs[2].cmd.Process.Pid, userAgent: "coredns/"}}
		},
		ready: func(ctx context.Context) error {
			return proxyAndDNSReady(ctx, kubeProxyMetricsAddr, fmt.Sprintf("127.0.0.1:%d", coreDNSFootprintPort))
		},
		// The runtime's network, and with it the node, is not ready without a CNI config. The agent writes
		// its own and leaves it; when the peers go first there is none, and the benchmark writes the same
		// one for the kubelet's pod CIDR, as a CNI daemon would once the node has it, on a bridge of its own
		// (the agent's may be left with another node's address) that its cleanup removes with the config.
		notReady: func(n *corev1.Node) error {
			if _, err := os.Stat(filepath.Join(c.rt.cniDir, node.CNIConfigFile)); err == nil || n.Spec.PodCIDR == "" {
				return nil
			}
			wrotePeersCNI = true
			_, err := node.WriteCNIConfig(c.rt.cniDir, peersBridge, n.Spec.PodCIDR)
			return err
		},
		cleanup: func() {
			for _, family := range []string{"ip", "ip6"} {
				_ = exec.Command("nft", "delete", "table", family, "kube-proxy").Run()
			}
			if wrotePeersCNI {
				_ = os.Remove(filepath.Join(c.rt.cniDir, node.CNIConfigFile))
				_ = exec.Command("ip", "link", "delete", peersBridge).Run()
			}
		},
	}
	if profile {
		agent.profile = func(window time.Duration) error {
			seconds := strconv.Itoa(max(int(window.Seconds())-2, 1))
			if err := saveProfile("profile?seconds="+seconds, filepath.Join(runDir, "nodeagent-cpu.pprof")); err != nil {
				return err
			}
			return saveProfile("heap", filepath.Join(runDir, "nodeagent-heap.pprof"))
		}
	}
	sides := []footprintSide{agent, peers}
	if first == "peers" {
		slices.Reverse(sides)
	}
	if agentOnly {
		sides = []footprintSide{agent}
	}
	results := map[string][]daemonFigures{}
	for _, side := range sides {
		figures, err := footprintOf(ctx, c.client, side, pods, window, auditLog)
		if err != nil {
			return fmt.Errorf("%s: %w (logs in %s)", side.name, err, runDir)
		}
		results[side.name] = figures
	}
	if agentOnly {
		return nil
	}
	reportFootprint(services, pods, window, c.rt.description, sides[0].name, results[agent.name], results[peers.name])
	return nil
}

// saveProfile writes one of the agent's profiles (its --profiling endpoint, /debug/pprof/<name>) to path,
// for `go tool pprof`.
func saveProfile(name, path string) error {
	resp, err := http.Get("http://" + agentMetricsAddr + "/debug/pprof/" + name)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("profile %s: %s", name, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	fmt.Fprintf(os.Stderr, "bench: the agent's profile: %s\n", path)
	return f.Close()
}

// footprintOf runs one side: start, Ready, synced, the pods Running, settled, then the window at rest.
func footprintOf(ctx context.Context, client kubernetes.Interface, side footprintSide, pods int, window time.Duration,
	auditLog string) ([]daemonFigures, error) {
	fmt.Fprintf(os.Stderr, "bench: footprint of %s\n", side.name)
	began := time.Now()
	procs, err := side.start()
	defer func() {
		for _, p := range procs {
			p.stop()
		}
		side.cleanup()
	}()
	if err != nil {
		return nil, err
	}
	// One sampler per process from its start (kube-proxy's nft children peak during its first sync); any
	// still running when this returns is stopped.
	samplers := map[int]func() int64{}
	defer func() {
		for _, stop := range samplers {
			stop()
		}
	}()
	sample := func(daemons []footprintDaemon) {
		for _, d := range daemons {
			if samplers[d.pid] == nil {
				samplers[d.pid] = sampleTreeRSS(d.pid)
			}
		}
	}
	sample(side.daemons(procs))
	if err := poll(ctx, 2*time.Minute, func() bool {
		n, err := client.CoreV1().Nodes().Get(ctx, side.node, metav1.GetOptions{})
		if err == nil && !nodeReady(n) && side.notReady != nil {
			if err := side.notReady(n); err != nil {
				fmt.Fprintf(os.Stderr, "bench: %s: %v\n", side.name, err)
			}
		}
		return err == nil && nodeReady(n)
	}); err != nil {
		return nil, fmt.Errorf("node %s never became Ready: %w", side.node, err)
	}
	if err := side.ready(ctx); err != nil {
		return nil, err
	}
	// The holder starts with the agent's DNS, after the agent itself.
	daemons := side.daemons(procs)
	sample(daemons)
	fmt.Fprintf(os.Stderr, "bench: %s: Ready and synced %s after its start\n", side.name, time.Since(began).Round(time.Second))
	if _, _, err := createReady(ctx, client, side.node, "footprint", pods); err != nil {
		return nil, err
	}
	select {
	case <-time.After(settle):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	before := make([]float64, len(daemons))
	for i, d := range daemons {
		if before[i], err = cpuSecondsOf(d.pid); err != nil {
			return nil, fmt.Errorf("%s: %w", d.name, err)
		}
	}
	from := time.Now()
	profiled := make(chan error, 1)
	if side.profile != nil {
		go func() { profiled <- side.profile(window) }()
	} else {
		profiled <- nil
	}
	select {
	case <-time.After(window):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	to := time.Now()
	if err := <-profiled; err != nil {
		return nil, err
	}
	figures := make([]daemonFigures, len(daemons))
	for i, d := range daemons {
		f := &figures[i]
		f.name = d.name
		after, err := cpuSecondsOf(d.pid)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", d.name, err)
		}
		f.cpuPerMinute = (after - before[i]) / to.Sub(from).Minutes()
		sampledPeak := samplers[d.pid]()
		delete(samplers, d.pid)
		if d.anonymousOnly {
			if f.steadyRSS, err = statusBytes(d.pid, "RssAnon:"); err != nil {
				return nil, err
			}
			f.peakRSS = f.steadyRSS
			f.name += " (anonymous memory)"
			continue
		}
		if f.steadyRSS, err = statusBytes(d.pid, "VmRSS:"); err != nil {
			return nil, err
		}
		hwm, err := statusBytes(d.pid, "VmHWM:")
		if err != nil {
			return nil, err
		}
		f.peakRSS = max(hwm, sampledPeak)
	}
	if err := countAPIUse(auditLog, daemons, figures, began, from, to); err != nil {
		return nil, err
	}
	for _, f := range figures {
		fmt.Fprintf(os.Stderr, "bench: %s: peak RSS %s, steady %s, %.2f CPU s/min, %d watches, %.1f requests/min (%d at start-up)\n",
			f.name, mib(f.peakRSS), mib(f.steadyRSS), f.cpuPerMinute, f.watches, f.requestsPerMinute, f.startupRequests)
		if len(f.idleRequests) > 0 {
			kinds := slices.SortedFunc(maps.Keys(f.idleRequests), func(a, b string) int { return f.idleRequests[b] - f.idleRequests[a] })
			var top []string
			for _, k := range kinds[:min(len(kinds), 6)] {
				top = append(top, fmt.Sprintf("%s %d", k, f.idleRequests[k]))
			}
			fmt.Fprintf(os.Stderr, "bench: %s's requests in the window: %s\n", f.name, strings.Join(top, ", "))
		}
	}
	return figures, deleteBenchPods(ctx, client, side.node, "footprint")
}

// proxyAndDNSReady waits for a proxy's first full sync (its kubeproxy_sync_full_proxy_rules_duration_seconds
// count) and for the DNS server to answer for a Service.
func proxyAndDNSReady(ctx context.Context, metricsAddr, dnsAddr string) error {
	client := &http.Client{Timeout: 2 * time.Second}
	defer client.CloseIdleConnections()
	if err := poll(ctx, 5*time.Minute, func() bool {
		resp, err := client.Get("http://" + metricsAddr + "/metrics")
		if err != nil {
			return false
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, m := range fullSyncMetric.FindAllStringSubmatch(string(body), -1) {
			if v, _ := strconv.ParseFloat(m[2], 64); m[1] == "count" && v >= 1 {
				return true
			}
		}
		return false
	}); err != nil {
		return fmt.Errorf("no full proxy sync in the metrics on %s: %w", metricsAddr, err)
	}
	if err := poll(ctx, time.Minute, func() bool { return answers(dnsAddr, "svc-1.default.svc.cluster.local.") }); err != nil {
		return fmt.Errorf("no DNS answer from %s for svc-1.default: %w", dnsAddr, err)
	}
	return nil
}

// holderPID finds the DNS socket holder the agent (bin) started, or 0. The agent starts it as its own
// executable, symbolic links resolved (/var/run is /run).
func holderPID(bin string) int {
	if resolved, err := filepath.EvalSymlinks(bin); err == nil {
		bin = resolved
	}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil {
			continue
		}
		args := strings.Split(string(cmdline), "\x00")
		if len(args) > 1 && args[0] == bin && args[1] == "dns-socket-holder" {
			return pid
		}
	}
	return 0
}

// auditEvent is what the benchmark reads of an audit.k8s.io/v1 Event.
type auditEvent struct {
	Stage          string      `json:"stage"`
	Verb           string      `json:"verb"`
	UserAgent      string      `json:"userAgent"`
	StageTimestamp metav1.Time `json:"stageTimestamp"`
	ObjectRef      struct {
		Resource    string `json:"resource"`
		Subresource string `json:"subresource"`
	} `json:"objectRef"`
}

// countAPIUse reads the audit log for the daemons' requests: those from began to the window's start (the
// start-up), those during the window [from, to] per minute (a watch counts when it starts), and the watches
// open at its end.
func countAPIUse(path string, daemons []footprintDaemon, figures []daemonFigures, began, from, to time.Time) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("the API server's audit log: %w", err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 1<<20), 16<<20)
	for s.Scan() {
		var e auditEvent
		if err := json.Unmarshal(s.Bytes(), &e); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		at := e.StageTimestamp.Time
		if at.Before(began) || at.After(to) {
			continue
		}
		i := slices.IndexFunc(daemons, func(d footprintDaemon) bool {
			return d.userAgent != "" && strings.HasPrefix(e.UserAgent, d.userAgent)
		})
		if i < 0 {
			continue
		}
		fig := &figures[i]
		fig.sawRequests = true
		counted := (e.Verb == "watch" && e.Stage == "ResponseStarted") || (e.Verb != "watch" && e.Stage == "ResponseComplete")
		switch {
		case e.Verb == "watch" && e.Stage == "ResponseStarted":
			fig.watches++
		case e.Verb == "watch" && e.Stage == "ResponseComplete":
			fig.watches--
		}
		if !counted {
			continue
		}
		if at.Before(from) {
			fig.startupRequests++
		} else {
			fig.requestsPerMinute++
			if fig.idleRequests == nil {
				fig.idleRequests = map[string]int{}
			}
			fig.idleRequests[strings.TrimSuffix(e.Verb+" "+e.ObjectRef.Resource+"/"+e.ObjectRef.Subresource, "/")]++
		}
	}
	if err := s.Err(); err != nil {
		return err
	}
	for i, d := range daemons {
		figures[i].requestsPerMinute /= to.Sub(from).Minutes()
		if d.userAgent != "" && !figures[i].sawRequests {
			return fmt.Errorf("the audit log holds no request from %s (user agent %s*)", d.name, d.userAgent)
		}
	}
	return nil
}

// reportFootprint prints each daemon's figures, the peers' sums, and the ratios the goals are about.
func reportFootprint(services, pods int, window time.Duration, runtime, first string, agent, peers []daemonFigures) {
	fmt.Printf("footprint: %d Services × 10 endpoints, %d running pods, on %s; %s went first; idle window %s after %s of settling\n",
		services, pods, runtime, first, window, settle)
	fmt.Println("nodeagent runs its kubelet, proxy, DNS and log shipper (to a receiver on loopback); the peers ship no logs")
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 3, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "\tpeak RSS\tsteady RSS\tidle CPU s/min\twatches open\trequests/min idle\trequests at start-up\t")
	row := func(f daemonFigures) {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.2f\t%d\t%.1f\t%d\t\n", f.name, mib(f.peakRSS), mib(f.steadyRSS), f.cpuPerMinute,
			f.watches, f.requestsPerMinute, f.startupRequests)
	}
	sum := func(name string, figs []daemonFigures) daemonFigures {
		s := daemonFigures{name: name}
		for _, f := range figs {
			s.peakRSS += f.peakRSS
			s.steadyRSS += f.steadyRSS
			s.cpuPerMinute += f.cpuPerMinute
			s.watches += f.watches
			s.requestsPerMinute += f.requestsPerMinute
			s.startupRequests += f.startupRequests
		}
		return s
	}
	for _, f := range agent {
		row(f)
	}
	a := sum("nodeagent, all", agent)
	if len(agent) > 1 {
		row(a)
	}
	for _, f := range peers {
		row(f)
	}
	p := sum("the three peers", peers)
	row(p)
	_ = tw.Flush()
	kubelet := peers[0]
	fmt.Printf("nodeagent / kubelet alone: peak RSS %.2f, steady RSS %.2f\n",
		float64(a.peakRSS)/float64(kubelet.peakRSS), float64(a.steadyRSS)/float64(kubelet.steadyRSS))
	fmt.Printf("nodeagent / the three peers: peak RSS %.2f (sum of each one's peak), steady RSS %.2f, idle CPU %.2f, watches %.2f, requests/min %.2f\n",
		float64(a.peakRSS)/float64(p.peakRSS), float64(a.steadyRSS)/float64(p.steadyRSS), a.cpuPerMinute/p.cpuPerMinute,
		float64(a.watches)/float64(p.watches), a.requestsPerMinute/p.requestsPerMinute)
}
