package logs

import (
	"bufio"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"k8s.io/klog/v2"
)

// Position is where a tailer stands in a log file: the file's inode and the offset after the last line
// returned. A checkpoint is a Position.
type Position struct {
	Inode  uint64
	Offset int64
	// Head is a hash of the file's first min(headBytes, Offset) bytes (zero in checkpoints of earlier
	// versions: not checked). It tells the file from one that got its inode number after it was removed
	// while the agent was stopped (ext4 reuses them), which the inode alone cannot.
	Head uint64 `json:",omitempty"`
}

// headBytes is how much of a file's start its Position's Head covers: more than a CRI line's timestamp,
// stream and tag, so the first line's time tells two files of one container apart.
const headBytes = 64

// hashHead is the Head of a file that starts with b.
func hashHead(b []byte) uint64 {
	h := fnv.New64a()
	h.Write(b)
	return h.Sum64()
}

// Tailer returns the lines of one container log path in order, across rotations: when the path is renamed
// away and a new file takes its place, it finishes the old file (it keeps it open) before it moves on, so
// no line is lost, including the last part of a line split across the two files.
type Tailer struct {
	path string

	file *os.File
	// src is what the open file's bytes are read from: the file, or a gzip reader of it.
	src io.Reader
	// reader buffers src while the tailer reads; nil while it has read everything there is (see ReadBuffers).
	reader  *bufio.Reader
	buffers *ReadBuffers
	pos     Position
	// partial holds the bytes of a line whose newline has not been read yet; line is where it is joined
	// with its end.
	partial, line []byte
	// draining is set once the path names a new file: the open one is read to its end once more (a write
	// may still have been on its way to it) before the tailer moves on.
	draining bool
	// missingSince is when the path was first seen missing, zero while it exists.
	missingSince time.Time
	// compressed is set while the open file is a rotated file that was compressed (read through gzip; its
	// positions count uncompressed bytes).
	compressed bool
	// skipped counts the files the tailer could not read to their end.
	skipped int
	// head holds the open file's first headLen bytes, as far as read (up to headBytes), for pos.Head.
	head    [headBytes]byte
	headLen int
}

// Skipped is how many files the tailer could not read to their end: a checkpointed file gone when it opened
// (removed while the agent was stopped, or compressed, for a checkpoint without a Head), or a damaged
// compressed file.
func (t *Tailer) Skipped() int { return t.skipped }

// removedAfter is how long a path must stay missing before its file counts as removed (its pod deleted or
// its container's logs collected) rather than caught between a rotation's rename and the new file.
const removedAfter = time.Second

// OpenTailer opens path at pos: at pos.Offset of the file pos was taken in, which is the file at path or,
// when a rotation happened since pos was taken, one of its rotated files beside it (read to its end first,
// so the lines after the checkpoint are not lost; compressed since, it is read through gzip). Without a
// position (a container the shipper has not read yet), it starts at the beginning of the oldest rotated
// file that is not compressed, so output written shortly before the container was discovered is not lost
// either.
func OpenTailer(path string, pos Position, buffers *ReadBuffers) (*Tailer, error) {
	t := &Tailer{path: path, buffers: buffers}
	if err := t.openFile(path); err != nil {
		return nil, err
	}
	start, found := "", false
	if pos.Inode != 0 {
		if start, found = checkpointedFile(path, pos); !found {
			t.skipped++
			klog.InfoS("The file of a log checkpoint is gone (removed by rotation): its lines after the checkpoint are not shipped",
				"path", path, "checkpoint", pos)
		}
	}
	// A new container, or one whose checkpointed file has been removed since: the uncompressed rotated files
	// left are all newer, so reading starts at the oldest of them.
	if uncompressed := slices.DeleteFunc(rotatedFiles(path), isCompressed); !found && len(uncompressed) > 0 {
		start = uncompressed[0]
	}
	if start != "" && start != path {
		if err := t.openFile(start); err != nil {
			t.Close()
			return nil, err
		}
	}
	if !found || pos.Offset == 0 {
		return t, nil
	}
	pos.Inode = t.pos.Inode // a compressed copy has an inode of its own
	if err := t.resume(pos); err != nil {
		t.Close()
		return nil, fmt.Errorf("resuming %s at %d: %w", t.file.Name(), pos.Offset, err)
	}
	return t, nil
}

