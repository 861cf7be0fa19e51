package logs

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDiskBufferKeepsOrderAcrossRestartsAndCountsWhatItDrops(t *testing.T) {
	dir := t.TempDir()
	b, err := OpenDiskBuffer(dir, 300)
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range []string{"a", "b", "c"} {
		if err := b.Put(testChunk("/logs/"+c, 10+i, strings.Repeat(c, 100))); err != nil {
			t.Fatal(err)
		}
	}
	// Over a 300-byte limit: the oldest chunk, "a" with 10 records, is dropped and counted.
	if st := b.Stats(); st.Chunks != 2 || st.DroppedChunks != 1 || st.DroppedRecords != 10 || st.Bytes > 300 {
		t.Fatalf("stats %+v; want 2 chunks of at most 300 bytes, 1 chunk of 10 records dropped", st)
	}
	first, err := b.Oldest(make([][]byte, 1))
	if err != nil || len(first) != 1 || first[0].Entries[0] != 'b' || first[0].Records != 11 || first[0].Path != "/logs/b" ||
		first[0].End != (Position{Inode: 7, Offset: 11}) || first[0].Tag != "tag-11" {
		t.Fatalf("oldest %+v %v, want the b chunk with 11 records", first, err)
	}
	// A write the agent did not finish leaves a temporary file: the next run ignores it.
	if err := os.WriteFile(filepath.Join(dir, ".put-123"), []byte("half"), 0o600); err != nil {
		t.Fatal(err)
	}

	// The agent restarts: the same chunks, in the same order, and new ones go after them.
	again, err := OpenDiskBuffer(dir, 300)
	if err != nil {
		t.Fatal(err)
	}
	if err := again.Put(testChunk("/logs/b", 1, "d")); err != nil {
		t.Fatal(err)
	}
	// Reading /logs/b resumes after its newest chunk, "d".
	if ends := again.Ends(); len(ends) != 2 || ends["/logs/b"] != (Position{Inode: 7, Offset: 1}) || ends["/logs/c"] != (Position{Inode: 7, Offset: 12}) {
		t.Errorf("ends %v", ends)
	}
	var order []byte
	for {
		cs, err := again.Oldest(make([][]byte, 2))
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

func testChunk(path string, records int, entries string) Chunk {
	return Chunk{Message: Message{Tag: fmt.Sprintf("tag-%d", records), Entries: []byte(entries), Records: records},
		Path: path, End: Position{Inode: 7, Offset: int64(records)}}
}
