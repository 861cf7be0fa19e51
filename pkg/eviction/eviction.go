// Package eviction owns node-pressure eviction, as the kubelet's eviction manager does it: it observes
// memory.available, nodefs.available and imagefs.available (and their inodesFree) and pid.available, reports
// MemoryPressure, DiskPressure and PIDPressure while a hard threshold is met (and for the transition period
// after), and then evicts one pod per round, BestEffort and over-request pods first. It only decides; the
// pod manager stops the pod and writes its Failed/Evicted status. Static pods are never evicted.
package eviction

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/klog/v2"
)

// Observation is how much of a signal's resource is available, out of its capacity.
type Observation struct {
	Available, Capacity int64
}

// Stats measures the node and its pods.
type Stats interface {
	// Observe returns the current value of every signal.
	Observe() (map[string]Observation, error)
	// PodUsage returns what a pod uses of each resource a signal watches.
	PodUsage(pod *corev1.Pod) Usage
}

// Usage is a pod's memory working set and the disk its emptyDir volumes and logs use (bytes), and its
// processes.
type Usage struct {
	Memory, Disk, PIDs int64
}

// resourcePIDs names process IDs as a resource of the node, as the kubelet's PID pressure does.
const resourcePIDs corev1.ResourceName = "pids"

// Pods is what the manager needs of the pod manager: the pods that run, and a way to evict one, giving its
// containers grace seconds to stop.
type Pods interface {
	ActivePods() []*corev1.Pod
	Evict(ctx context.Context, pod *corev1.Pod, message string, grace int64) error
}

// hardEvictionGrace is the kubelet's grace period, in seconds, for pods evicted on a hard threshold.
const hardEvictionGrace = 1

// Config is the eviction policy.
type Config struct {
	Hard []Threshold
	// Soft thresholds evict only once met for their grace period, and give the pod its own termination grace
	// period, at most MaxPodGracePeriodSeconds.
	Soft                     []Threshold
	MaxPodGracePeriodSeconds int64
	// PressureTransitionPeriod keeps a pressure condition on after its threshold is no longer met, so the
	// condition does not flap.
	PressureTransitionPeriod time.Duration
	// Interval is how often the signals are observed.
	Interval time.Duration
	// ReclaimDisk, when set, frees disk without evicting anyone (the kubelet removes unused images); it is
	// tried before a pod is evicted for a disk signal, and the pod stays if it freed enough.
	ReclaimDisk func(ctx context.Context) error
}

// Manager observes, reports pressure and evicts.
type Manager struct {
	cfg   Config
	stats Stats
	pods  Pods
	// changed holds a token when a pressure condition changed since the node status last took it.
	changed chan struct{}
	// evictions is the kubelet's kubelet_evictions{eviction_signal}.
	evictions *prometheus.CounterVec

	mu sync.Mutex
	// lastMet is when a threshold of each resource (memory, disk) was last met.
	lastMet map[corev1.ResourceName]time.Time
	// firstObserved is when each soft threshold (by String) started being met, for its grace period; only
	// Run's goroutine uses it.
	firstObserved map[string]time.Time
	// reported is the memory, disk and PID pressure last announced through changed; only Run's goroutine
	// uses it.
	reported [3]bool
}

// New returns a manager; PressureChanged tells when a pressure condition changes (to post the node status).
func New(cfg Config, stats Stats, pods Pods) *Manager {
	return &Manager{cfg: cfg, stats: stats, pods: pods, changed: make(chan struct{}, 1), lastMet: map[corev1.ResourceName]time.Time{},
		firstObserved: map[string]time.Time{},
		evictions: prometheus.NewCounterVec(prometheus.CounterOpts{Subsystem: "kubelet", Name: "evictions",
			Help: "Cumulative number of pod evictions by eviction signal"}, []string{"eviction_signal"})}
}

// RegisterMetrics adds the kubelet's kubelet_evictions to reg.
func (m *Manager) RegisterMetrics(reg prometheus.Registerer) error {
	if err := reg.Register(m.evictions); err != nil {
		return fmt.Errorf("registering eviction metrics: %w", err)
	}
	return nil
}

// PressureChanged receives when memory, disk or PID pressure began or ended; changes not yet received merge.
func (m *Manager) PressureChanged() <-chan struct{} { return m.changed }

// MemoryPressure, DiskPressure and PIDPressure are the node conditions: a threshold was met within the transition period.
func (m *Manager) MemoryPressure() bool { return m.under(corev1.ResourceMemory, time.Now()) }
func (m *Manager) DiskPressure() bool   { return m.under(corev1.ResourceEphemeralStorage, time.Now()) }
func (m *Manager) PIDPressure() bool    { return m.under(resourcePIDs, time.Now()) }

func (m *Manager) under(r corev1.ResourceName, now time.Time) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.lastMet[r]
	return ok && now.Sub(t) <= m.cfg.PressureTransitionPeriod
}

