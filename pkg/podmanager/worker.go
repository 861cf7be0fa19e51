package podmanager

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"

	"github.com/nodeagent/nodeagent/pkg/cri"
	"github.com/nodeagent/nodeagent/pkg/resolvconf"
	"github.com/nodeagent/nodeagent/pkg/source"
)

// Back-off for restarts and image pulls, as the kubelet's: 10 s doubling to 5 minutes.
const (
	initialBackoff = 10 * time.Second
	maxBackoff     = 300 * time.Second
	// a container that ran this long without failing starts its back-off from the beginning again
	backoffResetAfter = 10 * time.Minute
)

// sandboxBackoffKey spaces out retries of a failing RunPodSandbox; container names cannot contain ':'.
const sandboxBackoffKey = "sandbox:"

var errSandboxBackoff = errors.New("waiting out the back-off after a failed sandbox creation")

const runtimeRunning = runtimeapi.ContainerState_CONTAINER_RUNNING

func everything() labels.Selector { return labels.Everything() }

// worker converges one Pod. Only its own goroutine touches its fields, except the updates channel.
type worker struct {
	m       *Manager
	uid     types.UID
	key     types.NamespacedName
	updates chan struct{}
	// runtime is the manager's runtime with each change to this pod marking its runtime cache entry stale.
	runtime changingRuntime

	// waiting holds why a container has not been created yet (image pull failures, back-off).
	waiting map[string]*corev1.ContainerStateWaiting
	// backoff holds per container (and per image, keyed "image:"+name) when the next attempt may happen.
	backoff map[string]backoffState
	// probers holds the running probes, keyed by proberKey.
	probers map[string]*prober
	// volumes are the pod's volumes as set up by the current sync, by name.
	volumes map[string]hostVolume
	// projected holds when each ConfigMap/Secret volume directory was last refreshed.
	projected map[string]time.Time
	// warnedVolumes holds the unsupported volumes already reported by an event.
	warnedVolumes map[string]bool
	// tokens holds the ServiceAccount tokens of projected volumes, by volume/path.
	tokens map[string]serviceAccountToken
	// last is the pod as the previous sync saw it.
	last *corev1.Pod
	// sandbox is the config of the pod's current sandbox, computed when it was created (or adopted): the
	// containers created in it later get the same one, and the node's resolv.conf is not reread each sync.
	sandbox struct {
		id     string
		config *runtimeapi.PodSandboxConfig
	}
	// written is the status this worker last wrote and the resourceVersion of the Pod it was written over:
	// while the Pod cache still holds that Pod, written is the Pod's status.
	written struct {
		status *corev1.PodStatus
		over   string
	}
	// killed says why, once the node stopped the pod's containers for good (eviction, active deadline).
	killed *podKill
	// firstSeen is when the worker started; pulling is the time its image pulls took; started is set once
	// the pod's start was counted (kubelet_pod_start_*); syncs counts the syncs done.
	firstSeen time.Time
	pulling   time.Duration
	started   bool
	syncs     int
	// starting is set while the pod counts among the manager's starting pods.
	starting bool
}

type backoffState struct {
	delay time.Duration
	until time.Time
}

func newWorker(m *Manager, uid types.UID, key types.NamespacedName) *worker {
	return &worker{m: m, uid: uid, key: key, updates: make(chan struct{}, 1),
		runtime: changingRuntime{Runtime: m.runtime, cache: m.rtcache, uid: uid}, firstSeen: time.Now(),
		waiting: map[string]*corev1.ContainerStateWaiting{}, backoff: map[string]backoffState{},
		probers: map[string]*prober{}, projected: map[string]time.Time{}, warnedVolumes: map[string]bool{},
		tokens: map[string]serviceAccountToken{}}
}

// endStart says the pod no longer counts among the manager's starting pods (eventhold.go).
func (w *worker) endStart() {
	if w.starting {
		w.starting = false
		w.m.starting.done()
	}
}

// poke asks for a sync without blocking; pokes that arrive while one is pending merge into it.
func (w *worker) poke() {
	select {
	case w.updates <- struct{}{}:
	default:
	}
}

// firstRetry is the wait before a failed sync is tried again; it doubles with each failure in a row, up to
// the resync interval. A pod's sync can fail for a moment (a busy API server refusing a TokenRequest), and
// waiting the whole interval made such pods the last of a burst of 110.
const firstRetry = 100 * time.Millisecond

