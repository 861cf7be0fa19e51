package stats

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// NodeUsage is the node's CPU time and memory working set at a time.
type NodeUsage struct {
	Time            time.Time
	CPUSeconds      float64
	WorkingSetBytes float64
}

// NodeReader reads the node's usage.
type NodeReader interface {
	Read() (NodeUsage, error)
}

// CgroupNode reads the node's usage from the root cgroup under Root (/sys/fs/cgroup), as cAdvisor does
// for the kubelet: CPU from cpuacct.usage (v1) or cpu.stat usage_usec (v2); the working set is the memory in
// use less the inactive file cache (v1: memory.usage_in_bytes and memory.stat; v2, where the root has no
// memory.current: /proc/meminfo's MemTotal - MemFree - Inactive(file)).
type CgroupNode struct {
	Root    string
	Meminfo string // /proc/meminfo
}

func (n CgroupNode) Read() (NodeUsage, error) {
	u := NodeUsage{Time: time.Now()}
	var err error
	if usage, ok := readFirst(filepath.Join(n.Root, "cpuacct", "cpuacct.usage"), filepath.Join(n.Root, "cpu,cpuacct", "cpuacct.usage")); ok {
		ns, perr := strconv.ParseFloat(strings.TrimSpace(usage), 64)
		if perr != nil {
			return u, fmt.Errorf("cpuacct.usage: %w", perr)
		}
		u.CPUSeconds = ns / 1e9
		if u.WorkingSetBytes, err = n.memoryV1(); err != nil {
			return u, err
		}
		return u, nil
	}
	stat, err := readKeyed(filepath.Join(n.Root, "cpu.stat"))
	if err != nil {
		return u, fmt.Errorf("neither cgroup v1 cpuacct nor v2 cpu.stat: %w", err)
	}
	u.CPUSeconds = stat["usage_usec"] / 1e6
	info, err := readKeyed(n.Meminfo)
	if err != nil {
		return u, err
	}
	// /proc/meminfo counts in kB.
	u.WorkingSetBytes = max(info["MemTotal:"]-info["MemFree:"]-info["Inactive(file):"], 0) * 1024
	return u, nil
}

func (n CgroupNode) memoryV1() (float64, error) {
	usage, ok := readFirst(filepath.Join(n.Root, "memory", "memory.usage_in_bytes"))
	if !ok {
		return 0, errors.New("no memory.usage_in_bytes in the root memory cgroup")
	}
	bytes, err := strconv.ParseFloat(strings.TrimSpace(usage), 64)
	if err != nil {
		return 0, fmt.Errorf("memory.usage_in_bytes: %w", err)
	}
	stat, err := readKeyed(filepath.Join(n.Root, "memory", "memory.stat"))
	if err != nil {
		return 0, err
	}
	return max(bytes-stat["total_inactive_file"], 0), nil
}

// readFirst returns the content of the first of paths that can be read.
func readFirst(paths ...string) (string, bool) {
	for _, p := range paths {
		if data, err := os.ReadFile(p); err == nil {
			return string(data), true
		}
	}
	return "", false
}

// readKeyed reads "key value" lines (cgroup stat files, /proc/meminfo) into a map.
func readKeyed(path string) (map[string]float64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]float64{}
	scanner := bufio.NewScanner(f)
	for scanner.Scan() {
		fields := strings.Fields(scanner.Text())
		if len(fields) < 2 {
			continue
		}
		if v, err := strconv.ParseFloat(fields[1], 64); err == nil {
			out[fields[0]] = v
		}
	}
	return out, scanner.Err()
}

// bootTime is when the node started (btime in /proc/stat), the node's start time in the summary.
func bootTime() metav1.Time {
	stat, err := readKeyed("/proc/stat")
	if err != nil || stat["btime"] == 0 {
		return metav1.Time{}
	}
	return metav1.NewTime(time.Unix(int64(stat["btime"]), 0))
}