// Run observes every interval until ctx ends.
func (m *Manager) Run(ctx context.Context) {
	ticker := time.NewTicker(m.cfg.Interval)
	defer ticker.Stop()
	for {
		m.synchronize(ctx, time.Now())
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

// synchronize is one round: observe, update the pressure conditions, evict at most one pod.
func (m *Manager) synchronize(ctx context.Context, now time.Time) {
	obs, err := m.stats.Observe()
	if err != nil {
		klog.ErrorS(err, "Eviction manager: unable to observe the node")
		return
	}
	var met []Threshold // hard ones first
	for _, t := range slices.Concat(m.cfg.Hard, m.cfg.Soft) {
		o, ok := obs[t.Signal]
		if !ok || o.Available >= t.limit(o.Capacity) {
			delete(m.firstObserved, t.String())
			continue
		}
		if t.GracePeriod > 0 {
			first, seen := m.firstObserved[t.String()]
			if !seen {
				m.firstObserved[t.String()], first = now, now
			}
			if now.Sub(first) < t.GracePeriod {
				klog.V(2).InfoS("Eviction manager: soft threshold met, its grace period not yet", "threshold", t.String(), "since", first)
				continue
			}
		}
		met = append(met, t)
		m.mu.Lock()
		m.lastMet[resourceOf(t.Signal)] = now
		m.mu.Unlock()
	}
	// The conditions also end by time passing, so compare with what was last reported.
	if pressure := [3]bool{m.under(corev1.ResourceMemory, now), m.under(corev1.ResourceEphemeralStorage, now),
		m.under(resourcePIDs, now)}; pressure != m.reported {
		m.reported = pressure
		select {
		case m.changed <- struct{}{}:
		default:
		}
	}
	if len(met) == 0 {
		return
	}
	t := met[0]
	o := obs[t.Signal]
	klog.InfoS("Eviction manager: threshold met, attempting to reclaim", "threshold", t.String(), "available", o.Available)
	if resourceOf(t.Signal) == corev1.ResourceEphemeralStorage && m.cfg.ReclaimDisk != nil && m.reclaimedDisk(ctx, t) {
		return
	}
	victim := m.rank(resourceOf(t.Signal))
	if victim == nil {
		klog.InfoS("Eviction manager: no pod to evict", "threshold", t.String())
		return
	}
	message := fmt.Sprintf("The node was low on resource: %s. Threshold quantity: %s, available: %s. ", resourceOf(t.Signal),
		formatAmount(t.Signal, t.limit(o.Capacity)), formatAmount(t.Signal, o.Available))
	grace := int64(hardEvictionGrace)
	if t.GracePeriod > 0 {
		grace = m.cfg.MaxPodGracePeriodSeconds
		if tgps := victim.Spec.TerminationGracePeriodSeconds; tgps != nil {
			grace = min(grace, *tgps)
		}
		grace = max(grace, hardEvictionGrace)
	}
	if err := m.pods.Evict(ctx, victim, message, grace); err != nil {
		klog.ErrorS(err, "Eviction manager: unable to evict pod", "pod", klog.KObj(victim))
		return
	}
	m.evictions.WithLabelValues(t.Signal).Inc()
}

// reclaimedDisk frees node-level disk and reports whether the threshold is no longer met after it.
func (m *Manager) reclaimedDisk(ctx context.Context, t Threshold) bool {
	if err := m.cfg.ReclaimDisk(ctx); err != nil {
		klog.ErrorS(err, "Eviction manager: unable to reclaim disk without evicting a pod")
	}
	obs, err := m.stats.Observe()
	if err != nil {
		klog.ErrorS(err, "Eviction manager: unable to observe the node")
		return false
	}
	if o, ok := obs[t.Signal]; ok && o.Available >= t.limit(o.Capacity) {
		klog.InfoS("Eviction manager: reclaimed enough disk without evicting a pod", "threshold", t.String(), "available", o.Available)
		return true
	}
	return false
}

// rank returns the pod to evict for the resource: those using more than they request first, then lower
// priority, then the largest use above the request (BestEffort pods request nothing, so they go first).
func (m *Manager) rank(r corev1.ResourceName) *corev1.Pod {
	type candidate struct {
		pod      *corev1.Pod
		over     int64 // use above the request
		priority int32
	}
	var cands []candidate
	for _, pod := range m.pods.ActivePods() {
		if pod.Annotations["kubernetes.io/config.source"] == "file" {
			continue // static pods are critical to the node
		}
		usage := m.stats.PodUsage(pod)
		var use, request int64
		switch r {
		case corev1.ResourceMemory:
			use, request = usage.Memory, podRequest(pod, corev1.ResourceMemory)
		case corev1.ResourceEphemeralStorage:
			use, request = usage.Disk, podRequest(pod, corev1.ResourceEphemeralStorage)
		default:
			use = usage.PIDs // pods request no PIDs
		}
		var priority int32
		if pod.Spec.Priority != nil {
			priority = *pod.Spec.Priority
		}
		cands = append(cands, candidate{pod: pod, over: use - request, priority: priority})
	}
	if len(cands) == 0 {
		return nil
	}
	sort.SliceStable(cands, func(i, j int) bool {
		a, b := cands[i], cands[j]
		if (a.over > 0) != (b.over > 0) {
			return a.over > 0
		}
		if a.priority != b.priority {
			return a.priority < b.priority
		}
		return a.over > b.over
	})
	return cands[0].pod
}

func podRequest(pod *corev1.Pod, r corev1.ResourceName) int64 {
	var sum int64
	for _, c := range pod.Spec.Containers {
		if q, ok := c.Resources.Requests[r]; ok {
			sum += q.Value()
		}
	}
	return sum
}

func resourceOf(signal string) corev1.ResourceName {
	switch signal {
	case SignalMemoryAvailable:
		return corev1.ResourceMemory
	case SignalPIDAvailable:
		return resourcePIDs
	}
	return corev1.ResourceEphemeralStorage
}

// formatAmount prints an amount of a signal's resource: bytes in binary units, inodes and PIDs as counts.
func formatAmount(signal string, v int64) string {
	if signal == SignalNodeFsInodes || signal == SignalImageFsInodes || signal == SignalPIDAvailable {
		return resource.NewQuantity(v, resource.DecimalSI).String()
	}
	return resource.NewQuantity(v, resource.BinarySI).String()
}
