package logs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/tinylib/msgp/msgp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/klog/v2"
)

// ShipperConfig is what the shipper needs to know.
type ShipperConfig struct {
	// PodLogsDir is where the runtime writes container logs (the kubelet's /var/log/pods).
	PodLogsDir string
	// StateDir holds the checkpoints file and the buffer's chunks.
	StateDir string
	// Client sends to the receivers; the shipper is its only user.
	Client *ForwardClient
	// Tag makes a container's tag (see ParseTagTemplate).
	Tag *TagTemplate
	// Gzip sends CompressedPackedForward.
	Gzip bool
	// ParseJSON merges the fields of messages that are JSON objects into their records.
	ParseJSON bool
	// ChunkRecords, ChunkBytes and FlushInterval bound a chunk: it is closed when it holds that many records
	// or bytes, or when that long passed since its first record.
	ChunkRecords  int
	ChunkBytes    int
	FlushInterval time.Duration
	// BufferLimit bounds the bytes waiting; past it the oldest chunks are dropped and counted.
	// MemoryBufferLimit bounds the part kept in memory while the receivers keep up; past it chunks go to disk.
	BufferLimit, MemoryBufferLimit int64
	// InFlight is how many chunks the sender writes at once; it reads their acks after writing the next ones.
	InFlight int
	// Poll is how often idle files are looked at again, and the pod logs directory where inotify is missing
	// (logtree.go).
	Poll time.Duration
	// RetryMax bounds the wait between attempts to deliver.
	RetryMax time.Duration
	NodeName string
	// Pod returns a pod from the agent's cache by namespace, name and UID, or nil.
	Pod     func(namespace, name, uid string) *corev1.Pod
	Metrics prometheus.Registerer
}

// Shipper sends the records of every container log under PodLogsDir to the receivers. One follower per
// file reads, joins and encodes its records into chunks and puts them in the disk buffer, whatever the
// receiver's state (so a rotation while the receiver is down loses nothing); one sender takes the oldest
// chunks from the buffer, delivers them and, once they are acknowledged, advances their files'
// checkpoints. After a restart (kill -9 included) a file is read again from the end of its newest buffered
// chunk, or from its checkpoint: records are never lost, and only unacknowledged chunks can arrive twice.
type Shipper struct {
	cfg         ShipperConfig
	buffer      *DiskBuffer
	checkpoints *checkpoints
	metrics     *metrics
	// buffers are the followers' read buffers, lent while a follower reads.
	buffers *ReadBuffers
	// parsing holds a token for each follower building a chunk: one fewer than the Go scheduler's
	// processors (at least one), so that a burst of logs leaves a processor to the sender and the rest of
	// the agent (DNS answers, pod syncs) instead of every follower running at once. A token is the stage
	// its follower encodes records into (chunkBuilder.stage): as many stages as followers building.
	parsing chan []byte

	mu sync.Mutex
	// following holds the paths with a follower running.
	following map[string]bool
	// lastAck is when the receiver last acknowledged a chunk in this run.
	lastAck time.Time
}

// FileState is how far the shipper is with one container log file.
type FileState struct {
	Path string
	// Size is the file's length now.
	Size int64
	// Read is where reading continues: everything before it is in the buffer or acknowledged.
	Read int64
	// Acknowledged is the end of what the receiver acknowledged.
	Acknowledged int64
	// Following says whether a follower reads the file now.
	Following bool
}

// Files is the state of the current log files of the pod whose log directory is podLogDir.
func (s *Shipper) Files(podLogDir string) []FileState {
	paths, _ := filepath.Glob(filepath.Join(podLogDir, "*", "*.log"))
	var out []FileState
	for _, path := range paths {
		st := FileState{Path: path, Read: s.resumeAt(path).Offset, Acknowledged: s.checkpoints.get(path).Offset}
		if info, err := os.Stat(path); err == nil {
			st.Size = info.Size()
		}
		s.mu.Lock()
		st.Following = s.following[path]
		s.mu.Unlock()
		out = append(out, st)
	}
	return out
}

// LastAck is when the receiver last acknowledged records in this run; zero if it has not.
func (s *Shipper) LastAck() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastAck
}

