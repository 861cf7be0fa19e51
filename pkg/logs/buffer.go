package logs

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tinylib/msgp/msgp"
	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"
)

// Chunk is a message waiting in the buffer, with the place in the order it was put in (Seq) and the file
// position its last record ends at (so the file's checkpoint moves there once the chunk is acknowledged).
type Chunk struct {
	Seq uint64
	Message
	Path string
	End  Position
}

// DiskBuffer keeps chunks until they are acknowledged, in order. Chunks wait in memory (up to memLimit
// bytes); when one does not fit, its follower may wait for the sender to free memory, as long as the
// sender is moving (the oldest chunk in memory was put less than senderStuckAfter ago) and the follower's file is
// not at risk of rotating away; otherwise every chunk waiting is written to a file in a directory of the
// buffer's own, and new ones follow on disk until the disk part is empty again. So a crash
// (kill -9 included) loses only chunks whose lines are still after their files' checkpoints (no chunk of
// the same file is on disk then), and everything on disk survives it (a chunk is written to a temporary
// file and renamed: whole or absent). The buffer holds at most its limit in bytes: a chunk that takes it
// past the limit pushes out the oldest ones, and every record pushed out is counted, never dropped silently.
// A full disk is the limit come early: the oldest chunks on disk make room, counted the same way.
type DiskBuffer struct {
	dir             string
	limit, memLimit int64
	stuckAfter      time.Duration
	// added is signalled (without blocking) when a chunk is put in.
	added chan struct{}

	mu sync.Mutex
	// chunks are oldest first: all in memory, or all on disk.
	chunks  []chunkFile
	size    int64
	memSize int64
	// free holds memory for the next chunks' entries: that of acknowledged in-memory chunks, and the
	// builders' buffers that Put did not keep; freeSize is its bytes.
	free     [][]byte
	freeSize int64
	// freed is closed (and replaced) when a chunk leaves the buffer, waking the followers waiting for room.
	freed   chan struct{}
	nextSeq uint64
	// droppedChunks and droppedRecords count what the limit or a full disk pushed out since the buffer was
	// opened.
	droppedChunks, droppedRecords int
	// diskFull is set from a write that found the disk full until one succeeds, so that the condition is
	// logged once rather than for every chunk.
	diskFull bool
	// writeEntries writes a chunk file's contents; tests replace it to fill a disk without mounting one.
	writeEntries func(*os.File, net.Buffers) error
}

// chunkFile is what the buffer remembers of a chunk without reading its file; mem is the chunk itself while
// it is held in memory (nil once on disk).
type chunkFile struct {
	seq     uint64
	records int
	size    int64
	path    string
	end     Position
	mem     *Chunk
	putAt   time.Time
}

// senderStuckAfter is how long the oldest chunk in memory may wait before the sender counts as stuck (a
// receiver down or failing), and followers stop waiting for room and send what waits to disk.
const senderStuckAfter = 5 * time.Second

// A chunk's file is named <seq>.chunk, seq zero-padded so the names sort in order. It holds one msgpack
// array: [tag, log path, end inode, end offset, records, compressed, end head, entries] (without the end
// head, the end position's Head, in the files of earlier versions).
const chunkSuffix = ".chunk"

func chunkName(seq uint64) string { return fmt.Sprintf("%020d%s", seq, chunkSuffix) }

// OpenDiskBuffer opens (creating it if needed) the buffer in dir, with the chunks a previous run left there.
func OpenDiskBuffer(dir string, limit, memLimit int64) (*DiskBuffer, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating the log buffer %s: %w", dir, err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("reading the log buffer %s: %w", dir, err)
	}
	b := &DiskBuffer{dir: dir, limit: limit, memLimit: memLimit, stuckAfter: senderStuckAfter,
		added: make(chan struct{}, 1), freed: make(chan struct{}),
		writeEntries: func(f *os.File, data net.Buffers) error { _, err := data.WriteTo(f); return err }}
	for _, e := range entries {
		name := e.Name()
		seq, err := strconv.ParseUint(strings.TrimSuffix(name, chunkSuffix), 10, 64)
		if !strings.HasSuffix(name, chunkSuffix) || err != nil {
			continue // a temporary file of a write the agent did not finish, or not ours
		}
		c, err := readChunkHeader(filepath.Join(dir, name))
		if err != nil {
			return nil, err
		}
		c.seq = seq
		b.chunks = append(b.chunks, c)
		b.size += c.size
		b.nextSeq = max(b.nextSeq, seq+1)
	}
	slices.SortFunc(b.chunks, func(x, y chunkFile) int { return cmp.Compare(x.seq, y.seq) })
	return b, nil
}

