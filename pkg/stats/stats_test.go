package stats

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

type fakeRuntime []*runtimeapi.ContainerStats

func (f fakeRuntime) ListContainerStats(context.Context, *runtimeapi.ContainerStatsFilter) ([]*runtimeapi.ContainerStats, error) {
	return f, nil
}

func containerStats(id string, cpuNanos, workingSet uint64, at time.Time) *runtimeapi.ContainerStats {
	return &runtimeapi.ContainerStats{Attributes: &runtimeapi.ContainerAttributes{Id: id},
		Cpu:    &runtimeapi.CpuUsage{Timestamp: at.UnixNano(), UsageCoreNanoSeconds: &runtimeapi.UInt64Value{Value: cpuNanos}},
		Memory: &runtimeapi.MemoryUsage{Timestamp: at.UnixNano(), WorkingSetBytes: &runtimeapi.UInt64Value{Value: workingSet}}}
}

func writeFiles(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		path := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// The series metrics-server reads, with the kubelet's names and labels: the node's from the root cgroup,
// each known container's from the runtime, each pod's as the sum of its containers'; containers the node
// does not run (another node's, in a shared runtime) are left out.
func TestResourceMetricsAreTheKubeletsSeries(t *testing.T) {
	root := t.TempDir()
	writeFiles(t, root, map[string]string{
		"cpuacct/cpuacct.usage":        "2500000000\n",
		"memory/memory.usage_in_bytes": "1000000\n",
		"memory/memory.stat":           "cache 10\ntotal_inactive_file 400000\n",
	})
	at := time.Unix(1764800000, 0)
	runtime := fakeRuntime{containerStats("a", 1_500_000_000, 2000, at), containerStats("b", 500_000_000, 3000, at),
		containerStats("other-node", 9, 9, at)}
	started := time.Unix(1764790000, 0)
	containers := func() []Container {
		return []Container{{ID: "a", Name: "app", Pod: "web", Namespace: "shop", StartedAt: started},
			{ID: "b", Name: "sidecar", Pod: "web", Namespace: "shop", StartedAt: started}}
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewResourceCollector(runtime, containers, CgroupNode{Root: root}))
	want := `
# HELP container_cpu_usage_seconds_total Cumulative cpu time consumed by the container in core-seconds
# TYPE container_cpu_usage_seconds_total counter
container_cpu_usage_seconds_total{container="app",namespace="shop",pod="web"} 1.5 1764800000000
container_cpu_usage_seconds_total{container="sidecar",namespace="shop",pod="web"} 0.5 1764800000000
# HELP container_memory_working_set_bytes Current working set of the container in bytes
# TYPE container_memory_working_set_bytes gauge
container_memory_working_set_bytes{container="app",namespace="shop",pod="web"} 2000 1764800000000
container_memory_working_set_bytes{container="sidecar",namespace="shop",pod="web"} 3000 1764800000000
# HELP container_start_time_seconds Start time of the container since unix epoch in seconds
# TYPE container_start_time_seconds gauge
container_start_time_seconds{container="app",namespace="shop",pod="web"} 1.76479e+09
container_start_time_seconds{container="sidecar",namespace="shop",pod="web"} 1.76479e+09
# HELP pod_cpu_usage_seconds_total Cumulative cpu time consumed by the pod in core-seconds
# TYPE pod_cpu_usage_seconds_total counter
pod_cpu_usage_seconds_total{namespace="shop",pod="web"} 2 1764800000000
# HELP pod_memory_working_set_bytes Current working set of the pod in bytes
# TYPE pod_memory_working_set_bytes gauge
pod_memory_working_set_bytes{namespace="shop",pod="web"} 5000 1764800000000
# HELP resource_scrape_error 1 if there was an error while getting container metrics, 0 otherwise
# TYPE resource_scrape_error gauge
resource_scrape_error 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "container_cpu_usage_seconds_total",
		"container_memory_working_set_bytes", "container_start_time_seconds", "pod_cpu_usage_seconds_total",
		"pod_memory_working_set_bytes", "resource_scrape_error"); err != nil {
		t.Error(err)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	node := map[string]float64{}
	for _, f := range families {
		if strings.HasPrefix(f.GetName(), "node_") {
			node[f.GetName()] = f.GetMetric()[0].GetCounter().GetValue() + f.GetMetric()[0].GetGauge().GetValue()
		}
	}
	if node["node_cpu_usage_seconds_total"] != 2.5 || node["node_memory_working_set_bytes"] != 600000 {
		t.Errorf("node series %v, want 2.5 CPU seconds and 600000 bytes (usage less inactive file)", node)
	}
}

// On cgroup v2 the root has cpu.stat but no memory files: the working set comes from /proc/meminfo.
func TestNodeUsageOnCgroupV2(t *testing.T) {
	root := t.TempDir()
	writeFiles(t, root, map[string]string{
		"cpu.stat": "usage_usec 3000000\nuser_usec 2000000\n",
		"meminfo":  "MemTotal:       1000 kB\nMemFree:         200 kB\nInactive(file):  300 kB\n",
	})
	u, err := CgroupNode{Root: root, Meminfo: filepath.Join(root, "meminfo")}.Read()
	if err != nil || u.CPUSeconds != 3 || u.WorkingSetBytes != 500*1024 {
		t.Errorf("usage %+v, %v; want 3 CPU seconds and 500 KiB", u, err)
	}
}
