package logs

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tinylib/msgp/msgp"
)

// A follower keeps its chunk builder for the life of the file: between chunks the builder must hold no
// buffer, and the buffer of a quiet file's chunk must stay small, or an agent beside 110 pods that log a
// line now and then holds a full chunk's memory for each of them. A chunk that fills up must end in a
// buffer of a full chunk's size, which later full chunks reuse, and a file with a chunk's worth of lines
// waiting starts in one.
func TestChunkBuffersFollowTheFilesPace(t *testing.T) {
	const chunkBytes = 1 << 20
	const capacity = chunkBytes + 16<<10 // as the shipper makes it
	var taken []int
	b := &chunkBuilder{capacity: capacity, spare: func(n int) []byte {
		taken = append(taken, n)
		return make([]byte, 0, n)
	}}
	b.useStage(make([]byte, 0, stageBytes)) // as a follower holding a parsing token
	b.setContainer([]byte{0x80}, "")
	line := Record{Time: time.Unix(1764621919, 0), Stream: Stdout, Message: bytes.Repeat([]byte("x"), 200)}
	fill := func(bytes int) {
		taken = nil
		for b.size() < bytes {
			b.add(line)
		}
		m, err := b.message(false)
		if err != nil {
			t.Fatal(err)
		}
		if b.entries != nil {
			t.Fatalf("the builder kept a buffer of %d bytes after handing its chunk over", cap(b.entries))
		}
		if bytes == chunkBytes && cap(m.Entries) != capacity {
			t.Errorf("a full chunk ends in a buffer of %d bytes, want %d", cap(m.Entries), capacity)
		}
	}
	for _, step := range []struct {
		name  string
		bytes int
		full  bool
		want  []int
	}{
		{"a new container's first line", 1, false, []int{minChunkBuffer}},
		{"a quiet file: one line per flush", 1, false, []int{minChunkBuffer}},
		{"a burst: the chunk grows to full", chunkBytes, false, []int{minChunkBuffer, 2 * minChunkBuffer, 4 * minChunkBuffer, 8 * minChunkBuffer, capacity}},
		{"a busy file: the chunk starts full", chunkBytes, false, []int{capacity}},
		{"quiet again", 1, false, []int{capacity}},
		{"and stays so", 1, false, []int{minChunkBuffer}},
		{"a file with a chunk's worth waiting", chunkBytes, true, []int{capacity}},
	} {
		if step.full {
			b.expectFull()
		}
		fill(step.bytes)
		if !slices.Equal(taken, step.want) {
			t.Errorf("%s: buffers taken %v, want %v", step.name, taken, step.want)
		}
	}
}

// Records that do not go through the stage (a JSON message's fields merged, with parseJSON) grow the chunk
// by the same rule: a full chunk ends in a buffer of a full chunk's size, which later full chunks reuse.
func TestUnstagedRecordsEndInAFullChunksBuffer(t *testing.T) {
	const capacity = 1<<20 + 16<<10
	b := &chunkBuilder{capacity: capacity, parseJSON: true}
	b.useStage(make([]byte, 0, stageBytes))
	b.setContainer([]byte{0x80}, "")
	line := []byte(`{"level":"info","msg":"` + string(bytes.Repeat([]byte("x"), 200)) + `"}`)
	for b.size() < 1<<20 {
		b.addLine(1764621919, 0, Stdout, line, true)
	}
	m, err := b.message(false)
	if err != nil {
		t.Fatal(err)
	}
	if cap(m.Entries) != capacity {
		t.Errorf("a full chunk of JSON records ends in a buffer of %d bytes, want %d", cap(m.Entries), capacity)
	}
}

