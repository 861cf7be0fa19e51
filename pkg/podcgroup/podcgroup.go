// Package podcgroup owns the agent's cgroup tree, laid out as the kubelet's cgroupfs driver lays it out:
// <cgroupRoot>/kubepods for all pods (sized to the node's allocatable), kubepods/burstable and
// kubepods/besteffort for those QoS classes, and one pod<uid> cgroup per pod (Guaranteed pods directly under
// kubepods) carrying the pod's summed requests and limits. The runtime puts each pod's sandbox and
// containers under that pod cgroup (CRI cgroup_parent). It works on cgroup v1 and v2 through
// github.com/opencontainers/cgroups, the library the kubelet and runc use, and must not touch cgroups
// outside the kubepods subtree.
package podcgroup

import (
	"errors"
	"fmt"
	"os"
	"path"

	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/cgroups/manager"
	corev1 "k8s.io/api/core/v1"
	resourcehelper "k8s.io/component-helpers/resource"
)

// The kubelet's CFS arithmetic.
const (
	cpuPeriodMicros = 100000
	minShares       = 2
	maxShares       = 262144
	minQuotaMicros  = 1000
)

// Manager creates, sizes and removes the pods' cgroups.
type Manager struct {
	// kubepods is the cgroup path of all pods, e.g. /kubepods.
	kubepods string
}

// New returns a manager for the tree under cgroupRoot ("/" puts it at /kubepods, as with the kubelet).
func New(cgroupRoot string) *Manager {
	return &Manager{kubepods: path.Join("/", cgroupRoot, "kubepods")}
}

// EnsureNode creates kubepods and its QoS children; kubepods gets the node's allocatable cpu and memory.
func (m *Manager) EnsureNode(allocatable corev1.ResourceList) error {
	node := &cgroups.Resources{CpuShares: milliCPUToShares(allocatable.Cpu().MilliValue())}
	if mem := allocatable.Memory().Value(); mem > 0 {
		node.Memory = mem
	}
	if err := apply(m.kubepods, node); err != nil {
		return err
	}
	if err := apply(m.qosPath(corev1.PodQOSBurstable), &cgroups.Resources{}); err != nil {
		return err
	}
	return apply(m.qosPath(corev1.PodQOSBestEffort), &cgroups.Resources{CpuShares: minShares})
}

// UpdateQOS sets the burstable cgroup's cpu shares to the sum of its pods' requests, as the kubelet does so
// that Burstable pods together weigh what they asked for against Guaranteed ones.
func (m *Manager) UpdateQOS(pods []*corev1.Pod) error {
	var milli int64
	for _, pod := range pods {
		if QOSClass(pod) == corev1.PodQOSBurstable {
			requests := resourcehelper.PodRequests(pod, resourcehelper.PodResourcesOptions{})
			milli += requests.Cpu().MilliValue()
		}
	}
	return apply(m.qosPath(corev1.PodQOSBurstable), &cgroups.Resources{CpuShares: milliCPUToShares(milli)})
}

// PodPath is the cgroup of pod, the CRI cgroup_parent of its sandbox.
func (m *Manager) PodPath(pod *corev1.Pod) string {
	return path.Join(m.qosPath(QOSClass(pod)), "pod"+string(pod.UID))
}

// EnsurePod creates the pod's cgroup with its limits (kubelet's ResourceConfigForPod) and returns its path.
func (m *Manager) EnsurePod(pod *corev1.Pod) (string, error) {
	p := m.PodPath(pod)
	return p, apply(p, podResources(pod))
}

// RemovePod removes the pod's cgroup in whichever QoS class it is; the runtime must have removed its
// containers first. A cgroup that does not exist is not an error.
func (m *Manager) RemovePod(uid string) error {
	var errs []error
	for _, qos := range []corev1.PodQOSClass{corev1.PodQOSGuaranteed, corev1.PodQOSBurstable, corev1.PodQOSBestEffort} {
		errs = append(errs, removeCgroup(path.Join(m.qosPath(qos), "pod"+uid)))
	}
	return errors.Join(errs...)
}

// removeCgroup removes the cgroup at p in every controller; one that does not exist is not an error.
func removeCgroup(p string) error {
	mgr, err := manager.New(&cgroups.Cgroup{Path: p, Resources: &cgroups.Resources{SkipDevices: true}})
	if err != nil {
		return fmt.Errorf("cgroup %s: %w", p, err)
	}
	if err := mgr.Destroy(); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing cgroup %s: %w", p, err)
	}
	return nil
}

