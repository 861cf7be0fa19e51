// Package stats reads the resource usage of the node and of its pods' containers: the node's from the root
// cgroup (cgroup v1 cpuacct and memory, or cgroup v2 cpu.stat and /proc/meminfo), the containers' from the
// runtime's CRI stats. It serves them as the kubelet's /metrics/resource, the series metrics-server and
// `kubectl top` read. It only reads.
package stats

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"
)

// Runtime is what the stats need of the container runtime.
type Runtime interface {
	ListContainerStats(ctx context.Context, filter *runtimeapi.ContainerStatsFilter) ([]*runtimeapi.ContainerStats, error)
}

// Container is one of the node's running containers, as the pod manager knows it.
type Container struct {
	ID, Name, Pod, Namespace, PodUID string
	StartedAt                        time.Time
}

// The kubelet's resource metrics, with its names and help.
var (
	nodeCPUDesc = prometheus.NewDesc("node_cpu_usage_seconds_total",
		"Cumulative cpu time consumed by the node in core-seconds", nil, nil)
	nodeMemoryDesc = prometheus.NewDesc("node_memory_working_set_bytes",
		"Current working set of the node in bytes", nil, nil)
	containerCPUDesc = prometheus.NewDesc("container_cpu_usage_seconds_total",
		"Cumulative cpu time consumed by the container in core-seconds", []string{"container", "pod", "namespace"}, nil)
	containerMemoryDesc = prometheus.NewDesc("container_memory_working_set_bytes",
		"Current working set of the container in bytes", []string{"container", "pod", "namespace"}, nil)
	containerStartDesc = prometheus.NewDesc("container_start_time_seconds",
		"Start time of the container since unix epoch in seconds", []string{"container", "pod", "namespace"}, nil)
	podCPUDesc = prometheus.NewDesc("pod_cpu_usage_seconds_total",
		"Cumulative cpu time consumed by the pod in core-seconds", []string{"pod", "namespace"}, nil)
	podMemoryDesc = prometheus.NewDesc("pod_memory_working_set_bytes",
		"Current working set of the pod in bytes", []string{"pod", "namespace"}, nil)
	scrapeErrorDesc = prometheus.NewDesc("resource_scrape_error",
		"1 if there was an error while getting container metrics, 0 otherwise", nil, nil)
)

// ResourceCollector is a prometheus.Collector of the kubelet's resource metrics, read at each scrape.
type ResourceCollector struct {
	runtime Runtime
	// containers are the node's running containers (the pod manager's runtime cache).
	containers func() []Container
	node       NodeReader
	timeout    time.Duration
}

// NewResourceCollector reads containers' usage from runtime for the containers the node runs, and the
// node's from node.
func NewResourceCollector(runtime Runtime, containers func() []Container, node NodeReader) *ResourceCollector {
	return &ResourceCollector{runtime: runtime, containers: containers, node: node, timeout: 10 * time.Second}
}

func (c *ResourceCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{nodeCPUDesc, nodeMemoryDesc, containerCPUDesc, containerMemoryDesc,
		containerStartDesc, podCPUDesc, podMemoryDesc, scrapeErrorDesc} {
		ch <- d
	}
}

// Collect reads the node's and the containers' usage now; each sample carries the time it was measured.
func (c *ResourceCollector) Collect(ch chan<- prometheus.Metric) {
	failed := 0.0
	if usage, err := c.node.Read(); err != nil {
		klog.ErrorS(err, "Reading the node's resource usage")
		failed = 1
	} else {
		ch <- prometheus.NewMetricWithTimestamp(usage.Time, prometheus.MustNewConstMetric(nodeCPUDesc, prometheus.CounterValue, usage.CPUSeconds))
		ch <- prometheus.NewMetricWithTimestamp(usage.Time, prometheus.MustNewConstMetric(nodeMemoryDesc, prometheus.GaugeValue, usage.WorkingSetBytes))
	}
	if err := c.collectContainers(ch); err != nil {
		klog.ErrorS(err, "Reading the containers' resource usage")
		failed = 1
	}
	ch <- prometheus.MustNewConstMetric(scrapeErrorDesc, prometheus.GaugeValue, failed)
}

func (c *ResourceCollector) collectContainers(ch chan<- prometheus.Metric) error {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	all, err := c.runtime.ListContainerStats(ctx, &runtimeapi.ContainerStatsFilter{})
	if err != nil {
		return fmt.Errorf("listing container stats: %w", err)
	}
	byID := make(map[string]*runtimeapi.ContainerStats, len(all))
	for _, s := range all {
		byID[s.GetAttributes().GetId()] = s
	}
	type podKey struct{ pod, namespace string }
	type podUsage struct {
		cpu, memory float64
		at          time.Time
	}
	pods := map[podKey]*podUsage{}
	for _, ctr := range c.containers() {
		s := byID[ctr.ID]
		if s == nil {
			continue // started after the stats were listed, or not the runtime's any more
		}
		labels := []string{ctr.Name, ctr.Pod, ctr.Namespace}
		ch <- prometheus.MustNewConstMetric(containerStartDesc, prometheus.GaugeValue, float64(ctr.StartedAt.UnixNano())/1e9, labels...)
		key := podKey{ctr.Pod, ctr.Namespace}
		if pods[key] == nil {
			pods[key] = &podUsage{}
		}
		p := pods[key]
		if cpu := s.GetCpu(); cpu != nil && cpu.GetUsageCoreNanoSeconds() != nil {
			at := time.Unix(0, cpu.GetTimestamp())
			seconds := float64(cpu.GetUsageCoreNanoSeconds().GetValue()) / 1e9
			ch <- prometheus.NewMetricWithTimestamp(at, prometheus.MustNewConstMetric(containerCPUDesc, prometheus.CounterValue, seconds, labels...))
			p.cpu += seconds
			p.at = at
		}
		if mem := s.GetMemory(); mem != nil && mem.GetWorkingSetBytes() != nil {
			at := time.Unix(0, mem.GetTimestamp())
			bytes := float64(mem.GetWorkingSetBytes().GetValue())
			ch <- prometheus.NewMetricWithTimestamp(at, prometheus.MustNewConstMetric(containerMemoryDesc, prometheus.GaugeValue, bytes, labels...))
			p.memory += bytes
			p.at = at
		}
	}
	// A pod's usage is its containers' (the pause container's is a few hundred kilobytes and no CPU).
	for key, p := range pods {
		ch <- prometheus.NewMetricWithTimestamp(p.at, prometheus.MustNewConstMetric(podCPUDesc, prometheus.CounterValue, p.cpu, key.pod, key.namespace))
		ch <- prometheus.NewMetricWithTimestamp(p.at, prometheus.MustNewConstMetric(podMemoryDesc, prometheus.GaugeValue, p.memory, key.pod, key.namespace))
	}
	return nil
}
