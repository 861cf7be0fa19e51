package logs

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func appendTo(t *testing.T, path, s string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
}

// openTailer opens a tailer on path at pos, closed when the test ends.
func openTailer(t *testing.T, path string, pos Position) *Tailer {
	t.Helper()
	tl, err := OpenTailer(path, pos, NewReadBuffers())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tl.Close() })
	return tl
}

func next(t *testing.T, tl *Tailer) ([]byte, Position) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	line, pos, err := nextLine(ctx, tl)
	if err != nil {
		t.Fatalf("next line: %v", err)
	}
	return line, pos
}

// nextLine waits for the tailer's next line as the shipper's follower does, asking again every 10 ms
// until ctx ends.
func nextLine(ctx context.Context, tl *Tailer) ([]byte, Position, error) {
	for {
		line, pos, err := tl.readLine()
		if !errors.Is(err, errNoLine) {
			return line, pos, err
		}
		select {
		case <-ctx.Done():
			return nil, pos, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// nextLines returns the next n lines.
func nextLines(t *testing.T, tl *Tailer, n int) []string {
	t.Helper()
	var got []string
	for len(got) < n {
		line, _ := next(t, tl)
		got = append(got, string(line))
	}
	return got
}

// A line split by the runtime whose P part ends the rotated file and whose F part opens the new one comes
// out whole, and nothing is lost or repeated across the rotation.
func TestTailerFollowsRotationAndJoinsALineSplitAcrossIt(t *testing.T) {
	path := filepath.Join(t.TempDir(), "0.log")
	appendTo(t, path, "2026-12-01T20:00:00Z stdout F one\n2026-12-01T20:00:01Z stdout F two\n")
	tl := openTailer(t, path, Position{})
	j := NewJoiner()
	var got []string
	read := func(n int) {
		for len(got) < n {
			line, _ := next(t, tl)
			if r, ok := j.Add(line); ok {
				got = append(got, string(r.Message))
			}
		}
	}
	read(2)
	// The rotation as the pod manager does it: the file is renamed, more is written to it through the
	// runtime's open descriptor, then the runtime reopens the path.
	appendTo(t, path, "2026-12-01T20:00:02Z stdout P first half, ")
	if err := os.Rename(path, path+".20261201-200002"); err != nil {
		t.Fatal(err)
	}
	appendTo(t, path+".20261201-200002", "\n")
	appendTo(t, path, "2026-12-01T20:00:03Z stdout F second half\n2026-12-01T20:00:04Z stdout F after\n")
	read(4)
	want := []string{"one", "two", "first half, second half", "after"}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("lines %q, want %q", got, want)
		}
	}
}

func TestTailerResumesAtACheckpoint(t *testing.T) {
	path := filepath.Join(t.TempDir(), "0.log")
	appendTo(t, path, "a\nb\nc\n")
	tl := openTailer(t, path, Position{})
	next(t, tl)
	_, checkpoint := next(t, tl) // after "b"
	tl.Close()

	again := openTailer(t, path, checkpoint)
	if line, _ := next(t, again); string(line) != "c" {
		t.Errorf("resumed at %q, want c", line)
	}
	// A checkpoint of another file (the path was rotated meanwhile) starts the new file at its beginning.
	other := openTailer(t, path, Position{Inode: checkpoint.Inode + 1, Offset: checkpoint.Offset})
	if line, _ := next(t, other); string(line) != "a" {
		t.Errorf("another file's checkpoint: started at %q, want a", line)
	}
}

// A line whose newline is not written yet is not returned half: the tailer waits for the rest.
func TestTailerWaitsForTheEndOfALine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "0.log")
	appendTo(t, path, "abc")
	tl := openTailer(t, path, Position{})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if line, _, err := nextLine(ctx, tl); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("the tailer returned %q, %v before the line ended", line, err)
	}
	appendTo(t, path, "def\n")
	if line, pos := next(t, tl); string(line) != "abcdef" || pos.Offset != 7 {
		t.Errorf("got %q at %d, want abcdef at 7", line, pos.Offset)
	}
}

// A checkpoint taken before a rotation resumes in the rotated file, reads it to its end, then goes on in the
// new file: the lines written after the checkpoint and before the rotation are not lost.
func TestTailerResumesInTheRotatedFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "0.log")
	appendTo(t, path, "a\nb\n")
	tl := openTailer(t, path, Position{})
	_, checkpoint := next(t, tl) // after "a"
	tl.Close()
	if err := os.Rename(path, path+".20261201-200000"); err != nil {
		t.Fatal(err)
	}
	appendTo(t, path, "c\n")

	again := openTailer(t, path, checkpoint)
	var got []string
	for len(got) < 2 {
		line, _ := next(t, again)
		got = append(got, string(line))
	}
	if got[0] != "b" || got[1] != "c" {
		t.Errorf("resumed with %q, want b then c", got)
	}
}

