package podmanager

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

func TestLinuxResourcesFollowTheKubelet(t *testing.T) {
	const gi = int64(1) << 30
	c := &corev1.Container{Resources: corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("1Gi")},
		Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("500m"), corev1.ResourceMemory: resource.MustParse("2Gi")},
	}}
	burstable := &corev1.Pod{Status: corev1.PodStatus{QOSClass: corev1.PodQOSBurstable}}
	r := linuxResources(burstable, c, 4*gi)
	if r.CpuShares != 102 || r.CpuPeriod != 100000 || r.CpuQuota != 50000 || r.MemoryLimitInBytes != 2*gi {
		t.Errorf("resources = shares %d period %d quota %d memory %d; want 102, 100000, 50000, 2Gi",
			r.CpuShares, r.CpuPeriod, r.CpuQuota, r.MemoryLimitInBytes)
	}
	if r.OomScoreAdj != 750 {
		t.Errorf("burstable oom_score_adj = %d, want 1000 - 1000*1Gi/4Gi = 750", r.OomScoreAdj)
	}
	empty := &corev1.Container{}
	best := linuxResources(&corev1.Pod{Status: corev1.PodStatus{QOSClass: corev1.PodQOSBestEffort}}, empty, 4*gi)
	if best.CpuShares != minShares || best.CpuQuota != 0 || best.MemoryLimitInBytes != 0 || best.OomScoreAdj != 1000 {
		t.Errorf("best effort = %+v", best)
	}
	if g := linuxResources(&corev1.Pod{Status: corev1.PodStatus{QOSClass: corev1.PodQOSGuaranteed}}, c, 4*gi); g.OomScoreAdj != -997 {
		t.Errorf("guaranteed oom_score_adj = %d, want -997", g.OomScoreAdj)
	}
	// A Burstable request larger than the node still leaves it above Guaranteed pods.
	huge := &corev1.Container{Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("8Gi")}}}
	if adj := linuxResources(burstable, huge, 4*gi).OomScoreAdj; adj != 3 {
		t.Errorf("oversized burstable oom_score_adj = %d, want 3", adj)
	}
}

func TestResourceFieldRefDividesRoundsUpAndDefaultsLimitsToAllocatable(t *testing.T) {
	c := corev1.Container{Name: "app", Resources: corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("250m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
		Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("100Mi")},
	}}
	pod := &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{c, {Name: "other"}}}}
	allocatable := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2"), corev1.ResourceMemory: resource.MustParse("4Gi")}
	for _, tc := range []struct {
		resource, divisor, container, want string
	}{
		{"requests.cpu", "", "", "1"}, // 250m rounds up to one core
		{"requests.cpu", "1m", "", "250"},
		{"limits.cpu", "", "", "2"}, // unset limit: the node's allocatable
		{"limits.memory", "", "", "104857600"},
		{"limits.memory", "1Mi", "", "100"},
		{"requests.memory", "1Gi", "", "1"},
		{"limits.memory", "1Mi", "other", "4096"},
		{"requests.cpu", "", "other", "0"},
	} {
		ref := &corev1.ResourceFieldSelector{Resource: tc.resource, ContainerName: tc.container}
		if tc.divisor != "" {
			ref.Divisor = resource.MustParse(tc.divisor)
		}
		got, err := resourceFieldValue(pod, &pod.Spec.Containers[0], ref, allocatable)
		if err != nil || got != tc.want {
			t.Errorf("%s / %q of %q = %q, %v; want %q", tc.resource, tc.divisor, tc.container, got, err, tc.want)
		}
	}
	if _, err := resourceFieldValue(pod, &c, &corev1.ResourceFieldSelector{Resource: "limits.gpu"}, allocatable); err == nil {
		t.Error("limits.gpu resolved, want an error")
	}
	if _, err := resourceFieldValue(pod, nil, &corev1.ResourceFieldSelector{Resource: "limits.cpu", ContainerName: "nope"}, allocatable); err == nil {
		t.Error("unknown container resolved, want an error")
	}
}
