// Package imagegc owns removing unused container images when the image filesystem fills up, as the
// kubelet's image garbage collection does (imageGCHighThresholdPercent, imageGCLowThresholdPercent,
// imageMinimumGCAge). It removes images through CRI and nothing else: containers and their logs belong to
// the pod manager.
package imagegc

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"
)

// Runtime is what the collector needs of the container runtime.
type Runtime interface {
	ListImages(ctx context.Context, filter *runtimeapi.ImageFilter) ([]*runtimeapi.Image, error)
	RemoveImage(ctx context.Context, image *runtimeapi.ImageSpec) error
	ListContainers(ctx context.Context, filter *runtimeapi.ContainerFilter) ([]*runtimeapi.Container, error)
	Status(ctx context.Context, verbose bool) (*runtimeapi.StatusResponse, error)
}

// Config is the kubelet's image garbage collection policy.
type Config struct {
	// HighThresholdPercent of the image filesystem used starts a collection, which removes images until
	// LowThresholdPercent is used. 100 turns image removal off, under disk pressure too.
	HighThresholdPercent int
	LowThresholdPercent  int
	// MinAge is how long an image stays after it was first seen, used or not.
	MinAge time.Duration
	// Interval is how often images are looked at (the kubelet: 5 minutes).
	Interval time.Duration
}

// Usage reports the bytes used on the image filesystem and its capacity.
type Usage func(ctx context.Context) (used, capacity int64, err error)

// Manager remembers when it first saw each image and when a container last used it, and removes the
// least recently used images that no container uses when the image filesystem is over the threshold.
type Manager struct {
	cfg     Config
	runtime Runtime
	usage   Usage

	// mu serialises collections (Run's and the eviction manager's DeleteUnused) and guards images, the
	// records of the images seen, by image ID.
	mu     sync.Mutex
	images map[string]*record
}

type record struct {
	firstDetected, lastUsed time.Time
}

// New returns a collector; usage measures the image filesystem (see FilesystemUsage).
func New(cfg Config, runtime Runtime, usage Usage) *Manager {
	return &Manager{cfg: cfg, runtime: runtime, usage: usage, images: map[string]*record{}}
}