func readChunkHeader(name string) (chunkFile, error) {
	f, err := os.Open(name)
	if err != nil {
		return chunkFile{}, fmt.Errorf("reading a buffered chunk: %w", err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return chunkFile{}, fmt.Errorf("reading a buffered chunk: %w", err)
	}
	// The fields before the entries fit in the first 4 KiB with any tag and path the agent makes.
	head := make([]byte, 4096)
	n, err := io.ReadFull(f, head)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		return chunkFile{}, fmt.Errorf("reading a buffered chunk: %w", err)
	}
	c, err := decodeChunk(head[:n], false)
	if err != nil {
		return chunkFile{}, fmt.Errorf("buffered chunk %s: %w", name, err)
	}
	return chunkFile{records: c.Records, size: info.Size(), path: c.Path, end: c.End}, nil
}

// chunkHeader is the start of a chunk's file, up to the entries' bin header: the entries follow as they are.
func chunkHeader(c Chunk) []byte {
	b := msgp.AppendArrayHeader(make([]byte, 0, len(c.Tag)+len(c.Path)+64), 8)
	b = msgp.AppendString(b, c.Tag)
	b = msgp.AppendString(b, c.Path)
	b = msgp.AppendUint64(b, c.End.Inode)
	b = msgp.AppendInt64(b, c.End.Offset)
	b = msgp.AppendInt(b, c.Records)
	b = msgp.AppendBool(b, c.Compressed)
	b = msgp.AppendUint64(b, c.End.Head)
	return msgp.AppendBytesHeader(b, uint32(len(c.Entries)))
}

// decodeChunk reads a chunk file's array; with withEntries its entries too, sharing r's memory.
func decodeChunk(data []byte, withEntries bool) (Chunk, error) {
	var c Chunk
	n, rest, err := msgp.ReadArrayHeaderBytes(data)
	if err == nil && n != 7 && n != 8 {
		err = fmt.Errorf("%d fields, want 8", n)
	}
	if err == nil {
		c.Tag, rest, err = msgp.ReadStringBytes(rest)
	}
	if err == nil {
		c.Path, rest, err = msgp.ReadStringBytes(rest)
	}
	if err == nil {
		c.End.Inode, rest, err = msgp.ReadUint64Bytes(rest)
	}
	if err == nil {
		c.End.Offset, rest, err = msgp.ReadInt64Bytes(rest)
	}
	if err == nil {
		c.Records, rest, err = msgp.ReadIntBytes(rest)
	}
	if err == nil {
		c.Compressed, rest, err = msgp.ReadBoolBytes(rest)
	}
	if err == nil && n == 8 {
		c.End.Head, rest, err = msgp.ReadUint64Bytes(rest)
	}
	if err == nil && withEntries {
		c.Entries, _, err = msgp.ReadBytesZC(rest)
	}
	return c, err
}

// Put stores a chunk after the others (Seq is set here), then drops the oldest chunks
// while the buffer is over its limit. When the chunk does not fit in memory, Put waits for room while the
// sender is moving and mayWait (asked again every 50 ms) says the caller can afford to, until ctx ends.
// Files are not synced: a chunk survives the agent's crash, not the machine's; after a power loss the lines
// of a lost chunk are read again from their log file, which the checkpoint did not pass.
// Put takes c.Entries: it keeps them, or reuses their memory for later chunks (see Spare); the caller must
// not touch them again.
func (b *DiskBuffer) Put(ctx context.Context, c Chunk, mayWait func() bool) error {
	header := chunkHeader(c)
	size := int64(len(header) + len(c.Entries))
	b.mu.Lock()
	defer b.mu.Unlock()
	for {
		onDisk := len(b.chunks) > 0 && b.chunks[len(b.chunks)-1].mem == nil
		full := b.memSize+size > b.memLimit && b.memSize > 0
		moving := len(b.chunks) > 0 && time.Since(b.chunks[0].putAt) < b.stuckAfter
		if onDisk || !full || !moving || size > b.memLimit || !mayWait() {
			break
		}
		freed := b.freed
		b.mu.Unlock()
		select {
		case <-ctx.Done():
		case <-freed:
		case <-time.After(50 * time.Millisecond):
		}
		b.mu.Lock()
		if err := ctx.Err(); err != nil {
			return err // the agent stops: the chunk's lines are read again from its file next time
		}
	}
	c.Seq = b.nextSeq
	onDisk := len(b.chunks) > 0 && b.chunks[len(b.chunks)-1].mem == nil
	entry := chunkFile{seq: c.Seq, records: c.Records, size: size, path: c.Path, end: c.End, putAt: time.Now()}
	if !onDisk && b.memSize+size <= b.memLimit {
		kept := c
		if cap(c.Entries) > 2*len(c.Entries) {
			// A small chunk (flushed early) does not hold on to its builder's big buffer while it waits.
			kept.Entries = append(b.takeBuffer(len(c.Entries)), c.Entries...)
			b.recycle(c.Entries)
		}
		entry.mem = &kept
		b.memSize += size
	} else {
		kept, err := b.putOnDisk(header, c)
		b.recycle(c.Entries)
		if err != nil || !kept {
			return err
		}
	}
	b.nextSeq++
	b.chunks = append(b.chunks, entry)
	b.size += size
	for b.size > b.limit && len(b.chunks) > 1 {
		oldest := b.chunks[0]
		if err := b.remove(oldest, false); err != nil {
			return err
		}
		b.droppedChunks++
		b.droppedRecords += oldest.records
	}
	select {
	case b.added <- struct{}{}:
	default:
	}
	return nil
}

