// Package podmanager owns the lifecycle of the Pods bound to this node: one worker per Pod compares the Pod's
// spec with what the container runtime runs (found by the kubelet's label keys, so a restarted agent adopts its
// containers), creates, restarts and removes sandboxes and containers, and writes the Pod's status. It must
// not touch runtime objects of another node: every sandbox it creates carries this node's name.
package podmanager

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/record"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"

	"github.com/nodeagent/nodeagent/pkg/cri"
	"github.com/nodeagent/nodeagent/pkg/source"
	"github.com/prometheus/client_golang/prometheus"
)

// LabelNode marks the sandboxes this agent created, so that agents of several nodes can share one runtime
// and none of them mistakes another's pods for orphans.
const LabelNode = "io.nodeagent.node"

// Runtime is what the pod manager needs of the container runtime.
type Runtime interface {
	RunPodSandbox(ctx context.Context, config *runtimeapi.PodSandboxConfig, runtimeHandler string) (string, error)
	StopPodSandbox(ctx context.Context, podSandboxID string) error
	RemovePodSandbox(ctx context.Context, podSandboxID string) error
	PodSandboxStatus(ctx context.Context, podSandboxID string, verbose bool) (*runtimeapi.PodSandboxStatusResponse, error)
	ListPodSandbox(ctx context.Context, filter *runtimeapi.PodSandboxFilter) ([]*runtimeapi.PodSandbox, error)
	CreateContainer(ctx context.Context, podSandboxID string, config *runtimeapi.ContainerConfig, sandboxConfig *runtimeapi.PodSandboxConfig) (string, error)
	StartContainer(ctx context.Context, containerID string) error
	StopContainer(ctx context.Context, containerID string, timeout int64) error
	RemoveContainer(ctx context.Context, containerID string) error
	ListContainers(ctx context.Context, filter *runtimeapi.ContainerFilter) ([]*runtimeapi.Container, error)
	ContainerStatus(ctx context.Context, containerID string, verbose bool) (*runtimeapi.ContainerStatusResponse, error)
	ExecSync(ctx context.Context, containerID string, cmd []string, timeout time.Duration) (stdout []byte, stderr []byte, err error)
	ReopenContainerLog(ctx context.Context, containerID string) error
	GetContainerEvents(ctx context.Context, containerEventsCh chan *runtimeapi.ContainerEventResponse,
		connectionEstablishedCallback func(runtimeapi.RuntimeService_GetContainerEventsClient)) error
	ImageStatus(ctx context.Context, image *runtimeapi.ImageSpec, verbose bool) (*runtimeapi.ImageStatusResponse, error)
	PullImage(ctx context.Context, image *runtimeapi.ImageSpec, auth *runtimeapi.AuthConfig, podSandboxConfig *runtimeapi.PodSandboxConfig) (string, error)
}

// Config is what the pod manager needs to know about the node.
type Config struct {
	NodeName   string
	PodLogsDir string
	// ContainerLogLinksDir gets the kubelet's links to the container logs (/var/log/containers); "" means none.
	ContainerLogLinksDir string
	// RootDir holds the agent's per-pod files (termination message files).
	RootDir string
	// NodeMemory is the node's memory capacity in bytes, for Burstable pods' OOM score.
	NodeMemory int64
	// MaxParallelImagePulls bounds the image pulls in flight across all pods; 0 means no bound.
	MaxParallelImagePulls int
	// MaxParallelSandboxes bounds the sandbox creations in flight; 0 means no bound.
	MaxParallelSandboxes int
	// AllowedUnsafeSysctls are the sysctls (or prefixes ending in *) pods may set beyond the safe set.
	AllowedUnsafeSysctls []string
	// ClusterDNS are the nameservers of pods with dnsPolicy ClusterFirst; ClusterDomain is their search path's.
	ClusterDNS    []string
	ClusterDomain string
	// ResolvConf is the node's resolver file (pods with dnsPolicy Default); "" means none.
	ResolvConf string
	// NodeHostsFile is the node's hosts file (/etc/hosts), which host-network pods see under the kubelet's header.
	NodeHostsFile string
	// RuntimeType prefixes container IDs in the status ("containerd://..."), from the runtime's version.
	RuntimeType string
	// LogRotation is the container log policy; a zero MaxSize turns rotation off.
	LogRotation LogRotation
	// ResyncInterval is how often each worker compares desired and actual state without being told to.
	ResyncInterval time.Duration
	// HousekeepingInterval is how often the runtime is searched for sandboxes of pods that no longer exist.
	HousekeepingInterval time.Duration
}