// NewShipper opens the buffer and checkpoints a previous run left in StateDir.
func NewShipper(cfg ShipperConfig) (*Shipper, error) {
	cp, err := loadCheckpoints(filepath.Join(cfg.StateDir, "checkpoints.json"))
	if err != nil {
		return nil, err
	}
	buffer, err := OpenDiskBuffer(filepath.Join(cfg.StateDir, "buffer"), cfg.BufferLimit, cfg.MemoryBufferLimit)
	if err != nil {
		return nil, err
	}
	tokens := max(1, runtime.GOMAXPROCS(0)-1)
	s := &Shipper{cfg: cfg, buffer: buffer, checkpoints: cp, buffers: NewReadBuffers(), following: map[string]bool{},
		parsing: make(chan []byte, tokens)}
	for range tokens {
		s.parsing <- make([]byte, 0, stageBytes)
	}
	if s.metrics, err = newMetrics(cfg.Metrics, buffer); err != nil {
		return nil, err
	}
	return s, nil
}

// Run follows every container log it finds and delivers their records until ctx ends, then waits for its
// followers and sender and writes what still waits in memory to disk.
func (s *Shipper) Run(ctx context.Context) {
	var wg sync.WaitGroup
	defer func() {
		wg.Wait()
		s.checkpoints.close()
		if err := s.buffer.Spill(); err != nil {
			klog.ErrorS(err, "Keeping undelivered log chunks on disk")
		}
	}()
	wg.Add(1)
	go func() { defer wg.Done(); s.deliver(ctx) }()
	tree := watchLogTree(s.cfg.PodLogsDir, s.cfg.Poll)
	defer tree.close()
	for {
		logs, dirs := discover(s.cfg.PodLogsDir)
		present := map[string]bool{}
		for _, l := range logs {
			present[l.Path] = true
			if !s.startFollowing(l.Path) {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.follow(ctx, l, s.resumeAt(l.Path))
			}()
		}
		s.forgetRemoved(present)
		tree.watch(dirs)
		if !tree.wait(ctx) {
			return
		}
	}
}

// resumeAt is where reading path starts: the end of its newest buffered chunk, or else its checkpoint
// (everything before either is in the buffer or acknowledged).
func (s *Shipper) resumeAt(path string) Position {
	if end, ok := s.buffer.Ends()[path]; ok {
		return end
	}
	return s.checkpoints.get(path)
}

// forgetRemoved drops the checkpoints of files that are gone, followed by no one and with nothing buffered.
func (s *Shipper) forgetRemoved(present map[string]bool) {
	buffered := s.buffer.Ends()
	s.mu.Lock()
	following := maps.Clone(s.following)
	s.mu.Unlock()
	keep := func(path string) bool {
		_, waiting := buffered[path]
		return present[path] || following[path] || waiting
	}
	if err := s.checkpoints.keepOnly(keep); err != nil {
		klog.ErrorS(err, "Saving log checkpoints")
	}
}

func (s *Shipper) startFollowing(path string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.following[path] {
		return false
	}
	s.following[path] = true
	return true
}

func (s *Shipper) stopFollowing(path string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.following, path)
}