func (m *Manager) qosPath(qos corev1.PodQOSClass) string {
	switch qos {
	case corev1.PodQOSBurstable:
		return path.Join(m.kubepods, "burstable")
	case corev1.PodQOSBestEffort:
		return path.Join(m.kubepods, "besteffort")
	}
	return m.kubepods
}

// podResources is the kubelet's pod-level configuration: shares from the summed requests; CFS quota and a
// memory limit only when every app container declares that limit (always, for Guaranteed pods).
func podResources(pod *corev1.Pod) *cgroups.Resources {
	qos := QOSClass(pod)
	if qos == corev1.PodQOSBestEffort {
		return &cgroups.Resources{CpuShares: minShares}
	}
	requests := resourcehelper.PodRequests(pod, resourcehelper.PodResourcesOptions{})
	limits := resourcehelper.PodLimits(pod, resourcehelper.PodResourcesOptions{})
	r := &cgroups.Resources{CpuShares: milliCPUToShares(requests.Cpu().MilliValue())}
	cpuLimited, memoryLimited := true, true
	for _, c := range pod.Spec.Containers {
		_, cpu := c.Resources.Limits[corev1.ResourceCPU]
		_, mem := c.Resources.Limits[corev1.ResourceMemory]
		cpuLimited, memoryLimited = cpuLimited && cpu, memoryLimited && mem
	}
	if qos == corev1.PodQOSGuaranteed || cpuLimited {
		r.CpuPeriod = cpuPeriodMicros
		r.CpuQuota = max(limits.Cpu().MilliValue()*cpuPeriodMicros/1000, minQuotaMicros)
	}
	if qos == corev1.PodQOSGuaranteed || memoryLimited {
		r.Memory = limits.Memory().Value()
	}
	return r
}

func milliCPUToShares(milli int64) uint64 {
	return uint64(min(max(milli*1024/1000, minShares), maxShares))
}

// apply creates the cgroup at p (in every controller on v1) and writes r, as the kubelet does:
// Apply with no process, then Set.
func apply(p string, r *cgroups.Resources) error {
	r.SkipDevices = true // the devices controller stays as the runtime sets it per container
	if cgroups.IsCgroup2UnifiedMode() && r.CpuShares != 0 {
		r.CpuWeight = cgroups.ConvertCPUSharesToCgroupV2Value(r.CpuShares)
	}
	mgr, err := manager.New(&cgroups.Cgroup{Path: p, Resources: r})
	if err != nil {
		return fmt.Errorf("cgroup %s: %w", p, err)
	}
	if err := mgr.Apply(-1); err != nil {
		return fmt.Errorf("creating cgroup %s: %w", p, err)
	}
	if err := mgr.Set(r); err != nil {
		return fmt.Errorf("configuring cgroup %s: %w", p, err)
	}
	return nil
}

// QOSClass is the pod's QoS class: from its status when the API server set it, else computed by the rules
// the API server uses (static pods have no server-side defaulting).
func QOSClass(pod *corev1.Pod) corev1.PodQOSClass {
	if pod.Status.QOSClass != "" {
		return pod.Status.QOSClass
	}
	requests, limits := corev1.ResourceList{}, corev1.ResourceList{}
	guaranteed := true
	all := append(append([]corev1.Container{}, pod.Spec.InitContainers...), pod.Spec.Containers...)
	for _, c := range all {
		for name, q := range c.Resources.Requests {
			if (name == corev1.ResourceCPU || name == corev1.ResourceMemory) && !q.IsZero() {
				requests[name] = q
			}
		}
		for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			q, ok := c.Resources.Limits[name]
			if !ok || q.IsZero() {
				guaranteed = false
				continue
			}
			limits[name] = q
			if req, set := c.Resources.Requests[name]; set && req.Cmp(q) != 0 {
				guaranteed = false
			}
		}
	}
	switch {
	case len(requests) == 0 && len(limits) == 0:
		return corev1.PodQOSBestEffort
	case guaranteed:
		return corev1.PodQOSGuaranteed
	}
	return corev1.PodQOSBurstable
}
