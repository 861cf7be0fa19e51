package agent

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"

	"github.com/nodeagent/nodeagent/pkg/certificate"
	"github.com/nodeagent/nodeagent/pkg/cri"
	"github.com/nodeagent/nodeagent/pkg/eviction"
	"github.com/nodeagent/nodeagent/pkg/imagegc"
	"github.com/nodeagent/nodeagent/pkg/metrics"
	"github.com/nodeagent/nodeagent/pkg/node"
	"github.com/nodeagent/nodeagent/pkg/podcgroup"
	"github.com/nodeagent/nodeagent/pkg/podmanager"
	"github.com/nodeagent/nodeagent/pkg/server"
	"github.com/nodeagent/nodeagent/pkg/source"
	"github.com/nodeagent/nodeagent/pkg/stats"
)

// nodeComponent is what the kubelet does: the Node and its Lease, the pods through CRI, eviction, image
// garbage collection, static pods and the node API on :10250.
type nodeComponent struct {
	status  *node.Controller
	pods    *podmanager.Manager
	evictor *eviction.Manager
	imageGC *imagegc.Manager
	nodeAPI *server.NodeAPI
	// serving is nil unless serverTLSBootstrap asks the cluster for the node API's certificate.
	serving *certificate.Serving
	// static is nil without a static pod directory.
	static *source.StaticPods
	// objects are the ConfigMaps and Secrets the pods use, watched one by one.
	objects *source.ObjectWatches
	events  record.EventBroadcaster
}

