package podmanager

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"

	"github.com/nodeagent/nodeagent/pkg/cri"
)

// relistInterval is how often the runtime cache lists every sandbox and container of the node, as the
// kubelet's generic PLEG relists every second.
const relistInterval = time.Second

// relistStaleAfter is how old the last good relist may be before the workers stop trusting the cache and
// ask the runtime themselves (and so see its errors).
const relistStaleAfter = 3 * relistInterval

// podRuntime is what the runtime holds of one pod: its sandboxes and containers, newest first, and the
// status of each of those containers.
type podRuntime struct {
	sandboxes  []*runtimeapi.PodSandbox
	containers []*runtimeapi.Container
	statuses   map[string]*runtimeapi.ContainerStatus // by container ID
}

// cacheEntry is a pod's runtime state and when it was read; a stale entry is read again from the runtime
// before use, because a worker changed the pod since.
type cacheEntry struct {
	pod   *podRuntime
	at    time.Time
	stale bool
}

// runtimeCache holds the runtime state of the node's pods, as the kubelet's PLEG and pod cache: one relist
// per second (two CRI calls, plus a ContainerStatus for each container whose state changed) replaces the
// workers' own calls on every tick, and a pod whose state changed has its worker woken. A worker that
// changes its pod marks the entry stale, and its next read asks the runtime for that pod alone, so it never
// acts on a state older than its own change.
type runtimeCache struct {
	runtime  Runtime
	nodeName string
	// changed is called with the pods whose runtime state a relist found changed.
	changed func(types.UID)
	// metrics count the running pods and containers at each relist.
	metrics *metrics

	mu         sync.Mutex
	pods       map[types.UID]*cacheEntry
	lastRelist time.Time // when the last good relist began; zero before the first
	// sandboxIPs are the addresses of ready sandboxes, which never change; read once per sandbox.
	sandboxIPs map[string][]string
}

func newRuntimeCache(runtime Runtime, nodeName string, changed func(types.UID), m *metrics) *runtimeCache {
	return &runtimeCache{runtime: runtime, nodeName: nodeName, changed: changed, metrics: m,
		pods: map[types.UID]*cacheEntry{}, sandboxIPs: map[string][]string{}}
}