// A tailer that fell behind by two rotations reads each rotated file in turn, then the current one; a file
// removed with its pod ends the tailer with io.EOF once read.
func TestTailerCatchesUpAcrossSeveralRotationsAndEndsWhenTheFileIsRemoved(t *testing.T) {
	path := filepath.Join(t.TempDir(), "0.log")
	appendTo(t, path, "a\n")
	tl := openTailer(t, path, Position{})
	for i, line := range []string{"b", "c"} {
		if err := os.Rename(path, fmt.Sprintf("%s.20261201-20000%d", path, i)); err != nil {
			t.Fatal(err)
		}
		appendTo(t, path, line+"\n")
	}
	appendTo(t, path, "d\n")
	if got := nextLines(t, tl, 4); !slices.Equal(got, []string{"a", "b", "c", "d"}) {
		t.Fatalf("read %q, want a b c d", got)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, _, err := nextLine(ctx, tl); !errors.Is(err, io.EOF) {
		t.Fatalf("after the file was removed: %v, want io.EOF", err)
	}
}

// When the file of a checkpoint has been removed, reading resumes at the oldest rotated file left (all
// newer than it), not at the current file, so the rotated ones are not skipped.
func TestTailerResumesAtTheOldestRotatedFileWhenTheCheckpointsFileIsGone(t *testing.T) {
	path, checkpoint := checkpointAfter(t, "old\n", 1)
	// Two rotations: the checkpoint's file is removed, "kept" is in the newest rotated file. The old file
	// goes last, so that its inode number is not given to one of the new files.
	if err := os.Rename(path, path+".20261201-200000"); err != nil {
		t.Fatal(err)
	}
	appendTo(t, path+".20261201-200001", "kept\n")
	appendTo(t, path, "current\n")
	if err := os.Remove(path + ".20261201-200000"); err != nil {
		t.Fatal(err)
	}
	again := openTailer(t, path, checkpoint)
	first, _ := next(t, again)
	kept := string(first) // the line is valid until the next call
	second, _ := next(t, again)
	if kept != "kept" || string(second) != "current" {
		t.Errorf("resumed with %q, %q; want kept, current", kept, second)
	}
}

// The checkpoint's file compressed while the agent was stopped (a new inode, the same first bytes): reading
// resumes inside its compressed copy at the checkpoint, then goes on through the files after it, none
// skipped.
func TestTailerResumesInTheCompressedCopyOfTheCheckpointsFile(t *testing.T) {
	path, checkpoint := checkpointAfter(t, "a1\na2\na3\n", 2)
	// Two rotations while stopped: a's file and b's are compressed, c's is the newest rotated file.
	for _, r := range []struct{ name, lines string }{{"20261201-200000", ""}, {"20261201-200001", "b1\n"}, {"20261201-200002", "c1\n"}} {
		if r.lines != "" {
			appendTo(t, path, r.lines)
		}
		if err := os.Rename(path, path+"."+r.name); err != nil {
			t.Fatal(err)
		}
	}
	gzipInto(t, path+".20261201-200000")
	gzipInto(t, path+".20261201-200001")
	appendTo(t, path, "d1\n")
	again := openTailer(t, path, checkpoint)
	if got := nextLines(t, again, 4); !slices.Equal(got, []string{"a3", "b1", "c1", "d1"}) {
		t.Errorf("resumed with %q, want a3 b1 c1 d1", got)
	}
	if again.Skipped() != 0 {
		t.Errorf("%d files skipped, want none", again.Skipped())
	}
}

// A file shorter than its checkpoint (a new file that got the old one's inode number, or a truncated one)
// is read from its start, not from past its end.
func TestTailerReadsAFileShorterThanItsCheckpointFromTheStart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "0.log")
	appendTo(t, path, "short\n")
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	tl := openTailer(t, path, Position{Inode: inodeOfInfo(info), Offset: 1000})
	if line, _ := next(t, tl); string(line) != "short" {
		t.Errorf("read %q, want short", line)
	}
}