// Each record carries its own stream (none for a malformed line) and the container's metadata, which the
// builder encodes once per chunk.
func TestRecordsCarryTheirStreamAndTheContainersMetadata(t *testing.T) {
	meta, err := msgp.AppendIntf(nil, map[string]any{"pod_name": "web-0"})
	if err != nil {
		t.Fatal(err)
	}
	b := &chunkBuilder{}
	b.setContainer(meta, "kube.web")
	at := time.Unix(1764621919, 0)
	for _, r := range []Record{{Time: at, Stream: Stdout, Message: []byte("out")}, {Time: at, Stream: Stderr, Message: []byte("err")},
		{Message: []byte("no time"), Malformed: true}} {
		b.add(r)
	}
	m, err := b.message(false)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for rest := m.Entries; len(rest) > 0; {
		if _, rest, err = msgp.ReadArrayHeaderBytes(rest); err != nil {
			t.Fatal(err)
		}
		if rest, err = msgp.Skip(rest); err != nil { // the EventTime
			t.Fatal(err)
		}
		var rec any
		if rec, rest, err = msgp.ReadIntfBytes(rest); err != nil {
			t.Fatal(err)
		}
		fields := rec.(map[string]any)
		got = append(got, fmt.Sprintf("%s/%s/%v", fields["log"], fields["stream"], fields["kubernetes"]))
	}
	want := []string{"out/stdout/map[pod_name:web-0]", "err/stderr/map[pod_name:web-0]", "no time//map[pod_name:web-0]"}
	if !slices.Equal(got, want) || m.Tag != "kube.web" || m.Records != 3 {
		t.Errorf("records %q, tag %q, %d records; want %q, kube.web, 3", got, m.Tag, m.Records, want)
	}
}

// A follower holding a parsing token encodes records through its stage: the chunk it hands over is the one
// it would have built without, record for record and in order, whatever mixes with the staged records (a
// JSON message's fields, a line without a stream, a line longer than the stage), and the stage it gives
// back is the one it was lent, never grown.
func TestStagedRecordsAreTheChunksRecordsInOrder(t *testing.T) {
	meta, err := msgp.AppendIntf(nil, map[string]any{"pod_name": "web-0", "labels": map[string]any{"app": "web"}})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Unix(1764621919, 123456789)
	var records []Record
	for i := range 400 { // several stages' worth
		msg := fmt.Appendf(nil, "level=info request=%d msg=%s", i, bytes.Repeat([]byte("x"), i%150))
		switch {
		case i%97 == 5:
			msg = fmt.Appendf(nil, `{"request":%d}`, i) // a field merged into its record (one: a map has no order)
		case i%131 == 7:
			msg = bytes.Repeat([]byte("y"), 2*stageBytes) // longer than the stage
		}
		stream := Stdout
		if i%3 == 0 {
			stream = Stderr
		}
		if i%113 == 50 {
			stream = "" // a line without a stream
		}
		records = append(records, Record{Time: at.Add(time.Duration(i) * time.Millisecond), Stream: stream, Message: msg})
	}
	build := func(stage []byte) (Message, []byte) {
		b := &chunkBuilder{parseJSON: true}
		b.setContainer(meta, "kube.web")
		if stage != nil {
			b.useStage(stage)
		}
		for i, r := range records {
			b.add(r)
			if i == 200 && stage != nil { // the follower gives its token back and takes one again
				b.useStage(b.returnStage())
			}
		}
		m, err := b.message(false)
		if err != nil {
			t.Fatal(err)
		}
		if stage == nil {
			return m, nil
		}
		return m, b.returnStage()
	}
	direct, _ := build(nil)
	staged, stage := build(make([]byte, 0, stageBytes))
	if staged.Records != direct.Records || !bytes.Equal(staged.Entries, direct.Entries) {
		t.Errorf("staged chunk: %d records in %d bytes; without a stage: %d records in %d bytes, the bytes differ at %d",
			staged.Records, len(staged.Entries), direct.Records, len(direct.Entries), firstDifference(staged.Entries, direct.Entries))
	}
	if cap(stage) != stageBytes {
		t.Errorf("the stage given back holds %d bytes, lent with %d", cap(stage), stageBytes)
	}
}