// newNodeComponent connects to the runtime and builds the node's parts; the event broadcaster stops with
// ctx, as one of wg's goroutines.
func newNodeComponent(ctx context.Context, s *shared, wg *sync.WaitGroup) (*nodeComponent, error) {
	cfg := s.cfg.cfg
	operations := cri.NewOperations()
	runtime, err := cri.Connect(ctx, cfg.ContainerRuntimeEndpoint, cfg.RuntimeRequestTimeout.Duration, operations)
	if err != nil {
		return nil, err
	}
	for _, c := range operations.Collectors() {
		if err := s.registry.Register(c); err != nil {
			return nil, fmt.Errorf("registering runtime operation metrics: %w", err)
		}
	}
	runtimeVersion, err := runtime.Version(ctx, "")
	if err != nil {
		return nil, fmt.Errorf("runtime version: %w", err)
	}
	if err := os.MkdirAll(cfg.RootDir, 0o750); err != nil {
		return nil, fmt.Errorf("creating root dir: %w", err)
	}
	klog.InfoS("Container runtime", "runtime", runtimeVersion.RuntimeName+" "+runtimeVersion.RuntimeVersion)

	n := &nodeComponent{}
	n.events = record.NewBroadcaster(record.WithContext(ctx))
	if s.client == nil { // standalone: the events go to the log, as the API server is not there to keep them
		n.events.StartStructuredLogging(0)
	}
	wg.Add(1)
	go func() { defer wg.Done(); <-ctx.Done(); n.events.Shutdown() }()
	recent := newRecentEvents()
	n.events.StartEventWatcher(recent.add)
	// The kubelet's component name: users and the e2e suite find a node's pod events by source=kubelet.
	recorder := n.events.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "kubelet", Host: s.nodeName})

	// The image filesystem is asked of the runtime each time: it may move with the runtime's config.
	imageFs := func(ctx context.Context) (string, error) { return cri.ImageFsPath(ctx, runtime.ImageManagerService) }
	n.imageGC = imagegc.New(imagegc.Config{HighThresholdPercent: int(cfg.ImageGCHighThresholdPercent),
		LowThresholdPercent: int(cfg.ImageGCLowThresholdPercent), MinAge: cfg.ImageMinimumGCAge.Duration, Interval: 5 * time.Minute},
		runtime, imagegc.FilesystemUsage(imageFs))

	// Eviction reads the pods' usage and evicts through the pod manager, and the node status reads its
	// pressure conditions: the pod cgroups come first, then the pod manager, eviction, and the status.
	var cgroups *podcgroup.Manager // nil: pods run in the runtime's default cgroup (cgroupsPerQOS off)
	var podCgroups podmanager.PodCgroups
	if cfg.CgroupsPerQOS {
		cgroups = podcgroup.New(cfg.CgroupRoot)
		podCgroups = cgroups
	}
	sources := podmanager.Sources{Pods: s.src.Pods(), Services: corelisters.NewServiceLister(s.src.Services().GetIndexer()), Node: s.src.Node}
	if s.manifests != nil {
		sources.Objects, sources.Status = s.manifests, s.manifests
	} else {
		n.objects = source.NewObjectWatches(s.client)
		sources.Objects, sources.Status = n.objects, podmanager.APIStatus{Client: s.client}
	}
	if cfg.StaticPodPath != "" {
		n.static = source.NewStaticPods(cfg.StaticPodPath, s.nodeName, cfg.FileCheckFrequency.Duration)
		sources.Static = n.static
	}
	nodeMemory, err := node.MemoryCapacity()
	if err != nil {
		return nil, fmt.Errorf("reading memory capacity: %w", err)
	}
	n.pods = podmanager.New(podmanager.Config{
		NodeName: s.nodeName, PodLogsDir: cfg.PodLogsDir, ContainerLogLinksDir: cfg.ContainerLogLinksDir, RootDir: cfg.RootDir, NodeMemory: nodeMemory,
		AllowedUnsafeSysctls: cfg.AllowedUnsafeSysctls, MaxParallelImagePulls: int(cfg.MaxParallelImagePulls),
		MaxParallelSandboxes: cfg.SandboxCreationLimit(),
		ClusterDNS:           cfg.PodNameservers(), ClusterDomain: cfg.ClusterDomain, ResolvConf: cfg.ResolvConf,
		NodeHostsFile: "/etc/hosts",
		RuntimeType:   runtimeVersion.RuntimeName,
		LogRotation: podmanager.LogRotation{MaxSize: cfg.ContainerLogMaxBytes(), MaxFiles: int(cfg.ContainerLogMaxFiles),
			Interval: cfg.ContainerLogMonitorInterval.Duration},
		ResyncInterval: 2 * time.Second, HousekeepingInterval: 10 * time.Second,
	}, runtime, podCgroups, s.client, sources, recorder)
	s.health = n.pods.Healthy
	if s.client != nil { // before anything records an Event: the pod manager only runs later
		n.events.StartRecordingToSink(n.pods.EventSink(ctx, &typedcorev1.EventSinkImpl{Interface: s.eventClient.CoreV1().Events("")}))
	}
	n.evictor = eviction.New(eviction.Config{Hard: s.cfg.eviction.hard, Soft: s.cfg.eviction.soft,
		MaxPodGracePeriodSeconds: int64(cfg.EvictionMaxPodGracePeriod), Interval: 10 * time.Second,
		PressureTransitionPeriod: cfg.EvictionPressureTransitionPeriod.Duration, ReclaimDisk: n.imageGC.DeleteUnused,
	}, &eviction.NodeStats{RootDir: cfg.RootDir, PodDirs: n.pods.PodDirs, ImageFs: func() (string, error) {
		return imageFs(ctx)
	}, PodCgroup: func(pod *corev1.Pod) string {
		if cgroups == nil {
			return ""
		}
		return cgroups.PodPath(pod)
	}}, n.pods)
	n.status = node.NewController(node.Config{
		Name: s.nodeName, NodeIP: cfg.NodeIP, MaxPods: cfg.MaxPods, RootDir: cfg.RootDir, DeclaredFeatures: server.DeclaredFeatures(),
		KubeletPort: cfg.KubeletPort, AgentVersion: s.version,
		StatusUpdateInterval: cfg.NodeStatusUpdateFrequency.Duration,
		StatusReportInterval: cfg.NodeStatusReportFrequency.Duration,
		LeaseDuration:        time.Duration(cfg.NodeLeaseDurationSeconds) * time.Second,
		CNIConfDir:           cfg.CNIConfDir, CNIBridge: cfg.CNIBridge, PodCIDR: cfg.PodCIDR,
		Pressure: n.evictor, Labels: nodeLabels(cfg.Proxy.Enabled), Publish: publishNode(s.manifests),
	}, s.client, runtime, s.src.Node)
	if cgroups != nil {
		allocatable, err := n.status.Allocatable()
		if err != nil {
			return nil, fmt.Errorf("node allocatable: %w", err)
		}
		if err := cgroups.EnsureNode(allocatable); err != nil {
			return nil, fmt.Errorf("pod cgroups: %w", err)
		}
	}
	for _, register := range []func(prometheus.Registerer) error{n.pods.RegisterMetrics, n.evictor.RegisterMetrics, n.status.RegisterMetrics} {
		if err := register(s.registry); err != nil {
			return nil, err
		}
	}
	// The probe metrics have their own path, as the kubelet's (/metrics/probes): one series per container.
	probes := prometheus.NewRegistry()
	if err := n.pods.RegisterProbeMetrics(probes); err != nil {
		return nil, err
	}
	if err := s.src.OnPodChange(func(p *corev1.Pod) { n.pods.Update(ctx, p) }); err != nil {
		return nil, err
	}
	if err := s.src.OnNodeChange(func(*corev1.Node) { n.status.Kick() }); err != nil {
		return nil, err
	}
	summarizer := &stats.Summarizer{NodeName: s.nodeName, RootDir: cfg.RootDir, MemoryCapacity: uint64(nodeMemory),
		Runtime: runtime, Containers: runningContainers(n.pods), Node: nodeUsage, PodStorage: podStorage(s.src.Pods(), n.pods)}
	summary := func(ctx context.Context) (any, error) { return summarizer.Summary(ctx) }
	internalIPs, err := n.status.InternalIPs()
	if err != nil {
		return nil, err
	}
	api := server.NodeAPIConfig{NodeName: s.nodeName, HostIPs: internalIPs, Hostname: s.nodeName,
		RunningPods: n.pods.RunningPods, Metrics: metrics.Handler(s.registry), Registry: s.registry,
		ResourceMetrics: resourceMetrics(runtime, n.pods), ProbeMetrics: promhttp.HandlerFor(probes, promhttp.HandlerOpts{}),
		StatsSummary: summary}
	s.describer = &describer{pods: s.src.Pods(), services: sources.Services, manager: n.pods, events: recent,
		clusterDomain: cfg.ClusterDomain, proxyChains: cfg.Proxy.Enabled}
	api.Describe = s.describer.describe
	if cfg.ServerTLSBootstrap {
		if n.serving, err = newServingCertificate(cfg, s); err != nil {
			return nil, err
		}
		api.ServingCertificate = n.serving.Current
	}
	if n.nodeAPI, err = newNodeAPI(cfg, api, s.src.Pods(), runtime, s.client); err != nil {
		return nil, err
	}
	if n.static != nil {
		n.static.OnChange(func() { n.pods.StaticPodsChanged(ctx) })
	}
	return n, nil
}