// A file with the checkpoint's inode but other first bytes (a file that got the inode number of the
// checkpointed one after it was removed, as ext4 does, here made by rewriting the file in place) is read
// from its start, even when it is longer than the checkpoint: resuming at the checkpoint's offset would
// skip its first lines. The checkpoint's own file, longer since, resumes at the offset.
func TestTailerReadsAnotherFileWithTheCheckpointsInodeFromTheStart(t *testing.T) {
	path, checkpoint := checkpointAfter(t, "2026-12-01T20:00:00.000000001Z stdout F first file, line 1\n"+
		"2026-12-01T20:00:00.000000002Z stdout F first file, line 2\n", 1)
	if checkpoint.Head == 0 {
		t.Fatalf("checkpoint %+v without the file's head", checkpoint)
	}
	appendTo(t, path, "2026-12-01T20:00:00.000000003Z stdout F first file, line 3\n")
	same := openTailer(t, path, checkpoint)
	if line, _ := next(t, same); !strings.HasSuffix(string(line), "line 2") {
		t.Errorf("the checkpoint's own file resumed at %q, want line 2", line)
	}
	same.Close()

	second := "2026-12-01T21:00:00.000000001Z stdout F second file, line 1\n2026-12-01T21:00:00.000000002Z stdout F second file, line 2\n"
	if err := os.WriteFile(path, []byte(second+second), 0o644); err != nil { // same inode, other bytes, longer
		t.Fatal(err)
	}
	other := openTailer(t, path, checkpoint)
	if line, pos := next(t, other); !strings.HasSuffix(string(line), "second file, line 1") || pos.Head == checkpoint.Head {
		t.Errorf("another file with the checkpoint's inode: started at %q (head %x), want its first line", line, pos.Head)
	}
}

// The moment between a rotation's rename and the new file does not count towards a later one: a tailer
// whose path was missing for an instant long ago does not take the next rotation for a removal.
func TestTailerDoesNotTakeASecondRotationForARemoval(t *testing.T) {
	path := filepath.Join(t.TempDir(), "0.log")
	appendTo(t, path, "a\n")
	tl := openTailer(t, path, Position{})
	next(t, tl)
	rotate := func(n int) {
		if err := os.Rename(path, fmt.Sprintf("%s.20261201-20000%d", path, n)); err != nil {
			t.Fatal(err)
		}
	}
	rotate(1)
	if _, _, err := tl.readLine(); !errors.Is(err, errNoLine) { // the path is missing for a moment
		t.Fatalf("with the path missing: %v, want no line yet", err)
	}
	appendTo(t, path, "b\n")
	if line, _ := next(t, tl); string(line) != "b" {
		t.Fatalf("after the rotation read %q, want b", line)
	}
	time.Sleep(removedAfter + 100*time.Millisecond) // the first moment is now longer ago than removedAfter
	rotate(2)
	if _, _, err := tl.readLine(); !errors.Is(err, errNoLine) {
		t.Fatalf("the second rotation's moment without the file: %v, want no line yet (not a removal)", err)
	}
}

// gzipInto compresses path into path.gz and removes path, as the agent's and the kubelet's log rotation do
// with every rotated file but the newest.
func gzipInto(t *testing.T, path string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path+".gz", buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
}

// rotate does what a rotation does to path's files: every rotated file gets compressed, then the live file
// is renamed to path.<stamp> and a new one takes its place with line in it.
func rotate(t *testing.T, path, stamp, line string) {
	t.Helper()
	for _, r := range slices.DeleteFunc(rotatedFiles(path), isCompressed) {
		gzipInto(t, r)
	}
	if err := os.Rename(path, path+"."+stamp); err != nil {
		t.Fatal(err)
	}
	appendTo(t, path, line+"\n")
}

// checkpointAfter writes content to a new log file, reads its first n lines and returns the file's path
// and the position after them, the tailer closed: the checkpoint of an agent stopped there.
func checkpointAfter(t *testing.T, content string, n int) (string, Position) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "0.log")
	appendTo(t, path, content)
	tl := openTailer(t, path, Position{})
	var pos Position
	for range n {
		_, pos = next(t, tl)
	}
	tl.Close()
	return path, pos
}

// tailerAfterFirstLine returns a log path with lines a1 and a2, and a tailer that has read a1.
func tailerAfterFirstLine(t *testing.T) (string, *Tailer) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "0.log")
	appendTo(t, path, "a1\na2\n")
	tl := openTailer(t, path, Position{})
	if line, _ := next(t, tl); string(line) != "a1" {
		t.Fatalf("first line %q", line)
	}
	return path, tl
}