// resume moves the tailer, at the start of the file pos was taken in, to pos.Offset, unless the file is
// shorter than that (truncated since): then its lines are all new, and it is read from its start.
func (t *Tailer) resume(pos Position) error {
	n := int(min(headBytes, pos.Offset))
	head := t.head[:n]
	var err error
	if t.compressed {
		_, err = io.ReadFull(t.input(), head)
	} else {
		_, err = t.file.ReadAt(head, 0)
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		klog.InfoS("A log file is shorter than its checkpoint: reading it from the start", "path", t.path, "checkpoint", pos)
		return t.restart()
	}
	if err != nil {
		return err
	}
	t.headLen, t.pos.Head = n, hashHead(head)
	if t.compressed {
		if _, err := t.input().Discard(int(pos.Offset) - n); err != nil {
			return err
		}
		t.pos.Offset = pos.Offset
		return nil
	}
	if info, err := t.file.Stat(); err == nil && info.Size() < pos.Offset {
		klog.InfoS("A log file is shorter than its checkpoint: reading it from the start", "path", t.path, "checkpoint", pos, "size", info.Size())
		return t.restart()
	}
	if _, err := t.file.Seek(pos.Offset, io.SeekStart); err != nil {
		return err
	}
	t.pos.Offset = pos.Offset
	if t.reader != nil {
		t.reader.Reset(t.file)
	}
	return nil
}

// restart reads the open file again from its start.
func (t *Tailer) restart() error {
	if _, err := t.file.Seek(0, io.SeekStart); err != nil {
		return err
	}
	f := t.file
	t.file = nil // use would close it
	return t.use(f)
}

// keepHead adds the start of b, read after the first headLen bytes of the file, to the file's head.
func (t *Tailer) keepHead(b []byte) {
	t.headLen += copy(t.head[t.headLen:], b)
	t.pos.Head = hashHead(t.head[:t.headLen])
}

// rotatedFiles are path's rotated files, path.<time> and path.<time>.gz once compressed, oldest first: the
// kubelet's rotation names them with a sortable timestamp. While one is being compressed both forms exist
// for a moment; the uncompressed one is listed.
func rotatedFiles(path string) []string {
	matches, _ := filepath.Glob(path + ".*")
	plain := map[string]bool{}
	for _, m := range matches {
		plain[m] = true
	}
	return slices.DeleteFunc(matches, func(m string) bool {
		return strings.HasSuffix(m, ".tmp") || isCompressed(m) && plain[strings.TrimSuffix(m, ".gz")]
	})
}

func isCompressed(name string) bool { return strings.HasSuffix(name, ".gz") }

// checkpointedFile returns the file pos was taken in: the file at path or a rotated one that has pos's
// inode and, when pos has a Head, starts as that file did (else it is another that got the inode number
// after the first was removed); or else a compressed rotated file that starts so (compression gives a file
// a new inode; positions in it count uncompressed bytes).
func checkpointedFile(path string, pos Position) (string, bool) {
	rotated := rotatedFiles(path)
	for _, name := range append([]string{path}, rotated...) {
		if info, err := os.Stat(name); err == nil && inodeOfInfo(info) == pos.Inode && (pos.Head == 0 || startsAs(name, pos)) {
			return name, true
		}
	}
	if pos.Head == 0 {
		return "", false // a checkpoint of an earlier version
	}
	for _, name := range rotated {
		if isCompressed(name) && startsAs(name, pos) {
			return name, true
		}
	}
	return "", false
}

// startsAs reports whether the file name (read through gzip if compressed) starts with bytes whose hash is
// pos.Head: its first min(headBytes, pos.Offset) bytes.
func startsAs(name string, pos Position) bool {
	f, err := os.Open(name)
	if err != nil {
		return false
	}
	defer f.Close()
	var r io.Reader = f
	if isCompressed(name) {
		zr, err := gzip.NewReader(f)
		if err != nil {
			return false
		}
		r = zr
	}
	head := make([]byte, min(headBytes, pos.Offset))
	_, err = io.ReadFull(r, head)
	return err == nil && hashHead(head) == pos.Head
}

// openNext moves to the file after the one read to its end. The file at the path is opened before the
// rotated files are listed: were it the other way round, a rotation between the two would make the path
// name a newer file than the one after ours, and that one would be skipped.
func (t *Tailer) openNext() error {
	atPath, err := os.Open(t.path) // may be missing for a rotation's instant: then the list has it
	next := t.nextFile()
	if next == t.path && err == nil {
		return t.use(atPath)
	}
	if atPath != nil {
		atPath.Close()
	}
	return t.openFile(next)
}