// PodCgroups is what the pod manager needs of the node's pod cgroup tree.
type PodCgroups interface {
	// PodPath is the pod's cgroup, its sandbox's cgroup parent.
	PodPath(pod *corev1.Pod) string
	// EnsurePod creates the pod's cgroup, sized by its requests and limits.
	EnsurePod(pod *corev1.Pod) (string, error)
	// RemovePod removes the cgroup of the pod with this UID once nothing runs in it.
	RemovePod(uid string) error
	// UpdateQOS resizes the QoS class cgroups for the pods that run.
	UpdateQOS(pods []*corev1.Pod) error
}

// Sources are the cached API objects the pod manager reads; it never lists them from the API server.
type Sources struct {
	// Pods are the Pods bound to this node.
	Pods corelisters.PodLister
	// Services give the pods' service environment variables; nil means none.
	Services corelisters.ServiceLister
	// Node returns this node's Node object, nil while it is not known.
	Node func() *corev1.Node
	// Static are the pods of the manifest directory; nil when there is none.
	Static StaticPods
	// Objects are the ConfigMaps and Secrets the pods use; nil when the node has none to give.
	Objects MountedObjects
	// Status is where pod status goes; nil means the API server, through the manager's client.
	Status StatusSink
}

// MountedObjects gives the ConfigMaps and Secrets that pods use (volumes, environment, image pull secrets),
// each on behalf of a pod; Release says the pod needs none any more. source.ObjectWatches is one for the
// API server.
type MountedObjects interface {
	ConfigMap(ctx context.Context, user types.UID, namespace, name string) (*corev1.ConfigMap, error)
	Secret(ctx context.Context, user types.UID, namespace, name string) (*corev1.Secret, error)
	Release(user types.UID)
}

// noObjects are the objects of a node that has none: every one is missing.
type noObjects struct{}

func (noObjects) ConfigMap(_ context.Context, _ types.UID, _, name string) (*corev1.ConfigMap, error) {
	return nil, apierrors.NewNotFound(corev1.Resource("configmaps"), name)
}

func (noObjects) Secret(_ context.Context, _ types.UID, _, name string) (*corev1.Secret, error) {
	return nil, apierrors.NewNotFound(corev1.Resource("secrets"), name)
}

func (noObjects) Release(types.UID) {}

// Manager runs one worker per Pod.
type Manager struct {
	cfg      Config
	runtime  Runtime
	client   kubernetes.Interface
	pods     corelisters.PodLister
	services corelisters.ServiceLister
	static   StaticPods
	node     func() *corev1.Node
	recorder record.EventRecorder
	status   StatusSink
	// cgroups is nil when pods run without pod-level cgroups (cgroupsPerQOS off).
	cgroups PodCgroups
	// pullSlots and sandboxSlots bound the image pulls and the sandbox creations in flight.
	pullSlots, sandboxSlots limiter
	// mirrorKick asks for the mirror pods to be checked now.
	mirrorKick chan struct{}
	// objects are the ConfigMaps and Secrets that pods use.
	objects MountedObjects
	// appArmorHost says why the host cannot enforce AppArmor profiles, nil when it can.
	appArmorHost error
	// rtcache is the runtime state of the node's pods, relisted every second; workers read it.
	rtcache *runtimeCache
	metrics *metrics

	// starting counts the pods being started, for EventSink.
	starting *startingPods

	mu      sync.Mutex
	workers map[types.UID]*worker
	// evictions holds the pods being evicted for node pressure.
	evictions map[types.UID]eviction
	// logRemovals holds when the logs of removed pods are due for removal, by pod UID.
	logRemovals map[string]time.Time
	wg          sync.WaitGroup
}