func (w *worker) run(ctx context.Context) {
	ticker := time.NewTicker(w.m.cfg.ResyncInterval)
	defer ticker.Stop()
	retry := time.NewTimer(0)
	retry.Stop()
	defer retry.Stop()
	var retryAfter time.Duration
	defer w.stopProbers()
	defer w.endStart()
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.updates:
		case <-ticker.C:
		case <-retry.C:
		}
		operation := w.operation()
		began := time.Now()
		done, err := w.sync(ctx)
		w.syncs++
		w.m.metrics.workerDuration.WithLabelValues(operation).Observe(time.Since(began).Seconds())
		if err == nil || time.Since(w.firstSeen) > maxStartHold {
			w.endStart()
		}
		if err != nil && ctx.Err() == nil {
			klog.ErrorS(err, "Error syncing pod, will retry", "pod", w.key, "podUID", w.uid)
			retryAfter = min(max(2*retryAfter, firstRetry), w.m.cfg.ResyncInterval)
			retry.Reset(retryAfter)
		} else {
			retryAfter = 0
		}
		if done {
			klog.V(2).InfoS("Pod worker finished", "pod", w.key, "podUID", w.uid)
			return
		}
	}
}

// operation is the kubelet's operation_type of the next sync: create for the first, kill while the pod is
// being deleted, sync otherwise.
func (w *worker) operation() string {
	switch {
	case w.syncs == 0:
		return "create"
	case w.last != nil && w.last.DeletionTimestamp != nil:
		return "kill"
	}
	return "sync"
}

// sync does one round of convergence, top-down: what the pod needs now (nextAction), doing it, then what the
// runtime shows (observe), the probers that follow from it, and the status written once. A pod being deleted
// goes through terminate (terminate.go) instead; done means the Pod is gone and nothing of it is left.
func (w *worker) sync(ctx context.Context) (done bool, err error) {
	pod, err := w.m.getPod(w.key)
	if apierrors.IsNotFound(err) || (err == nil && pod.UID != w.uid) {
		return w.removeGone(ctx)
	}
	if err != nil {
		return false, err
	}
	w.last = pod
	if pod.DeletionTimestamp != nil {
		w.stopProbers() // a pod shutting down is not probed (no Unhealthy noise, no liveness restarts)
		return w.terminate(ctx, pod)
	}

	var sandboxID *string
	var actErr error
	switch action := w.nextAction(pod); action.kind {
	case actionReject:
		return false, w.reject(ctx, pod, action.reason, action.message) // its status is the rejection
	case actionStopFinished:
		// A finished pod keeps its containers' records but runs nothing and holds no emptyDir; its status
		// is final.
		w.stopProbers()
		if err := w.stopSandboxes(ctx); err != nil {
			return false, err
		}
		return false, w.releaseEmptyDirs()
	case actionKill:
		if action.kill.announce {
			w.m.recorder.Event(pod, corev1.EventTypeNormal, action.kill.reason, action.kill.message)
		}
		actErr = w.kill(ctx, action.kill)
	case actionRun:
		sandboxID, actErr = w.converge(ctx, pod)
		if pod, err = w.m.getPod(w.key); err != nil { // the status goes onto the Pod as it is now
			return false, errors.Join(actErr, err)
		}
	}

	o, err := w.observe(ctx, pod, sandboxID)
	if err != nil {
		return false, errors.Join(actErr, err)
	}
	w.syncProbers(pod, o)
	return false, errors.Join(actErr, w.writeStatus(ctx, pod, o))
}

// removeGone removes what is left of a Pod that was finalised or force-deleted: nothing may keep running
// for it. A static pod whose manifest went away still gets its grace period and preStop hooks, as with the
// kubelet.
func (w *worker) removeGone(ctx context.Context) (done bool, err error) {
	last, grace := (*corev1.Pod)(nil), int64(0)
	if w.last != nil && source.IsStaticPod(w.last) {
		last, grace = w.last, terminationGrace(w.last)
	}
	if err := w.removeAll(ctx, last, grace); err != nil {
		return false, err
	}
	w.removePodDir()
	return true, nil
}

// podAction is what a sync does to a pod that is not being deleted.
type podAction struct {
	kind            actionKind
	kill            podKill // actionKill
	reason, message string  // actionReject
}

type actionKind int

const (
	// actionRun converges the pod: volumes, sandbox, containers.
	actionRun actionKind = iota
	// actionKill stops the pod's containers for good: an eviction, or its active deadline passed.
	actionKill
	// actionStopFinished stops what a pod that Succeeded or Failed still holds.
	actionStopFinished
	// actionReject fails a pod that admission refuses, before anything of it runs.
	actionReject
)

