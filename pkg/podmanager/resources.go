package podmanager

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The kubelet's cgroup arithmetic (cgroupfs, CFS).
const (
	cpuPeriodMicros = 100000
	minShares       = 2
	minQuotaMicros  = 1000
	// OOM score adjustments by QoS class; the runtime clamps negative ones to its own where the host
	// refuses them (restrict_oom_score_adj).
	guaranteedOOMScoreAdj = -997
	besteffortOOMScoreAdj = 1000
)

// linuxResources turns a container's requests and limits into CRI Linux resources as the kubelet does:
// cpu request → shares, cpu limit → CFS quota, memory limit → limit, QoS class → OOM score adjustment.
func linuxResources(pod *corev1.Pod, c *corev1.Container, nodeMemory int64) *runtimeapi.LinuxContainerResources {
	r := &runtimeapi.LinuxContainerResources{CpuShares: minShares}
	if cpu, ok := c.Resources.Requests[corev1.ResourceCPU]; ok {
		r.CpuShares = max(cpu.MilliValue()*1024/1000, minShares)
	}
	if cpu, ok := c.Resources.Limits[corev1.ResourceCPU]; ok {
		r.CpuPeriod = cpuPeriodMicros
		r.CpuQuota = max(cpu.MilliValue()*cpuPeriodMicros/1000, minQuotaMicros)
	}
	if mem, ok := c.Resources.Limits[corev1.ResourceMemory]; ok {
		r.MemoryLimitInBytes = mem.Value()
	}
	r.OomScoreAdj = oomScoreAdj(pod, c, nodeMemory)
	return r
}

// oomScoreAdj follows the kubelet's policy: Guaranteed pods are killed last, BestEffort first, Burstable
// in between by the share of the node's memory they request.
func oomScoreAdj(pod *corev1.Pod, c *corev1.Container, nodeMemory int64) int64 {
	switch pod.Status.QOSClass {
	case corev1.PodQOSGuaranteed:
		return guaranteedOOMScoreAdj
	case corev1.PodQOSBestEffort:
		return besteffortOOMScoreAdj
	}
	request := c.Resources.Requests.Memory().Value()
	if nodeMemory <= 0 {
		return besteffortOOMScoreAdj - 1
	}
	adj := 1000 - 1000*request/nodeMemory
	return min(max(adj, 1000+guaranteedOOMScoreAdj), besteffortOOMScoreAdj-1)
}

// resourceFieldValue resolves a downward API resourceFieldRef of container c (or of the one the ref names) as
// the kubelet does: a limit the container does not set is the node's allocatable, a request it does not set is
// zero, and the value is divided by the divisor (default 1) and rounded up.
func resourceFieldValue(pod *corev1.Pod, c *corev1.Container, ref *corev1.ResourceFieldSelector,
	allocatable corev1.ResourceList) (string, error) {
	if ref.ContainerName != "" && (c == nil || ref.ContainerName != c.Name) {
		c = specOf(pod, ref.ContainerName)
		if c == nil {
			return "", fmt.Errorf("resourceFieldRef: no container named %q", ref.ContainerName)
		}
	}
	if c == nil {
		return "", fmt.Errorf("resourceFieldRef %s: containerName is required", ref.Resource)
	}
	kind, name, ok := strings.Cut(ref.Resource, ".")
	if !ok || (kind != "limits" && kind != "requests") {
		return "", fmt.Errorf("resourceFieldRef: unsupported resource %q", ref.Resource)
	}
	resourceName := corev1.ResourceName(name)
	switch {
	case resourceName == corev1.ResourceCPU, resourceName == corev1.ResourceMemory,
		resourceName == corev1.ResourceEphemeralStorage, strings.HasPrefix(name, corev1.ResourceHugePagesPrefix):
	default:
		return "", fmt.Errorf("resourceFieldRef: unsupported resource %q", ref.Resource)
	}
	var q resource.Quantity
	if kind == "limits" {
		var set bool
		if q, set = c.Resources.Limits[resourceName]; !set {
			q = allocatable[resourceName]
		}
	} else {
		q = c.Resources.Requests[resourceName]
	}
	divisor := ref.Divisor
	if divisor.IsZero() {
		divisor = resource.MustParse("1")
	}
	var v float64
	if resourceName == corev1.ResourceCPU {
		v = math.Ceil(float64(q.MilliValue()) / float64(divisor.MilliValue()))
	} else {
		v = math.Ceil(float64(q.Value()) / float64(divisor.Value()))
	}
	return strconv.FormatInt(int64(v), 10), nil
}
