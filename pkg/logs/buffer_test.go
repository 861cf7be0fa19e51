package logs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDiskBufferKeepsOrderAcrossRestartsAndCountsWhatItDrops(t *testing.T) {
	dir := t.TempDir()
	b, err := OpenDiskBuffer(dir, 250)
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range []string{"a", "b", "c"} {
		if err := b.Put(10+i, []byte(strings.Repeat(c, 100))); err != nil {
			t.Fatal(err)
		}
	}
	// 300 bytes over a 250-byte limit: the oldest chunk, "a" with 10 records, is dropped and counted.
	size, chunks, droppedChunks, droppedRecords := b.Stats()
	if size != 200 || chunks != 2 || droppedChunks != 1 || droppedRecords != 10 {
		t.Fatalf("stats %d bytes, %d chunks, dropped %d chunks / %d records; want 200, 2, 1, 10", size, chunks, droppedChunks, droppedRecords)
	}
	first, ok, err := b.Oldest()
	if err != nil || !ok || first.Data[0] != 'b' || first.Records != 11 {
		t.Fatalf("oldest %v %v %v, want the b chunk with 11 records", first, ok, err)
	}
	// A write the agent did not finish leaves a temporary file: the next run ignores it.
	if err := os.WriteFile(filepath.Join(dir, ".put-123"), []byte("half"), 0o600); err != nil {
		t.Fatal(err)
	}

	// The agent restarts: the same chunks, in the same order, and new ones go after them.
	again, err := OpenDiskBuffer(dir, 250)
	if err != nil {
		t.Fatal(err)
	}
	if err := again.Put(1, []byte("d")); err != nil {
		t.Fatal(err)
	}
	var order []byte
	for {
		c, ok, err := again.Oldest()
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		order = append(order, c.Data[0])
		if err := again.Ack(c.Seq); err != nil {
			t.Fatal(err)
		}
	}
	if string(order) != "bcd" {
		t.Errorf("chunks after the restart came out as %q, want bcd", order)
	}
	if size, chunks, _, _ := again.Stats(); size != 0 || chunks != 0 {
		t.Errorf("after every ack: %d bytes in %d chunks", size, chunks)
	}
}