func firstDifference(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// A record's head is written in one piece; a receiver reads it with any msgpack decoder, so it must be
// exactly what msgp's own functions write, for every size class of the map and of the message.
func TestRecordHeadIsMsgpsEncoding(t *testing.T) {
	for _, fields := range []int{3, 15, 16, 65535, 65536} {
		for _, msgLen := range []int{0, 31, 32, 255, 256, 65535, 65536, 1 << 20} {
			want := msgp.AppendArrayHeader(nil, 2)
			want = append(want, 0xd7, 0x00, 0x69, 0x2e, 0x0f, 0x5f, 0x07, 0x5b, 0xcd, 0x15) // EventTime
			want = msgp.AppendMapHeader(want, uint32(fields))
			want = msgp.AppendString(want, "log")
			msg := bytes.Repeat([]byte("m"), msgLen)
			want = msgp.AppendStringFromBytes(want, msg)
			head := appendRecordHead(nil, 1764626271, 123456789, fields, msgLen)
			if got := append(head, msg...); !bytes.Equal(got, want) {
				t.Errorf("%d fields, a message of %d bytes: head %x, want msgp's %x", fields, msgLen, head, want[:min(len(want), 32)])
			}
			if len(head) > maxRecordHead {
				t.Errorf("%d fields, a message of %d bytes: head of %d bytes, more than maxRecordHead", fields, msgLen, len(head))
			}
		}
	}
}

// Whatever lines addUsualLines takes from a block, it takes whole lines and encodes them as the follower
// does one line at a time (wholeLine, or Add): the same bytes, the same records.
func FuzzUsualLinesEncodeAsLineByLine(f *testing.F) {
	f.Add([]byte("2026-12-01T20:45:19.123456789Z stdout F first\n2026-12-01T20:45:19.000000001Z stderr F second\n" +
		"2026-12-01T20:45:20.000000001Z stdout F the next second\n"))
	f.Add([]byte("2026-12-01T20:45:19.123456789Z stdout F \n2026-12-01T20:45:19.123456789Z stdout F\n"))
	f.Add([]byte("2026-12-01T20:45:19.123456789Z stdout P part\n2026-12-01T20:45:19.123456789Z stdout F end\n"))
	f.Add([]byte("2026-12-01T20:45:19x123456789Z stdout F no dot\n2026-12-01T20:45:19.12345678xZ stdout F a letter\n"))
	f.Add([]byte("2026-12-01T20:45:19.123456789Z stdout F whole\n2026-12-01T20:45:19.123456789Z stdout F not yet"))
	f.Add([]byte("2026-12-01T20:45:19.123456789Z stdin  F x\n2026-12-01T20:45:19.123456789Zxstdout F y\n"))
	meta, err := msgp.AppendIntf(nil, map[string]any{"pod_name": "web-0"})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, block []byte) {
		// Both have read a line of the second the seeds are in, as a follower has before it calls
		// addUsualLines.
		prime := []byte("2026-12-01T20:45:19.000000000Z stdout F prime")
		builders, joiners := [2]*chunkBuilder{{}, {}}, [2]*Joiner{NewJoiner(), NewJoiner()}
		for i, b := range builders {
			b.setContainer(meta, "kube.web")
			rec, _ := joiners[i].Add(prime)
			b.add(rec)
		}
		fast, slow := builders[0], builders[1]
		used := fast.addUsualLines(joiners[0], block, 1<<30, 1<<30)
		if used > 0 && block[used-1] != '\n' {
			t.Fatalf("took %q, which does not end with a line's end", block[:used])
		}
		for line := range bytes.Lines(block[:used]) {
			line = line[:len(line)-1]
			if sec, nsec, stream, msg, ok := joiners[1].wholeLine(line); ok {
				slow.addLine(sec, nsec, stream, msg, true)
			} else if rec, ok := joiners[1].Add(line); ok {
				slow.add(rec)
			}
		}
		got, err := fast.message(false)
		if err != nil {
			t.Fatal(err)
		}
		want, err := slow.message(false)
		if err != nil {
			t.Fatal(err)
		}
		if got.Records != want.Records || !bytes.Equal(got.Entries, want.Entries) {
			t.Fatalf("%q: %d records, %x; line by line %d records, %x", block[:used], got.Records, got.Entries,
				want.Records, want.Entries)
		}
	})
}

// addUsualLines stops where the chunk is full, and at the first line that is not of the usual shape, so
// that the follower reads that one line by line.
func TestUsualLinesStopAtAFullChunkAndAtAnotherLine(t *testing.T) {
	j := NewJoiner()
	b := &chunkBuilder{}
	b.setContainer(nil, "kube.web")
	rec, _ := j.Add([]byte("2026-12-01T20:45:19.000000000Z stdout F prime"))
	b.add(rec)
	usual := "2026-12-01T20:45:19.123456789Z stdout F usual\n"
	block := []byte(strings.Repeat(usual, 3) + "2026-12-01T20:45:20.000000000Z stdout F the next second\n" + usual)
	used := b.addUsualLines(j, block, 3, 1<<20)
	if used != 2*len(usual) || b.records != 3 {
		t.Fatalf("up to 3 records: took %d bytes, %d records; want %d bytes, 3 records", used, b.records, 2*len(usual))
	}
	if more := b.addUsualLines(j, block[used:], 100, 1<<20); more != len(usual) || b.records != 4 {
		t.Errorf("then took %d bytes, %d records in all; want %d bytes (up to the next second's line), 4 records", more,
			b.records, len(usual))
	}
}