// nextFile is the file to read after the open one: the rotated file that followed it, when the tailer fell
// behind by more than one rotation, or else the current file. A rotation compresses every rotated file but
// the one it makes; when the open file is no longer among the rotated files under its inode (the tailer
// still reads it through its descriptor), its compressed copy is the newest one that holds as many bytes
// (gzip keeps the size, modulo 2^32, in its last four bytes), and the file after the copy is next. With no
// copy the open file was removed (the oldest go first), and every rotated file left is newer.
func (t *Tailer) nextFile() string {
	rotated := rotatedFiles(t.path)
	after := -1
	for i, r := range rotated {
		if info, err := os.Stat(r); err == nil && inodeOfInfo(info) == t.pos.Inode {
			after = i
		}
	}
	if after < 0 {
		after = t.compressedCopy(rotated)
	}
	if after+1 < len(rotated) {
		return rotated[after+1]
	}
	return t.path
}

// compressedCopy returns the index in rotated of the open file's compressed copy, or -1.
func (t *Tailer) compressedCopy(rotated []string) int {
	info, err := t.file.Stat()
	if err != nil {
		return -1
	}
	for i := len(rotated) - 1; i >= 0; i-- {
		if !isCompressed(rotated[i]) {
			continue
		}
		if size, ok := gzipSize(rotated[i]); ok && size == uint32(info.Size()) {
			return i
		}
	}
	return -1
}

// gzipSize reads the uncompressed size (modulo 2^32) a gzip file ends with.
func gzipSize(name string) (uint32, bool) {
	f, err := os.Open(name)
	if err != nil {
		return 0, false
	}
	defer f.Close()
	var tail [4]byte
	info, err := f.Stat()
	if err != nil || info.Size() < 18 { // a gzip header and trailer at the least
		return 0, false
	}
	if _, err := f.ReadAt(tail[:], info.Size()-4); err != nil {
		return 0, false
	}
	return binary.LittleEndian.Uint32(tail[:]), true
}

func (t *Tailer) openFile(name string) error {
	f, err := os.Open(name)
	if err != nil {
		return fmt.Errorf("opening log %s: %w", name, err)
	}
	return t.use(f)
}

// use makes f the file being read, from its start.
func (t *Tailer) use(f *os.File) error {
	inode, err := inodeOf(f)
	if err != nil {
		f.Close()
		return err
	}
	if t.file != nil {
		t.file.Close()
	}
	var src io.Reader = f
	t.compressed = isCompressed(f.Name())
	if t.compressed {
		zr, err := gzip.NewReader(f)
		if err != nil {
			f.Close()
			return fmt.Errorf("reading compressed log %s: %w", f.Name(), err)
		}
		src = zr
	}
	t.file, t.src, t.pos, t.headLen = f, src, Position{Inode: inode}, 0
	if t.reader != nil {
		t.reader.Reset(src)
	}
	return nil
}

func inodeOf(f *os.File) (uint64, error) {
	info, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("stat %s: %w", f.Name(), err)
	}
	inode := inodeOfInfo(info)
	if inode == 0 {
		return 0, errors.New("no inode on this platform")
	}
	return inode, nil
}

// inodeOfInfo is a file's inode number, 0 where the platform has none.
func inodeOfInfo(info os.FileInfo) uint64 {
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		return st.Ino
	}
	return 0
}

// Close releases the open file and the read buffer.
func (t *Tailer) Close() error {
	if t.reader != nil {
		t.buffers.put(t.reader)
		t.reader = nil
	}
	return t.file.Close()
}

// input is the buffered reader of the open file, borrowed when the tailer has none.
func (t *Tailer) input() *bufio.Reader {
	if t.reader == nil {
		t.reader = t.buffers.get(t.src)
	}
	return t.reader
}

// readBufferBytes is a tailer's read buffer: large reads while a file is behind, and room for the longest
// line a runtime writes (16 KiB, containerd's default) in one piece.
const readBufferBytes = 64 << 10

// ReadBuffers lends read buffers to tailers: a tailer holds one while it reads and gives it back once it
// has read everything there is, so the buffers kept are those of the files being read, not one per file
// followed (at 110 pods, one per followed file was 9.5 MB of the agent's heap at rest).
type ReadBuffers struct{ pool sync.Pool }

func NewReadBuffers() *ReadBuffers {
	return &ReadBuffers{pool: sync.Pool{New: func() any { return bufio.NewReaderSize(nil, readBufferBytes) }}}
}

func (b *ReadBuffers) get(src io.Reader) *bufio.Reader {
	r := b.pool.Get().(*bufio.Reader)
	r.Reset(src)
	return r
}

func (b *ReadBuffers) put(r *bufio.Reader) {
	r.Reset(nil)
	b.pool.Put(r)
}

// errNoLine says that no whole line is there yet.
var errNoLine = errors.New("no whole line yet")

