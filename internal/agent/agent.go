// Package agent assembles nodeagent from its components: the node (registration, status, pods, eviction,
// image GC, the node API), the Service proxy, cluster DNS and the log shipper. It owns what they share (the
// API client, the source of API objects, the metrics registry, the HTTP endpoints) and the order of start-up;
// each component owns its config section's parsed values and its Run. It holds no component's logic: that
// lives in the component's package under pkg/.
package agent

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apiruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

	"github.com/nodeagent/nodeagent/pkg/certificate"
	"github.com/nodeagent/nodeagent/pkg/config"
	"github.com/nodeagent/nodeagent/pkg/metrics"
	"github.com/nodeagent/nodeagent/pkg/source"
)

// Mode is which set of components the process runs.
type Mode int

const (
	// ModeNode is the whole node: the node component and whichever of proxy, DNS and logs are enabled.
	ModeNode Mode = iota
	// ModeProxyOnly is the Service proxy alone, as kube-proxy beside another kubelet.
	ModeProxyOnly
	// ModeDNSOnly is cluster DNS alone, as CoreDNS.
	ModeDNSOnly
	// ModeLogsOnly is the log shipper alone, as Fluent Bit; it needs no kubeconfig.
	ModeLogsOnly
	// ModeStandalone is the whole node without an API server (standalone.enabled): the objects come
	// from a directory of manifests.
	ModeStandalone
)

func (m Mode) String() string {
	return [...]string{"node", "proxy-only", "dns-only", "logs-only", "standalone"}[m]
}

// Completed is a validated configuration with the values each component parsed from its section.
type Completed struct {
	cfg      *config.Configuration
	mode     Mode
	eviction evictionSettings
	logs     logsSettings
}

// Complete checks what the configuration's own validation cannot: the sections that only their component
// can parse, and what the mode needs. The errors name the field and the reason, as config.Validate's.
func Complete(cfg *config.Configuration, mode Mode) (*Completed, field.ErrorList) {
	c := &Completed{cfg: cfg, mode: mode}
	var errs field.ErrorList
	var more field.ErrorList
	c.eviction, more = completeEviction(cfg)
	errs = append(errs, more...)
	c.logs, more = completeLogs(cfg)
	errs = append(errs, more...)
	enabled := map[Mode]struct {
		on        bool
		path      *field.Path
		component string
	}{
		ModeProxyOnly: {cfg.Proxy.Enabled, field.NewPath("proxy", "enabled"), "the proxy"},
		ModeDNSOnly:   {cfg.DNS.Enabled, field.NewPath("dns", "enabled"), "the DNS server"},
		ModeLogsOnly:  {cfg.Logs.Enabled, field.NewPath("logs", "enabled"), "the log shipper"},
	}
	if need, ok := enabled[mode]; ok && !need.on {
		errs = append(errs, field.Invalid(need.path, false, fmt.Sprintf("--%s runs %s: it must be enabled", mode, need.component)))
	}
	if cfg.Standalone.Enabled {
		if mode != ModeNode {
			errs = append(errs, field.Invalid(field.NewPath("standalone", "enabled"), true, fmt.Sprintf("--standalone and --%s exclude each other", mode)))
		}
		c.mode = ModeStandalone
	}
	return c, errs
}

// Config is the configuration Complete checked.
func (c *Completed) Config() *config.Configuration { return c.cfg }

// Mode is the set of components Run runs.
func (c *Completed) Mode() Mode { return c.mode }

// NeedsKubeconfig says whether the mode cannot run without an API server.
func (m Mode) NeedsKubeconfig() bool { return m != ModeLogsOnly && m != ModeStandalone }

// component is one part of the agent. It is built before anything runs (so a port in use or a missing
// permission stops start-up with a clear error), registers its handlers on the shared source while being
// built, and runs once the source's caches are filled.
type component interface {
	// start does what must happen before the source starts (the node registers its Node); it may block.
	start(ctx context.Context) error
	// run works until ctx ends.
	run(ctx context.Context)
}

// shared is what the components share.
type shared struct {
	cfg      *Completed
	version  string
	nodeName string
	// client is nil in standalone mode and in logs-only mode without a kubeconfig; src is nil only in the
	// latter.
	client kubernetes.Interface
	// eventClient is client's twin with a rate limit of its own, for Events: as the kubelet's
	// eventRecordQPS, a burst of pods' events never delays their status updates. Nil when client is.
	eventClient kubernetes.Interface
	src         objectSource
	// api is src when it is the API server's (pod routes need every Node), manifests when it is the
	// standalone mode's.
	api       *source.Source
	manifests *source.Manifests
	registry  *prometheus.Registry
	// describer answers nodeagent describe; nil without the node component.
	describer *describer
	// health is the node's health check (the pod manager's relist), nil without the node component.
	health func() error
}