// nextAction decides what the pod needs, from the Pod and the node's own decisions (an eviction).
func (w *worker) nextAction(pod *corev1.Pod) podAction {
	finished := pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed
	if ev, ok := w.m.evictionOf(w); ok && pod.Status.Phase != corev1.PodFailed {
		return podAction{kind: actionKill, kill: podKill{reason: "Evicted", message: ev.message, disruption: true, grace: ev.grace}}
	}
	if activeDeadlinePassed(pod, time.Now()) && !finished {
		return podAction{kind: actionKill, kill: podKill{reason: "DeadlineExceeded", message: deadlineMessage,
			grace: terminationGrace(pod), announce: true}}
	}
	if finished {
		return podAction{kind: actionStopFinished}
	}
	if pod.Status.StartTime == nil {
		// Admission, once, before anything of the pod runs.
		reject := func(reason, message string) podAction {
			return podAction{kind: actionReject, reason: reason, message: message}
		}
		if reason, message := osAdmission(pod); reason != "" {
			return reject(reason, message)
		}
		if err := sysctlsAllowed(pod, w.m.cfg.AllowedUnsafeSysctls); err != nil {
			return reject("SysctlForbidden", err.Error())
		}
		if err := appArmorAdmission(pod, w.m.appArmorHost); err != nil {
			return reject("AppArmor", "Cannot enforce AppArmor: "+err.Error())
		}
	}
	return podAction{kind: actionRun}
}

// converge sets up the pod's volumes and sandbox and starts its containers in order; it returns the
// sandbox's ID, nil when the pod has no sandbox (yet, or in back-off).
func (w *worker) converge(ctx context.Context, pod *corev1.Pod) (*string, error) {
	var err error
	if w.volumes, err = w.setUpVolumes(ctx, pod); err != nil {
		return nil, err
	}
	sandboxID, sandboxConfig, err := w.ensureSandbox(ctx, pod)
	if errors.Is(err, errSandboxBackoff) {
		return nil, nil
	}
	if err != nil {
		w.m.recorder.Eventf(pod, corev1.EventTypeWarning, "FailedCreatePodSandBox", "Failed to create pod sandbox: %v", err)
		return nil, err
	}
	if w.runInitContainers(ctx, pod, sandboxID, sandboxConfig) {
		for i := range pod.Spec.Containers {
			c := &pod.Spec.Containers[i]
			restart := func(exitCode int32) bool { return containerShouldRestart(c, &pod.Spec, exitCode) }
			w.ensureContainer(ctx, pod, c, restart, sandboxID, sandboxConfig)
		}
	}
	w.runEphemeralContainers(ctx, pod, sandboxID, sandboxConfig)
	return &sandboxID, nil
}

// sandboxes are the runtime's sandboxes of this pod, newest first, from the runtime cache.
func (w *worker) sandboxes(ctx context.Context) ([]*runtimeapi.PodSandbox, error) {
	p, err := w.m.rtcache.get(ctx, w.uid)
	if err != nil {
		return nil, err
	}
	return p.sandboxes, nil
}

// containers are the runtime's containers of this pod (every sandbox), newest first, from the runtime cache.
func (w *worker) containers(ctx context.Context) ([]*runtimeapi.Container, error) {
	p, err := w.m.rtcache.get(ctx, w.uid)
	if err != nil {
		return nil, err
	}
	return p.containers, nil
}

// containerStatus is the runtime's status of the pod's container with id, from the runtime cache.
func (w *worker) containerStatus(ctx context.Context, id string) (*runtimeapi.ContainerStatus, error) {
	p, err := w.m.rtcache.get(ctx, w.uid)
	if err != nil {
		return nil, err
	}
	if st := p.statuses[id]; st != nil {
		return st, nil
	}
	return nil, fmt.Errorf("container %s is not in the runtime's state of the pod", id)
}

