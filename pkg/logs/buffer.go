package logs

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// Chunk is a batch of records waiting in the buffer: its sequence number (its place in the order), how many
// records it holds, and their encoded bytes.
type Chunk struct {
	Seq     uint64
	Records int
	Data    []byte
}

// DiskBuffer keeps chunks in files in a directory of its own until they are acknowledged, in order, across
// agent restarts. It holds at most Limit bytes: a chunk that takes it past the limit pushes out the oldest
// ones, and every record pushed out is counted, never dropped silently.
type DiskBuffer struct {
	dir   string
	limit int64

	mu      sync.Mutex
	chunks  []chunkFile // oldest first
	size    int64
	nextSeq uint64
	// droppedChunks and droppedRecords count what the limit pushed out since the buffer was opened.
	droppedChunks, droppedRecords int
}

type chunkFile struct {
	seq     uint64
	records int
	size    int64
}

// A chunk's file is named <seq>-<records>.chunk; seq is zero-padded so the names sort in order.
const chunkSuffix = ".chunk"

func chunkName(seq uint64, records int) string {
	return fmt.Sprintf("%020d-%d%s", seq, records, chunkSuffix)
}

// OpenDiskBuffer opens (creating it if needed) the buffer in dir, with the chunks a previous run left there.
func OpenDiskBuffer(dir string, limit int64) (*DiskBuffer, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating the log buffer %s: %w", dir, err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("reading the log buffer %s: %w", dir, err)
	}
	b := &DiskBuffer{dir: dir, limit: limit}
	for _, e := range entries {
		name := e.Name()
		seqText, recordsText, ok := strings.Cut(strings.TrimSuffix(name, chunkSuffix), "-")
		seq, err1 := strconv.ParseUint(seqText, 10, 64)
		records, err2 := strconv.Atoi(recordsText)
		if !strings.HasSuffix(name, chunkSuffix) || !ok || err1 != nil || err2 != nil {
			continue // a temporary file of a write the agent did not finish, or not ours
		}
		info, err := e.Info()
		if err != nil {
			return nil, err
		}
		b.chunks = append(b.chunks, chunkFile{seq: seq, records: records, size: info.Size()})
		b.size += info.Size()
		b.nextSeq = max(b.nextSeq, seq+1)
	}
	slices.SortFunc(b.chunks, func(x, y chunkFile) int { return cmp.Compare(x.seq, y.seq) })
	return b, nil
}

// Put stores a chunk of records after the others (written to a temporary file, then renamed, so a crash
// leaves either the whole chunk or none), then drops the oldest chunks while the buffer is over its limit.
func (b *DiskBuffer) Put(records int, data []byte) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	seq := b.nextSeq
	tmp, err := os.CreateTemp(b.dir, ".put-*")
	if err != nil {
		return fmt.Errorf("buffering a chunk: %w", err)
	}
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Sync()
	}
	if closeErr := tmp.Close(); err == nil {
		err = closeErr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), filepath.Join(b.dir, chunkName(seq, records)))
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("buffering a chunk: %w", err)
	}
	b.nextSeq++
	b.chunks = append(b.chunks, chunkFile{seq: seq, records: records, size: int64(len(data))})
	b.size += int64(len(data))
	for b.size > b.limit && len(b.chunks) > 1 {
		oldest := b.chunks[0]
		if err := b.remove(oldest); err != nil {
			return err
		}
		b.droppedChunks++
		b.droppedRecords += oldest.records
	}
	return nil
}

// Oldest returns the chunk to send next, if any.
func (b *DiskBuffer) Oldest() (Chunk, bool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.chunks) == 0 {
		return Chunk{}, false, nil
	}
	c := b.chunks[0]
	data, err := os.ReadFile(filepath.Join(b.dir, chunkName(c.seq, c.records)))
	if err != nil {
		return Chunk{}, false, fmt.Errorf("reading a buffered chunk: %w", err)
	}
	return Chunk{Seq: c.seq, Records: c.records, Data: data}, true, nil
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
	if err := os.Remove(filepath.Join(b.dir, chunkName(c.seq, c.records))); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing a buffered chunk: %w", err)
	}
	b.chunks = slices.DeleteFunc(b.chunks, func(x chunkFile) bool { return x.seq == c.seq })
	b.size -= c.size
	return nil
}

// Stats returns the bytes and chunks waiting, and the chunks and records the limit dropped.
func (b *DiskBuffer) Stats() (bytes int64, chunks, droppedChunks, droppedRecords int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.size, len(b.chunks), b.droppedChunks, b.droppedRecords
}