// follow reads one container log from start and puts its chunks in the buffer, until ctx ends or the file
// is removed (its pod deleted) and read to its end.
func (s *Shipper) follow(ctx context.Context, l ContainerLog, start Position) {
	defer s.stopFollowing(l.Path)
	tailer, err := OpenTailer(l.Path, start, s.buffers)
	if err != nil {
		klog.ErrorS(err, "Cannot follow a container log", "path", l.Path)
		return
	}
	defer tailer.Close()
	joiner := NewJoiner()
	// A chunk is closed at ChunkBytes or after the record that crosses it: room for one more typical line.
	chunk := &chunkBuilder{parseJSON: s.cfg.ParseJSON, capacity: s.cfg.ChunkBytes + 16<<10, spare: s.buffer.Spare}
	if tailer.Unread() >= int64(s.cfg.ChunkBytes) {
		chunk.expectFull()
	}
	var end Position
	var flushAt time.Time
	started := time.Now()
	countedSkips := 0 // of tailer.Skipped, added to the metric
	holding := false  // a parsing token
	release := func() {
		if holding {
			s.parsing <- chunk.returnStage()
			holding = false
		}
	}
	defer release()
	// begin readies the chunk for a record: a chunk's first record starts its flush interval.
	begin := func() {
		if chunk.records == 0 {
			flushAt = time.Now().Add(s.cfg.FlushInterval)
			chunk.setContainer(s.describe(l))
		}
	}
	for {
		if chunk.records == 0 && time.Since(started) < statusWait && s.containerIDPending(l) {
			// A container that just started writes before its status carries its ID; the first records
			// wait for it (at most statusWait), so that they get the same metadata and tag as the rest.
			select {
			case <-ctx.Done():
				return
			case <-time.After(s.cfg.Poll):
			}
			continue
		}
		if !holding {
			select {
			case <-ctx.Done():
				return
			case stage := <-s.parsing:
				chunk.useStage(stage)
				holding = true
			}
		}
		line, pos, err := tailer.readLine()
		if skipped := tailer.Skipped(); skipped > countedSkips {
			s.metrics.skippedFiles.Add(float64(skipped - countedSkips))
			countedSkips = skipped
		}
		idle, removed := err != nil && errors.Is(err, errNoLine), err != nil && errors.Is(err, io.EOF)
		switch {
		case err == nil:
			if sec, nsec, stream, msg, ok := joiner.wholeLine(line); ok {
				begin()
				chunk.addLine(sec, nsec, stream, msg, true)
			} else if rec, ok := joiner.Add(line); ok {
				begin()
				if rec.Malformed {
					s.metrics.malformed.Inc()
				}
				chunk.add(rec)
			}
			if !joiner.Pending() {
				end = pos // a checkpoint never falls inside a line split in parts
				if n := chunk.addUsualLines(joiner, tailer.buffered(), s.cfg.ChunkRecords, s.cfg.ChunkBytes); n > 0 {
					end = tailer.consume(n)
				}
			}
		case idle, removed:
		default:
			klog.ErrorS(err, "Reading a container log", "path", l.Path)
			return
		}
		// While lines keep coming a chunk fills up; the flush interval matters once the file is idle.
		full := chunk.records >= s.cfg.ChunkRecords || chunk.size() >= s.cfg.ChunkBytes
		if chunk.records > 0 && (full || removed || idle && !time.Now().Before(flushAt)) {
			release()
			if err := s.putChunk(ctx, l, chunk, end, tailer); err != nil {
				if ctx.Err() == nil {
					klog.ErrorS(err, "Buffering log records", "path", l.Path)
				}
				return // read again from the last buffered chunk when the file is next discovered
			}
			if ctx.Err() != nil {
				return
			}
		}
		if removed {
			klog.V(2).InfoS("Container log removed and read to its end", "path", l.Path)
			return
		}
		if idle {
			release()
			wait := s.cfg.Poll
			if chunk.records > 0 {
				wait = min(wait, time.Until(flushAt))
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
	}
}

// statusWait bounds how long a new container's first records wait for its ID in the pod's status.
const statusWait = 5 * time.Second

// containerIDPending reports whether the container's pod is known but its status has no ID for it yet.
func (s *Shipper) containerIDPending(l ContainerLog) bool {
	pod := s.cfg.Pod(l.Namespace, l.Pod, l.UID)
	return pod != nil && containerID(pod, l.Container) == ""
}

// putChunk closes the chunk being built and puts it in the buffer. When memory is full, the follower waits
// for the sender rather than sending chunks to disk, unless its file has rotated since it was opened
// (files it has not read yet could then be compressed or removed before it gets there).
func (s *Shipper) putChunk(ctx context.Context, l ContainerLog, chunk *chunkBuilder, end Position, tailer *Tailer) error {
	records, bytes := chunk.records, chunk.lineBytes
	msg, err := chunk.message(s.cfg.Gzip)
	if err != nil {
		return err
	}
	if err := s.buffer.Put(ctx, Chunk{Message: msg, Path: l.Path, End: end}, func() bool { return !tailer.Behind() }); err != nil {
		return err
	}
	s.metrics.inRecords.Add(float64(records))
	s.metrics.inBytes.Add(float64(bytes))
	return nil
}

// deliver sends the buffer's oldest chunks until ctx ends, trying again with back-off while the receivers
// fail, and moves the checkpoints of acknowledged chunks' files. It writes the next chunks before it reads
// the acks of those written last, so the receiver always has something to read.
func (s *Shipper) deliver(ctx context.Context) {
	defer s.cfg.Client.Close()
	backoff := 100 * time.Millisecond
	// The chunks being written are read into one set of buffers while the other holds those waiting.
	bufs := [2][][]byte{make([][]byte, s.cfg.InFlight), make([][]byte, s.cfg.InFlight)}
	var waiting []Chunk // written, their acks not read yet
	for turn := 0; ; turn = 1 - turn {
		from := uint64(0)
		if len(waiting) > 0 {
			from = waiting[len(waiting)-1].Seq + 1
		}
		next, err := s.buffer.Oldest(from, bufs[turn])
		if err != nil {
			klog.ErrorS(err, "Reading the log buffer")
		}
		if len(next) == 0 && len(waiting) == 0 {
			select {
			case <-ctx.Done():
				return
			case <-s.buffer.Added():
			case <-time.After(s.cfg.Poll): // idle (or a read error above, or a drop that raced a put)
				s.buffer.ReleaseSpares()
			}
			continue
		}
		written, err := s.send(ctx, next, waiting)
		if err != nil {
			s.metrics.errors.Inc()
			klog.V(2).InfoS("Log chunks not delivered, trying again", "chunks", len(waiting)+len(next), "in", backoff, "err", err)
			waiting = nil // the connection is closed: the buffer's oldest chunks go again
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			s.metrics.retries.Inc()
			backoff = min(2*backoff, s.cfg.RetryMax)
			continue
		}
		backoff = 100 * time.Millisecond
		waiting = next[:written]
	}
}

// send writes next, then reads the acks of the chunks waiting and records their delivery; it returns how
// many of next were written.
func (s *Shipper) send(ctx context.Context, next, waiting []Chunk) (int, error) {
	written := 0
	if len(next) > 0 {
		msgs := make([]Message, len(next))
		for i, c := range next {
			msgs[i] = c.Message
		}
		var err error
		if written, err = s.cfg.Client.Write(ctx, msgs); err != nil {
			return 0, err
		}
	}
	if len(waiting) == 0 {
		return written, nil
	}
	if err := s.cfg.Client.Wait(ctx, len(waiting)); err != nil {
		return 0, err
	}
	if err := s.acknowledged(waiting); err != nil {
		klog.ErrorS(err, "Recording delivered log chunks")
	}
	return written, nil
}

// acknowledged moves the checkpoints past the chunks, then removes them from the buffer: a crash between
// the two sends them again, never loses them.
func (s *Shipper) acknowledged(chunks []Chunk) error {
	ends := map[string]Position{}
	for _, c := range chunks {
		ends[c.Path] = c.End
		s.metrics.outRecords.Add(float64(c.Records))
		s.metrics.outBytes.Add(float64(len(c.Entries)))
	}
	if err := s.checkpoints.set(ends); err != nil {
		return err
	}
	s.mu.Lock()
	s.lastAck = time.Now()
	s.mu.Unlock()
	for _, c := range chunks {
		if err := s.buffer.Ack(c.Seq); err != nil {
			return err
		}
	}
	return nil
}

// describe returns what Fluent Bit's kubernetes filter adds to a container's records, encoded as a msgpack
// map, and the records' tag, both from one look at the pod.
func (s *Shipper) describe(l ContainerLog) (meta []byte, tag string) {
	k8s := map[string]any{"namespace_name": l.Namespace, "pod_name": l.Pod, "pod_id": l.UID,
		"container_name": l.Container, "host": s.cfg.NodeName}
	pod := s.cfg.Pod(l.Namespace, l.Pod, l.UID)
	if pod != nil {
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
		if id := containerID(pod, l.Container); id != "" {
			k8s["container_id"] = id
		}
	}
	encoded, err := msgp.AppendIntf(nil, k8s)
	if err != nil {
		panic(fmt.Sprintf("encoding strings cannot fail: %v", err))
	}
	return encoded, s.cfg.Tag.Execute(l, containerID(pod, l.Container), s.cfg.NodeName)
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