// New returns a manager; call Run, and feed it Pod changes with Update.
// cgroups may be nil: pods then run in the runtime's default cgroup.
func New(cfg Config, runtime Runtime, cgroups PodCgroups, client kubernetes.Interface, sources Sources,
	recorder record.EventRecorder) *Manager {
	m := &Manager{cfg: cfg, runtime: runtime, cgroups: cgroups, client: client, pods: sources.Pods,
		services: sources.Services, static: sources.Static, node: sources.Node, recorder: recorder, workers: map[types.UID]*worker{}, evictions: map[types.UID]eviction{},
		logRemovals: map[string]time.Time{},
		mirrorKick:  make(chan struct{}, 1), objects: sources.Objects, appArmorHost: appArmorHostError(), starting: newStartingPods()}
	m.pullSlots, m.sandboxSlots = newLimiter(cfg.MaxParallelImagePulls), newLimiter(cfg.MaxParallelSandboxes)
	m.metrics = newMetrics()
	m.rtcache = newRuntimeCache(runtime, cfg.NodeName, m.pokeWorker, m.metrics)
	if m.objects == nil {
		m.objects = noObjects{}
	}
	if m.status = sources.Status; m.status == nil {
		m.status = APIStatus{Client: client}
	}
	return m
}

// allocatable is the node's allocatable resources, what the downward API reports for unset limits.
func (m *Manager) allocatable() corev1.ResourceList {
	if n := m.node(); n != nil {
		return n.Status.Allocatable
	}
	return nil
}

// Run adopts what the runtime already runs, then cleans up orphans periodically, until ctx ends; it returns
// after every worker has stopped.
func (m *Manager) Run(ctx context.Context) {
	m.wg.Add(3)
	go func() { defer m.wg.Done(); m.rtcache.run(ctx) }()
	go func() { defer m.wg.Done(); m.runMirrorPods(ctx) }()
	go func() { defer m.wg.Done(); m.runContainerEvents(ctx) }()
	if m.cfg.LogRotation.MaxSize > 0 {
		m.wg.Add(1)
		go func() { defer m.wg.Done(); m.runLogRotation(ctx) }()
	}
	ticker := time.NewTicker(m.cfg.HousekeepingInterval)
	defer ticker.Stop()
	for {
		m.housekeeping(ctx)
		select {
		case <-ctx.Done():
			m.wg.Wait()
			return
		case <-ticker.C:
		}
	}
}

// Update tells the worker of pod that something changed; it starts the worker if there is none. For a
// mirror pod, the mirror pods are checked and its static pod's worker is told (to write its status).
func (m *Manager) Update(ctx context.Context, pod *corev1.Pod) {
	key := types.NamespacedName{Namespace: pod.Namespace, Name: pod.Name}
	if !source.IsMirrorPod(pod) {
		m.dispatch(ctx, pod.UID, key)
		return
	}
	m.kickMirrorPods()
	if m.static != nil {
		if static, ok := m.static.Get(key.Namespace, key.Name); ok {
			m.dispatch(ctx, static.UID, key)
		}
	}
}

// StaticPodsChanged starts workers for new static pods, tells every worker to look again (so those of
// removed static pods stop theirs) and brings the mirror pods up to date.
func (m *Manager) StaticPodsChanged(ctx context.Context) {
	for _, pod := range m.static.List() {
		m.Update(ctx, pod)
	}
	m.mu.Lock()
	for _, w := range m.workers {
		w.poke()
	}
	m.mu.Unlock()
	m.kickMirrorPods()
}

func (m *Manager) kickMirrorPods() {
	select {
	case m.mirrorKick <- struct{}{}:
	default:
	}
}

// runMirrorPods keeps the mirror pods in line with the static pods, when told and periodically.
func (m *Manager) runMirrorPods(ctx context.Context) {
	ticker := time.NewTicker(m.cfg.HousekeepingInterval)
	defer ticker.Stop()
	for {
		m.syncMirrorPods(ctx)
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		case <-m.mirrorKick:
		}
	}
}

func (m *Manager) dispatch(ctx context.Context, uid types.UID, key types.NamespacedName) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if ctx.Err() != nil {
		return
	}
	w, ok := m.workers[uid]
	if !ok {
		w = newWorker(m, uid, key)
		w.starting = true
		m.starting.add()
		m.workers[uid] = w
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			w.run(ctx)
			m.rtcache.forget(uid)
			m.objects.Release(uid)
			m.mu.Lock()
			delete(m.workers, uid)
			delete(m.evictions, uid)
			m.mu.Unlock()
		}()
	}
	w.poke()
}