// ensureSandbox returns the pod's ready sandbox, creating one (and clearing dead ones) when there is none.
func (w *worker) ensureSandbox(ctx context.Context, pod *corev1.Pod) (string, *runtimeapi.PodSandboxConfig, error) {
	list, err := w.sandboxes(ctx)
	if err != nil {
		return "", nil, err
	}
	var attempt uint32
	if len(list) > 0 {
		attempt = list[0].GetMetadata().GetAttempt()
		if list[0].State == runtimeapi.PodSandboxState_SANDBOX_READY {
			if w.sandbox.id == list[0].Id {
				return list[0].Id, w.sandbox.config, nil
			}
			config, err := w.sandboxConfig(pod, attempt)
			if err != nil {
				return "", nil, err
			}
			w.sandbox.id, w.sandbox.config = list[0].Id, config
			return list[0].Id, config, nil
		}
		// The sandbox died (its network or pause process is gone): start over in a new one, as the kubelet does.
		klog.InfoS("Pod sandbox is not ready, creating a new one", "pod", w.key, "sandbox", list[0].Id)
		if err := w.removeAll(ctx, pod, 0); err != nil {
			return "", nil, err
		}
		attempt++
	}
	config, err := w.sandboxConfig(pod, attempt)
	if err != nil {
		return "", nil, err
	}
	if err := mkdirAll(config.LogDirectory); err != nil {
		return "", nil, err
	}
	if w.inBackoff(sandboxBackoffKey, 0) {
		return "", nil, errSandboxBackoff
	}
	if w.m.cgroups != nil {
		if _, err := w.m.cgroups.EnsurePod(pod); err != nil {
			return "", nil, err
		}
	}
	id, err := w.m.runPodSandbox(ctx, w.runtime, config)
	if err != nil {
		return "", nil, fmt.Errorf("RunPodSandbox: %w", err)
	}
	delete(w.backoff, sandboxBackoffKey)
	w.sandbox.id, w.sandbox.config = id, config
	klog.InfoS("Created pod sandbox", "pod", w.key, "sandbox", id)
	return id, config, nil
}

func (w *worker) sandboxConfig(pod *corev1.Pod, attempt uint32) (*runtimeapi.PodSandboxConfig, error) {
	sbLabels := map[string]string{}
	for k, v := range pod.Labels {
		sbLabels[k] = v
	}
	sbLabels[cri.LabelPodName] = pod.Name
	sbLabels[cri.LabelPodNamespace] = pod.Namespace
	sbLabels[cri.LabelPodUID] = string(pod.UID)
	sbLabels[LabelNode] = w.m.cfg.NodeName

	// On the host network the pod has the node's UTS namespace and so its name.
	var hostname string
	if !pod.Spec.HostNetwork {
		name, domain, err := podHostnameAndDomain(pod, w.m.cfg.ClusterDomain)
		if err != nil {
			return nil, err
		}
		if hostname, err = kernelHostname(pod, name, domain); err != nil {
			return nil, err
		}
	}
	var ports []*runtimeapi.PortMapping
	for _, c := range pod.Spec.Containers {
		for _, p := range c.Ports {
			if p.HostPort == 0 {
				continue
			}
			ports = append(ports, &runtimeapi.PortMapping{Protocol: protocol(p.Protocol),
				ContainerPort: p.ContainerPort, HostPort: p.HostPort, HostIp: p.HostIP})
		}
	}
	config := &runtimeapi.PodSandboxConfig{
		Metadata: &runtimeapi.PodSandboxMetadata{Name: pod.Name, Namespace: pod.Namespace, Uid: string(pod.UID),
			Attempt: attempt},
		Hostname:     hostname,
		LogDirectory: w.m.podLogDir(pod.Namespace, pod.Name, string(pod.UID)),
		DnsConfig:    w.dnsConfig(pod),
		PortMappings: ports,
		Labels:       sbLabels,
		Annotations:  pod.Annotations,
		Linux:        &runtimeapi.LinuxPodSandboxConfig{SecurityContext: w.sandboxSecurityContext(pod), Sysctls: sysctls(pod)},
	}
	if w.m.cgroups != nil {
		config.Linux.CgroupParent = w.m.cgroups.PodPath(pod)
	}
	return config, nil
}

// namespaceOptions says which of the pod's namespaces are the node's and which the pod's own.
func (w *worker) namespaceOptions(pod *corev1.Pod) *runtimeapi.NamespaceOption {
	network, ipc, pid := runtimeapi.NamespaceMode_POD, runtimeapi.NamespaceMode_POD, runtimeapi.NamespaceMode_CONTAINER
	if pod.Spec.HostNetwork {
		network = runtimeapi.NamespaceMode_NODE
	}
	if pod.Spec.HostIPC {
		ipc = runtimeapi.NamespaceMode_NODE
	}
	if pod.Spec.HostPID {
		pid = runtimeapi.NamespaceMode_NODE
	} else if isTrue(pod.Spec.ShareProcessNamespace) {
		pid = runtimeapi.NamespaceMode_POD
	}
	return &runtimeapi.NamespaceOption{Network: network, Ipc: ipc, Pid: pid}
}

