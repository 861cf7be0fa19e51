// Command nodeagent makes this Linux host a Kubernetes worker node: it registers the Node, keeps its Lease
// and status, runs the Pods bound to it through CRI and programs the cluster's Service VIPs in nftables.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	apiruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"

	"github.com/nodeagent/nodeagent/pkg/config"
	"github.com/nodeagent/nodeagent/pkg/cri"
	"github.com/nodeagent/nodeagent/pkg/dns"
	"github.com/nodeagent/nodeagent/pkg/eviction"
	"github.com/nodeagent/nodeagent/pkg/imagegc"
	"github.com/nodeagent/nodeagent/pkg/logs"
	"github.com/nodeagent/nodeagent/pkg/metrics"
	"github.com/nodeagent/nodeagent/pkg/node"
	"github.com/nodeagent/nodeagent/pkg/podcgroup"
	"github.com/nodeagent/nodeagent/pkg/podmanager"
	"github.com/nodeagent/nodeagent/pkg/proxy"
	"github.com/nodeagent/nodeagent/pkg/source"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "v0.1.0-dev"

// Exit codes: 2 for a configuration the agent refuses, 1 for a failure while running.
const (
	exitRuntime = 1
	exitConfig  = 2
)

func main() {
	cfg, mode, err := loadConfig(os.Args[1:])
	if errors.Is(err, pflag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "nodeagent: invalid configuration:\n%v\n", err)
		os.Exit(exitConfig)
	}
	if mode == modeCleanupProxy {
		if err := cleanupProxy(); err != nil {
			fmt.Fprintf(os.Stderr, "nodeagent: %v\n", err)
			os.Exit(exitRuntime)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	runMode := run
	switch mode {
	case modeProxyOnly:
		runMode = runProxyOnly
	case modeDNSOnly:
		runMode = runDNSOnly
	case modeLogsOnly:
		runMode = runLogsOnly
	}
	if err := runMode(ctx, cfg); err != nil {
		klog.ErrorS(err, "nodeagent stopped")
		klog.Flush()
		os.Exit(exitRuntime)
	}
	klog.Flush()
}

// mode is what the process does: the whole node (the default), only the Service proxy, only DNS, only log
// shipping, or cleaning up.
type mode int

const (
	modeNode mode = iota
	modeProxyOnly
	modeDNSOnly
	modeLogsOnly
	modeCleanupProxy
)

// loadConfig reads --config (if given) over the defaults, then applies the flags given on the command line,
// so a flag always wins over the file, and validates the result. --cleanup-proxy needs no valid
// configuration.
func loadConfig(args []string) (cfg *config.Configuration, m mode, err error) {
	var configFile string
	var cleanup, proxyOnly, dnsOnly, logsOnly bool
	newFlags := func(cfg *config.Configuration) *pflag.FlagSet {
		fs := pflag.NewFlagSet("nodeagent", pflag.ContinueOnError)
		fs.StringVar(&configFile, "config", "", "Path to a "+config.Kind+" YAML file ("+config.APIVersion+"); flags override it.")
		fs.BoolVar(&cleanup, "cleanup-proxy", false, "Remove the agent's nftables table (inet "+proxy.TableName+") and exit, as kube-proxy --cleanup.")
		fs.BoolVar(&proxyOnly, "proxy-only", false, "Run only the Service proxy, as kube-proxy does: no Node registration, no pods.")
		fs.BoolVar(&dnsOnly, "dns-only", false, "Run only the cluster DNS server, as CoreDNS does: no Node registration, no pods.")
		fs.BoolVar(&logsOnly, "logs-only", false, "Run only the log shipper, as Fluent Bit does: no Node registration, no pods; without a kubeconfig, records carry what the log paths say.")
		cfg.AddFlags(fs)
		klogFlags := flag.NewFlagSet("klog", flag.ContinueOnError)
		klog.InitFlags(klogFlags)
		fs.AddGoFlagSet(klogFlags)
		return fs
	}
	if err := newFlags(config.Default()).Parse(args); err != nil {
		return nil, modeNode, err
	}
	if cleanup {
		return nil, modeCleanupProxy, nil
	}
	cfg = config.Default()
	if configFile != "" {
		if cfg, err = config.LoadFile(configFile); err != nil {
			return nil, modeNode, err
		}
	}
	if err := newFlags(cfg).Parse(args); err != nil {
		return nil, modeNode, err
	}
	errs := cfg.Validate()
	if logsOnly && cfg.Kubeconfig == "" {
		errs = slices.DeleteFunc(errs, func(e *field.Error) bool { return e.Field == "kubeconfig" && e.Type == field.ErrorTypeRequired })
	}
	if logsOnly && !cfg.Logs.Enabled {
		errs = append(errs, field.Invalid(field.NewPath("logs", "enabled"), false, "--logs-only runs the log shipper: it must be enabled"))
	}
	if proxyOnly && !cfg.Proxy.Enabled {
		errs = append(errs, field.Invalid(field.NewPath("proxy", "enabled"), false, "--proxy-only runs the proxy: it must be enabled"))
	}
	if dnsOnly && !cfg.DNS.Enabled {
		errs = append(errs, field.Invalid(field.NewPath("dns", "enabled"), false, "--dns-only runs the DNS server: it must be enabled"))
	}
	if only := slices.DeleteFunc([]string{flagIf(proxyOnly, "--proxy-only"), flagIf(dnsOnly, "--dns-only"), flagIf(logsOnly, "--logs-only")},
		func(s string) bool { return s == "" }); len(only) > 1 {
		errs = append(errs, field.Invalid(field.NewPath(strings.TrimPrefix(only[1], "--")), true, strings.Join(only, " and ")+" exclude each other"))
	}
	if len(errs) > 0 {
		lines := make([]string, len(errs))
		for i, e := range errs {
			lines[i] = "  " + e.Error()
		}
		return nil, modeNode, errors.New(strings.Join(lines, "\n"))
	}
	if proxyOnly {
		return cfg, modeProxyOnly, nil
	}
	if dnsOnly {
		return cfg, modeDNSOnly, nil
	}
	if logsOnly {
		return cfg, modeLogsOnly, nil
	}
	return cfg, modeNode, nil
}

// flagIf is name when set, else "".
func flagIf(set bool, name string) string {
	if set {
		return name
	}
	return ""
}

// cleanupProxy removes the agent's nftables table from this host's network namespace.
func cleanupProxy() error {
	conn, err := proxy.NewConn(0)
	if err != nil {
		return err
	}
	if err := proxy.Cleanup(conn); err != nil {
		return err
	}
	klog.InfoS("Removed the proxy's nftables table", "table", "inet "+proxy.TableName)
	return nil
}

// newProxier sets up the Service proxy on the shared cache; it runs once the cache is filled.
func newProxier(ctx context.Context, cfg *config.Configuration, nodeName string, client kubernetes.Interface, src *source.Source, reg prometheus.Registerer) (*proxy.Proxier, error) {
	if err := proxy.CheckAccess(ctx, client); err != nil {
		return nil, err
	}
	conn, err := proxy.NewConn(0)
	if err != nil {
		return nil, err
	}
	clusterCIDRs, _ := cfg.Proxy.ClusterCIDRs() // validated; none when empty
	return proxy.New(proxy.Config{
		NodeName: nodeName,
		NodePortIPs: func() []netip.Addr {
			ips, err := proxy.NodePortIPs(src.Node(), cfg.Proxy.NodePortAddresses, net.InterfaceAddrs)
			if err != nil {
				klog.ErrorS(err, "NodePorts are not served on some addresses")
			}
			return ips
		},
		LocalCIDRs: func() []netip.Prefix {
			if len(clusterCIDRs) > 0 {
				return clusterCIDRs
			}
			return podCIDRs(cfg, src)
		},
		FullSyncPeriod: cfg.Proxy.SyncPeriod.Duration,
		Metrics:        reg,
	}, conn, src.Cluster)
}

// serveHTTP serves handler on addr until ctx ends, as one of wg's goroutines.
func serveHTTP(ctx context.Context, wg *sync.WaitGroup, addr string, handler http.Handler) error {
	wait, err := metrics.Serve(ctx, addr, handler)
	if err != nil {
		return err
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := wait(); err != nil {
			klog.ErrorS(err, "HTTP server stopped", "address", addr)
		}
	}()
	return nil
}

// connect returns the node's name and an API client with its credentials.
func connect(cfg *config.Configuration) (string, kubernetes.Interface, error) {
	nodeName, err := cfg.NodeName()
	if err != nil {
		return "", nil, fmt.Errorf("node name: %w", err)
	}
	restConfig, err := clientcmd.BuildConfigFromFlags("", cfg.Kubeconfig)
	if err != nil {
		return "", nil, fmt.Errorf("loading kubeconfig %s: %w", cfg.Kubeconfig, err)
	}
	restConfig.UserAgent = "nodeagent/" + version
	restConfig.QPS, restConfig.Burst = 50, 100
	// Protobuf, as the kubelet and kube-proxy ask for by default: much cheaper to decode than JSON, which
	// shows in the Service and EndpointSlice lists and watches of a large cluster.
	restConfig.ContentType = apiruntime.ContentTypeProtobuf
	restConfig.AcceptContentTypes = apiruntime.ContentTypeProtobuf + "," + apiruntime.ContentTypeJSON
	client, err := kubernetes.NewForConfig(restConfig)
	return nodeName, client, err
}

// serveEndpoints opens /metrics and, with a proxy, its /healthz and /livez, as goroutines of wg. The ports
// are opened before anything runs, so one in use stops start-up with a clear error.
func serveEndpoints(ctx context.Context, wg *sync.WaitGroup, cfg *config.Configuration, registry *prometheus.Registry,
	proxier *proxy.Proxier, src *source.Source) error {
	if cfg.MetricsBindAddress != "" {
		mux := http.NewServeMux()
		mux.Handle("/metrics", metrics.Handler(registry))
		if err := serveHTTP(ctx, wg, cfg.MetricsBindAddress, mux); err != nil {
			return fmt.Errorf("metricsBindAddress: %w", err)
		}
	}
	if proxier != nil && cfg.Proxy.HealthzBindAddress != "" {
		if err := serveHTTP(ctx, wg, cfg.Proxy.HealthzBindAddress, proxier.HealthHandler(src.Node)); err != nil {
			return fmt.Errorf("proxy.healthzBindAddress: %w", err)
		}
	}
	return nil
}

// runProxyOnly runs the Service proxy alone, as kube-proxy runs beside another kubelet.
func runProxyOnly(ctx context.Context, cfg *config.Configuration) error {
	nodeName, client, err := connect(cfg)
	if err != nil {
		return err
	}
	klog.InfoS("Starting nodeagent as a Service proxy only", "version", version, "node", nodeName)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	src := source.New(client, nodeName, 0)
	registry := metrics.NewRegistry()
	proxier, err := newProxier(ctx, cfg, nodeName, client, src, registry)
	if err != nil {
		return err
	}
	if err := serveEndpoints(ctx, &wg, cfg, registry, proxier, src); err != nil {
		return err
	}
	if err := src.OnNodeChange(func(*corev1.Node) { proxier.NodeChanged() }); err != nil {
		return err
	}
	if err := src.Start(ctx); err != nil {
		return err
	}
	defer src.Shutdown()
	wg.Add(1)
	go func() { defer wg.Done(); proxier.Run(ctx) }()
	<-ctx.Done()
	return nil
}

func run(ctx context.Context, cfg *config.Configuration) error {
	nodeName, client, err := connect(cfg)
	if err != nil {
		return err
	}
	runtime, err := cri.Connect(ctx, cfg.ContainerRuntimeEndpoint, cfg.RuntimeRequestTimeout.Duration)
	if err != nil {
		return err
	}
	runtimeVersion, err := runtime.Version(ctx, "")
	if err != nil {
		return fmt.Errorf("runtime version: %w", err)
	}
	if err := os.MkdirAll(cfg.RootDir, 0o750); err != nil {
		return fmt.Errorf("creating root dir: %w", err)
	}
	klog.InfoS("Starting nodeagent", "version", version, "node", nodeName,
		"runtime", runtimeVersion.RuntimeName+" "+runtimeVersion.RuntimeVersion)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel() // runs before wg.Wait: stop every component, then wait for them

	src := source.New(client, nodeName, 0)
	var evictor *eviction.Manager
	nodeCtl := node.NewController(node.Config{
		Name: nodeName, NodeIP: cfg.NodeIP, MaxPods: cfg.MaxPods, RootDir: cfg.RootDir,
		KubeletPort: cfg.KubeletPort, AgentVersion: version,
		StatusUpdateInterval: cfg.NodeStatusUpdateFrequency.Duration,
		StatusReportInterval: cfg.NodeStatusReportFrequency.Duration,
		LeaseDuration:        time.Duration(cfg.NodeLeaseDurationSeconds) * time.Second,
		CNIConfDir:           cfg.CNIConfDir, CNIBridge: cfg.CNIBridge, PodCIDR: cfg.PodCIDR,
		// evictor is set below, before anything runs: the node's conditions and eviction need each other.
		MemoryPressure: func() bool { return evictor.MemoryPressure() },
		DiskPressure:   func() bool { return evictor.DiskPressure() },
		PIDPressure:    func() bool { return evictor.PIDPressure() },
	}, client, runtime, src.Node)

	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: client.CoreV1().Events("")})
	defer broadcaster.Shutdown()
	recorder := broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "nodeagent", Host: nodeName})

	nodeMemory, err := node.MemoryCapacity()
	if err != nil {
		return fmt.Errorf("reading memory capacity: %w", err)
	}
	var cgroups podmanager.PodCgroups
	if cfg.CgroupsPerQOS {
		tree := podcgroup.New(cfg.CgroupRoot)
		allocatable, err := nodeCtl.Allocatable()
		if err != nil {
			return fmt.Errorf("node allocatable: %w", err)
		}
		if err := tree.EnsureNode(allocatable); err != nil {
			return fmt.Errorf("pod cgroups: %w", err)
		}
		cgroups = tree
	}
	sources := podmanager.Sources{Pods: src.Pods(), Services: src.Cluster.Core().V1().Services().Lister(), Node: src.Node}
	var static *source.StaticPods
	if cfg.StaticPodPath != "" {
		static = source.NewStaticPods(cfg.StaticPodPath, nodeName, cfg.FileCheckFrequency.Duration)
		sources.Static = static
	}
	pods := podmanager.New(podmanager.Config{
		NodeName: nodeName, PodLogsDir: cfg.PodLogsDir, ContainerLogLinksDir: cfg.ContainerLogLinksDir, RootDir: cfg.RootDir, NodeMemory: nodeMemory,
		AllowedUnsafeSysctls: cfg.AllowedUnsafeSysctls, MaxParallelImagePulls: int(cfg.MaxParallelImagePulls),
		MaxParallelSandboxes: cfg.SandboxCreationLimit(),
		ClusterDNS:           cfg.PodNameservers(), ClusterDomain: cfg.ClusterDomain, ResolvConf: cfg.ResolvConf,
		NodeHostsFile: "/etc/hosts",
		RuntimeType:   runtimeVersion.RuntimeName,
		LogRotation: podmanager.LogRotation{MaxSize: cfg.ContainerLogMaxBytes(), MaxFiles: int(cfg.ContainerLogMaxFiles),
			Interval: cfg.ContainerLogMonitorInterval.Duration},
		ResyncInterval: 2 * time.Second, HousekeepingInterval: 10 * time.Second,
	}, runtime, cgroups, client, sources, recorder)
	thresholds, err := eviction.ParseThresholds(cfg.EvictionHard)
	if err != nil {
		return fmt.Errorf("evictionHard: %w", err)
	}
	softThresholds, err := eviction.ParseSoftThresholds(cfg.EvictionSoft, cfg.EvictionSoftGracePeriod)
	if err != nil {
		return fmt.Errorf("evictionSoft: %w", err)
	}
	// The image filesystem is asked of the runtime each time: it may move with the runtime's config.
	imageFs := func(ctx context.Context) (string, error) { return cri.ImageFsPath(ctx, runtime.ImageManagerService) }
	imageGC := imagegc.New(imagegc.Config{HighThresholdPercent: int(cfg.ImageGCHighThresholdPercent),
		LowThresholdPercent: int(cfg.ImageGCLowThresholdPercent), MinAge: cfg.ImageMinimumGCAge.Duration, Interval: 5 * time.Minute},
		runtime, imagegc.FilesystemUsage(imageFs))
	evictor = eviction.New(eviction.Config{Hard: thresholds, Soft: softThresholds,
		MaxPodGracePeriodSeconds: int64(cfg.EvictionMaxPodGracePeriod), Interval: 10 * time.Second,
		PressureTransitionPeriod: cfg.EvictionPressureTransitionPeriod.Duration, ReclaimDisk: imageGC.DeleteUnused,
	}, &eviction.NodeStats{RootDir: cfg.RootDir, PodDirs: pods.PodDirs, ImageFs: func() (string, error) {
		return imageFs(ctx)
	}, PodCgroup: func(pod *corev1.Pod) string {
		if cgroups == nil {
			return ""
		}
		return cgroups.PodPath(pod)
	}}, pods, nodeCtl.Kick)
	if err := src.OnPodChange(func(p *corev1.Pod) { pods.Update(ctx, p) }); err != nil {
		return err
	}
	registry := metrics.NewRegistry()
	var proxier *proxy.Proxier
	if cfg.Proxy.Enabled {
		if proxier, err = newProxier(ctx, cfg, nodeName, client, src, registry); err != nil {
			return err
		}
	}
	var dnsServer *dns.Server
	if cfg.DNS.Enabled {
		if !cfg.Proxy.Enabled {
			if err := proxy.CheckAccess(ctx, client); err != nil { // DNS needs the same Services and EndpointSlices
				return err
			}
		}
		if dnsServer, err = newDNSServer(cfg, src, registry); err != nil {
			return err
		}
	}
	var shipper *logs.Shipper
	if cfg.Logs.Enabled {
		if shipper, err = newShipper(cfg, nodeName, podFinder{pods: src.Pods(), static: static}, registry); err != nil {
			return err
		}
	}
	if err := serveEndpoints(ctx, &wg, cfg, registry, proxier, src); err != nil {
		return err
	}
	internalIPs, err := nodeCtl.InternalIPs()
	if err != nil {
		return err
	}
	nodeAPI, err := newNodeAPI(cfg, nodeName, internalIPs, src.Pods(), runtime, client)
	if err != nil {
		return err
	}

	if err := src.OnNodeChange(func(*corev1.Node) {
		nodeCtl.Kick()
		if proxier != nil {
			proxier.NodeChanged()
		}
	}); err != nil {
		return err
	}
	if err := nodeCtl.Register(ctx); err != nil {
		return err
	}
	if err := src.Start(ctx); err != nil {
		return err
	}
	defer src.Shutdown()
	wg.Add(3)
	go func() { defer wg.Done(); nodeCtl.Run(ctx) }()
	go func() { defer wg.Done(); pods.Run(ctx) }()
	go func() { defer wg.Done(); evictor.Run(ctx) }()
	wg.Add(1)
	go func() { defer wg.Done(); imageGC.Run(ctx) }()
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := nodeAPI.Run(ctx); err != nil {
			klog.ErrorS(err, "The node API stopped")
		}
	}()
	if proxier != nil {
		wg.Add(1)
		go func() { defer wg.Done(); proxier.Run(ctx) }()
	}
	if dnsServer != nil {
		wg.Add(1)
		go func() { defer wg.Done(); runDNS(ctx, dnsServer) }()
	}
	if shipper != nil {
		wg.Add(1)
		go func() { defer wg.Done(); shipper.Run(ctx) }()
	}
	if static != nil {
		static.OnChange(func() { pods.StaticPodsChanged(ctx) })
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := static.Run(ctx); err != nil {
				klog.ErrorS(err, "Static pods are not read", "path", cfg.StaticPodPath)
			}
		}()
	}
	klog.InfoS("nodeagent running", "node", nodeName)
	<-ctx.Done()
	klog.InfoS("Shutting down: running pods are left to the runtime and adopted at the next start")
	return nil
}