// A tailer that fell behind while rotations compressed the file it reads (it keeps reading that through
// its descriptor) goes on with the next rotated file, not with the live one, and reads rotated files that
// were compressed before it got to them through gzip: nothing is skipped.
func TestTailerBehindSeveralRotationsReadsTheCompressedFiles(t *testing.T) {
	path, tl := tailerAfterFirstLine(t)
	rotate(t, path, "20261201-200000", "b")
	rotate(t, path, "20261201-200010", "c") // compresses the file being read
	if got := nextLines(t, tl, 3); !slices.Equal(got, []string{"a2", "b", "c"}) {
		t.Fatalf("read %q, want a2 b c", got)
	}

	// Three rotations while the tailer still reads c's file: it was compressed, and so was d's, which the
	// tailer never opened; e's is the newest rotated one.
	appendTo(t, path, "c2\n")
	rotate(t, path, "20261201-200020", "d1\nd2")
	rotate(t, path, "20261201-200030", "e")
	rotate(t, path, "20261201-200040", "f")
	if got := nextLines(t, tl, 2); !slices.Equal(got, []string{"c2", "d1"}) {
		t.Fatalf("read %q, want c2 d1", got)
	}
	// A restart in the middle of d's compressed file resumes there.
	_, pos := next(t, tl)
	if err := tl.Close(); err != nil {
		t.Fatal(err)
	}
	again := openTailer(t, path, Position{Inode: pos.Inode, Offset: pos.Offset - int64(len("d2\n"))})
	if got := nextLines(t, again, 3); !slices.Equal(got, []string{"d2", "e", "f"}) {
		t.Fatalf("after a restart in d's compressed file, read %q, want d2 e f", got)
	}
	if tl.Skipped()+again.Skipped() != 0 {
		t.Fatalf("%d files counted as skipped, want 0", tl.Skipped()+again.Skipped())
	}
}

// A damaged compressed file is read as far as it goes, counted, and the tailer goes on with the next.
func TestTailerCountsADamagedCompressedFileAndGoesOn(t *testing.T) {
	path, tl := tailerAfterFirstLine(t)
	rotate(t, path, "20261201-200000", "b")
	rotate(t, path, "20261201-200010", "c")
	rotate(t, path, "20261201-200020", "d") // b's file is compressed now
	damaged := path + ".20261201-200010.gz"
	if err := os.Truncate(damaged, 15); err != nil { // the header and the deflate stream, not gzip's trailer
		t.Fatal(err)
	}
	if got := nextLines(t, tl, 4); !slices.Equal(got, []string{"a2", "b", "c", "d"}) {
		t.Fatalf("read %q, want a2 b c d", got)
	}
	if tl.Skipped() != 1 {
		t.Fatalf("%d files counted as skipped, want the damaged one", tl.Skipped())
	}
}

// A tailer holds a read buffer only while there is something to read: at rest, with the file read to its
// end, it has given it back; a line written later is read whole, including one that started before.
func TestIdleTailerHoldsNoReadBuffer(t *testing.T) {
	path := filepath.Join(t.TempDir(), "0.log")
	appendTo(t, path, "2026-12-01T20:00:00Z stdout F one\n2026-12-01T20:00:01Z stdout F tw")
	tl := openTailer(t, path, Position{})
	if line, _ := next(t, tl); string(line) != "2026-12-01T20:00:00Z stdout F one" {
		t.Fatalf("first line %q", line)
	}
	if _, _, err := tl.readLine(); !errors.Is(err, errNoLine) {
		t.Fatalf("read at the end of the file: %v, want no line yet", err)
	}
	if tl.reader != nil {
		t.Errorf("the tailer keeps its read buffer with nothing to read")
	}
	appendTo(t, path, "o\n")
	if line, _ := next(t, tl); string(line) != "2026-12-01T20:00:01Z stdout F two" {
		t.Errorf("line completed after the buffer went back: %q", line)
	}
}

// The lines a follower takes from the read buffer at once (buffered, consume) move the tailer as readLine
// would: the next line and every Position after them are those of reading line by line.
func TestTailerConsumesBufferedLinesAsReadLineReads(t *testing.T) {
	path := filepath.Join(t.TempDir(), "0.log")
	lines := []string{strings.Repeat("a", 70), "b", "c", "d"} // the first longer than the head the Position hashes
	appendTo(t, path, strings.Join(lines, "\n")+"\npartial")
	byLine := openTailer(t, path, Position{})
	var positions []Position
	for range lines {
		_, pos := next(t, byLine)
		positions = append(positions, pos)
	}
	tl := openTailer(t, path, Position{})
	if b := tl.buffered(); b != nil {
		t.Errorf("before the first line: buffered %q, want nothing (readLine reads the file's head)", b)
	}
	if _, pos := next(t, tl); pos != positions[0] {
		t.Errorf("first line: %+v, want %+v", pos, positions[0])
	}
	b := tl.buffered()
	if want := "b\nc\nd\npartial"; string(b) != want {
		t.Fatalf("buffered %q, want %q", b, want)
	}
	if pos := tl.consume(len("b\nc\n")); pos != positions[2] {
		t.Errorf("after consuming two lines: %+v, want %+v", pos, positions[2])
	}
	if line, pos := next(t, tl); string(line) != "d" || pos != positions[3] {
		t.Errorf("then %q at %+v, want d at %+v", line, pos, positions[3])
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, _, err := nextLine(ctx, tl); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("the partial line: %v, want no line yet", err)
	}
	if b := tl.buffered(); b != nil {
		t.Errorf("with a partial line read: buffered %q, want nothing (readLine joins it)", b)
	}
}
