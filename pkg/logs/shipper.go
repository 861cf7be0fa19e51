package logs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/klog/v2"
)

// ShipperConfig is what the shipper needs to know.
type ShipperConfig struct {
	// PodLogsDir is where the runtime writes container logs (the kubelet's /var/log/pods).
	PodLogsDir string
	// StateDir holds the checkpoints file.
	StateDir string
	// Receiver is the forward protocol receiver's host:port.
	Receiver string
	Gzip     bool
	// ChunkRecords and FlushInterval bound a chunk: it is sent when it holds that many records or when
	// that long passed since its first record.
	ChunkRecords  int
	FlushInterval time.Duration
	// Poll is how often the directory and idle files are looked at again.
	Poll time.Duration
	// Timeout bounds one exchange with the receiver; RetryMax bounds the wait between attempts.
	Timeout  time.Duration
	RetryMax time.Duration
	NodeName string
	// Pod returns the pod of a UID from the agent's cache, or nil.
	Pod func(uid string) *corev1.Pod
}

// Shipper sends the records of every container log under PodLogsDir to the receiver, one follower per file,
// and advances a file's checkpoint only after the receiver acknowledged the chunk that ends there: after a
// restart (kill -9 included) it resumes at the last acknowledged line, so records are never lost and only an
// unacknowledged chunk can arrive twice.
type Shipper struct {
	cfg         ShipperConfig
	checkpoints *checkpoints
}

// NewShipper loads the checkpoints a previous run left in StateDir.
func NewShipper(cfg ShipperConfig) (*Shipper, error) {
	cp, err := loadCheckpoints(filepath.Join(cfg.StateDir, "checkpoints.json"))
	if err != nil {
		return nil, err
	}
	return &Shipper{cfg: cfg, checkpoints: cp}, nil
}

// Run follows every container log it finds until ctx ends, and waits for its followers.
func (s *Shipper) Run(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	following := map[string]bool{}
	for {
		logs, err := Discover(s.cfg.PodLogsDir)
		if err != nil {
			klog.ErrorS(err, "Listing container logs")
		}
		for _, l := range logs {
			if following[l.Path] {
				continue
			}
			following[l.Path] = true
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.follow(ctx, l)
			}()
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(s.cfg.Poll):
		}
	}
}

// follow ships one container's log until ctx ends.
func (s *Shipper) follow(ctx context.Context, l ContainerLog) {
	tailer, err := OpenTailer(l.Path, s.checkpoints.get(l.Path), s.cfg.Poll)
	if err != nil {
		klog.ErrorS(err, "Cannot follow a container log", "path", l.Path)
		return
	}
	defer tailer.Close()
	client := &ForwardClient{Address: s.cfg.Receiver, Gzip: s.cfg.Gzip, Timeout: s.cfg.Timeout}
	defer client.Close()
	joiner := NewJoiner()
	var batch []Entry
	var batchEnd Position
	var flushAt time.Time
	var meta map[string]any // the pod's metadata, looked up once per chunk and shared by its records
	for {
		wait := s.cfg.Poll
		if len(batch) > 0 {
			wait = max(time.Until(flushAt), time.Millisecond)
		}
		readCtx, cancel := context.WithTimeout(ctx, wait)
		line, pos, err := tailer.Next(readCtx)
		cancel()
		switch {
		case err == nil:
			if rec, ok := joiner.Add(line); ok {
				if len(batch) == 0 {
					flushAt = time.Now().Add(s.cfg.FlushInterval)
					meta = s.metadata(l)
				}
				batch = append(batch, entry(rec, meta))
			}
			if !joiner.Pending() {
				batchEnd = pos // a checkpoint never falls inside a line split in parts
			}
		case ctx.Err() != nil:
			return
		case !errors.Is(err, context.DeadlineExceeded):
			klog.ErrorS(err, "Reading a container log", "path", l.Path)
			return
		}
		if len(batch) > 0 && (len(batch) >= s.cfg.ChunkRecords || !time.Now().Before(flushAt)) {
			if !s.send(ctx, client, DefaultTag(l, containerID(s.cfg.Pod(l.UID), l.Container)), batch) {
				return
			}
			if err := s.checkpoints.set(l.Path, batchEnd); err != nil {
				klog.ErrorS(err, "Saving a log checkpoint", "path", l.Path)
			}
			batch = nil
		}
	}
}

// send delivers one chunk, trying again with back-off until it is acknowledged; false when ctx ended first.
func (s *Shipper) send(ctx context.Context, client *ForwardClient, tag string, batch []Entry) bool {
	backoff := 100 * time.Millisecond
	for {
		err := client.Send(ctx, tag, batch)
		if err == nil {
			return true
		}
		klog.V(2).InfoS("Log chunk not delivered, trying again", "records", len(batch), "in", backoff, "err", err)
		select {
		case <-ctx.Done():
			return false
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, s.cfg.RetryMax)
	}
}

// metadata is what Fluent Bit's kubernetes filter adds to a container's records.
func (s *Shipper) metadata(l ContainerLog) map[string]any {
	k8s := map[string]any{"namespace_name": l.Namespace, "pod_name": l.Pod, "pod_id": l.UID,
		"container_name": l.Container, "host": s.cfg.NodeName}
	if pod := s.cfg.Pod(l.UID); pod != nil {
		labels := map[string]any{}
		for k, v := range pod.Labels {
			labels[k] = v
		}
		k8s["labels"] = labels
		for _, c := range pod.Spec.Containers {
			if c.Name == l.Container {
				k8s["container_image"] = c.Image
			}
		}
	}
	return k8s
}

// entry is a record with its container's metadata.
func entry(r Record, meta map[string]any) Entry {
	t := r.Time
	if r.Malformed {
		t = time.Now()
	}
	return Entry{Time: t, Record: map[string]any{"log": r.Message, "stream": string(r.Stream), "kubernetes": meta}}
}

func containerID(pod *corev1.Pod, container string) string {
	if pod == nil {
		return ""
	}
	for _, st := range pod.Status.ContainerStatuses {
		if st.Name == container {
			if _, id, ok := strings.Cut(st.ContainerID, "://"); ok {
				return id
			}
		}
	}
	return ""
}

// checkpoints are the acknowledged positions of every file, saved to one JSON file (temp + rename) on
// each change.
type checkpoints struct {
	path string
	mu   sync.Mutex
	pos  map[string]Position
}

func loadCheckpoints(path string) (*checkpoints, error) {
	c := &checkpoints{path: path, pos: map[string]Position{}}
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading log checkpoints: %w", err)
	}
	if err := json.Unmarshal(data, &c.pos); err != nil {
		return nil, fmt.Errorf("log checkpoints %s: %w", path, err)
	}
	return c, nil
}

func (c *checkpoints) get(path string) Position {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pos[path]
}

func (c *checkpoints) set(path string, p Position) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pos[path] = p
	data, err := json.Marshal(c.pos)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(c.path), 0o700); err != nil {
		return err
	}
	tmp := c.path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, c.path)
}
