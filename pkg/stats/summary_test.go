package stats

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

type summaryRuntime struct{ fakeRuntime }

func (summaryRuntime) ImageFsInfo(context.Context) (*runtimeapi.ImageFsInfoResponse, error) {
	return &runtimeapi.ImageFsInfoResponse{ImageFilesystems: []*runtimeapi.FilesystemUsage{{
		FsId: &runtimeapi.FilesystemIdentifier{Mountpoint: "/"}, UsedBytes: &runtimeapi.UInt64Value{Value: 12345}}}}, nil
}

// fixedNode reports the node's usage from a list, one per read.
type fixedNode []NodeUsage

func (f *fixedNode) Read() (NodeUsage, error) {
	u := (*f)[0]
	*f = (*f)[1:]
	return u, nil
}

// The summary in the kubelet's shape: the node's CPU (and, from the second read on, its rate), memory with
// what is available, the root and image filesystems; each pod with its containers and their sums.
func TestSummary(t *testing.T) {
	at := time.Unix(1764800000, 0)
	rt := summaryRuntime{fakeRuntime{containerStats("a", 1_500_000_000, 2000, at), containerStats("b", 500_000_000, 3000, at),
		containerStats("other-node", 9, 9, at)}}
	node := fixedNode{{Time: at, CPUSeconds: 10, WorkingSetBytes: 1 << 30}, {Time: at.Add(2 * time.Second), CPUSeconds: 11, WorkingSetBytes: 1 << 30}}
	started := time.Unix(1764790000, 0)
	s := &Summarizer{NodeName: "node-a", RootDir: t.TempDir(), MemoryCapacity: 4 << 30, Runtime: rt, Node: &node,
		Containers: func() []Container {
			return []Container{{ID: "a", Name: "app", Pod: "web", Namespace: "shop", PodUID: "uid-1", StartedAt: started},
				{ID: "b", Name: "sidecar", Pod: "web", Namespace: "shop", PodUID: "uid-1", StartedAt: started.Add(time.Second)}}
		}}
	first, err := s.Summary(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	n := first.Node
	if n.NodeName != "node-a" || *n.CPU.UsageCoreNanoSeconds != 10e9 || n.CPU.UsageNanoCores != nil ||
		*n.Memory.WorkingSetBytes != 1<<30 || *n.Memory.AvailableBytes != 3<<30 {
		t.Errorf("node %+v cpu %+v memory %+v", n, n.CPU, n.Memory)
	}
	if n.Fs == nil || *n.Fs.CapacityBytes == 0 || n.Runtime == nil || *n.Runtime.ImageFs.UsedBytes != 12345 {
		t.Errorf("filesystems: nodefs %+v, runtime %+v; want the root dir's and the runtime's image usage", n.Fs, n.Runtime)
	}
	if len(first.Pods) != 1 {
		t.Fatalf("pods %+v, want web alone (the other node's container left out)", first.Pods)
	}
	p := first.Pods[0]
	if p.PodRef.UID != "uid-1" || !p.StartTime.Time.Equal(started) || len(p.Containers) != 2 || p.Containers[0].Name != "app" ||
		*p.CPU.UsageCoreNanoSeconds != 2e9 || *p.Memory.WorkingSetBytes != 5000 {
		t.Errorf("pod %+v, cpu %+v, memory %+v; want two containers summed", p, p.CPU, p.Memory)
	}
	second, err := s.Summary(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if c := second.Node.CPU.UsageNanoCores; c == nil || *c != 5e8 {
		t.Errorf("node usageNanoCores %v, want half a core (1 CPU second in 2 s)", c)
	}
}

// Each pod's local volumes and its ephemeral storage, as the kubelet reports them: a volume's used bytes and
// inodes with its filesystem's capacity; the ephemeral storage sums the writable layers, the logs and the
// volumes on disk (not one in memory). A directory is measured once a minute, not at every request.
func TestSummaryVolumesAndEphemeralStorage(t *testing.T) {
	at := time.Unix(1764800000, 0)
	layer := containerStats("a", 1, 1, at)
	layer.WritableLayer = &runtimeapi.FilesystemUsage{Timestamp: at.UnixNano(),
		UsedBytes: &runtimeapi.UInt64Value{Value: 8192}, InodesUsed: &runtimeapi.UInt64Value{Value: 3}}
	node := fixedNode{{Time: at}, {Time: at.Add(time.Second)}}
	root := t.TempDir()
	kb := strings.Repeat("x", 1024)
	writeFiles(t, root, map[string]string{"scratch/big": strings.Repeat(kb, 256), "scratch/small": "x",
		"cache/f": strings.Repeat(kb, 64), "logs/c/0.log": strings.Repeat(kb, 16)})
	s := &Summarizer{NodeName: "node-a", RootDir: root, Runtime: summaryRuntime{fakeRuntime{layer}}, Node: &node,
		Containers: func() []Container {
			return []Container{{ID: "a", Name: "app", Pod: "web", Namespace: "shop", PodUID: "uid-1", StartedAt: at}}
		},
		PodStorage: func(namespace, name, uid string) PodStorage {
			if namespace != "shop" || name != "web" || uid != "uid-1" {
				t.Errorf("storage asked for %s/%s %s", namespace, name, uid)
			}
			return PodStorage{LogDir: filepath.Join(root, "logs"), Volumes: []Volume{
				{Name: "scratch", Path: filepath.Join(root, "scratch")},
				{Name: "cache", Path: filepath.Join(root, "cache"), InMemory: true},
				{Name: "not-set-up", Path: filepath.Join(root, "missing")}}}
		}}
	summary, err := s.Summary(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	p := summary.Pods[0]
	byName := map[string]uint64{}
	for _, v := range p.VolumeStats {
		if v.CapacityBytes == nil || *v.CapacityBytes == 0 || v.InodesUsed == nil {
			t.Errorf("volume %s: %+v, want its filesystem's capacity and its inodes", v.Name, v.FsStats)
		}
		byName[v.Name] = *v.UsedBytes
	}
	scratch, cache, logs := byName["scratch"], byName["cache"], uint64(0)
	if len(p.VolumeStats) != 2 || scratch < 256*1024+1 || cache < 64*1024 {
		t.Fatalf("volumes %v, want scratch over 256 KiB and cache over 64 KiB (and nothing for one not set up)", byName)
	}
	logs = measure(filepath.Join(root, "logs"), at).bytes
	eph := p.EphemeralStorage
	if eph == nil || *eph.UsedBytes != 8192+logs+scratch || *eph.InodesUsed < 3+4 || *eph.CapacityBytes == 0 {
		t.Errorf("ephemeral storage %+v, want the layer (8192) + logs (%d) + scratch (%d), not the in-memory cache", eph, logs, scratch)
	}
	writeFiles(t, root, map[string]string{"scratch/more": strings.Repeat(kb, 512)})
	again, err := s.Summary(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got := *again.Pods[0].VolumeStats[0].UsedBytes; got != scratch {
		t.Errorf("a second summary within a minute measured scratch again (%d, was %d)", got, scratch)
	}
}