// healthy is the agent's health as /healthz and the systemd watchdog report it.
func (s *shared) healthy() error {
	if s.health == nil {
		return nil
	}
	return s.health()
}

// gcPercent is the agent's GOGC unless the environment sets one. Most of its heap is long-lived caches (the
// Services and EndpointSlices of the cluster, the proxy's applied rules) and it allocates little at rest,
// so Go's default of 100, which lets the heap grow to twice what is live before collecting, mostly buys
// resident memory. At 10,000 Services and 110 pods (bench footprint --agent-only): 100 → 50 took the steady
// RSS from 279 to 239 MiB; 50 → 25 from 177 to 154 MiB and the peak from 276 to 253, with the same idle CPU
// (2.08 and 2.06 s a minute): the extra collections fall in the full syncs, not at rest.
const gcPercent = 25

// collectEarlier sets gcPercent in the modes that hold caches, unless GOGC is set: the environment (a
// systemd drop-in, say) has the last word. The log shipper alone keeps Go's default: its heap is its
// chunks' buffers, which it reuses, so a bigger goal costs it no memory, while 25 had it collect twenty
// times as a burst of logs grew its few megabytes of heap to the buffer's 32 MiB; the collector was 5% of
// its CPU (1 GiB of 200-byte lines, alternating runs: 1.27 CPU s per GB and 980 MB/s with 25, 1.16 and
// 1,032 with 100, the same peak RSS).
func collectEarlier(mode Mode) {
	if _, set := os.LookupEnv("GOGC"); !set && mode != ModeLogsOnly {
		debug.SetGCPercent(gcPercent)
	}
}

// Run runs the mode's components until ctx ends; the error is why it could not start or had to stop.
func Run(ctx context.Context, c *Completed, version string) error {
	s := &shared{cfg: c, version: version, registry: metrics.NewRegistry()}
	var err error
	if s.nodeName, err = c.cfg.NodeName(); err != nil {
		return fmt.Errorf("node name: %w", err)
	}
	klog.InfoS("Starting nodeagent", "version", version, "node", s.nodeName, "mode", c.mode.String())
	collectEarlier(c.mode)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel() // runs before wg.Wait: stop every component, then wait for them

	switch {
	case c.mode == ModeStandalone:
		serviceCIDR, err := netip.ParsePrefix(c.cfg.Standalone.ServiceCIDR)
		if err != nil {
			return fmt.Errorf("standalone.serviceCIDR: %w", err)
		}
		s.manifests = source.NewManifests(c.cfg.Standalone.ManifestDir, s.nodeName, serviceCIDR, c.cfg.FileCheckFrequency.Duration)
		s.src = s.manifests
	case c.cfg.Kubeconfig != "":
		if s.client, s.eventClient, err = s.connect(ctx, &wg); err != nil {
			return err
		}
		s.api = source.New(s.client, s.nodeName, 0)
		s.src = s.api
	}
	components, proxier, err := s.build(ctx, &wg)
	if err != nil {
		return err
	}
	if err := s.serveEndpoints(ctx, &wg, proxier); err != nil {
		return err
	}
	for _, comp := range components {
		if err := comp.start(ctx); err != nil {
			return err
		}
	}
	if s.src != nil {
		if err := s.src.Start(ctx); err != nil {
			return err
		}
		defer s.src.Shutdown()
	}
	for _, comp := range components {
		wg.Add(1)
		go func() { defer wg.Done(); comp.run(ctx) }()
	}
	klog.InfoS("nodeagent running", "node", s.nodeName, "components", len(components))
	// Registered, serving, caches filled: systemd may start what comes after the agent.
	notify(fmt.Sprintf("READY=1\nSTATUS=node %s: %d components running (%s mode)", s.nodeName, len(components), c.mode))
	wg.Add(1)
	go func() { defer wg.Done(); watchdog(ctx, s.healthy) }()
	<-ctx.Done()
	notify("STOPPING=1\nSTATUS=stopping")
	if c.mode == ModeNode || c.mode == ModeStandalone {
		klog.InfoS("Shutting down: running pods are left to the runtime and adopted at the next start")
	}
	return nil
}

