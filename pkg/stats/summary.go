package stats

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"syscall"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	statsapi "k8s.io/kubelet/pkg/apis/stats/v1alpha1"
)

// SummaryRuntime is what the summary needs of the runtime: the containers' stats and the image filesystem.
type SummaryRuntime interface {
	Runtime
	ImageFsInfo(ctx context.Context) (*runtimeapi.ImageFsInfoResponse, error)
}

// Summarizer builds the kubelet's /stats/summary (k8s.io/kubelet stats v1alpha1): the node's CPU, memory,
// root filesystem and image filesystem, and each pod's containers' CPU, memory and writable layer.
type Summarizer struct {
	NodeName string
	// RootDir is the agent's root directory, whose filesystem is the node's (nodefs).
	RootDir        string
	MemoryCapacity uint64
	Runtime        SummaryRuntime
	Containers     func() []Container
	Node           NodeReader
	// PodStorage gives a pod's local volumes and log directory, for its volume and ephemeral-storage stats;
	// nil reports neither.
	PodStorage func(namespace, name, uid string) PodStorage

	mu sync.Mutex
	// last is the node's previous CPU sample, for its usage in nano cores.
	last NodeUsage
	// usages are the directories measured lately, by path (see usageMaxAge).
	usages map[string]dirUsage
}

// Summary reads everything now.
func (s *Summarizer) Summary(ctx context.Context) (*statsapi.Summary, error) {
	usage, err := s.Node.Read()
	if err != nil {
		return nil, err
	}
	now := metav1.NewTime(usage.Time)
	cpuNanos := uint64(usage.CPUSeconds * 1e9)
	node := statsapi.NodeStats{NodeName: s.NodeName, StartTime: bootTime(),
		CPU:    &statsapi.CPUStats{Time: now, UsageCoreNanoSeconds: &cpuNanos, UsageNanoCores: s.nodeNanoCores(usage)},
		Memory: memoryStats(now, uint64(usage.WorkingSetBytes), s.MemoryCapacity),
		Fs:     fsStats(now, s.RootDir, nil),
	}
	if images, err := s.Runtime.ImageFsInfo(ctx); err == nil && len(images.GetImageFilesystems()) > 0 {
		fs := images.GetImageFilesystems()[0]
		used := fs.GetUsedBytes().GetValue()
		node.Runtime = &statsapi.RuntimeStats{ImageFs: fsStats(now, fs.GetFsId().GetMountpoint(), &used)}
	}
	all, err := s.Runtime.ListContainerStats(ctx, &runtimeapi.ContainerStatsFilter{})
	if err != nil {
		return nil, fmt.Errorf("listing container stats: %w", err)
	}
	byID := make(map[string]*runtimeapi.ContainerStats, len(all))
	for _, c := range all {
		byID[c.GetAttributes().GetId()] = c
	}
	pods := map[string]*statsapi.PodStats{}
	for _, c := range s.Containers() {
		cs := byID[c.ID]
		if cs == nil {
			continue
		}
		p := pods[c.PodUID]
		if p == nil {
			p = &statsapi.PodStats{PodRef: statsapi.PodReference{Name: c.Pod, Namespace: c.Namespace, UID: c.PodUID},
				StartTime: metav1.NewTime(c.StartedAt)}
			pods[c.PodUID] = p
		}
		if c.StartedAt.Before(p.StartTime.Time) {
			p.StartTime = metav1.NewTime(c.StartedAt)
		}
		p.Containers = append(p.Containers, containerSummary(c, cs))
	}
	summary := &statsapi.Summary{Node: node, Pods: []statsapi.PodStats{}}
	s.mu.Lock()
	defer s.mu.Unlock()
	used := map[string]bool{}
	for _, p := range pods {
		sort.Slice(p.Containers, func(i, j int) bool { return p.Containers[i].Name < p.Containers[j].Name })
		p.CPU, p.Memory = sumContainers(p.Containers)
		if s.PodStorage != nil {
			s.addStorage(p, s.PodStorage(p.PodRef.Namespace, p.PodRef.Name, p.PodRef.UID), now, used)
		}
		summary.Pods = append(summary.Pods, *p)
	}
	s.forgetUnused(used)
	sort.Slice(summary.Pods, func(i, j int) bool {
		a, b := summary.Pods[i].PodRef, summary.Pods[j].PodRef
		return a.Namespace < b.Namespace || (a.Namespace == b.Namespace && a.Name < b.Name)
	})
	return summary, nil
}

