package logs

import (
	"cmp"
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

	"github.com/tinylib/msgp/msgp"
)

// Chunk is a message waiting in the buffer, with the place in the order it was put in (Seq) and the file
// position its last record ends at (so the file's checkpoint moves there once the chunk is acknowledged).
type Chunk struct {
	Seq uint64
	Message
	Path string
	End  Position
}

// DiskBuffer keeps chunks in files in a directory of its own until they are acknowledged, in order, across
// agent restarts (kill -9 included: a chunk is written to a temporary file and renamed, so one is either
// whole or absent). It holds at most its limit in bytes: a chunk that takes it past the limit pushes out
// the oldest ones, and every record pushed out is counted, never dropped silently.
type DiskBuffer struct {
	dir   string
	limit int64
	// added is signalled (without blocking) when a chunk is put in.
	added chan struct{}

	mu      sync.Mutex
	chunks  []chunkFile // oldest first
	size    int64
	nextSeq uint64
	// droppedChunks and droppedRecords count what the limit pushed out since the buffer was opened.
	droppedChunks, droppedRecords int
}

// chunkFile is what the buffer remembers of a chunk without reading its file.
type chunkFile struct {
	seq     uint64
	records int
	size    int64
	path    string
	end     Position
}

// A chunk's file is named <seq>.chunk, seq zero-padded so the names sort in order. It holds one msgpack
// array: [tag, log path, end inode, end offset, records, compressed, entries].
const chunkSuffix = ".chunk"

func chunkName(seq uint64) string { return fmt.Sprintf("%020d%s", seq, chunkSuffix) }

// OpenDiskBuffer opens (creating it if needed) the buffer in dir, with the chunks a previous run left there.
func OpenDiskBuffer(dir string, limit int64) (*DiskBuffer, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating the log buffer %s: %w", dir, err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("reading the log buffer %s: %w", dir, err)
	}
	b := &DiskBuffer{dir: dir, limit: limit, added: make(chan struct{}, 1)}
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
	b := msgp.AppendArrayHeader(make([]byte, 0, len(c.Tag)+len(c.Path)+64), 7)
	b = msgp.AppendString(b, c.Tag)
	b = msgp.AppendString(b, c.Path)
	b = msgp.AppendUint64(b, c.End.Inode)
	b = msgp.AppendInt64(b, c.End.Offset)
	b = msgp.AppendInt(b, c.Records)
	b = msgp.AppendBool(b, c.Compressed)
	return msgp.AppendBytesHeader(b, uint32(len(c.Entries)))
}

// decodeChunk reads a chunk file's array; with withEntries its entries too, sharing r's memory.
func decodeChunk(data []byte, withEntries bool) (Chunk, error) {
	var c Chunk
	n, rest, err := msgp.ReadArrayHeaderBytes(data)
	if err == nil && n != 7 {
		err = fmt.Errorf("%d fields, want 7", n)
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
	if err == nil && withEntries {
		c.Entries, _, err = msgp.ReadBytesZC(rest)
	}
	return c, err
}

// Put stores a chunk after the others (Seq is set here), then drops the oldest chunks while the buffer is
// over its limit. The file is not synced: a chunk survives the agent's crash, not the machine's; after a
// power loss the lines of a lost chunk are read again from their log file, which the checkpoint did not pass.
func (b *DiskBuffer) Put(c Chunk) error {
	data := net.Buffers{chunkHeader(c), c.Entries}
	size := int64(len(data[0]) + len(data[1]))
	b.mu.Lock()
	defer b.mu.Unlock()
	seq := b.nextSeq
	tmp, err := os.CreateTemp(b.dir, ".put-*")
	if err != nil {
		return fmt.Errorf("buffering a chunk: %w", err)
	}
	_, err = data.WriteTo(tmp)
	if closeErr := tmp.Close(); err == nil {
		err = closeErr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), filepath.Join(b.dir, chunkName(seq)))
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("buffering a chunk: %w", err)
	}
	b.nextSeq++
	b.chunks = append(b.chunks, chunkFile{seq: seq, records: c.Records, size: size, path: c.Path, end: c.End})
	b.size += size
	for b.size > b.limit && len(b.chunks) > 1 {
		oldest := b.chunks[0]
		if err := b.remove(oldest); err != nil {
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

// Added is signalled when a chunk was put in since the last receive.
func (b *DiskBuffer) Added() <-chan struct{} { return b.added }

// Oldest returns up to len(bufs) chunks to send next, oldest first, read into bufs (grown as needed and
// returned for the next call, so a busy sender does not make a megabyte of garbage per chunk): a chunk's
// entries are valid until its buffer is passed to Oldest again.
func (b *DiskBuffer) Oldest(bufs [][]byte) ([]Chunk, error) {
	b.mu.Lock()
	files := slices.Clone(b.chunks[:min(len(bufs), len(b.chunks))])
	b.mu.Unlock()
	var out []Chunk
	for i, f := range files {
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
	return b.remove(b.chunks[i])
}

func (b *DiskBuffer) remove(c chunkFile) error {
	if err := os.Remove(filepath.Join(b.dir, chunkName(c.seq))); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing a buffered chunk: %w", err)
	}
	b.chunks = slices.DeleteFunc(b.chunks, func(x chunkFile) bool { return x.seq == c.seq })
	b.size -= c.size
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

// BufferStats is what the buffer holds and what its limit dropped since it was opened.
type BufferStats struct {
	Bytes                         int64
	Chunks                        int
	DroppedChunks, DroppedRecords int
}

// Stats returns the buffer's figures.
func (b *DiskBuffer) Stats() BufferStats {
	b.mu.Lock()
	defer b.mu.Unlock()
	return BufferStats{Bytes: b.size, Chunks: len(b.chunks), DroppedChunks: b.droppedChunks, DroppedRecords: b.droppedRecords}
}