// dnsConfig is the resolver the kubelet gives a pod. The node's resolv.conf is read for each sandbox, as the
// kubelet does, so a change to it reaches new pods; an unreadable one is an Event and no host part.
func (w *worker) dnsConfig(pod *corev1.Pod) *runtimeapi.DNSConfig {
	host, err := resolvconf.Read(w.m.cfg.ResolvConf)
	if err != nil {
		w.m.recorder.Eventf(pod, corev1.EventTypeWarning, "DNSConfigForming", "Could not read the node's resolver config: %v", err)
	}
	return podDNSConfig(pod, w.m.cfg.ClusterDNS, w.m.cfg.ClusterDomain, host)
}

func protocol(p corev1.Protocol) runtimeapi.Protocol {
	switch p {
	case corev1.ProtocolUDP:
		return runtimeapi.Protocol_UDP
	case corev1.ProtocolSCTP:
		return runtimeapi.Protocol_SCTP
	}
	return runtimeapi.Protocol_TCP
}

// containerOutcome is where one container stands after ensureContainer.
type containerOutcome int

const (
	outcomePending   containerOutcome = iota // not running yet: pulling, creating, backing off, failing
	outcomeStarting                          // running, but its startup probe has not succeeded yet
	outcomeRunning                           // running (and started)
	outcomeSucceeded                         // exited 0 and will not be restarted
	outcomeFailed                            // exited non-zero and will not be restarted
)

// restartRule says whether a container that exited with exitCode runs again.
type restartRule func(exitCode int32) bool

func alwaysRestart(int32) bool { return true }

// runInitContainers runs the pod's init containers in order and reports whether they let the app containers
// start: each regular init container must have succeeded, each sidecar (restartPolicy Always) must be running
// and, with a startup probe, started (as the kubelet, which starts the next container only then).
// A regular init container that fails is retried unless the pod's restartPolicy is Never.
func (w *worker) runInitContainers(ctx context.Context, pod *corev1.Pod, sandboxID string,
	sandboxConfig *runtimeapi.PodSandboxConfig) bool {
	initRestart := func(exitCode int32) bool {
		return exitCode != 0 && pod.Spec.RestartPolicy != corev1.RestartPolicyNever
	}
	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		if isSidecar(c) {
			if w.ensureContainer(ctx, pod, c, alwaysRestart, sandboxID, sandboxConfig) != outcomeRunning {
				return false
			}
			continue
		}
		if w.ensureContainer(ctx, pod, c, initRestart, sandboxID, sandboxConfig) != outcomeSucceeded {
			return false
		}
	}
	return true
}

func isSidecar(c *corev1.Container) bool {
	return c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways
}

// ensureContainer makes the spec'd container run in the sandbox, restarting it after an exit when restart
// says so (with back-off), and reports where it stands. Failures are logged and shown in the status.
func (w *worker) ensureContainer(ctx context.Context, pod *corev1.Pod, c *corev1.Container, restart restartRule,
	sandboxID string, sandboxConfig *runtimeapi.PodSandboxConfig) containerOutcome {
	outcome, err := w.ensureContainerOnce(ctx, pod, c, restart, sandboxID, sandboxConfig)
	if err != nil {
		klog.ErrorS(err, "Container not running", "pod", w.key, "container", c.Name)
	}
	return outcome
}