// run relists every relistInterval until ctx ends.
func (c *runtimeCache) run(ctx context.Context) {
	ticker := time.NewTicker(relistInterval)
	defer ticker.Stop()
	for {
		if err := c.relist(ctx); err != nil && ctx.Err() == nil {
			klog.ErrorS(err, "Relisting the runtime's pods")
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

// relist reads every sandbox of this node and every container, replaces the entries older than the relist
// and wakes the workers of the pods that changed.
func (c *runtimeCache) relist(ctx context.Context) error {
	began := time.Now()
	defer func() { c.metrics.relistDuration.Observe(time.Since(began).Seconds()) }()
	c.mu.Lock()
	if !c.lastRelist.IsZero() {
		c.metrics.relistInterval.Observe(began.Sub(c.lastRelist).Seconds())
	}
	c.mu.Unlock()
	sandboxes, err := c.runtime.ListPodSandbox(ctx, &runtimeapi.PodSandboxFilter{
		LabelSelector: map[string]string{LabelNode: c.nodeName}})
	if err != nil {
		return fmt.Errorf("listing sandboxes: %w", err)
	}
	// Containers carry no node label: they are matched to this node's pods by their pod UID below.
	containers, err := c.runtime.ListContainers(ctx, &runtimeapi.ContainerFilter{})
	if err != nil {
		return fmt.Errorf("listing containers: %w", err)
	}
	fresh := map[types.UID]*podRuntime{}
	for _, sb := range sandboxes {
		uid := types.UID(sb.GetMetadata().GetUid())
		if fresh[uid] == nil {
			fresh[uid] = &podRuntime{}
		}
		fresh[uid].sandboxes = append(fresh[uid].sandboxes, sb)
	}
	for _, ct := range containers {
		if p := fresh[types.UID(ct.Labels[cri.LabelPodUID])]; p != nil {
			p.containers = append(p.containers, ct)
		}
	}

	c.mu.Lock()
	previous := make(map[types.UID]*podRuntime, len(c.pods))
	for uid, e := range c.pods {
		previous[uid] = e.pod
	}
	c.mu.Unlock()
	for uid, p := range fresh {
		sortNewestFirst(p)
		if p.statuses, err = c.statuses(ctx, p.containers, previous[uid]); err != nil {
			return err
		}
	}

	var changed []types.UID
	c.mu.Lock()
	for uid, e := range c.pods {
		if _, ok := fresh[uid]; !ok && e.at.Before(began) {
			delete(c.pods, uid) // gone from the runtime
			changed = append(changed, uid)
		}
	}
	for uid, p := range fresh {
		e := c.pods[uid]
		if e != nil && !e.at.Before(began) {
			continue // read by its worker after this relist began: newer than what the relist saw
		}
		if e == nil || !sameState(e.pod, p) {
			changed = append(changed, uid)
		}
		c.pods[uid] = &cacheEntry{pod: p, at: began}
	}
	live := map[string]bool{}
	for _, sb := range sandboxes {
		live[sb.Id] = true
	}
	for id := range c.sandboxIPs {
		if !live[id] {
			delete(c.sandboxIPs, id)
		}
	}
	c.lastRelist = began
	c.mu.Unlock()
	all := make([]*podRuntime, 0, len(fresh))
	for _, p := range fresh {
		all = append(all, p)
	}
	c.metrics.countRunning(all)
	c.metrics.relistLastSeen.Set(float64(began.Unix()))
	for _, uid := range changed {
		c.changed(uid)
	}
	return nil
}

// relistThreshold is the kubelet's PLEG health threshold: a relist older than this makes the node unhealthy.
const relistThreshold = 3 * time.Minute

// healthy is the kubelet's PLEG check: an error until the first good relist, and when the last one began
// more than relistThreshold ago (the relist loop is stuck, or the runtime has failed it that long).
func (c *runtimeCache) healthy() error {
	c.mu.Lock()
	last := c.lastRelist
	c.mu.Unlock()
	if last.IsZero() {
		return errors.New("pleg has yet to be successful")
	}
	if since := time.Since(last); since > relistThreshold {
		return fmt.Errorf("pleg was last seen active %v ago; threshold is %v", since.Round(time.Second), relistThreshold)
	}
	return nil
}

// get returns the runtime state of the pod with uid: the cached one, or, when the entry is stale or the
// relist is not running, the runtime's own answer for that pod.
func (c *runtimeCache) get(ctx context.Context, uid types.UID) (*podRuntime, error) {
	c.mu.Lock()
	e := c.pods[uid]
	trusted := time.Since(c.lastRelist) < relistStaleAfter
	c.mu.Unlock()
	switch {
	case e != nil && !e.stale && trusted:
		return e.pod, nil
	case e == nil && trusted:
		return &podRuntime{}, nil // the last relist found nothing of it, and no worker has made anything since
	}
	var previous *podRuntime
	if e != nil {
		previous = e.pod
	}
	return c.read(ctx, uid, previous)
}

// read asks the runtime for the pod's sandboxes and containers and caches the answer, unless a newer one
// arrived meanwhile.
func (c *runtimeCache) read(ctx context.Context, uid types.UID, previous *podRuntime) (*podRuntime, error) {
	began := time.Now()
	sandboxes, err := c.runtime.ListPodSandbox(ctx, &runtimeapi.PodSandboxFilter{
		LabelSelector: map[string]string{cri.LabelPodUID: string(uid), LabelNode: c.nodeName}})
	if err != nil {
		return nil, fmt.Errorf("listing sandboxes: %w", err)
	}
	containers, err := c.runtime.ListContainers(ctx, &runtimeapi.ContainerFilter{
		LabelSelector: map[string]string{cri.LabelPodUID: string(uid)}})
	if err != nil {
		return nil, fmt.Errorf("listing containers: %w", err)
	}
	p := &podRuntime{sandboxes: sandboxes, containers: containers}
	sortNewestFirst(p)
	if p.statuses, err = c.statuses(ctx, containers, previous); err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.pods[uid]; e == nil || !e.at.After(began) {
		c.pods[uid] = &cacheEntry{pod: p, at: began}
	}
	return p, nil
}

// invalidate marks the pod's entry stale: its worker changed it (or the runtime said it changed), so the
// next read asks the runtime, and no relist that began before now may replace it.
func (c *runtimeCache) invalidate(uid types.UID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.pods[uid]
	if e == nil {
		e = &cacheEntry{pod: &podRuntime{}}
		c.pods[uid] = e
	}
	e.stale, e.at = true, time.Now()
}

// forget records that nothing of the pod is left, once its worker removed it all: a relist that began
// before cannot bring it back, and the next one drops the entry.
func (c *runtimeCache) forget(uid types.UID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pods[uid] = &cacheEntry{pod: &podRuntime{}, at: time.Now()}
}

// statuses returns the status of each container, reusing previous's for a container whose state has not
// changed since: a container's status only changes with its state.
func (c *runtimeCache) statuses(ctx context.Context, containers []*runtimeapi.Container,
	previous *podRuntime) (map[string]*runtimeapi.ContainerStatus, error) {
	out := make(map[string]*runtimeapi.ContainerStatus, len(containers))
	for _, ct := range containers {
		if previous != nil {
			if st := previous.statuses[ct.Id]; st != nil && st.State == ct.State {
				out[ct.Id] = st
				continue
			}
		}
		resp, err := c.runtime.ContainerStatus(ctx, ct.Id, false)
		if err != nil {
			return nil, fmt.Errorf("container status %s: %w", ct.Id, err)
		}
		out[ct.Id] = resp.GetStatus()
	}
	return out, nil
}

// podIPs are the addresses of the sandbox with id, read from the runtime once; none while it has none.
func (c *runtimeCache) podIPs(ctx context.Context, sandboxID string) ([]string, error) {
	c.mu.Lock()
	ips, ok := c.sandboxIPs[sandboxID]
	c.mu.Unlock()
	if ok {
		return ips, nil
	}
	st, err := c.runtime.PodSandboxStatus(ctx, sandboxID, false)
	if err != nil {
		return nil, fmt.Errorf("sandbox status: %w", err)
	}
	net := st.GetStatus().GetNetwork()
	if net == nil || net.Ip == "" {
		return nil, nil
	}
	ips = []string{net.Ip}
	for _, ip := range net.AdditionalIps {
		ips = append(ips, ip.Ip)
	}
	if st.GetStatus().GetState() == runtimeapi.PodSandboxState_SANDBOX_READY {
		c.mu.Lock()
		c.sandboxIPs[sandboxID] = ips
		c.mu.Unlock()
	}
	return ips, nil
}

// runningContainers returns the running containers of every cached pod with their statuses.
func (c *runtimeCache) runningContainers() []*runtimeapi.ContainerStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*runtimeapi.ContainerStatus
	for _, e := range c.pods {
		for _, ct := range e.pod.containers {
			if st := e.pod.statuses[ct.Id]; ct.State == runtimeRunning && st != nil {
				out = append(out, st)
			}
		}
	}
	return out
}

func sortNewestFirst(p *podRuntime) {
	sort.Slice(p.sandboxes, func(i, j int) bool { return p.sandboxes[i].CreatedAt > p.sandboxes[j].CreatedAt })
	sort.Slice(p.containers, func(i, j int) bool { return p.containers[i].CreatedAt > p.containers[j].CreatedAt })
}

// sameState says whether two reads of a pod show the same sandboxes and containers in the same states.
func sameState(a, b *podRuntime) bool {
	if len(a.sandboxes) != len(b.sandboxes) || len(a.containers) != len(b.containers) {
		return false
	}
	for i := range a.sandboxes {
		if a.sandboxes[i].Id != b.sandboxes[i].Id || a.sandboxes[i].State != b.sandboxes[i].State {
			return false
		}
	}
	for i := range a.containers {
		if a.containers[i].Id != b.containers[i].Id || a.containers[i].State != b.containers[i].State {
			return false
		}
	}
	return true
}

// changingRuntime is the runtime as one pod's worker uses it: each call that changes the pod's sandboxes or
// containers marks its cache entry stale, so no read after it returns the state from before.
type changingRuntime struct {
	Runtime
	cache *runtimeCache
	uid   types.UID
}

func (r changingRuntime) RunPodSandbox(ctx context.Context, config *runtimeapi.PodSandboxConfig, handler string) (string, error) {
	defer r.cache.invalidate(r.uid)
	return r.Runtime.RunPodSandbox(ctx, config, handler)
}

func (r changingRuntime) StopPodSandbox(ctx context.Context, id string) error {
	defer r.cache.invalidate(r.uid)
	return r.Runtime.StopPodSandbox(ctx, id)
}

func (r changingRuntime) RemovePodSandbox(ctx context.Context, id string) error {
	defer r.cache.invalidate(r.uid)
	return r.Runtime.RemovePodSandbox(ctx, id)
}

func (r changingRuntime) CreateContainer(ctx context.Context, sandboxID string, config *runtimeapi.ContainerConfig,
	sandboxConfig *runtimeapi.PodSandboxConfig) (string, error) {
	defer r.cache.invalidate(r.uid)
	return r.Runtime.CreateContainer(ctx, sandboxID, config, sandboxConfig)
}

func (r changingRuntime) StartContainer(ctx context.Context, id string) error {
	defer r.cache.invalidate(r.uid)
	return r.Runtime.StartContainer(ctx, id)
}

func (r changingRuntime) StopContainer(ctx context.Context, id string, timeout int64) error {
	defer r.cache.invalidate(r.uid)
	return r.Runtime.StopContainer(ctx, id, timeout)
}

func (r changingRuntime) RemoveContainer(ctx context.Context, id string) error {
	defer r.cache.invalidate(r.uid)
	return r.Runtime.RemoveContainer(ctx, id)
}

// runningPods are the pods with a ready sandbox, each with its running containers, as the kubelet's runtime
// reports them (/runningpods/): name, namespace and UID from the sandbox, containers by name and image.
func (c *runtimeCache) runningPods() []*corev1.Pod {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*corev1.Pod
	for uid, e := range c.pods {
		var ready *runtimeapi.PodSandbox
		for _, sb := range e.pod.sandboxes {
			if sb.State == runtimeapi.PodSandboxState_SANDBOX_READY {
				ready = sb
				break
			}
		}
		if ready == nil {
			continue
		}
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{UID: uid, Name: ready.GetMetadata().GetName(),
			Namespace: ready.GetMetadata().GetNamespace()}}
		for _, ct := range e.pod.containers {
			if ct.State != runtimeRunning || ct.PodSandboxId != ready.Id {
				continue
			}
			image := ct.GetImage().GetUserSpecifiedImage()
			if image == "" {
				image = ct.GetImage().GetImage()
			}
			pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: ct.GetMetadata().GetName(), Image: image})
		}
		out = append(out, pod)
	}
	return out
}
