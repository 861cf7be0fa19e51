package podmanager

import (
	"context"
	"os"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nodeagent/nodeagent/pkg/cri"
	"github.com/nodeagent/nodeagent/pkg/source"
)

func mkdirAll(dir string) error { return os.MkdirAll(dir, 0o755) }

// podIPs are the pod's addresses: its sandbox's, or the node's on the host network. sandboxID is nil when
// the pod has no sandbox.
func (w *worker) podIPs(ctx context.Context, pod *corev1.Pod, sandboxID *string) ([]string, error) {
	if pod.Spec.HostNetwork {
		return w.m.hostIPs(), nil
	}
	if sandboxID == nil {
		return nil, nil
	}
	return w.m.rtcache.podIPs(ctx, *sandboxID)
}

// observed is the pod as the runtime shows it: its addresses and its containers' statuses.
type observed struct {
	hasSandbox                    bool
	podIPs                        []string
	inits, containers, ephemerals []corev1.ContainerStatus
}

// probeIP is the address HTTP, TCP and gRPC probes connect to.
func (o *observed) probeIP() string {
	if len(o.podIPs) > 0 {
		return o.podIPs[0]
	}
	return ""
}

// observe reads the pod's state from the runtime cache. sandboxID is nil when the pod has no sandbox.
func (w *worker) observe(ctx context.Context, pod *corev1.Pod, sandboxID *string) (*observed, error) {
	podIPs, err := w.podIPs(ctx, pod, sandboxID)
	if err != nil {
		return nil, err
	}
	all, err := w.containers(ctx)
	if err != nil {
		return nil, err
	}
	o := &observed{hasSandbox: sandboxID != nil, podIPs: podIPs}
	if o.inits, err = w.containerStatuses(ctx, all, pod.Spec.InitContainers, true); err != nil {
		return nil, err
	}
	if o.containers, err = w.containerStatuses(ctx, all, pod.Spec.Containers, false); err != nil {
		return nil, err
	}
	if o.ephemerals, err = w.containerStatuses(ctx, all, ephemeralSpecs(pod), false); err != nil {
		return nil, err
	}
	return o, nil
}

// writeStatus patches the status that podStatus computes, when it differs from the cached one.
func (w *worker) writeStatus(ctx context.Context, pod *corev1.Pod, o *observed) error {
	return w.patchStatus(ctx, pod, w.podStatus(pod, o))
}

// podStatus is the pod's status from what the runtime shows (o's container statuses, completed with the
// probers' verdicts), and why the node killed it, if it did.
func (w *worker) podStatus(pod *corev1.Pod, o *observed) *corev1.PodStatus {
	status := w.lastStatus(pod).DeepCopy()
	inits, containers := o.inits, o.containers
	w.probeVerdicts(pod, inits, containers)
	status.InitContainerStatuses, status.ContainerStatuses, status.EphemeralContainerStatuses = inits, containers, o.ephemerals
	initialized, initFailed := initProgress(pod, inits)
	if len(pod.Spec.InitContainers) > 0 {
		// The kubelet's default state of a container the runtime has not made yet, in a pod with init
		// containers: the init containers after the first as well as the app containers.
		for _, list := range [][]corev1.ContainerStatus{inits, containers} {
			for i := range list {
				if w := list[i].State.Waiting; w != nil && w.Reason == "ContainerCreating" && list[i].ContainerID == "" {
					w.Reason = "PodInitializing"
				}
			}
		}
	}
	switch {
	case initFailed:
		status.Phase = corev1.PodFailed
	case !initialized:
		status.Phase = corev1.PodPending
	default:
		status.Phase = podPhase(pod, containers)
	}
	if hostIPs := w.m.hostIPs(); len(hostIPs) > 0 {
		status.HostIP, status.HostIPs = hostIPs[0], nil
		for _, ip := range hostIPs {
			status.HostIPs = append(status.HostIPs, corev1.HostIP{IP: ip})
		}
	}
	status.PodIP, status.PodIPs = "", nil
	for _, ip := range o.podIPs {
		status.PodIPs = append(status.PodIPs, corev1.PodIP{IP: ip})
	}
	if len(o.podIPs) > 0 {
		status.PodIP = o.podIPs[0]
	}
	if status.StartTime == nil {
		now := metav1.Now()
		status.StartTime = &now
	}
	status.ObservedGeneration = pod.Generation
	setConditions(status, pod, o.hasSandbox && (len(o.podIPs) > 0 || pod.Spec.HostNetwork), inits, containers)

	if k := w.killed; k != nil {
		status.Phase, status.Reason, status.Message = corev1.PodFailed, k.reason, k.message
		if k.disruption {
			setCondition(status, corev1.PodCondition{Type: corev1.DisruptionTarget, Status: corev1.ConditionTrue,
				Reason: "TerminationByKubelet", Message: k.message, ObservedGeneration: pod.Generation})
		}
	}
	return status
}