func (w *worker) ensureContainerOnce(ctx context.Context, pod *corev1.Pod, c *corev1.Container, restart restartRule,
	sandboxID string, sandboxConfig *runtimeapi.PodSandboxConfig) (containerOutcome, error) {
	all, err := w.containers(ctx)
	if err != nil {
		return outcomePending, err
	}
	var latest *runtimeapi.Container
	for _, ct := range all {
		if ct.PodSandboxId == sandboxID && ct.GetMetadata().GetName() == c.Name {
			latest = ct
			break
		}
	}
	attempt := uint32(0)
	if latest != nil {
		switch latest.State {
		case runtimeapi.ContainerState_CONTAINER_RUNNING:
			kind, failed := w.probeFailed(c.Name, latest.Id)
			if !failed && !w.probeOK(c.Name, latest.Id, startupProbe, c.StartupProbe) {
				return outcomeStarting, nil
			}
			if !failed {
				return outcomeRunning, nil
			}
			// Killed here, restarted (per restart rule, with back-off) by the next sync.
			w.m.recorder.Eventf(pod, corev1.EventTypeNormal, "Killing",
				"Container %s failed %s probe, will be restarted", c.Name, strings.ToLower(string(kind)))
			grace := w.preStop(ctx, pod, c.Name, latest.Id, probeKillGrace(pod, c, kind))
			if err := w.runtime.StopContainer(ctx, latest.Id, grace); err != nil {
				return outcomePending, fmt.Errorf("stopping unhealthy container: %w", err)
			}
			w.stopProber(proberKey(kind, c.Name))
			w.poke()
			return outcomePending, nil
		case runtimeapi.ContainerState_CONTAINER_CREATED:
			return w.start(ctx, pod, c, latest.Id)
		}
		st, err := w.containerStatus(ctx, latest.Id)
		if err != nil {
			return outcomePending, err
		}
		exitCode := st.GetExitCode()
		if !restart(exitCode) {
			if exitCode == 0 {
				return outcomeSucceeded, nil
			}
			return outcomeFailed, nil
		}
		if w.inBackoff(c.Name, ranFor(st)) {
			w.waiting[c.Name] = &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff",
				Message: fmt.Sprintf("back-off %s restarting failed container=%s pod=%s_%s(%s)",
					w.backoff[c.Name].delay, c.Name, pod.Name, pod.Namespace, pod.UID)}
			w.m.recorder.Eventf(pod, corev1.EventTypeWarning, "BackOff", "Back-off restarting failed container %s in pod %s", c.Name, pod.Name)
			return outcomePending, nil
		}
		attempt = latest.GetMetadata().GetAttempt() + 1
	}

	image, err := w.ensureImage(ctx, pod, c, sandboxConfig)
	if err != nil {
		return outcomePending, err
	}
	config, err := w.containerConfig(ctx, pod, c, attempt, image, sandboxID)
	if err != nil {
		w.waiting[c.Name] = &corev1.ContainerStateWaiting{Reason: "CreateContainerConfigError", Message: err.Error()}
		w.m.recorder.Eventf(pod, corev1.EventTypeWarning, "Failed", "Error: %v", err)
		return outcomePending, err
	}
	shareTargetProcesses(pod, c.Name, config, sandboxID, all)
	id, err := w.runtime.CreateContainer(ctx, sandboxID, config, sandboxConfig)
	if err != nil {
		w.waiting[c.Name] = &corev1.ContainerStateWaiting{Reason: "CreateContainerError", Message: err.Error()}
		w.m.recorder.Eventf(pod, corev1.EventTypeWarning, "Failed", "Error: %v", err)
		return outcomePending, fmt.Errorf("CreateContainer: %w", err)
	}
	w.m.recorder.Eventf(pod, corev1.EventTypeNormal, "Created", "Created container: %s", c.Name)
	created := &runtimeapi.Container{Id: id, Metadata: config.Metadata, Labels: config.Labels, CreatedAt: time.Now().UnixNano()}
	w.m.linkContainerLog(created)
	if latest != nil {
		w.removeOldContainers(ctx, append([]*runtimeapi.Container{created}, all...), time.Now())
	}
	return w.start(ctx, pod, c, id)
}

func (w *worker) start(ctx context.Context, pod *corev1.Pod, c *corev1.Container, id string) (containerOutcome, error) {
	if err := w.runtime.StartContainer(ctx, id); err != nil {
		w.waiting[c.Name] = &corev1.ContainerStateWaiting{Reason: "RunContainerError", Message: err.Error()}
		w.m.recorder.Eventf(pod, corev1.EventTypeWarning, "Failed", "Error: %v", err)
		return outcomePending, fmt.Errorf("StartContainer: %w", err)
	}
	delete(w.waiting, c.Name)
	w.m.recorder.Eventf(pod, corev1.EventTypeNormal, "Started", "Started container %s", c.Name)
	if c.Lifecycle != nil && c.Lifecycle.PostStart != nil {
		// As in the kubelet, the container does not count as running until its postStart hook returned,
		// and a failed hook kills it (to be restarted per the restart policy).
		hookCtx, cancel := context.WithTimeout(ctx, time.Duration(terminationGrace(pod)+30)*time.Second)
		err := w.runHook(hookCtx, pod, c, id, c.Lifecycle.PostStart)
		cancel()
		if err != nil {
			msg := fmt.Sprintf("PostStartHook failed: %v", err)
			w.m.recorder.Event(pod, corev1.EventTypeWarning, "FailedPostStartHook", msg)
			w.waiting[c.Name] = &corev1.ContainerStateWaiting{Reason: "PostStartHookError", Message: msg}
			if stopErr := w.runtime.StopContainer(ctx, id, minimumGrace); stopErr != nil {
				return outcomePending, fmt.Errorf("stopping container after failed postStart: %w", stopErr)
			}
			return outcomePending, errors.New(msg)
		}
	}
	if c.StartupProbe != nil {
		return outcomeStarting, nil // its prober starts with the next status
	}
	return outcomeRunning, nil
}

