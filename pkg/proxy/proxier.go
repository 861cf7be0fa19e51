package proxy

import (
	"context"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	"github.com/nodeagent/nodeagent/pkg/source"
)

// Config is what the proxy needs to know of the node it runs on. The functions are called at every full
// sync, so a node whose addresses or pod CIDR change gets new rules (see NodeChanged).
type Config struct {
	NodeName string
	// NodePortIPs returns the node addresses that accept NodePort traffic (kube-proxy's nodePortAddresses).
	NodePortIPs func() []netip.Addr
	// LocalCIDRs returns the pod CIDRs, at most one per family, whose traffic to a ClusterIP is not
	// masqueraded (kube-proxy's cluster CIDR); traffic from elsewhere is, so the reply returns through this
	// node. A family without one is not masqueraded.
	LocalCIDRs func() []netip.Prefix
	// FullSyncPeriod is how often the whole table is rewritten from the cache, whatever changed; between
	// full syncs only the Services that changed are written.
	FullSyncPeriod time.Duration
	// HealthCheckHost is the address that healthCheckNodePort servers listen on; "" for all of the node's.
	HealthCheckHost string
	// Listen opens the healthCheckNodePort listeners; nil means net.Listen. Tests open them in the node's
	// network namespace.
	Listen func(network, address string) (net.Listener, error)
	// Metrics, when set, gets kube-proxy's metrics (kubeproxy_*).
	Metrics prometheus.Registerer
}

// returnMemoryAfter is the number of Services from which a full sync returns freed memory to the system
// at once (one extra garbage collection per full sync).
const returnMemoryAfter = 1000

// nodeCheckInterval is how often the node's NodePort addresses and pod CIDR are compared with the rules.
const nodeCheckInterval = 10 * time.Second

// serviceProxyNameLabel names another proxy that serves the Service; this one then leaves it alone, as
// kube-proxy does.
const serviceProxyNameLabel = "service.kubernetes.io/service-proxy-name"

// Proxier keeps the agent's nftables table in line with the Services and EndpointSlices of the cluster.
type Proxier struct {
	cfg      Config
	table    *table
	render   renderer
	services corelisters.ServiceLister
	slices   *source.ServiceSlices

	mu       sync.Mutex
	dirty    map[string]bool // Services changed since the last sync, by "namespace/name"
	needFull bool            // the next sync rewrites everything
	kick     chan struct{}
	// triggers are the EndpointSlice change times waiting for a sync, for the network programming metric.
	triggers []time.Time

	metrics *metrics
	health  health
	// healthChecks are the healthCheckNodePort answers of the Services written so far, by "namespace/name";
	// the sync loop owns them.
	healthChecks map[string]healthCheck
}

// Objects are the Services and EndpointSlices the proxy programs (source.Source and
// source.FactoryServices implement it).
type Objects interface {
	Services() cache.SharedIndexInformer
	EndpointSlices() cache.SharedIndexInformer
	ServiceSlices() (*source.ServiceSlices, error)
}

// New adds the proxy's handlers to the informers of objects; the caller starts them and waits for their
// caches before Run.
func New(cfg Config, conn Conn, objects Objects) (*Proxier, error) {
	p := &Proxier{
		cfg:          cfg,
		table:        newTable(conn),
		dirty:        map[string]bool{},
		needFull:     true,
		kick:         make(chan struct{}, 1),
		metrics:      newMetrics(),
		health:       health{now: time.Now},
		healthChecks: map[string]healthCheck{},
	}
	if cfg.Metrics != nil {
		for _, c := range p.metrics.all {
			if err := cfg.Metrics.Register(c); err != nil {
				return nil, fmt.Errorf("registering proxy metrics: %w", err)
			}
		}
	}
	p.health.queued() // not healthy until the first sync, if it takes too long
	svcInformer := objects.Services()
	p.services = corelisters.NewServiceLister(svcInformer.GetIndexer())
	onService := func(obj any) {
		if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			p.metrics.serviceChanges.Inc()
			p.markDirty(key, time.Time{})
		}
	}
	// The objects of the informers' first list are written by the first sync, a full one that reads the
	// cache after it filled: marking them changed would only render them all again, and their change times
	// (possibly days old) would be no network programming latency.
	if _, err := svcInformer.AddEventHandler(cache.ResourceEventHandlerDetailedFuncs{
		AddFunc: func(obj any, initial bool) {
			if !initial {
				onService(obj)
			}
		},
		UpdateFunc: func(_, obj any) { onService(obj) }, DeleteFunc: onService,
	}); err != nil {
		return nil, err
	}
	var err error
	if p.slices, err = objects.ServiceSlices(); err != nil {
		return nil, err
	}
	p.slices.OnChange(func(service types.NamespacedName, slice *discoveryv1.EndpointSlice, initial bool) {
		if !initial {
			p.metrics.endpointChanges.Inc()
			p.markDirty(service.String(), triggerTime(slice))
		}
	})
	return p, nil
}