// readLine returns the next whole line (without its newline) and the Position after it, or errNoLine when
// no whole line is there yet (the caller waits and asks again). The line is valid until the next call: it
// is read in place, not copied. Once the path has been gone for removedAfter and the open file is read to
// its end, it returns io.EOF.
func (t *Tailer) readLine() ([]byte, Position, error) {
	for {
		chunk, err := t.input().ReadSlice('\n')
		if len(chunk) > 0 {
			if t.headLen < headBytes {
				t.keepHead(chunk)
			}
			t.pos.Offset += int64(len(chunk))
			if err == nil {
				if len(t.partial) == 0 {
					return chunk[:len(chunk)-1], t.pos, nil
				}
				t.line = append(append(t.line[:0], t.partial...), chunk[:len(chunk)-1]...)
				t.partial = t.partial[:0]
				return t.line, t.pos, nil
			}
			t.partial = append(t.partial, chunk...)
			if errors.Is(err, bufio.ErrBufferFull) {
				continue // a line longer than the buffer
			}
		}
		if err != nil && !errors.Is(err, io.EOF) && t.compressed {
			// A damaged compressed file: what could be read of it was; the rest is counted, the next file read.
			klog.ErrorS(err, "Reading a compressed rotated log, moving on to the next file", "path", t.file.Name())
			t.skipped++
			t.partial, t.draining = t.partial[:0], false
			if err := t.openNext(); err != nil {
				return nil, t.pos, err
			}
			continue
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, t.pos, fmt.Errorf("reading %s: %w", t.path, err)
		}
		// At the end of the open file: a rotation replaced the path, or more is still to be written.
		if !t.draining {
			state, err := t.pathState()
			if err != nil {
				return nil, t.pos, err
			}
			if state != pathMissing {
				t.missingSince = time.Time{} // a rotation's moment without the file is over
			}
			switch state {
			case pathRotated:
				t.draining = true
				continue
			case pathMissing:
				if t.missingSince.IsZero() {
					t.missingSince = time.Now()
				} else if time.Since(t.missingSince) >= removedAfter {
					// Bytes without a newline at the end of a removed file will never be completed.
					if rest := t.partial; len(rest) > 0 {
						t.partial = nil
						return rest, t.pos, nil
					}
					return nil, t.pos, io.EOF
				}
			}
		} else {
			t.draining = false
			// The old file is read to its end. Bytes without a newline there will never be completed.
			rest := t.partial
			t.partial = nil
			if err := t.openNext(); err != nil {
				return nil, t.pos, err
			}
			if len(rest) > 0 {
				return rest, t.pos, nil
			}
			continue
		}
		// Everything there is was read (at the end of the file the buffer is empty): the buffer goes back.
		t.buffers.put(t.reader)
		t.reader = nil
		return nil, t.pos, errNoLine
	}
}

// buffered returns what the read buffer holds after the tailer's position, without reading, for a
// follower to take the whole lines at its start in one go (consume); nil unless the tailer stands between
// two lines of a file whose head it has hashed (readLine does the rest).
func (t *Tailer) buffered() []byte {
	if t.reader == nil || len(t.partial) > 0 || t.headLen < headBytes {
		return nil
	}
	b, _ := t.reader.Peek(t.reader.Buffered()) // what is buffered: no read, no error
	return b
}

// consume moves the tailer past the first n bytes buffered returned, whole lines, and returns the Position
// after them.
func (t *Tailer) consume(n int) Position {
	discarded, _ := t.reader.Discard(n) // buffered bytes: all of them
	t.pos.Offset += int64(discarded)
	return t.pos
}

// Unread is how many bytes of the open file follow the tailer's position, as far as its size tells
// (zero for a compressed file, whose positions count uncompressed bytes).
func (t *Tailer) Unread() int64 {
	if t.compressed {
		return 0
	}
	info, err := t.file.Stat()
	if err != nil {
		return 0
	}
	return max(info.Size()-t.pos.Offset, 0)
}

// Behind reports whether the file being read is no longer the one at the path: a rotation happened since
// it was opened, and files the tailer has not reached yet may be compressed or removed by the next ones.
func (t *Tailer) Behind() bool {
	state, err := t.pathState()
	return err != nil || state != pathSame
}

type pathState int

const (
	pathSame    pathState = iota // the path names the open file
	pathRotated                  // the path names another file
	pathMissing                  // nothing at the path: a rotation half done, or the file removed
)

func (t *Tailer) pathState() (pathState, error) {
	info, err := os.Stat(t.path)
	if errors.Is(err, os.ErrNotExist) {
		return pathMissing, nil
	}
	if err != nil {
		return pathSame, fmt.Errorf("stat %s: %w", t.path, err)
	}
	if inode := inodeOfInfo(info); inode != 0 && inode != t.pos.Inode {
		return pathRotated, nil
	}
	return pathSame, nil
}