// lastStatus is the newest status of the pod the worker knows, which the next one starts from: the one it
// wrote while the Pod cache still holds the Pod it was written over, else the cached Pod's. As the kubelet's
// status manager keeps its own last status: started from the cached Pod, a sync in a later second than the
// write took its start time and new conditions' transition times from the clock again, and patched again.
func (w *worker) lastStatus(pod *corev1.Pod) *corev1.PodStatus {
	if target := w.m.statusTarget(pod); target != nil {
		if unseen := w.unseenStatus(target); unseen != nil {
			return unseen
		}
	}
	return &pod.Status
}

// unseenStatus is the status the worker wrote over target, while the Pod cache still holds that target
// (it has not seen the write yet); nil otherwise.
func (w *worker) unseenStatus(target *corev1.Pod) *corev1.PodStatus {
	if w.written.status != nil && w.written.over == target.ResourceVersion {
		return w.written.status
	}
	return nil
}

// reject fails a pod the node will not run, as the kubelet's admission does: a Warning event and a Failed
// status with the reason, so nothing of it ever starts.
func (w *worker) reject(ctx context.Context, pod *corev1.Pod, reason, message string) error {
	w.m.recorder.Event(pod, corev1.EventTypeWarning, reason, message)
	status := pod.Status.DeepCopy()
	status.Phase, status.Reason, status.Message = corev1.PodFailed, reason, "Pod was rejected: "+message
	status.ObservedGeneration = pod.Generation
	return w.patchStatus(ctx, pod, status)
}

// patchStatus writes status to the API unless the cached Pod already has it.
func (w *worker) patchStatus(ctx context.Context, pod *corev1.Pod, status *corev1.PodStatus) error {
	normalizeTimes(status)
	if !w.started && status.Phase == corev1.PodRunning {
		w.started = true
		if pod.Status.Phase != corev1.PodRunning { // not a running pod adopted after a restart
			w.m.metrics.observeStart(pod, w.firstSeen, w.pulling, time.Now())
		}
	}
	if apiequality.Semantic.DeepEqual(&pod.Status, status) {
		return nil
	}
	target := w.m.statusTarget(pod)
	if target == nil {
		return nil // a static pod without its mirror yet: written once the mirror exists
	}
	// A sync that follows a write before the Pod cache has seen it computes the same status again from the
	// same Pod: without this, every such sync (a container event, the relist) repeated the patch.
	if unseen := w.unseenStatus(target); unseen != nil && apiequality.Semantic.DeepEqual(unseen, status) {
		return nil
	}
	if err := w.m.status.WriteStatus(ctx, target, status); err != nil {
		return err
	}
	w.written.status, w.written.over = status, target.ResourceVersion
	return nil
}

// initProgress reports whether every regular init container succeeded and sidecars are running, and whether
// one failed for good (restartPolicy Never), which fails the pod.
func initProgress(pod *corev1.Pod, statuses []corev1.ContainerStatus) (initialized, failed bool) {
	initialized = true
	for i, cs := range statuses {
		if isSidecar(&pod.Spec.InitContainers[i]) {
			initialized = initialized && cs.State.Running != nil
			continue
		}
		done := cs.State.Terminated
		if done != nil && done.ExitCode != 0 && pod.Spec.RestartPolicy == corev1.RestartPolicyNever {
			return false, true
		}
		initialized = initialized && done != nil && done.ExitCode == 0
	}
	return initialized, false
}

// containerStatuses reports each of specs from its newest runtime container (among all, the pod's runtime
// containers newest first) and the one before it. init says specs are init containers: a regular one is
// ready once it succeeded.
func (w *worker) containerStatuses(ctx context.Context, all []*runtimeapi.Container, specs []corev1.Container,
	init bool) ([]corev1.ContainerStatus, error) {
	var out []corev1.ContainerStatus
	for _, c := range specs {
		cs := corev1.ContainerStatus{Name: c.Name, Image: c.Image,
			State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}}}
		var found []*runtimeapi.ContainerStatus
		for _, ct := range all {
			if ct.GetMetadata().GetName() != c.Name || len(found) == 2 {
				continue
			}
			st, err := w.containerStatus(ctx, ct.Id)
			if err != nil {
				return nil, err
			}
			found = append(found, st)
		}
		if len(found) > 0 {
			cur := found[0]
			cs.ContainerID = w.m.cfg.RuntimeType + "://" + cur.Id
			cs.ImageID = cur.ImageRef
			cs.RestartCount = restartCount(cur)
			cs.State = w.stateOf(&c, cur)
			cs.Ready = cs.State.Running != nil
			if init && !isSidecar(&c) {
				cs.Ready = cs.State.Terminated != nil && cs.State.Terminated.ExitCode == 0
			}
			started := cs.State.Running != nil
			cs.Started = &started
			if len(found) > 1 {
				cs.LastTerminationState = w.stateOf(&c, found[1])
			}
		}
		if waiting := w.waiting[c.Name]; waiting != nil && cs.State.Running == nil {
			cs.State = corev1.ContainerState{Waiting: waiting.DeepCopy()}
			if len(found) > 0 {
				cs.LastTerminationState = w.stateOf(&c, found[0])
			}
		}
		out = append(out, cs)
	}
	return out, nil
}