// NodeChanged asks for a full sync when the node's NodePort addresses or pod CIDR are no longer what the
// rules were written with. Call it when the Node object changes.
func (p *Proxier) NodeChanged() {
	p.mu.Lock()
	// What the last full sync wrote the rules with; sync sets both while it holds mu.
	changed := !slices.Equal(p.cfg.NodePortIPs(), p.table.nodePortIPs) || !slices.Equal(p.cfg.LocalCIDRs(), p.render.localCIDRs)
	p.needFull = p.needFull || changed
	p.mu.Unlock()
	if changed {
		p.poke()
	}
}

func (p *Proxier) poke() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// markDirty queues a sync of one Service; trigger is when the change happened in the cluster, if known.
func (p *Proxier) markDirty(key string, trigger time.Time) {
	p.mu.Lock()
	p.dirty[key] = true
	if !trigger.IsZero() {
		p.triggers = append(p.triggers, trigger)
	}
	p.mu.Unlock()
	p.health.queued()
	p.metrics.lastQueued.SetToCurrentTime()
	p.poke()
}

// triggerTime reads when the EndpointSlice controller saw the change behind this slice; zero when unknown
// (a slice written by hand).
func triggerTime(slice *discoveryv1.EndpointSlice) time.Time {
	t, err := time.Parse(time.RFC3339Nano, slice.Annotations[corev1.EndpointsLastChangeTriggerTime])
	if err != nil {
		return time.Time{}
	}
	return t
}

// Run writes the whole table at once, then every change as it comes, until ctx ends. A failed sync is
// retried with back-off as a full sync. The table stays when Run returns: Services keep working while the
// agent restarts, and the next start reconciles it in place.
func (p *Proxier) Run(ctx context.Context) {
	listen := p.cfg.Listen
	if listen == nil {
		listen = net.Listen
	}
	healthChecks := newHealthCheckNodePorts(ctx, p.cfg.HealthCheckHost, listen, p.healthy)
	defer healthChecks.wait()
	// The first sync reads every Service's slices, which come to p.slices through its own handler.
	if err := p.slices.WaitForSync(ctx); err != nil {
		return
	}
	full := time.NewTicker(p.cfg.FullSyncPeriod)
	defer full.Stop()
	// Host addresses come and go without an API event (the pod bridge gets its address with the first pod).
	nodeCheck := time.NewTicker(nodeCheckInterval)
	defer nodeCheck.Stop()
	// again fires for a retry after a failure and to delete retired endpoint maps.
	again := time.NewTimer(0)
	defer again.Stop()
	backoff := time.Second
	for {
		select {
		case <-ctx.Done():
			return
		case <-full.C:
			p.requestFull()
		case <-nodeCheck.C:
			p.NodeChanged()
			continue // it pokes the loop when something changed
		case <-p.kick:
		case <-again.C:
		}
		if err := p.sync(); err != nil {
			p.metrics.syncFailures.Inc()
			klog.ErrorS(err, "Proxy rules were not written; retrying with a full sync", "after", backoff)
			p.requestFull()
			again.Reset(backoff)
			backoff = min(2*backoff, time.Minute)
			continue
		}
		backoff = time.Second
		healthChecks.update(slices.Collect(maps.Values(p.healthChecks)))
		switch {
		case p.table.retiredDue(time.Now()):
			again.Reset(retiredDeletionPause) // more to delete now, between the changes that come
		case p.table.hasRetired():
			again.Reset(retireAfter)
		}
	}
}

// retiredDeletionPause separates the transactions that delete a backlog of retired objects, so changes get
// their turn between them.
const retiredDeletionPause = 20 * time.Millisecond