// nodeNanoCores is the node's CPU use since the previous summary, in nano cores; nil for the first.
func (s *Summarizer) nodeNanoCores(u NodeUsage) *uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	last := s.last
	s.last = u
	elapsed := u.Time.Sub(last.Time).Seconds()
	if last.Time.IsZero() || elapsed <= 0 || u.CPUSeconds < last.CPUSeconds {
		return nil
	}
	v := uint64((u.CPUSeconds - last.CPUSeconds) / elapsed * 1e9)
	return &v
}

func containerSummary(c Container, cs *runtimeapi.ContainerStats) statsapi.ContainerStats {
	out := statsapi.ContainerStats{Name: c.Name, StartTime: metav1.NewTime(c.StartedAt)}
	if cpu := cs.GetCpu(); cpu != nil {
		out.CPU = &statsapi.CPUStats{Time: metav1.NewTime(time.Unix(0, cpu.GetTimestamp())),
			UsageCoreNanoSeconds: optional(cpu.GetUsageCoreNanoSeconds()), UsageNanoCores: optional(cpu.GetUsageNanoCores())}
	}
	if mem := cs.GetMemory(); mem != nil {
		out.Memory = &statsapi.MemoryStats{Time: metav1.NewTime(time.Unix(0, mem.GetTimestamp())),
			WorkingSetBytes: optional(mem.GetWorkingSetBytes()), UsageBytes: optional(mem.GetUsageBytes()),
			RSSBytes: optional(mem.GetRssBytes()), PageFaults: optional(mem.GetPageFaults()), MajorPageFaults: optional(mem.GetMajorPageFaults())}
	}
	if fs := cs.GetWritableLayer(); fs != nil {
		out.Rootfs = &statsapi.FsStats{Time: metav1.NewTime(time.Unix(0, fs.GetTimestamp())),
			UsedBytes: optional(fs.GetUsedBytes()), InodesUsed: optional(fs.GetInodesUsed())}
	}
	return out
}

func optional(v *runtimeapi.UInt64Value) *uint64 {
	if v == nil {
		return nil
	}
	x := v.GetValue()
	return &x
}

// sumContainers is a pod's CPU and memory: its containers' together.
func sumContainers(containers []statsapi.ContainerStats) (*statsapi.CPUStats, *statsapi.MemoryStats) {
	var cpu *statsapi.CPUStats
	var mem *statsapi.MemoryStats
	add := func(sum **uint64, v *uint64) {
		if v == nil {
			return
		}
		if *sum == nil {
			*sum = new(uint64)
		}
		**sum += *v
	}
	for _, c := range containers {
		if c.CPU != nil {
			if cpu == nil {
				cpu = &statsapi.CPUStats{Time: c.CPU.Time}
			}
			add(&cpu.UsageCoreNanoSeconds, c.CPU.UsageCoreNanoSeconds)
			add(&cpu.UsageNanoCores, c.CPU.UsageNanoCores)
		}
		if c.Memory != nil {
			if mem == nil {
				mem = &statsapi.MemoryStats{Time: c.Memory.Time}
			}
			add(&mem.WorkingSetBytes, c.Memory.WorkingSetBytes)
			add(&mem.UsageBytes, c.Memory.UsageBytes)
			add(&mem.RSSBytes, c.Memory.RSSBytes)
		}
	}
	return cpu, mem
}

// memoryStats is the node's memory with what is available, as the kubelet reports it: capacity less the
// working set.
func memoryStats(now metav1.Time, workingSet, capacity uint64) *statsapi.MemoryStats {
	m := &statsapi.MemoryStats{Time: now, WorkingSetBytes: &workingSet}
	if capacity > 0 {
		available := capacity - min(workingSet, capacity)
		m.AvailableBytes = &available
	}
	return m
}

// fsStats is the filesystem holding path; used, when given, is what the runtime says it uses of it.
func fsStats(now metav1.Time, path string, used *uint64) *statsapi.FsStats {
	var st syscall.Statfs_t
	if path == "" || syscall.Statfs(path, &st) != nil {
		return nil
	}
	bsize := uint64(st.Bsize)
	capacity, available := st.Blocks*bsize, st.Bavail*bsize
	inodes, free := st.Files, st.Ffree
	if used == nil {
		u := capacity - st.Bfree*bsize
		used = &u
	}
	inodesUsed := inodes - free
	return &statsapi.FsStats{Time: now, CapacityBytes: &capacity, AvailableBytes: &available, UsedBytes: used,
		Inodes: &inodes, InodesFree: &free, InodesUsed: &inodesUsed}
}
