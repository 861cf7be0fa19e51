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