// start registers the Node before the caches fill, so the pods bound to it can be seen.
func (n *nodeComponent) start(ctx context.Context) error { return n.status.Register(ctx) }

func (n *nodeComponent) run(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	run := func(f func(context.Context)) {
		wg.Add(1)
		go func() { defer wg.Done(); f(ctx) }()
	}
	run(n.status.Run)
	run(func(ctx context.Context) {
		n.pods.Run(ctx)
		if n.objects != nil {
			n.objects.StopAll() // once no worker asks for objects
		}
	})
	run(n.evictor.Run)
	run(n.imageGC.Run)
	if n.serving != nil {
		run(n.serving.Run)
	}
	run(func(ctx context.Context) {
		if err := n.nodeAPI.Run(ctx); err != nil {
			klog.ErrorS(err, "The node API stopped")
		}
	})
	if n.static != nil {
		run(func(ctx context.Context) {
			if err := n.static.Run(ctx); err != nil {
				klog.ErrorS(err, "Static pods are not read")
			}
		})
	}
}

// publishNode is where the Node goes in standalone mode: to the manifests' source, for the components that
// read it; nil (the API server) otherwise.
func publishNode(manifests *source.Manifests) func(*corev1.Node) {
	if manifests == nil {
		return nil
	}
	return manifests.SetNode
}