// housekeeping starts a worker for every pod known to the cache or the runtime that has none: the cache
// side covers pods present at start-up, the runtime side covers pods deleted while the agent was down.
func (m *Manager) housekeeping(ctx context.Context) {
	apiPods, err := m.pods.List(everything())
	if err != nil {
		klog.ErrorS(err, "Unable to list pods from the cache")
	}
	var pods []*corev1.Pod
	for _, pod := range apiPods {
		if !source.IsMirrorPod(pod) {
			pods = append(pods, pod)
		}
	}
	if m.static != nil {
		pods = append(pods, m.static.List()...)
	}
	for _, pod := range pods {
		m.Update(ctx, pod)
	}
	if m.cgroups != nil {
		if err := m.cgroups.UpdateQOS(pods); err != nil {
			klog.ErrorS(err, "Unable to update the QoS cgroups")
		}
	}
	sandboxes, err := m.runtime.ListPodSandbox(ctx, &runtimeapi.PodSandboxFilter{
		LabelSelector: map[string]string{LabelNode: m.cfg.NodeName}})
	if err != nil {
		klog.ErrorS(err, "Unable to list pod sandboxes")
		return
	}
	for _, sb := range sandboxes {
		md := sb.GetMetadata()
		m.dispatch(ctx, types.UID(md.GetUid()), types.NamespacedName{Namespace: md.GetNamespace(), Name: md.GetName()})
	}
	m.removeOrphanedPodFiles()
	m.scheduleUnknownPodLogs()
	m.removeExpiredLogs(time.Now())
	if err := m.removeDanglingLinks(); err != nil {
		klog.ErrorS(err, "Unable to remove dead container log links")
	}
}

// removeOrphanedPodFiles removes the files of pods that no worker owns, after every known pod got one
// above: what an agent stopped in the middle of removing a pod left behind (the kubelet's orphaned pod
// directory cleanup).
func (m *Manager) removeOrphanedPodFiles() {
	entries, err := os.ReadDir(filepath.Join(m.cfg.RootDir, "pods"))
	if err != nil {
		if !os.IsNotExist(err) {
			klog.ErrorS(err, "Unable to list pod directories")
		}
		return
	}
	for _, e := range entries {
		if m.hasWorker(types.UID(e.Name())) {
			continue
		}
		klog.InfoS("Removing the files of an orphaned pod", "podUID", e.Name())
		err := m.removePodFiles(e.Name())
		if err == nil {
			err = m.removePodLogs(e.Name()) // long gone: no reader is still behind
		}
		if err != nil {
			klog.ErrorS(err, "Unable to remove an orphaned pod's files", "podUID", e.Name())
		}
	}
}

// removePodFiles removes what the agent keeps of a pod that is gone for good, its logs aside: its volumes
// (unmounted first, and nothing is removed while one stays mounted), its directory and its cgroup.
func (m *Manager) removePodFiles(uid string) error {
	if err := m.tearDownVolumes(uid); err != nil {
		return fmt.Errorf("tearing down volumes: %w", err)
	}
	errs := []error{os.RemoveAll(m.podDir(uid))}
	if m.cgroups != nil {
		errs = append(errs, m.cgroups.RemovePod(uid))
	}
	return errors.Join(errs...)
}

// logRetention is how long a removed pod's logs stay, so log shippers read them to the end; the kubelet's
// container garbage collection, which removes them, runs every minute.
const logRetention = time.Minute

// scheduleLogRemoval has housekeeping remove the pod's log directory once logRetention has passed.
func (m *Manager) scheduleLogRemoval(uid string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.logRemovals[uid] = time.Now().Add(logRetention)
}

