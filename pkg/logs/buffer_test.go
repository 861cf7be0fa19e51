package logs

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tinylib/msgp/msgp"
)

func TestDiskBufferKeepsOrderAcrossRestartsAndCountsWhatItDrops(t *testing.T) {
	dir := t.TempDir()
	b, err := OpenDiskBuffer(dir, 300, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range []string{"a", "b", "c"} {
		if err := b.Put(context.Background(), testChunk("/logs/"+c, 10+i, strings.Repeat(c, 100)), noWait); err != nil {
			t.Fatal(err)
		}
	}
	// Over a 300-byte limit: the oldest chunk, "a" with 10 records, is dropped and counted.
	if st := b.Stats(); st.Chunks != 2 || st.DroppedChunks != 1 || st.DroppedRecords != 10 || st.Bytes > 300 {
		t.Fatalf("stats %+v; want 2 chunks of at most 300 bytes, 1 chunk of 10 records dropped", st)
	}
	first, err := b.Oldest(0, make([][]byte, 1))
	if err != nil || len(first) != 1 || first[0].Entries[0] != 'b' || first[0].Records != 11 || first[0].Path != "/logs/b" ||
		first[0].End != (Position{Inode: 7, Offset: 11}) || first[0].Tag != "tag-11" {
		t.Fatalf("oldest %+v %v, want the b chunk with 11 records", first, err)
	}
	// The sender, with "b" written and waiting for its ack, asks for what comes after it: "c".
	after, err := b.Oldest(first[0].Seq+1, make([][]byte, 2))
	if err != nil || len(after) != 1 || after[0].Path != "/logs/c" {
		t.Fatalf("after the b chunk: %+v %v, want the c chunk alone", after, err)
	}
	// A write the agent did not finish leaves a temporary file: the next run ignores it.
	if err := os.WriteFile(filepath.Join(dir, ".put-123"), []byte("half"), 0o600); err != nil {
		t.Fatal(err)
	}

	// The agent restarts: the same chunks, in the same order, and new ones go after them.
	again, err := OpenDiskBuffer(dir, 300, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := again.Put(context.Background(), testChunk("/logs/b", 1, "d"), noWait); err != nil {
		t.Fatal(err)
	}
	// Reading /logs/b resumes after its newest chunk, "d".
	if ends := again.Ends(); len(ends) != 2 || ends["/logs/b"] != (Position{Inode: 7, Offset: 1}) || ends["/logs/c"] != (Position{Inode: 7, Offset: 12}) {
		t.Errorf("ends %v", ends)
	}
	var order []byte
	for {
		cs, err := again.Oldest(0, make([][]byte, 2))
		if err != nil {
			t.Fatal(err)
		}
		if len(cs) == 0 {
			break
		}
		for _, c := range cs {
			order = append(order, c.Entries[0])
			if err := again.Ack(c.Seq); err != nil {
				t.Fatal(err)
			}
		}
	}
	if string(order) != "bcd" {
		t.Errorf("chunks after the restart came out as %q, want bcd", order)
	}
	if st := again.Stats(); st.Bytes != 0 || st.Chunks != 0 {
		t.Errorf("after every ack: %+v", st)
	}
}

// A chunk on disk keeps its end position whole, the head of its file included, across a restart; a chunk
// file of an earlier version, without the head, is read too.
func TestDiskBufferKeepsTheEndPositionsHead(t *testing.T) {
	dir := t.TempDir()
	b, err := OpenDiskBuffer(dir, 1<<20, 0)
	if err != nil {
		t.Fatal(err)
	}
	c := testChunk("/logs/a", 3, "abc")
	c.End.Head = 0xfeedface
	if err := b.Put(context.Background(), c, noWait); err != nil {
		t.Fatal(err)
	}
	legacy := msgp.AppendArrayHeader(nil, 7)
	legacy = msgp.AppendString(legacy, "tag-4")
	legacy = msgp.AppendString(legacy, "/logs/b")
	legacy = msgp.AppendUint64(legacy, 8)
	legacy = msgp.AppendInt64(legacy, 40)
	legacy = msgp.AppendInt(legacy, 4)
	legacy = msgp.AppendBool(legacy, false)
	legacy = msgp.AppendBytes(legacy, []byte("defg"))
	if err := os.WriteFile(filepath.Join(dir, chunkName(1)), legacy, 0o600); err != nil {
		t.Fatal(err)
	}
	again, err := OpenDiskBuffer(dir, 1<<20, 0)
	if err != nil {
		t.Fatal(err)
	}
	ends := again.Ends()
	if ends["/logs/a"] != (Position{Inode: 7, Offset: 3, Head: 0xfeedface}) || ends["/logs/b"] != (Position{Inode: 8, Offset: 40}) {
		t.Errorf("ends after a restart: %+v", ends)
	}
	got, err := again.Oldest(0, make([][]byte, 2))
	if err != nil || len(got) != 2 || string(got[1].Entries) != "defg" || got[1].Records != 4 {
		t.Fatalf("oldest: %+v, %v; want the earlier version's chunk second, with its 4 records", got, err)
	}
}

func testChunk(path string, records int, entries string) Chunk {
	return Chunk{Message: Message{Tag: fmt.Sprintf("tag-%d", records), Entries: []byte(entries), Records: records},
		Path: path, End: Position{Inode: 7, Offset: int64(records)}}
}

// Chunks wait in memory while they fit; the first that does not sends every waiting chunk to disk, in
// order, and the next ones follow it there until the disk part is empty. A restart finds what was on disk.
func TestDiskBufferKeepsChunksInMemoryUntilTheyDoNotFit(t *testing.T) {
	dir := t.TempDir()
	b, err := OpenDiskBuffer(dir, 1<<20, 350)
	if err != nil {
		t.Fatal(err)
	}
	onDisk := func() int {
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		return len(entries)
	}
	for _, c := range []string{"a", "b"} {
		if err := b.Put(context.Background(), testChunk("/logs/"+c, 1, strings.Repeat(c, 100)), noWait); err != nil {
			t.Fatal(err)
		}
	}
	if st := b.Stats(); onDisk() != 0 || st.Chunks != 2 || st.MemoryBytes != st.Bytes {
		t.Fatalf("two small chunks: %d files, stats %+v; want both in memory", onDisk(), st)
	}
	sent, err := b.Oldest(0, make([][]byte, 1)) // "a" on its way to the receiver
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{"c", "d"} { // "c" does not fit: a, b and c go to disk, then d follows
		if err := b.Put(context.Background(), testChunk("/logs/"+c, 1, strings.Repeat(c, 100)), noWait); err != nil {
			t.Fatal(err)
		}
	}
	if st := b.Stats(); onDisk() != 4 || st.MemoryBytes != 0 {
		t.Fatalf("after the spill: %d files, stats %+v; want 4 files, nothing in memory", onDisk(), st)
	}
	if string(sent[0].Entries[:3]) != "aaa" {
		t.Fatalf("the chunk being sent changed under the sender: %q", sent[0].Entries[:3])
	}
	if err := b.Ack(sent[0].Seq); err != nil {
		t.Fatal(err)
	}
	again, err := OpenDiskBuffer(dir, 1<<20, 350)
	if err != nil {
		t.Fatal(err)
	}
	var order []byte
	cs, err := again.Oldest(0, make([][]byte, 8))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cs {
		order = append(order, c.Entries[0])
	}
	if string(order) != "bcd" {
		t.Errorf("after a restart the buffer holds %q, want bcd", order)
	}
}

func noWait() bool { return false }

// A follower whose chunk does not fit waits while the sender is moving, and goes on when an ack frees room;
// once the oldest chunk has waited too long (the receiver is down) it stops waiting and goes to disk.
func TestDiskBufferPutWaitsForRoomWhileTheSenderMoves(t *testing.T) {
	dir := t.TempDir()
	b, err := OpenDiskBuffer(dir, 1<<20, 250)
	if err != nil {
		t.Fatal(err)
	}
	b.stuckAfter = time.Hour
	mayWait := func() bool { return true }
	ctx := context.Background()
	if err := b.Put(ctx, testChunk("/logs/a", 1, strings.Repeat("a", 100)), mayWait); err != nil {
		t.Fatal(err)
	}
	if err := b.Put(ctx, testChunk("/logs/a", 2, strings.Repeat("a", 100)), mayWait); err != nil {
		t.Fatal(err)
	}
	put := make(chan error, 1)
	go func() { put <- b.Put(ctx, testChunk("/logs/a", 3, strings.Repeat("a", 100)), mayWait) }()
	select {
	case err := <-put:
		t.Fatalf("Put returned (%v) with memory full and the sender moving", err)
	case <-time.After(200 * time.Millisecond):
	}
	first, err := b.Oldest(0, make([][]byte, 1))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Ack(first[0].Seq); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-put:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Put still waits after an ack freed room")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("%d chunks went to disk", len(entries))
	}

	b.stuckAfter = 100 * time.Millisecond // the receiver stopped acknowledging
	start := time.Now()
	if err := b.Put(ctx, testChunk("/logs/a", 4, strings.Repeat("a", 100)), mayWait); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 3 || time.Since(start) > 5*time.Second {
		t.Fatalf("with the sender stuck: %d chunk files after %v, want all 3 on disk", len(entries), time.Since(start))
	}
}

// Chunks in memory when the agent stops are written to disk and found by the next run.
func TestDiskBufferSpillKeepsWhatWaitsInMemory(t *testing.T) {
	dir := t.TempDir()
	b, err := OpenDiskBuffer(dir, 1<<20, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{"a", "b"} {
		if err := b.Put(context.Background(), testChunk("/logs/"+c, 1, c), noWait); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Spill(); err != nil {
		t.Fatal(err)
	}
	again, err := OpenDiskBuffer(dir, 1<<20, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := again.Oldest(0, make([][]byte, 4))
	if err != nil || len(cs) != 2 || string(cs[0].Entries) != "a" || string(cs[1].Entries) != "b" {
		t.Fatalf("after a spill and a restart: %+v %v, want chunks a and b", cs, err)
	}
}

// Put takes the follower's buffer and Spare hands out memory for the next chunk: what the follower writes
// into a spare never changes a chunk that is waiting, whether Put kept its buffer or copied a small chunk
// out of it.
func TestDiskBufferSpareMemoryNeverAliasesAWaitingChunk(t *testing.T) {
	b, err := OpenDiskBuffer(t.TempDir(), 1<<20, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"a", strings.Repeat("b", 3000), strings.Repeat("c", 3000)}
	buf := make([]byte, 0, 4096)
	for i, entries := range want {
		c := testChunk("/logs/x", i+1, "")
		c.Entries = append(buf, entries...)
		if err := b.Put(context.Background(), c, noWait); err != nil {
			t.Fatal(err)
		}
		buf = b.Spare(4096)
		buf = append(buf, strings.Repeat("z", 4096)...)[:0] // the follower fills its next buffer
	}
	got, err := b.Oldest(0, make([][]byte, 3))
	if err != nil || len(got) != 3 {
		t.Fatalf("oldest: %d chunks, %v", len(got), err)
	}
	for i, c := range got {
		if string(c.Entries) != want[i] {
			t.Errorf("chunk %d holds %.10q... (%d bytes), want %.10q... (%d bytes)", i, c.Entries, len(c.Entries), want[i], len(want[i]))
		}
	}
}

// A full disk is the buffer's limit come early: the oldest chunks on disk make room for the new ones and
// are counted as dropped; when the disk is full of something else, the new chunk is dropped and counted
// while what waits in memory stays. Nothing fails: the follower goes on reading.
func TestDiskBufferCountsWhatAFullDiskDrops(t *testing.T) {
	dir := t.TempDir()
	b, err := OpenDiskBuffer(dir, 1<<20, 0) // everything goes to disk
	if err != nil {
		t.Fatal(err)
	}
	capacity := int64(300)
	b.writeEntries = func(f *os.File, data net.Buffers) error {
		if diskUsed(t, dir)+int64(len(data[0])+len(data[1])) > capacity {
			return &os.PathError{Op: "write", Path: f.Name(), Err: syscall.ENOSPC}
		}
		_, err := data.WriteTo(f)
		return err
	}
	for i, c := range []string{"a", "b", "c", "d"} {
		if err := b.Put(context.Background(), testChunk("/logs/"+c, 10+i, strings.Repeat(c, 100)), noWait); err != nil {
			t.Fatalf("put %s on a full disk: %v", c, err)
		}
	}
	// Two chunks of about 130 bytes fit in 300: a (10 records) and b (11) made room for c and d.
	if st := b.Stats(); st.Chunks != 2 || st.DroppedChunks != 2 || st.DroppedRecords != 21 {
		t.Fatalf("stats %+v; want 2 chunks waiting, 2 chunks of 21 records dropped", st)
	}
	if cs, err := b.Oldest(0, make([][]byte, 4)); err != nil || len(cs) != 2 || cs[0].Path != "/logs/c" || cs[1].Path != "/logs/d" {
		t.Fatalf("waiting: %+v %v, want the c and d chunks", cs, err)
	}

	// Another buffer whose disk something else filled: a chunk that no longer fits in memory is dropped,
	// the one in memory stays and is delivered.
	full, err := OpenDiskBuffer(t.TempDir(), 1<<20, 150)
	if err != nil {
		t.Fatal(err)
	}
	full.writeEntries = func(f *os.File, _ net.Buffers) error {
		return &os.PathError{Op: "write", Path: f.Name(), Err: syscall.ENOSPC}
	}
	for i, c := range []string{"a", "b"} {
		if err := full.Put(context.Background(), testChunk("/logs/"+c, 10+i, strings.Repeat(c, 100)), noWait); err != nil {
			t.Fatalf("put %s: %v", c, err)
		}
	}
	if st := full.Stats(); st.Chunks != 1 || st.DroppedRecords != 11 || st.MemoryBytes == 0 {
		t.Fatalf("stats %+v; want the a chunk in memory and the b chunk's 11 records dropped", st)
	}
	if cs, err := full.Oldest(0, make([][]byte, 2)); err != nil || len(cs) != 1 || cs[0].Path != "/logs/a" {
		t.Fatalf("waiting: %+v %v, want the a chunk", cs, err)
	}
}

// diskUsed is the bytes of the files in dir.
func diskUsed(t *testing.T, dir string) int64 {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var used int64
	for _, e := range entries {
		if info, err := e.Info(); err == nil {
			used += info.Size()
		}
	}
	return used
}

// While the receivers keep up, every chunk's memory goes to a later chunk: a burst of acks (as many chunks
// as the memory limit holds) leaves nothing for the garbage collector, and the followers' next chunks start
// in that memory. Once the sender is idle, ReleaseSpares lets go of it.
func TestDiskBufferReusesABurstOfAcknowledgedChunks(t *testing.T) {
	const chunks, size = 32, 4096
	b, err := OpenDiskBuffer(t.TempDir(), 1<<20, chunks*(size+64))
	if err != nil {
		t.Fatal(err)
	}
	put := map[*byte]bool{}
	for i := range chunks {
		c := testChunk("/logs/x", i+1, "")
		c.Entries = append(make([]byte, 0, size), strings.Repeat("e", size-100)...)
		put[&c.Entries[0]] = true
		if err := b.Put(context.Background(), c, noWait); err != nil {
			t.Fatal(err)
		}
	}
	sent, err := b.Oldest(0, make([][]byte, chunks))
	if err != nil || len(sent) != chunks {
		t.Fatalf("oldest: %d chunks, %v; want all %d in memory", len(sent), err, chunks)
	}
	for _, c := range sent {
		if err := b.Ack(c.Seq); err != nil {
			t.Fatal(err)
		}
	}
	var spare []byte
	for i := range chunks {
		if spare = b.Spare(size); !put[&spare[:1][0]] {
			t.Fatalf("spare %d of %d is new memory, want an acknowledged chunk's", i+1, chunks)
		}
	}
	last := testChunk("/logs/x", 1, "")
	last.Entries = append(spare, strings.Repeat("e", size-100)...)
	if err := b.Put(context.Background(), last, noWait); err != nil {
		t.Fatal(err)
	}
	if sent, err = b.Oldest(0, make([][]byte, 1)); err != nil || len(sent) != 1 || b.Ack(sent[0].Seq) != nil {
		t.Fatalf("the last chunk: %d sent, %v", len(sent), err)
	}
	b.ReleaseSpares()
	if spare := b.Spare(size); put[&spare[:1][0]] {
		t.Error("after ReleaseSpares, Spare reused an acknowledged chunk's memory, want new memory")
	}
}