// build makes the mode's components, in the order they start, and returns the proxy among them (nil
// without one), whose health handler is served apart.
func (s *shared) build(ctx context.Context, wg *sync.WaitGroup) ([]component, *proxyComponent, error) {
	cfg := s.cfg.cfg
	mode := s.cfg.mode
	wantNode := mode == ModeNode || mode == ModeStandalone
	wantProxy := mode == ModeProxyOnly || (wantNode && cfg.Proxy.Enabled)
	wantDNS := mode == ModeDNSOnly || (wantNode && cfg.DNS.Enabled)
	wantLogs := mode == ModeLogsOnly || (wantNode && cfg.Logs.Enabled)
	var components []component
	var proxier *proxyComponent
	var node *nodeComponent
	if wantNode {
		var err error
		if node, err = newNodeComponent(ctx, s, wg); err != nil {
			return nil, nil, err
		}
		components = append(components, node)
	}
	if mode == ModeNode && cfg.PodNetwork.Enabled {
		p, err := newPodnetComponent(s)
		if err != nil {
			return nil, nil, err
		}
		components = append(components, p)
	}
	if (wantProxy || wantDNS) && s.client != nil {
		if err := source.CheckServiceAccess(ctx, s.client); err != nil {
			return nil, nil, err
		}
	}
	if wantProxy {
		var err error
		if proxier, err = newProxyComponent(s); err != nil {
			return nil, nil, err
		}
		components = append(components, proxier)
	}
	if wantDNS {
		d, err := newDNSComponent(ctx, s)
		if err != nil {
			return nil, nil, err
		}
		components = append(components, d)
	}
	if wantLogs {
		var static *source.StaticPods
		if node != nil {
			static = node.static
		}
		l, err := newLogsComponent(s, static)
		if err != nil {
			return nil, nil, err
		}
		components = append(components, l)
	}
	return components, proxier, nil
}

// connect returns an API client with the kubeconfig's credentials or, with a bootstrap kubeconfig, with the
// node's client certificate, which it waits for and keeps rotating in a goroutine of wg; and the same
// client with its own rate limit, for Events.
func (s *shared) connect(ctx context.Context, wg *sync.WaitGroup) (client, events kubernetes.Interface, err error) {
	cfg := s.cfg.cfg
	var restConfig *rest.Config
	if cfg.BootstrapKubeconfig == "" {
		if restConfig, err = clientcmd.BuildConfigFromFlags("", cfg.Kubeconfig); err != nil {
			return nil, nil, fmt.Errorf("loading kubeconfig %s: %w", cfg.Kubeconfig, err)
		}
	} else {
		cert, err := certificate.NewClient(certificate.ClientConfig{NodeName: s.nodeName, Kubeconfig: cfg.Kubeconfig,
			BootstrapKubeconfig: cfg.BootstrapKubeconfig, Dir: filepath.Join(cfg.RootDir, "pki")})
		if err != nil {
			return nil, nil, err
		}
		if err := cert.Register(s.registry); err != nil {
			return nil, nil, err
		}
		wg.Add(1)
		go func() { defer wg.Done(); cert.Run(ctx) }()
		if err := cert.WaitForCertificate(ctx); err != nil {
			return nil, nil, err
		}
		restConfig = cert.RESTConfig()
	}
	restConfig.UserAgent = "nodeagent/" + s.version
	restConfig.QPS, restConfig.Burst = clientRate(cfg.KubeAPIQPS, cfg.KubeAPIBurst)
	// Protobuf, as the kubelet and kube-proxy ask for by default: much cheaper to decode than JSON, which
	// shows in the Service and EndpointSlice lists and watches of a large cluster.
	restConfig.ContentType = apiruntime.ContentTypeProtobuf
	restConfig.AcceptContentTypes = apiruntime.ContentTypeProtobuf + "," + apiruntime.ContentTypeJSON
	if client, err = kubernetes.NewForConfig(restConfig); err != nil {
		return nil, nil, err
	}
	// Each clientset gets a token bucket of its own from QPS and Burst.
	eventConfig := rest.CopyConfig(restConfig)
	eventConfig.QPS, eventConfig.Burst = clientRate(cfg.EventRecordQPS, cfg.EventBurst)
	if events, err = kubernetes.NewForConfig(eventConfig); err != nil {
		return nil, nil, err
	}
	return client, events, nil
}

// clientRate is a client's QPS and Burst for a configured rate: client-go takes a QPS of 0 for its default
// (5 a second) and a negative one for no bound, which is what the configuration's 0 means.
func clientRate(qps, burst int32) (float32, int) {
	if qps == 0 {
		return -1, 0
	}
	return float32(qps), int(burst)
}

// objectSource is where the components read the objects they work from: the API server's informers
// (source.Source) or, in standalone mode, a directory of manifests (source.Manifests).
type objectSource interface {
	Pods() corelisters.PodLister
	OnPodChange(fn func(*corev1.Pod)) error
	Node() *corev1.Node
	OnNodeChange(fn func(*corev1.Node)) error
	source.ServiceObjects
	Start(ctx context.Context) error
	Shutdown()
}

// nop is the start of a component with nothing to do before the source starts.
type nop struct{}

func (nop) start(context.Context) error { return nil }
