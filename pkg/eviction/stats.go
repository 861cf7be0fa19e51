package eviction

import (
	"bufio"
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/opencontainers/cgroups"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
)

// NodeStats reads the signals as the kubelet defines them: memory.available is capacity minus the root
// cgroup's working set (usage without inactive file pages), not "free"; nodefs is the filesystem of the
// agent's root directory.
type NodeStats struct {
	// RootDir is on the node's filesystem (nodefs).
	RootDir string
	// PodCgroup returns a pod's cgroup path (as under the memory controller), "" when pods have none.
	PodCgroup func(pod *corev1.Pod) string
	// PodDirs returns the directories whose size counts as the pod's disk use (emptyDirs, logs).
	PodDirs func(pod *corev1.Pod) []string
	// ImageFs returns a path on the runtime's image filesystem (from CRI ImageFsInfo); nil or an error leaves
	// the imagefs signals unobserved.
	ImageFs func() (string, error)
}

// Observe implements Stats.
func (s *NodeStats) Observe() (map[string]Observation, error) {
	memory, err := memoryAvailable()
	if err != nil {
		return nil, err
	}
	pids, err := pidAvailable()
	if err != nil {
		return nil, err
	}
	obs := map[string]Observation{SignalMemoryAvailable: memory, SignalPIDAvailable: pids}
	if err := observeFs(s.RootDir, obs, SignalNodeFsAvailable, SignalNodeFsInodes); err != nil {
		return nil, err
	}
	if s.ImageFs != nil {
		path, err := s.ImageFs()
		if err == nil {
			err = observeFs(path, obs, SignalImageFsAvailable, SignalImageFsInodes)
		}
		if err != nil {
			return nil, fmt.Errorf("image filesystem: %w", err)
		}
	}
	return obs, nil
}

// observeFs records the free space and inodes of the filesystem holding path.
func observeFs(path string, obs map[string]Observation, available, inodes string) error {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return fmt.Errorf("statfs %s: %w", path, err)
	}
	obs[available] = Observation{Available: int64(st.Bavail) * st.Bsize, Capacity: int64(st.Blocks) * st.Bsize}
	obs[inodes] = Observation{Available: int64(st.Ffree), Capacity: int64(st.Files)}
	return nil
}

// PodUsage implements Stats.
func (s *NodeStats) PodUsage(pod *corev1.Pod) Usage {
	var u Usage
	if p := s.PodCgroup(pod); p != "" {
		u.Memory, _ = workingSet(p)
		u.PIDs, _ = pidsCurrent(p)
	}
	for _, dir := range s.PodDirs(pod) {
		u.Disk += dirSize(dir)
	}
	return u
}

// pidsCurrent is the number of processes (threads) in a cgroup.
func pidsCurrent(path string) (int64, error) {
	dir := filepath.Join("/sys/fs/cgroup", path)
	if !cgroups.IsCgroup2UnifiedMode() {
		mount, err := cgroups.FindCgroupMountpoint("", "pids")
		if err != nil {
			return 0, err
		}
		dir = filepath.Join(mount, path)
	}
	return readInt(filepath.Join(dir, "pids.current"))
}

// pidAvailable is how many more processes the node can run: the smaller of pid_max and threads-max, less
// the kernel's count of scheduling entities (/proc/loadavg), as the kubelet computes it.
func pidAvailable() (Observation, error) {
	pidMax, err := readInt("/proc/sys/kernel/pid_max")
	if err != nil {
		return Observation{}, err
	}
	if threadsMax, err := readInt("/proc/sys/kernel/threads-max"); err == nil {
		pidMax = min(pidMax, threadsMax)
	}
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return Observation{}, err
	}
	fields := strings.Fields(string(data))
	if len(fields) < 4 {
		return Observation{}, fmt.Errorf("unexpected /proc/loadavg %q", data)
	}
	_, total, ok := strings.Cut(fields[3], "/")
	running, err := strconv.ParseInt(total, 10, 64)
	if !ok || err != nil {
		return Observation{}, fmt.Errorf("unexpected /proc/loadavg %q", data)
	}
	return Observation{Available: pidMax - running, Capacity: pidMax}, nil
}

func memoryAvailable() (Observation, error) {
	capacity, err := meminfo("MemTotal")
	if err != nil {
		return Observation{}, err
	}
	ws, err := workingSet("/")
	if err != nil {
		// No memory controller to read (a cgroup v2 root has no totals): MemAvailable is the closest.
		available, err := meminfo("MemAvailable")
		return Observation{Available: available, Capacity: capacity}, err
	}
	return Observation{Available: capacity - ws, Capacity: capacity}, nil
}

// workingSet is a cgroup's memory usage less its inactive file pages, as cAdvisor computes it.
func workingSet(path string) (int64, error) {
	if cgroups.IsCgroup2UnifiedMode() {
		dir := filepath.Join("/sys/fs/cgroup", path)
		usage, err := readInt(filepath.Join(dir, "memory.current"))
		if err != nil {
			return 0, err
		}
		inactive, err := statValue(filepath.Join(dir, "memory.stat"), "inactive_file")
		return max(usage-inactive, 0), err
	}
	mount, err := cgroups.FindCgroupMountpoint("", "memory")
	if err != nil {
		return 0, err
	}
	dir := filepath.Join(mount, path)
	usage, err := readInt(filepath.Join(dir, "memory.usage_in_bytes"))
	if err != nil {
		return 0, err
	}
	inactive, err := statValue(filepath.Join(dir, "memory.stat"), "total_inactive_file")
	return max(usage-inactive, 0), err
}

func readInt(path string) (int64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
}

// meminfo reads one field of /proc/meminfo in bytes.
func meminfo(field string) (int64, error) {
	kb, err := statValue("/proc/meminfo", field+":")
	return kb * 1024, err
}

// statValue reads the number after key in a "key value" file (memory.stat, /proc/meminfo).
func statValue(path, key string) (int64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	s := bufio.NewScanner(bytes.NewReader(data))
	for s.Scan() {
		f := strings.Fields(s.Text())
		if len(f) > 1 && f[0] == key {
			return strconv.ParseInt(f[1], 10, 64)
		}
	}
	return 0, fmt.Errorf("%s has no %s", path, key)
}

// dirSize is the disk space used by the files under dir (allocated blocks, as du counts).
func dirSize(dir string) int64 {
	var total int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		if info, err := d.Info(); err == nil {
			if st, ok := info.Sys().(*syscall.Stat_t); ok {
				total += st.Blocks * 512
			}
		}
		return nil
	})
	return total
}