// ranFor is how long an exited container ran: nothing when it never started (a failed start leaves no start
// time, and must not count as a long healthy run that resets the back-off).
func ranFor(st *runtimeapi.ContainerStatus) time.Duration {
	if st.GetStartedAt() == 0 {
		return 0
	}
	return time.Unix(0, st.GetFinishedAt()).Sub(time.Unix(0, st.GetStartedAt()))
}

// inBackoff reports whether key must wait before its next attempt, and otherwise starts the next back-off
// period. ranFor resets the back-off when the last run was long and healthy.
func (w *worker) inBackoff(key string, ranFor time.Duration) bool {
	b, ok := w.backoff[key]
	now := time.Now()
	if ok && now.Before(b.until) {
		return true
	}
	switch {
	case !ok || ranFor >= backoffResetAfter:
		b.delay = initialBackoff
	case b.delay < maxBackoff:
		b.delay = min(2*b.delay, maxBackoff)
	}
	b.until = now.Add(b.delay)
	w.backoff[key] = b
	return false
}

// ensureImage makes the container's image present per its pull policy and returns the runtime's record of it.
func (w *worker) ensureImage(ctx context.Context, pod *corev1.Pod, c *corev1.Container,
	sandboxConfig *runtimeapi.PodSandboxConfig) (*runtimeapi.Image, error) {
	spec := &runtimeapi.ImageSpec{Image: c.Image, UserSpecifiedImage: c.Image}
	if c.ImagePullPolicy != corev1.PullAlways {
		st, err := w.m.runtime.ImageStatus(ctx, spec, false)
		if err != nil {
			return nil, fmt.Errorf("image status of %s: %w", c.Image, err)
		}
		if st.GetImage() != nil {
			w.m.recorder.Eventf(pod, corev1.EventTypeNormal, "Pulled", "Container image %q already present on machine", c.Image)
			return st.GetImage(), nil
		}
		if c.ImagePullPolicy == corev1.PullNever {
			msg := fmt.Sprintf("Container image %q is not present with pull policy of Never", c.Image)
			w.waiting[c.Name] = &corev1.ContainerStateWaiting{Reason: "ErrImageNeverPull", Message: msg}
			w.m.recorder.Event(pod, corev1.EventTypeWarning, "ErrImageNeverPull", msg)
			return nil, errors.New(msg)
		}
	}
	key := "image:" + c.Name
	if w.inBackoff(key, 0) {
		w.waiting[c.Name] = &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff",
			Message: fmt.Sprintf("Back-off pulling image %q", c.Image)}
		w.m.recorder.Eventf(pod, corev1.EventTypeNormal, "BackOff", "Back-off pulling image %q", c.Image)
		return nil, fmt.Errorf("back-off pulling image %q", c.Image)
	}
	w.m.recorder.Eventf(pod, corev1.EventTypeNormal, "Pulling", "Pulling image %q", c.Image)
	w.endStart() // a pull waits for a registry, not for the API server: the Events need not wait for it
	started := time.Now()
	ref, err := w.m.pullImage(ctx, spec, w.pullCredentials(ctx, pod, c.Image), sandboxConfig)
	w.pulling += time.Since(started)
	if err != nil {
		msg := fmt.Sprintf("Failed to pull image %q: %v", c.Image, err)
		w.waiting[c.Name] = &corev1.ContainerStateWaiting{Reason: "ErrImagePull", Message: msg}
		w.m.recorder.Event(pod, corev1.EventTypeWarning, "Failed", msg)
		return nil, errors.New(msg)
	}
	delete(w.backoff, key)
	w.m.recorder.Eventf(pod, corev1.EventTypeNormal, "Pulled", "Successfully pulled image %q in %s",
		c.Image, time.Since(started).Round(time.Millisecond))
	st, err := w.m.runtime.ImageStatus(ctx, &runtimeapi.ImageSpec{Image: ref}, false)
	if err != nil || st.GetImage() == nil {
		return nil, fmt.Errorf("image status of %s after pulling it: %w", ref, err)
	}
	return st.GetImage(), nil
}

