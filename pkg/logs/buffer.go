package logs

import (
	"bufio"
	"bytes"
	"cmp"
	"errors"
	"fmt"
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
	c, err := decodeChunk(msgp.NewReader(bufio.NewReaderSize(f, 4096)), false)
	if err != nil {
		return chunkFile{}, fmt.Errorf("buffered chunk %s: %w", name, err)
	}
	return chunkFile{records: c.Records, size: info.Size(), path: c.Path, end: c.End}, nil
}

func encodeChunk(c Chunk) []byte {
	b := msgp.AppendArrayHeader(nil, 7)
	b = msgp.AppendString(b, c.Tag)
	b = msgp.AppendString(b, c.Path)
	b = msgp.AppendUint64(b, c.End.Inode)
	b = msgp.AppendInt64(b, c.End.Offset)
	b = msgp.AppendInt(b, c.Records)
	b = msgp.AppendBool(b, c.Compressed)
	return msgp.AppendBytes(b, c.Entries)
}

// decodeChunk reads a chunk file's array; its entries only when withEntries.
func decodeChunk(r *msgp.Reader, withEntries bool) (Chunk, error) {
	var c Chunk
	n, err := r.ReadArrayHeader()
	if err == nil && n != 7 {
		err = fmt.Errorf("%d fields, want 7", n)
	}
	if err == nil {
		c.Tag, err = r.ReadString()
	}
	if err == nil {
		c.Path, err = r.ReadString()
	}
	if err == nil {
		c.End.Inode, err = r.ReadUint64()
	}
	if err == nil {
		c.End.Offset, err = r.ReadInt64()
	}
	if err == nil {
		c.Records, err = r.ReadInt()
	}
	if err == nil {
		c.Compressed, err = r.ReadBool()
	}
	if err == nil && withEntries {
		c.Entries, err = r.ReadBytes(nil)
	}
	return c, err
}

// Put stores a chunk after the others (Seq is set here), then drops the oldest chunks while the buffer is
// over its limit. The file is not synced: a chunk survives the agent's crash, not the machine's; after a
// power loss the lines of a lost chunk are read again from their log file, which the checkpoint did not pass.
func (b *DiskBuffer) Put(c Chunk) error {
	data := encodeChunk(c)
	b.mu.Lock()
	defer b.mu.Unlock()
	seq := b.nextSeq
	tmp, err := os.CreateTemp(b.dir, ".put-*")
	if err != nil {
		return fmt.Errorf("buffering a chunk: %w", err)
	}
	_, err = tmp.Write(data)
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
	b.chunks = append(b.chunks, chunkFile{seq: seq, records: c.Records, size: int64(len(data)), path: c.Path, end: c.End})
	b.size += int64(len(data))
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

// Oldest returns up to n chunks to send next, oldest first.
func (b *DiskBuffer) Oldest(n int) ([]Chunk, error) {
	b.mu.Lock()
	files := slices.Clone(b.chunks[:min(n, len(b.chunks))])
	b.mu.Unlock()
	var out []Chunk
	for _, f := range files {
		data, err := os.ReadFile(filepath.Join(b.dir, chunkName(f.seq)))
		if errors.Is(err, os.ErrNotExist) {
			continue // dropped by the limit since
		}
		if err != nil {
			return nil, fmt.Errorf("reading a buffered chunk: %w", err)
		}
		c, err := decodeChunk(msgp.NewReader(bytes.NewReader(data)), true)
		if err != nil {
			return nil, fmt.Errorf("buffered chunk %d: %w", f.seq, err)
		}
		c.Seq = f.seq
		out = append(out, c)
	}
	return out, nil
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