// scheduleUnknownPodLogs has the log directories of pods that no worker owns removed after logRetention,
// after every known pod got a worker above: those of pods removed while the agent was down, or run by
// another agent before it. The kubelet's container garbage collection does the same; left there, each of
// their files would also keep a follower of the log shipper.
func (m *Manager) scheduleUnknownPodLogs() {
	entries, err := os.ReadDir(m.cfg.PodLogsDir)
	if err != nil {
		if !os.IsNotExist(err) {
			klog.ErrorS(err, "Unable to list the pod logs directory")
		}
		return
	}
	for _, e := range entries {
		i := strings.LastIndexByte(e.Name(), '_') // <namespace>_<name>_<uid>
		uid := e.Name()[i+1:]
		if !e.IsDir() || i < 0 || m.hasWorker(types.UID(uid)) {
			continue
		}
		m.mu.Lock()
		if _, scheduled := m.logRemovals[uid]; !scheduled {
			klog.V(2).InfoS("Removing the logs of a pod this node does not run", "dir", e.Name(), "after", logRetention)
			m.logRemovals[uid] = time.Now().Add(logRetention)
		}
		m.mu.Unlock()
	}
}

// removeExpiredLogs removes the log directories whose retention has passed, but those of a pod that has a
// worker again (its UID came back from the runtime or the API server).
func (m *Manager) removeExpiredLogs(now time.Time) {
	m.mu.Lock()
	var due []string
	for uid, at := range m.logRemovals {
		if now.After(at) {
			delete(m.logRemovals, uid)
			if _, running := m.workers[types.UID(uid)]; !running {
				due = append(due, uid)
			}
		}
	}
	m.mu.Unlock()
	for _, uid := range due {
		if err := m.removePodLogs(uid); err != nil {
			klog.ErrorS(err, "Unable to remove a removed pod's logs", "podUID", uid)
		}
	}
}

// removePodLogs removes the pod's directory under the pod logs directory (<namespace>_<name>_<uid>), and
// the links to its containers' logs.
func (m *Manager) removePodLogs(uid string) error {
	dirs, err := filepath.Glob(filepath.Join(m.cfg.PodLogsDir, "*_"+uid))
	if err != nil {
		return err
	}
	var errs []error
	for _, dir := range dirs {
		errs = append(errs, m.removeLinksInto(dir), os.RemoveAll(dir))
	}
	return errors.Join(errs...)
}

// RunningPods are the pods the runtime runs for this node, from the runtime cache (no CRI call): each with
// a ready sandbox and its running containers, as the kubelet's /runningpods/ shows them.
func (m *Manager) RunningPods() []*corev1.Pod { return m.rtcache.runningPods() }

// RegisterProbeMetrics adds the kubelet's prober_probe_total and prober_probe_duration_seconds to reg (the
// kubelet serves them apart, on /metrics/probes).
func (m *Manager) RegisterProbeMetrics(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.metrics.probes, m.metrics.probeDuration} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("registering probe metrics: %w", err)
		}
	}
	return nil
}

// RegisterMetrics adds the kubelet's pod metrics (kubelet_running_pods, kubelet_running_containers,
// kubelet_pod_worker_duration_seconds, kubelet_pod_start_duration_seconds, kubelet_pod_start_sli_duration_seconds)
// to reg.
func (m *Manager) RegisterMetrics(reg prometheus.Registerer) error {
	if err := m.metrics.register(reg); err != nil {
		return fmt.Errorf("registering pod metrics: %w", err)
	}
	return nil
}

// RunningContainer is one running container of the node's pods.
type RunningContainer struct {
	ID, Name, Pod, Namespace, PodUID string
	StartedAt                        time.Time
}

// RunningContainers are the node's running containers, from the runtime cache (no CRI call).
func (m *Manager) RunningContainers() []RunningContainer {
	var out []RunningContainer
	for _, st := range m.rtcache.runningContainers() {
		out = append(out, RunningContainer{ID: st.Id, Name: st.GetMetadata().GetName(), Pod: st.Labels[cri.LabelPodName],
			Namespace: st.Labels[cri.LabelPodNamespace], PodUID: st.Labels[cri.LabelPodUID], StartedAt: time.Unix(0, st.StartedAt)})
	}
	return out
}

// Healthy is the kubelet's node health as /healthz and the systemd watchdog see it: the relist of the runtime
// cache (its PLEG) ran within the last 3 minutes.
func (m *Manager) Healthy() error { return m.rtcache.healthy() }
