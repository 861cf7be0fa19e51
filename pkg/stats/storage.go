package stats

import (
	"io/fs"
	"path/filepath"
	"syscall"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	statsapi "k8s.io/kubelet/pkg/apis/stats/v1alpha1"
)

// PodStorage is what a pod keeps on the node besides its containers' writable layers: its local volumes and
// its log directory.
type PodStorage struct {
	Volumes []Volume
	LogDir  string
}

// Volume is a pod volume kept in the pod's directory; one in memory is not part of its ephemeral storage.
type Volume struct {
	Name, Path string
	InMemory   bool
}

// usageMaxAge is how long a directory's measured usage is reused, as the kubelet keeps its volume stats
// for a minute (volumeStatsAggPeriod): walking every volume of 110 pods on each request would cost more
// than the answer is worth.
const usageMaxAge = time.Minute

// dirUsage is what a directory tree holds: its blocks in bytes, as du counts them, and its inodes.
type dirUsage struct {
	bytes, inodes uint64
	at            time.Time
}

// measure walks dir, each inode once (hard links are counted once, symbolic links not followed); a missing
// directory holds nothing.
func measure(dir string, now time.Time) dirUsage {
	u := dirUsage{at: now}
	seen := map[uint64]bool{}
	_ = filepath.WalkDir(dir, func(path string, _ fs.DirEntry, err error) error {
		if err != nil {
			return nil // gone meanwhile, or unreadable: counted as empty
		}
		var st syscall.Stat_t
		if syscall.Lstat(path, &st) != nil || seen[st.Ino] {
			return nil
		}
		seen[st.Ino] = true
		u.bytes += uint64(st.Blocks) * 512
		u.inodes++
		return nil
	})
	return u
}

// usage is dir's usage, measured at most once per usageMaxAge; s.mu must be held.
func (s *Summarizer) usage(dir string, now time.Time, used map[string]bool) dirUsage {
	used[dir] = true
	if u, ok := s.usages[dir]; ok && now.Sub(u.at) < usageMaxAge {
		return u
	}
	u := measure(dir, now)
	if s.usages == nil {
		s.usages = map[string]dirUsage{}
	}
	s.usages[dir] = u
	return u
}

// addStorage fills a pod's volume stats and its ephemeral storage: the containers' writable layers, its logs
// and its volumes on disk, on the node's filesystem (the kubelet's PodStats.EphemeralStorage).
func (s *Summarizer) addStorage(p *statsapi.PodStats, storage PodStorage, now metav1.Time, used map[string]bool) {
	var bytes, inodes uint64
	for _, c := range p.Containers {
		if c.Rootfs != nil && c.Rootfs.UsedBytes != nil {
			bytes += *c.Rootfs.UsedBytes
		}
		if c.Rootfs != nil && c.Rootfs.InodesUsed != nil {
			inodes += *c.Rootfs.InodesUsed
		}
	}
	if storage.LogDir != "" {
		logs := s.usage(storage.LogDir, now.Time, used)
		bytes, inodes = bytes+logs.bytes, inodes+logs.inodes
	}
	for _, v := range storage.Volumes {
		u := s.usage(v.Path, now.Time, used)
		fs := fsStats(now, v.Path, &u.bytes)
		if fs == nil {
			continue // not set up (yet)
		}
		fs.InodesUsed = &u.inodes
		p.VolumeStats = append(p.VolumeStats, statsapi.VolumeStats{Name: v.Name, FsStats: *fs})
		if !v.InMemory {
			bytes, inodes = bytes+u.bytes, inodes+u.inodes
		}
	}
	if eph := fsStats(now, s.RootDir, &bytes); eph != nil {
		eph.InodesUsed = &inodes
		p.EphemeralStorage = eph
	}
}

// forgetUnused drops the measured usage of directories no pod has any more; s.mu must be held.
func (s *Summarizer) forgetUnused(used map[string]bool) {
	for dir := range s.usages {
		if !used[dir] {
			delete(s.usages, dir)
		}
	}
}