func (w *worker) containerConfig(ctx context.Context, pod *corev1.Pod, c *corev1.Container, attempt uint32,
	image *runtimeapi.Image, sandboxID string) (*runtimeapi.ContainerConfig, error) {
	sc := effectiveSecurityContext(pod, c)
	user := userOf(image)
	if err := verifyRunAsNonRoot(pod, c, sc, user); err != nil {
		return nil, err
	}
	podIPs, err := w.podIPs(ctx, pod, &sandboxID)
	if err != nil {
		return nil, err
	}
	env, err := w.environment(ctx, pod, c, podAddresses{podIPs: podIPs, hostIPs: w.m.hostIPs()})
	if err != nil {
		return nil, err
	}
	var mounts []*runtimeapi.Mount
	messageMount, err := w.terminationMessageMount(c, attempt)
	if err != nil {
		return nil, err
	}
	if messageMount != nil {
		mounts = append(mounts, messageMount)
	}
	hostsMount, err := w.etcHostsMount(pod, c, podIPs)
	if err != nil {
		return nil, err
	}
	if hostsMount != nil {
		mounts = append(mounts, hostsMount)
	}
	volumes, err := volumeMounts(c, w.volumes, env.values)
	if err != nil {
		return nil, err
	}
	mounts = append(mounts, volumes...)
	return &runtimeapi.ContainerConfig{
		Metadata:   &runtimeapi.ContainerMetadata{Name: c.Name, Attempt: attempt},
		Image:      &runtimeapi.ImageSpec{Image: image.GetId(), UserSpecifiedImage: c.Image},
		Command:    env.expandAll(c.Command),
		Args:       env.expandAll(c.Args),
		WorkingDir: c.WorkingDir,
		Envs:       env.keyValues(),
		Labels: map[string]string{
			cri.LabelPodName: pod.Name, cri.LabelPodNamespace: pod.Namespace, cri.LabelPodUID: string(pod.UID),
			cri.LabelContainerName: c.Name,
		},
		Annotations: map[string]string{cri.AnnotationRestartCount: strconv.Itoa(int(attempt))},
		LogPath:     containerLogPath(c.Name, attempt),
		Mounts:      mounts,
		Stdin:       c.Stdin,
		StdinOnce:   c.StdinOnce,
		Tty:         c.TTY,
		Linux: &runtimeapi.LinuxContainerConfig{
			Resources:       linuxResources(pod, c, w.m.cfg.NodeMemory),
			SecurityContext: w.containerSecurityContext(pod, c, sc, user)},
	}, nil
}

// removePodDir removes the agent's files of a pod that is gone for good.
func (w *worker) removePodDir() {
	if err := w.m.removePodFiles(string(w.uid)); err != nil {
		klog.ErrorS(err, "Unable to remove the pod's files", "pod", w.key)
	}
	w.m.scheduleLogRemoval(string(w.uid))
}

const deadlineMessage = "Pod was active on the node longer than the specified deadline"

// activeDeadlinePassed says whether the pod ran longer on the node than its activeDeadlineSeconds, counted
// from its start time, as the kubelet's active deadline handler.
func activeDeadlinePassed(pod *corev1.Pod, now time.Time) bool {
	if pod.Spec.ActiveDeadlineSeconds == nil || pod.Status.StartTime == nil {
		return false
	}
	return now.Sub(pod.Status.StartTime.Time) >= time.Duration(*pod.Spec.ActiveDeadlineSeconds)*time.Second
}

// probeKillGrace is the grace period of a container killed for a failed liveness or startup probe: the
// probe's own terminationGracePeriodSeconds when it has one, else the pod's, as the kubelet's.
func probeKillGrace(pod *corev1.Pod, c *corev1.Container, kind probeKind) int64 {
	probe := c.LivenessProbe
	if kind == startupProbe {
		probe = c.StartupProbe
	}
	if probe != nil && probe.TerminationGracePeriodSeconds != nil && pod.DeletionGracePeriodSeconds == nil {
		return *probe.TerminationGracePeriodSeconds
	}
	return terminationGrace(pod)
}

func terminationGrace(pod *corev1.Pod) int64 {
	if pod.Spec.TerminationGracePeriodSeconds != nil {
		return *pod.Spec.TerminationGracePeriodSeconds
	}
	return corev1.DefaultTerminationGracePeriodSeconds
}