// runningContainers are the pod manager's running containers as pkg/stats takes them.
func runningContainers(pods *podmanager.Manager) func() []stats.Container {
	return func() []stats.Container {
		var out []stats.Container
		for _, c := range pods.RunningContainers() {
			out = append(out, stats.Container{ID: c.ID, Name: c.Name, Pod: c.Pod, Namespace: c.Namespace, PodUID: c.PodUID,
				StartedAt: c.StartedAt})
		}
		return out
	}
}

// podStorage gives the summary a pod's local volumes and log directory, from the pod manager's layout.
func podStorage(pods corelisters.PodLister, manager *podmanager.Manager) func(namespace, name, uid string) stats.PodStorage {
	return func(namespace, name, uid string) stats.PodStorage {
		pod, err := pods.Pods(namespace).Get(name)
		if err != nil || string(pod.UID) != uid {
			return stats.PodStorage{}
		}
		storage := stats.PodStorage{LogDir: manager.PodLogDir(pod)}
		for _, v := range manager.LocalVolumes(pod) {
			storage.Volumes = append(storage.Volumes, stats.Volume{Name: v.Name, Path: v.Path, InMemory: v.InMemory})
		}
		return storage
	}
}

// nodeUsage reads the node's usage from the root cgroup.
var nodeUsage = stats.CgroupNode{Root: "/sys/fs/cgroup", Meminfo: "/proc/meminfo"}

// resourceMetrics is the kubelet's /metrics/resource: the node's usage from the root cgroup, the containers'
// from the runtime's stats, for the containers the pod manager knows run. A registry of its own, as the
// kubelet's: metrics-server reads only these series.
func resourceMetrics(runtime stats.Runtime, pods *podmanager.Manager) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(stats.NewResourceCollector(runtime, runningContainers(pods), nodeUsage))
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
}

// The labels the agent puts on its Node, so the cluster's own DaemonSets can keep off what the agent does:
// kindnet off every nodeagent node (the agent writes the CNI config and the pod routes), kube-proxy off those
// whose proxy the agent runs.
const (
	LabelNode  = "nodeagent.io/node"
	LabelProxy = "nodeagent.io/proxy"
)

func nodeLabels(proxy bool) map[string]string {
	labels := map[string]string{LabelNode: "true"}
	if proxy {
		labels[LabelProxy] = "true"
	}
	return labels
}

// DaemonSetAdvice is what `nodeagent join` prints: the patches that keep a kubeadm or kind cluster's
// kube-proxy and kindnet DaemonSets off the agent's nodes. Both tolerate every taint, so only a node
// affinity keeps them away.
var DaemonSetAdvice = "Keep the cluster's kube-proxy and kindnet off nodeagent's nodes (with admin credentials):\n" +
	"  kubectl -n kube-system patch daemonset kube-proxy --type merge -p '" + notOnNodesPatch(LabelProxy) + "'\n" +
	"  kubectl -n kube-system patch daemonset kindnet --type merge -p '" + notOnNodesPatch(LabelNode) + "'\n"

// notOnNodesPatch is a merge patch giving a DaemonSet's pods a required node affinity against label=true.
func notOnNodesPatch(label string) string {
	return `{"spec":{"template":{"spec":{"affinity":{"nodeAffinity":{"requiredDuringSchedulingIgnoredDuringExecution":` +
		`{"nodeSelectorTerms":[{"matchExpressions":[{"key":"` + label + `","operator":"NotIn","values":["true"]}]}]}}}}}}}`
}