// putOnDisk writes everything waiting in memory to disk, oldest first (so no file has a chunk on disk after
// one in memory), then c. When the disk is full, the oldest chunk on disk goes to make room, counted as
// dropped, and the writes are tried again; when no chunk is on disk (something else filled it), c itself
// is dropped and counted and the chunks in memory stay there. The caller holds b.mu; kept says whether c
// is now on disk.
func (b *DiskBuffer) putOnDisk(header []byte, c Chunk) (kept bool, err error) {
	for {
		err := b.spill()
		if err == nil {
			err = b.writeChunk(header, c)
		}
		if !errors.Is(err, syscall.ENOSPC) {
			b.diskFull = b.diskFull && err != nil
			return err == nil, err
		}
		if !b.diskFull {
			klog.ErrorS(err, "The log buffer's disk is full: the oldest chunks are dropped and counted in fluentbit_output_dropped_records_total until there is room", "dir", b.dir)
			b.diskFull = true
		}
		i := slices.IndexFunc(b.chunks, func(x chunkFile) bool { return x.mem == nil })
		if i < 0 {
			b.droppedChunks++
			b.droppedRecords += c.Records
			return false, nil
		}
		oldest := b.chunks[i]
		if err := b.remove(oldest, false); err != nil {
			return false, err
		}
		b.droppedChunks++
		b.droppedRecords += oldest.records
	}
}

// writeChunk writes a chunk's file through a temporary file and a rename.
func (b *DiskBuffer) writeChunk(header []byte, c Chunk) error {
	tmp, err := os.CreateTemp(b.dir, ".put-*")
	if err != nil {
		return fmt.Errorf("buffering a chunk: %w", err)
	}
	err = b.writeEntries(tmp, net.Buffers{header, c.Entries})
	if closeErr := tmp.Close(); err == nil {
		err = closeErr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), filepath.Join(b.dir, chunkName(c.Seq)))
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("buffering a chunk: %w", err)
	}
	return nil
}

// Spare returns an empty buffer with room for n bytes for the next chunk's entries, made of a used
// chunk's memory when one is about that size, so that the follower need not allocate (and clear) one.
func (b *DiskBuffer) Spare(n int) []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.takeBuffer(n)
}

// takeBuffer returns an empty slice with room for n bytes, reusing a free buffer of n to 2n bytes if there
// is one (a bigger one would be kept from the chunks it suits), the most recently freed first: it is the
// likeliest to be still in a processor's cache.
func (b *DiskBuffer) takeBuffer(n int) []byte {
	for i := len(b.free) - 1; i >= 0; i-- {
		if buf := b.free[i]; cap(buf) >= n && cap(buf) <= 2*n {
			b.free = slices.Delete(b.free, i, i+1)
			b.freeSize -= int64(cap(buf))
			return buf[:0]
		}
	}
	// New memory is mapped in one call (MADV_POPULATE_WRITE, Linux 5.14; an older kernel refuses it, and the
	// pages fault in as before): faulted in as the follower first writes it, a megabyte was 256 page faults,
	// and faults were 7% of the agent's CPU samples in bench logs (0.94 against 1.02 CPU s per GB with it).
	buf := make([]byte, n)
	_ = unix.Madvise(buf, unix.MADV_POPULATE_WRITE)
	return buf[:0]
}

// Spill writes the chunks waiting in memory to disk, as the agent stops, so they are kept even if their
// files are rotated away before it is back.
func (b *DiskBuffer) Spill() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.spill()
}

// spill writes every chunk in memory to disk, oldest first; the caller holds b.mu.
func (b *DiskBuffer) spill() error {
	for i := range b.chunks {
		if m := b.chunks[i].mem; m != nil {
			if err := b.writeChunk(chunkHeader(*m), *m); err != nil {
				return err
			}
			b.chunks[i].mem = nil // its memory may still be on its way to the receiver: not reused
			b.memSize -= b.chunks[i].size
		}
	}
	return nil
}

// Added is signalled when a chunk was put in since the last receive.
func (b *DiskBuffer) Added() <-chan struct{} { return b.added }

