package proxy

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/google/nftables"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
)

// Config is what the proxy needs to know of the node it runs on.
type Config struct {
	NodeName string
	// NodePortIPs are the node addresses that accept NodePort traffic (kube-proxy's nodePortAddresses).
	NodePortIPs []netip.Addr
	// LocalCIDR is this node's pod CIDR: traffic to a ClusterIP from outside it is masqueraded so the reply
	// returns through this node. The zero Prefix turns that off.
	LocalCIDR netip.Prefix
	// FullSyncPeriod is how often the whole table is rewritten from the cache, whatever changed; between
	// full syncs only the Services that changed are written.
	FullSyncPeriod time.Duration
}

// serviceNameLabel ties an EndpointSlice to its Service.
const serviceNameLabel = discoveryv1.LabelServiceName

// byService indexes EndpointSlices by "namespace/service-name".
const byService = "service"

// Proxier keeps the agent's nftables table in line with the Services and EndpointSlices of the cluster.
type Proxier struct {
	cfg      Config
	table    *table
	render   renderer
	services corelisters.ServiceLister
	slices   cache.Indexer

	mu       sync.Mutex
	dirty    map[string]bool // Services changed since the last sync, by "namespace/name"
	needFull bool
	kick     chan struct{}
}

// New registers the proxy's informers (Services, EndpointSlices) in factory; the caller starts the factory
// and waits for its caches before Run.
func New(cfg Config, conn *nftables.Conn, factory informers.SharedInformerFactory) (*Proxier, error) {
	p := &Proxier{
		cfg:    cfg,
		table:  newTable(conn, cfg.NodePortIPs),
		render: renderer{localCIDR: cfg.LocalCIDR},
		dirty:  map[string]bool{},
		kick:   make(chan struct{}, 1),
	}
	svcInformer := factory.Core().V1().Services()
	sliceInformer := factory.Discovery().V1().EndpointSlices().Informer()
	if err := sliceInformer.AddIndexers(cache.Indexers{byService: sliceService}); err != nil {
		return nil, fmt.Errorf("indexing EndpointSlices by Service: %w", err)
	}
	p.services = svcInformer.Lister()
	p.slices = sliceInformer.GetIndexer()
	onService := func(obj any) {
		if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			p.markDirty(key)
		}
	}
	if _, err := svcInformer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: onService, UpdateFunc: func(_, obj any) { onService(obj) }, DeleteFunc: onService,
	}); err != nil {
		return nil, err
	}
	onSlice := func(obj any) {
		if keys, err := sliceService(obj); err == nil && len(keys) == 1 {
			p.markDirty(keys[0])
		}
	}
	if _, err := sliceInformer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: onSlice, UpdateFunc: func(_, obj any) { onSlice(obj) }, DeleteFunc: onSlice,
	}); err != nil {
		return nil, err
	}
	return p, nil
}

func sliceService(obj any) ([]string, error) {
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	slice, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok {
		return nil, fmt.Errorf("not an EndpointSlice: %T", obj)
	}
	name := slice.Labels[serviceNameLabel]
	if name == "" {
		return nil, nil
	}
	return []string{slice.Namespace + "/" + name}, nil
}

func (p *Proxier) markDirty(key string) {
	p.mu.Lock()
	p.dirty[key] = true
	p.mu.Unlock()
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// Run writes the whole table at once, then every change as it comes, until ctx ends. A failed sync is
// retried with back-off as a full sync. The table stays when Run returns: Services keep working while the
// agent restarts, and the next start reconciles it in place.
func (p *Proxier) Run(ctx context.Context) {
	p.needFull = true
	full := time.NewTicker(p.cfg.FullSyncPeriod)
	defer full.Stop()
	// again fires for a retry after a failure and to delete retired endpoint maps.
	again := time.NewTimer(0)
	defer again.Stop()
	backoff := time.Second
	for {
		select {
		case <-ctx.Done():
			return
		case <-full.C:
			p.needFull = true
		case <-p.kick:
		case <-again.C:
		}
		if err := p.sync(); err != nil {
			klog.ErrorS(err, "Proxy rules were not written; retrying with a full sync", "after", backoff)
			p.needFull = true
			again.Reset(backoff)
			backoff = min(2*backoff, time.Minute)
			continue
		}
		backoff = time.Second
		if p.table.hasRetired() {
			again.Reset(retireAfter)
		}
	}
}

// sync writes what changed, or everything when a full sync is due.
func (p *Proxier) sync() error {
	p.mu.Lock()
	dirty := p.dirty
	p.dirty = map[string]bool{}
	full := p.needFull
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
			p.requeue(dirty)
			return err
		}
		p.needFull = false
		klog.V(2).InfoS("Proxy full sync", "services", len(all), "took", time.Since(start))
		return nil
	}
	if len(dirty) == 0 && !p.table.hasRetired() {
		return nil
	}
	changed := make(map[string]*serviceRules, len(dirty))
	for key := range dirty {
		ns, name, _ := cache.SplitMetaNamespaceKey(key)
		svc, err := p.services.Services(ns).Get(name)
		if err != nil {
			changed[key] = nil // gone
			continue
		}
		changed[key] = p.rulesFor(svc)
	}
	if err := p.table.syncServices(changed); err != nil {
		p.requeue(dirty)
		return err
	}
	klog.V(4).InfoS("Proxy partial sync", "services", len(changed), "took", time.Since(start))
	return nil
}

func (p *Proxier) requeue(dirty map[string]bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for key := range dirty {
		p.dirty[key] = true
	}
}

// rulesFor renders one Service from the cache; nil when this proxy does not serve it.
func (p *Proxier) rulesFor(svc *corev1.Service) *serviceRules {
	// Services that name another proxy are that proxy's (kube-proxy does the same).
	if svc.Labels["service.kubernetes.io/service-proxy-name"] != "" {
		return nil
	}
	objs, err := p.slices.ByIndex(byService, svc.Namespace+"/"+svc.Name)
	if err != nil {
		return nil
	}
	slices := make([]*discoveryv1.EndpointSlice, 0, len(objs))
	for _, o := range objs {
		slices = append(slices, o.(*discoveryv1.EndpointSlice))
	}
	ports := servicePorts(svc, slices, p.cfg.NodeName)
	if len(ports) == 0 {
		return nil
	}
	return p.render.render(ports)
}
