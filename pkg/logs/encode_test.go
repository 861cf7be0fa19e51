package logs

import (
	"bytes"
	"slices"
	"testing"
	"time"
)

// A follower keeps its chunk builder for the life of the file: between chunks the builder must hold no
// buffer, and the buffer of a quiet file's chunk must stay small, or an agent beside 110 pods that log a
// line now and then holds a full chunk's memory for each of them.
func TestChunkBuffersFollowTheFilesPace(t *testing.T) {
	const capacity = 1 << 20
	var taken []int
	b := &chunkBuilder{meta: []byte{0x80}, capacity: capacity, spare: func(n int) []byte {
		taken = append(taken, n)
		return make([]byte, 0, n)
	}}
	line := Record{Time: time.Unix(1764621919, 0), Stream: Stdout, Message: bytes.Repeat([]byte("x"), 200)}
	fill := func(bytes int) {
		for len(b.entries) < bytes {
			b.add(line)
		}
		if _, err := b.message(false); err != nil {
			t.Fatal(err)
		}
		if b.entries != nil {
			t.Fatalf("the builder kept a buffer of %d bytes after handing its chunk over", cap(b.entries))
		}
	}
	fill(1)        // a new container's first line
	fill(1)        // a quiet file: one line per flush
	fill(capacity) // a burst: the chunk grows to full
	fill(capacity) // a busy file: the chunk starts full
	fill(1)        // quiet again
	fill(1)
	want := []int{minChunkBuffer, minChunkBuffer, minChunkBuffer, capacity, capacity, minChunkBuffer}
	if !slices.Equal(taken, want) {
		t.Fatalf("buffers taken: %v, want %v", taken, want)
	}
}
