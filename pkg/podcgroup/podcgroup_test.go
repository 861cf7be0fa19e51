package podcgroup

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/cgroups"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/nodeagent/nodeagent/internal/testutil"
)

func podWith(uid string, containers ...corev1.ResourceRequirements) *corev1.Pod {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{UID: types.UID("uid-" + uid)}}
	for i, r := range containers {
		pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: fmt.Sprint("c", i), Resources: r})
	}
	return pod
}

func res(requests, limits string) corev1.ResourceRequirements {
	parse := func(s string) corev1.ResourceList {
		if s == "" {
			return nil
		}
		cpu, mem, _ := strings.Cut(s, "/")
		return corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu), corev1.ResourceMemory: resource.MustParse(mem)}
	}
	return corev1.ResourceRequirements{Requests: parse(requests), Limits: parse(limits)}
}

func TestQOSAndPodResourcesFollowTheKubelet(t *testing.T) {
	m := New("/")
	for _, tc := range []struct {
		name   string
		pod    *corev1.Pod
		qos    corev1.PodQOSClass
		path   string
		shares uint64
		quota  int64
		memory int64
	}{
		{"guaranteed", podWith("g", res("500m/64Mi", "500m/64Mi"), res("250m/32Mi", "250m/32Mi")),
			corev1.PodQOSGuaranteed, "/kubepods/poduid-g", 768, 75000, 96 << 20},
		{"burstable, every limit set", podWith("b", res("100m/32Mi", "1/64Mi")),
			corev1.PodQOSBurstable, "/kubepods/burstable/poduid-b", 102, 100000, 64 << 20},
		{"burstable, one container unlimited", podWith("u", res("100m/32Mi", "1/64Mi"), res("100m/16Mi", "")),
			corev1.PodQOSBurstable, "/kubepods/burstable/poduid-u", 204, 0, 0},
		{"best effort", podWith("e", res("", "")), corev1.PodQOSBestEffort, "/kubepods/besteffort/poduid-e", 2, 0, 0},
	} {
		if got := QOSClass(tc.pod); got != tc.qos {
			t.Errorf("%s: QoS %s, want %s", tc.name, got, tc.qos)
		}
		if got := m.PodPath(tc.pod); got != tc.path {
			t.Errorf("%s: path %s, want %s", tc.name, got, tc.path)
		}
		r := podResources(tc.pod)
		if r.CpuShares != tc.shares || r.CpuQuota != tc.quota || r.Memory != tc.memory {
			t.Errorf("%s: shares %d quota %d memory %d; want %d %d %d", tc.name, r.CpuShares, r.CpuQuota, r.Memory,
				tc.shares, tc.quota, tc.memory)
		}
	}
	if got := New("/nodes/a").PodPath(podWith("x", res("", ""))); got != "/nodes/a/kubepods/besteffort/poduid-x" {
		t.Errorf("path under a cgroup root = %s", got)
	}
}

// The real thing: the tree is created in the host's cgroup filesystem (under a root of the test's own),
// carries the limits, and goes away again.
func TestTreeIsCreatedSizedAndRemoved(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("creating cgroups needs root")
	}
	root := fmt.Sprintf("/nodeagent-test-%d", os.Getpid())
	m := New(root)
	t.Cleanup(func() {
		for _, p := range []string{"kubepods/burstable", "kubepods/besteffort", "kubepods", ""} {
			_ = removeCgroup(filepath.Join(root, p))
		}
	})
	allocatable := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2"), corev1.ResourceMemory: resource.MustParse("1Gi")}
	if err := m.EnsureNode(allocatable); err != nil {
		t.Fatal(err)
	}
	pod := podWith("real", res("100m/32Mi", "500m/64Mi"))
	p, err := m.EnsurePod(pod)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.UpdateQOS([]*corev1.Pod{pod}); err != nil {
		t.Fatal(err)
	}
	if cgroups.IsCgroup2UnifiedMode() {
		testutil.ExpectFile(t, "/sys/fs/cgroup"+p+"/memory.max", "67108864")
		testutil.ExpectFile(t, "/sys/fs/cgroup"+p+"/cpu.max", "50000 100000")
		testutil.ExpectFile(t, "/sys/fs/cgroup"+root+"/kubepods/memory.max", "1073741824")
	} else {
		testutil.ExpectFile(t, "/sys/fs/cgroup/memory"+p+"/memory.limit_in_bytes", "67108864")
		testutil.ExpectFile(t, "/sys/fs/cgroup/cpu"+p+"/cpu.cfs_quota_us", "50000")
		testutil.ExpectFile(t, "/sys/fs/cgroup/cpu"+p+"/cpu.shares", "102")
		testutil.ExpectFile(t, "/sys/fs/cgroup/cpu"+root+"/kubepods/burstable/cpu.shares", "102")
		testutil.ExpectFile(t, "/sys/fs/cgroup/cpu"+root+"/kubepods/besteffort/cpu.shares", "2")
		testutil.ExpectFile(t, "/sys/fs/cgroup/cpu"+root+"/kubepods/cpu.shares", "2048")
		testutil.ExpectFile(t, "/sys/fs/cgroup/memory"+root+"/kubepods/memory.limit_in_bytes", "1073741824")
	}
	if err := m.RemovePod(string(pod.UID)); err != nil {
		t.Fatal(err)
	}
	dir := "/sys/fs/cgroup/memory" + p
	if cgroups.IsCgroup2UnifiedMode() {
		dir = "/sys/fs/cgroup" + p
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("%s still exists after RemovePod (stat: %v)", dir, err)
	}
}