// sync writes what changed, or everything when a full sync is due.
func (p *Proxier) sync() error {
	p.mu.Lock()
	dirty := p.dirty
	p.dirty = map[string]bool{}
	full := p.needFull
	p.needFull = false
	triggers := p.triggers
	p.triggers = nil
	if full {
		p.table.nodePortIPs, p.render = p.cfg.NodePortIPs(), newRenderer(p.cfg.LocalCIDRs())
	}
	p.mu.Unlock()

	start := time.Now()
	if full {
		services, err := p.services.List(labels.Everything())
		if err != nil {
			return err
		}
		all := make(map[string]*serviceRules, len(services))
		for _, svc := range services {
			if sr := p.rulesFor(svc); sr != nil {
				all[svc.Namespace+"/"+svc.Name] = sr
			}
		}
		if err := p.table.fullSync(all); err != nil {
			return err // the caller asks for another full sync
		}
		p.healthChecks = map[string]healthCheck{}
		for _, svc := range services {
			p.setHealthCheck(svc.Namespace+"/"+svc.Name, svc)
		}
		p.synced(start, p.metrics.syncFullDuration, triggers)
		klog.V(2).InfoS("Proxy full sync", "services", len(all), "took", time.Since(start))
		if len(all) >= returnMemoryAfter {
			// A big full sync's transaction is a transient peak (hundreds of megabytes allocated at 10,000
			// Services) that the runtime would hand back to the system only slowly: hand it back now, so
			// the node's steady RSS is what the proxy keeps, not what it once wrote.
			debug.FreeOSMemory()
		}
		return nil
	}
	if len(dirty) == 0 && !p.table.hasRetired() {
		return nil
	}
	svcs := make(map[string]*corev1.Service, len(dirty))
	changed := make(map[string]*serviceRules, len(dirty))
	for key := range dirty {
		ns, name, _ := cache.SplitMetaNamespaceKey(key)
		svc, err := p.services.Services(ns).Get(name)
		if err != nil {
			changed[key] = nil // gone
			continue
		}
		svcs[key] = svc
		changed[key] = p.rulesFor(svc)
	}
	if err := p.table.syncServices(changed); err != nil {
		p.requeue(dirty, triggers)
		return err
	}
	for key := range changed {
		p.setHealthCheck(key, svcs[key])
	}
	p.synced(start, p.metrics.syncPartialDuration, triggers)
	klog.V(4).InfoS("Proxy partial sync", "services", len(changed), "took", time.Since(start))
	return nil
}

func (p *Proxier) requestFull() {
	p.mu.Lock()
	p.needFull = true
	p.mu.Unlock()
}

func (p *Proxier) requeue(dirty map[string]bool, triggers []time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for key := range dirty {
		p.dirty[key] = true
	}
	p.triggers = append(p.triggers, triggers...)
}

// synced records a successful sync that started at start and wrote the changes made at triggers.
func (p *Proxier) synced(start time.Time, duration prometheus.Observer, triggers []time.Time) {
	now := time.Now()
	took := now.Sub(start).Seconds()
	p.metrics.syncDuration.Observe(took)
	duration.Observe(took)
	p.metrics.lastSynced.Set(float64(now.UnixNano()) / 1e9)
	for _, t := range triggers {
		p.metrics.networkProgramming.Observe(now.Sub(t).Seconds())
	}
	p.health.synced(start)
}

func (p *Proxier) healthy() bool {
	healthy, _, _ := p.health.state()
	return healthy
}

// setHealthCheck records what the healthCheckNodePort of a Service answers: the number of its ready
// endpoints on this node. svc nil (deleted) or without a health check port removes it.
func (p *Proxier) setHealthCheck(key string, svc *corev1.Service) {
	if svc == nil || svc.Spec.HealthCheckNodePort == 0 ||
		svc.Spec.ExternalTrafficPolicy != corev1.ServiceExternalTrafficPolicyLocal ||
		svc.Labels[serviceProxyNameLabel] != "" {
		delete(p.healthChecks, key)
		return
	}
	// A dual-stack pod is an endpoint of each family: count each family's endpoints and take the larger.
	local := map[ipFamily]map[netip.Addr]bool{}
	for _, sp := range servicePorts(svc, p.slicesOf(svc), p.cfg.NodeName) {
		for _, e := range sp.localEndpoints() {
			if e.ready {
				if local[sp.family] == nil {
					local[sp.family] = map[netip.Addr]bool{}
				}
				local[sp.family][e.addr] = true
			}
		}
	}
	count := 0
	for _, addrs := range local {
		count = max(count, len(addrs))
	}
	p.healthChecks[key] = healthCheck{namespace: svc.Namespace, name: svc.Name,
		port: uint16(svc.Spec.HealthCheckNodePort), localEndpoints: count}
}

// rulesFor renders one Service from the cache; nil when this proxy does not serve it.
func (p *Proxier) rulesFor(svc *corev1.Service) *serviceRules {
	if svc.Labels[serviceProxyNameLabel] != "" {
		return nil
	}
	ports := servicePorts(svc, p.slicesOf(svc), p.cfg.NodeName)
	if len(ports) == 0 {
		return nil
	}
	return p.render.render(ports)
}

// slicesOf returns the Service's EndpointSlices from the cache.
func (p *Proxier) slicesOf(svc *corev1.Service) []*discoveryv1.EndpointSlice {
	return p.slices.Of(svc.Namespace, svc.Name)
}