// Run looks at the images every interval until ctx ends.
func (m *Manager) Run(ctx context.Context) {
	ticker := time.NewTicker(m.cfg.Interval)
	defer ticker.Stop()
	for {
		if err := m.collect(ctx, time.Now()); err != nil && ctx.Err() == nil {
			klog.ErrorS(err, "Image garbage collection failed")
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

// collect updates the records and, when the image filesystem is used at or above the high threshold,
// removes unused images until it would be at the low one.
func (m *Manager) collect(ctx context.Context, now time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	images, inUse, err := m.detect(ctx, now)
	if err != nil {
		return err
	}
	if m.cfg.HighThresholdPercent >= 100 {
		return nil
	}
	used, capacity, err := m.usage(ctx)
	if err != nil {
		return fmt.Errorf("measuring the image filesystem: %w", err)
	}
	if capacity <= 0 || used*100 < int64(m.cfg.HighThresholdPercent)*capacity {
		return nil
	}
	toFree := used - int64(m.cfg.LowThresholdPercent)*capacity/100
	klog.InfoS("Image filesystem usage over the high threshold, removing unused images",
		"usedPercent", used*100/capacity, "highThresholdPercent", m.cfg.HighThresholdPercent, "bytesToFree", toFree)
	freed := m.free(ctx, images, inUse, toFree, now)
	if freed < toFree {
		return fmt.Errorf("wanted to free %d bytes of images, but only %d bytes were eligible to free", toFree, freed)
	}
	return nil
}

// DeleteUnused removes every image no container uses, the pinned sandbox image and images younger than
// MinAge aside, whatever the thresholds: what the kubelet's eviction manager does before it evicts a pod
// for disk.
func (m *Manager) DeleteUnused(ctx context.Context) error {
	if m.cfg.HighThresholdPercent >= 100 {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	now := time.Now()
	images, inUse, err := m.detect(ctx, now)
	if err != nil {
		return err
	}
	freed := m.free(ctx, images, inUse, math.MaxInt64, now)
	klog.InfoS("Removed the unused images for disk pressure", "bytesFreed", freed)
	return nil
}

// detect lists the images and the images the containers (running or not) use, and updates the records.
func (m *Manager) detect(ctx context.Context, now time.Time) ([]*runtimeapi.Image, map[string]bool, error) {
	images, err := m.runtime.ListImages(ctx, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("listing images: %w", err)
	}
	containers, err := m.runtime.ListContainers(ctx, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("listing containers: %w", err)
	}
	// The sandbox image counts as in use, as in the kubelet: sandboxes are not containers in CRI.
	inUse := map[string]bool{}
	if image := sandboxImage(ctx, m.runtime); image != "" {
		inUse[image] = true
	}
	for _, ct := range containers {
		inUse[ct.GetImageRef()] = true
		inUse[ct.GetImage().GetImage()] = true
	}
	seen := map[string]bool{}
	for _, img := range images {
		seen[img.Id] = true
		r := m.images[img.Id]
		if r == nil {
			r = &record{firstDetected: now}
			m.images[img.Id] = r
		}
		if used(img, inUse) {
			r.lastUsed = now
		}
	}
	for id := range m.images {
		if !seen[id] {
			delete(m.images, id) // removed by someone else
		}
	}
	return images, inUse, nil
}

// sandboxImage is the image the runtime starts sandboxes from, as containerd 1.x reports it in its verbose
// status ("config": {"sandboxImage": ...}); containerd 2 marks that image Pinned instead. "" when unknown.
func sandboxImage(ctx context.Context, rt Runtime) string {
	resp, err := rt.Status(ctx, true)
	if err != nil {
		klog.ErrorS(err, "Unable to read the runtime's status for its sandbox image")
		return ""
	}
	var cfg struct {
		SandboxImage string `json:"sandboxImage"`
	}
	if config, ok := resp.GetInfo()["config"]; ok && json.Unmarshal([]byte(config), &cfg) != nil {
		return ""
	}
	return cfg.SandboxImage
}

// used reports whether a container refers to the image, by ID or by one of its names.
func used(img *runtimeapi.Image, inUse map[string]bool) bool {
	if inUse[img.Id] {
		return true
	}
	return slices.ContainsFunc(append(slices.Clone(img.RepoTags), img.RepoDigests...), func(name string) bool { return inUse[name] })
}

// free removes images no container uses, least recently used first (then first detected first), skipping
// pinned ones (the sandbox image) and those younger than MinAge, until toFree bytes are freed; it returns
// the bytes freed.
func (m *Manager) free(ctx context.Context, images []*runtimeapi.Image, inUse map[string]bool, toFree int64, now time.Time) int64 {
	var candidates []*runtimeapi.Image
	for _, img := range images {
		r := m.images[img.Id]
		if used(img, inUse) || img.Pinned || r == nil || now.Sub(r.firstDetected) < m.cfg.MinAge {
			continue
		}
		candidates = append(candidates, img)
	}
	slices.SortStableFunc(candidates, func(a, b *runtimeapi.Image) int {
		ra, rb := m.images[a.Id], m.images[b.Id]
		if c := ra.lastUsed.Compare(rb.lastUsed); c != 0 {
			return c
		}
		return ra.firstDetected.Compare(rb.firstDetected)
	})
	var freed int64
	for _, img := range candidates {
		if freed >= toFree {
			break
		}
		if err := m.runtime.RemoveImage(ctx, &runtimeapi.ImageSpec{Image: img.Id}); err != nil {
			klog.ErrorS(err, "Unable to remove an unused image", "image", img.Id, "names", img.RepoTags)
			continue
		}
		klog.InfoS("Removed an unused image", "image", img.Id, "names", img.RepoTags, "size", img.Size)
		delete(m.images, img.Id)
		freed += int64(img.Size)
	}
	return freed
}

// FilesystemUsage returns a Usage that measures the filesystem holding the path that imageFs returns (the
// runtime's image filesystem, from CRI ImageFsInfo).
func FilesystemUsage(imageFs func(ctx context.Context) (string, error)) Usage {
	return func(ctx context.Context) (int64, int64, error) {
		path, err := imageFs(ctx)
		if err != nil {
			return 0, 0, err
		}
		var st unix.Statfs_t
		if err := unix.Statfs(path, &st); err != nil {
			return 0, 0, fmt.Errorf("statfs %s: %w", path, err)
		}
		capacity := int64(st.Blocks) * st.Bsize
		return capacity - int64(st.Bavail)*st.Bsize, capacity, nil
	}
}