// stateOf is a runtime container's state for the status, with the termination message of an exited one.
func (w *worker) stateOf(c *corev1.Container, st *runtimeapi.ContainerStatus) corev1.ContainerState {
	state := containerState(st)
	if t := state.Terminated; t != nil {
		t.Message = w.terminationMessage(c, st)
	}
	return state
}

func restartCount(st *runtimeapi.ContainerStatus) int32 {
	n, err := strconv.Atoi(st.GetAnnotations()[cri.AnnotationRestartCount])
	if err != nil {
		return int32(st.GetMetadata().GetAttempt())
	}
	return int32(n)
}

func containerState(st *runtimeapi.ContainerStatus) corev1.ContainerState {
	switch st.State {
	case runtimeapi.ContainerState_CONTAINER_RUNNING:
		return corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: unixNano(st.StartedAt)}}
	case runtimeapi.ContainerState_CONTAINER_EXITED:
		reason := st.Reason
		if reason == "" {
			reason = "Error"
			if st.ExitCode == 0 {
				reason = "Completed"
			}
		}
		return corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
			ExitCode: st.ExitCode, Reason: reason, Message: st.Message,
			StartedAt: unixNano(st.StartedAt), FinishedAt: unixNano(st.FinishedAt),
			ContainerID: st.Id,
		}}
	}
	return corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}}
}

func unixNano(ns int64) metav1.Time {
	if ns == 0 {
		return metav1.Time{}
	}
	return metav1.NewTime(time.Unix(0, ns))
}

// podPhase follows the kubelet: Pending until every container has run, Succeeded/Failed once every
// container terminated for good, Running otherwise.
func podPhase(pod *corev1.Pod, statuses []corev1.ContainerStatus) corev1.PodPhase {
	// As the kubelet's getPhase with ContainerRestartRules: a stopped container counts as restarting unless
	// its own rules and policy (or the pod's) say it stays stopped.
	running, waiting, stopped, stoppedForGood, succeeded := 0, 0, 0, 0, 0
	for i, cs := range statuses {
		last := cs.State.Terminated
		if last == nil && cs.State.Waiting != nil {
			last = cs.LastTerminationState.Terminated // waiting to restart after a run
		}
		switch {
		case cs.State.Running != nil:
			running++
		case last != nil:
			stopped++
			if !containerShouldRestart(&pod.Spec.Containers[i], &pod.Spec, last.ExitCode) {
				stoppedForGood++
			}
			if cs.State.Terminated != nil && last.ExitCode == 0 {
				succeeded++
			}
		default:
			waiting++
		}
	}
	// A deleted pod whose containers all stopped is terminal, as the kubelet reports it before the Pod is
	// removed (static pods excepted, as there).
	terminal := pod.DeletionTimestamp != nil && !source.IsStaticPod(pod) && running == 0
	switch {
	case terminal && waiting == 0 && stopped > 0 && succeeded == stopped:
		return corev1.PodSucceeded
	case terminal:
		return corev1.PodFailed
	case waiting > 0:
		return corev1.PodPending
	case running > 0:
		return corev1.PodRunning
	case stopped != stoppedForGood:
		return corev1.PodRunning // restarting
	case succeeded == stopped:
		return corev1.PodSucceeded
	}
	return corev1.PodFailed
}

// normalizeTimes cuts the status's times to whole seconds, as the API server keeps them (RFC 3339 in the JSON
// of the patch), so a status computed again from the same runtime state equals the cached one and is not sent
// again: the kubelet's status manager normalizes the same way.
func normalizeTimes(status *corev1.PodStatus) {
	cut := func(t *metav1.Time) {
		if t != nil {
			*t = t.Rfc3339Copy()
		}
	}
	cut(status.StartTime)
	for i := range status.Conditions {
		cut(&status.Conditions[i].LastProbeTime)
		cut(&status.Conditions[i].LastTransitionTime)
	}
	for _, list := range [][]corev1.ContainerStatus{status.InitContainerStatuses, status.ContainerStatuses, status.EphemeralContainerStatuses} {
		for i := range list {
			for _, state := range []*corev1.ContainerState{&list[i].State, &list[i].LastTerminationState} {
				if state.Running != nil {
					cut(&state.Running.StartedAt)
				}
				if state.Terminated != nil {
					cut(&state.Terminated.StartedAt)
					cut(&state.Terminated.FinishedAt)
				}
			}
		}
	}
}