// Oldest returns up to len(bufs) chunks to send next, oldest first from sequence number from on (the
// sender skips those it has written and waits for), read into bufs (grown as needed and returned for the
// next call, so a busy sender does not make a megabyte of garbage per chunk): a chunk's entries are valid
// until its buffer is passed to Oldest again.
func (b *DiskBuffer) Oldest(from uint64, bufs [][]byte) ([]Chunk, error) {
	b.mu.Lock()
	first, _ := slices.BinarySearchFunc(b.chunks, from, func(c chunkFile, seq uint64) int { return cmp.Compare(c.seq, seq) })
	files := slices.Clone(b.chunks[first:min(first+len(bufs), len(b.chunks))])
	b.mu.Unlock()
	var out []Chunk
	for i, f := range files {
		if f.mem != nil {
			out = append(out, *f.mem)
			continue
		}
		data, err := readInto(filepath.Join(b.dir, chunkName(f.seq)), bufs[i])
		if errors.Is(err, os.ErrNotExist) {
			continue // dropped by the limit since
		}
		if err != nil {
			return nil, fmt.Errorf("reading a buffered chunk: %w", err)
		}
		bufs[i] = data
		c, err := decodeChunk(data, true)
		if err != nil {
			return nil, fmt.Errorf("buffered chunk %d: %w", f.seq, err)
		}
		c.Seq = f.seq
		out = append(out, c)
	}
	return out, nil
}

// readInto reads a whole file into buf, growing it if the file is larger.
func readInto(name string, buf []byte) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return buf, err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return buf, err
	}
	if int64(cap(buf)) < info.Size() {
		buf = make([]byte, info.Size())
	}
	buf = buf[:info.Size()]
	if _, err := io.ReadFull(f, buf); err != nil {
		return buf, err
	}
	return buf, nil
}

// Ack removes an acknowledged chunk. Acknowledging one the limit already dropped is no error.
func (b *DiskBuffer) Ack(seq uint64) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	i := slices.IndexFunc(b.chunks, func(c chunkFile) bool { return c.seq == seq })
	if i < 0 {
		return nil
	}
	return b.remove(b.chunks[i], true)
}

// recycle keeps a buffer for later chunks, the most recent first, as many bytes as chunks may wait in
// memory: while the receivers keep up, a busy buffer's chunks come back about as fast as new ones start, in
// bursts of acks. Keeping 16 buffers, as before, dropped 104 of them in a gigabyte of 200-byte lines (bench
// logs), each a new megabyte to allocate and fault in later: 120 allocations against 49 now, 40 of them the
// followers' first chunks.
func (b *DiskBuffer) recycle(buf []byte) {
	if cap(buf) == 0 {
		return
	}
	b.free = append(b.free, buf[:0])
	b.freeSize += int64(cap(buf))
	for b.freeSize > b.memLimit {
		b.freeSize -= int64(cap(b.free[0]))
		b.free = slices.Delete(b.free, 0, 1)
	}
}

// ReleaseSpares lets go of the memory kept for later chunks: the sender calls it once nothing was put for a
// while, so that an idle agent does not keep a burst's buffers.
func (b *DiskBuffer) ReleaseSpares() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.free, b.freeSize = nil, 0
}

// remove forgets a chunk; acknowledged says the sender is done with an in-memory chunk's entries, which
// can then be reused.
func (b *DiskBuffer) remove(c chunkFile, acknowledged bool) error {
	if c.mem != nil {
		if acknowledged {
			b.recycle(c.mem.Entries)
		}
		b.memSize -= c.size
	} else if err := os.Remove(filepath.Join(b.dir, chunkName(c.seq))); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing a buffered chunk: %w", err)
	}
	b.chunks = slices.DeleteFunc(b.chunks, func(x chunkFile) bool { return x.seq == c.seq })
	b.size -= c.size
	close(b.freed)
	b.freed = make(chan struct{})
	return nil
}

// Ends returns, for each log path with chunks waiting, the position its newest chunk ends at: where reading
// that file resumes after a restart, since everything before it is in the buffer or acknowledged.
func (b *DiskBuffer) Ends() map[string]Position {
	b.mu.Lock()
	defer b.mu.Unlock()
	ends := map[string]Position{}
	for _, c := range b.chunks {
		ends[c.path] = c.end
	}
	return ends
}

// BufferStats is what the buffer holds (in all, and of it in memory) and what its limit dropped since it
// was opened.
type BufferStats struct {
	Bytes, MemoryBytes            int64
	Chunks                        int
	DroppedChunks, DroppedRecords int
}

// Stats returns the buffer's figures.
func (b *DiskBuffer) Stats() BufferStats {
	b.mu.Lock()
	defer b.mu.Unlock()
	return BufferStats{Bytes: b.size, MemoryBytes: b.memSize, Chunks: len(b.chunks), DroppedChunks: b.droppedChunks, DroppedRecords: b.droppedRecords}
}
