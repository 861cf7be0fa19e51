package logs

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"time"

	"github.com/tinylib/msgp/msgp"
)

// Message is one forward protocol message waiting to be sent: a tag and its entries, the msgpack stream of
// [EventTime, record] pairs that a PackedForward message carries (gzip-compressed for
// CompressedPackedForward).
type Message struct {
	Tag        string
	Entries    []byte
	Records    int
	Compressed bool
}

// chunkBuilder encodes one container's records into a Message as they are read, straight to msgpack: no
// map per record, and the container's metadata encoded once per chunk.
type chunkBuilder struct {
	entries []byte
	// stage, while the builder has one (lent with a parsing token: useStage), takes the records first; they
	// are copied into entries a stage at a time. Written straight into a chunk's buffer, which is recycled
	// and out of the core's caches by the time a follower fills it, the records stalled on their header
	// bytes (perf: most of addLine's samples at its first stores of each record); one copy of a few
	// kilobytes streams into that memory instead (1 GiB of 200-byte lines through the agent: 875 against
	// 780 MB/s; 1 KiB lines unchanged).
	stage   []byte
	records int
	// meta is the encoded "kubernetes" map of the chunk's container, tag the chunk's tag (setContainer).
	meta []byte
	tag  string
	// tails are what a stdout and a stderr record end with, encoded once per chunk (setContainer): the
	// stream and the container's metadata are the same for every record.
	tails [2][]byte
	// parseJSON merges the fields of a message that is a JSON object into its record.
	parseJSON bool
	// lineBytes counts the message bytes added, for the input metrics.
	lineBytes int
	// capacity is the size of a full chunk's buffer. A chunk after a full one starts with it, so that a busy
	// file's chunks are not grown (and copied) as they fill; a chunk after a small one starts at twice that
	// one's size, so that the followers of quiet files hold little while their chunks wait to be flushed.
	capacity int
	// next is the size the next chunk's buffer starts with.
	next int
	// spare gives a buffer of at least n bytes, or nil for a new one.
	spare func(n int) []byte
}

// minChunkBuffer is the least a chunk's buffer starts with: a few hundred short lines.
const minChunkBuffer = 64 << 10

// Fields every record has; a JSON message's field of the same name does not replace them.
var recordKeys = map[string]bool{"log": true, "stream": true, "kubernetes": true}

// add appends one record. A malformed line carries the time it was read, since it has none of its own.
func (b *chunkBuilder) add(r Record) {
	t := r.Time
	if r.Malformed {
		t = time.Now()
	}
	b.addLine(t.Unix(), t.Nanosecond(), r.Stream, r.Message, !r.Malformed)
}

// addLine appends the record of a message written at Unix time sec and nsec. Only a parsed line's message
// (not a malformed line kept raw) has its JSON fields merged. A record of a stream with no fields of its
// own goes through the stage when it fits there; any other is appended to the chunk after what is staged.
func (b *chunkBuilder) addLine(sec int64, nsec int, stream Stream, msg []byte, parsed bool) {
	var fields map[string]any
	if b.parseJSON && parsed {
		fields = jsonObject(msg)
	}
	extra := extraFields(fields)
	tail := b.tailOf(stream)
	if extra == 0 && tail != nil && b.stageRecord(sec, nsec, tail, msg) {
		return
	}
	b.flushStage()
	// The stream's tail, or a stdout tail's length for a malformed line's (it has no stream: shorter).
	e := b.room(maxRecordHead + len(msg) + len(b.tails[0])) // a JSON object's own fields may grow it further
	e = append(appendRecordHead(e, sec, nsec, 3+extra, len(msg)), msg...)
	if tail != nil {
		e = append(e, tail...)
	} else { // a malformed line's record has no stream
		e = appendTail(e, stream, b.meta)
	}
	b.entries = e
	if extra > 0 {
		b.appendFields(fields)
	}
	b.records++
	b.lineBytes += len(msg)
}

// tailOf is what a record of the stream ends with (setContainer), nil for a malformed line's (no stream).
func (b *chunkBuilder) tailOf(stream Stream) []byte {
	switch stream {
	case Stdout:
		return b.tails[0]
	case Stderr:
		return b.tails[1]
	}
	return nil
}

// stageRecord appends, through the stage, the record of a message with no fields of its own that ends with
// tail, and reports whether it did: not when the builder has no stage or the record does not fit in one.
func (b *chunkBuilder) stageRecord(sec int64, nsec int, tail, msg []byte) bool {
	if !b.roomInStage(maxRecordHead + len(msg) + len(tail)) {
		return false
	}
	b.stage = append(append(appendRecordHead(b.stage, sec, nsec, 3, len(msg)), msg...), tail...)
	b.records++
	b.lineBytes += len(msg)
	return true
}

// addUsualLines adds the records of the whole lines at the start of block (each ends with a newline) that
// are of the runtimes' usual shape (Joiner.usualLine), up to the first line of another shape, a line not
// whole yet, or the chunk's holding maxRecords records or maxBytes bytes; it returns the bytes of the lines
// it took. A follower hands it everything its read buffer holds after each line it reads: one call then
// takes most lines, where a call per line to read it, one to parse it and one to parse its timestamp
// were a fifth of the follower's instructions at 200-byte lines.
func (b *chunkBuilder) addUsualLines(j *Joiner, block []byte, maxRecords, maxBytes int) int {
	if b.parseJSON { // a message's own fields go line by line (addLine)
		return 0
	}
	used := 0
	for b.records < maxRecords && b.size() < maxBytes {
		n := bytes.IndexByte(block[used:], '\n')
		if n < 0 {
			break
		}
		line := block[used : used+n]
		nsec, stream, ok := j.usualLine(line)
		if !ok {
			break
		}
		if msg := line[usualLineHead:]; !b.stageRecord(j.seconds.unix, nsec, b.tailOf(stream), msg) {
			b.addLine(j.seconds.unix, nsec, stream, msg, true) // no stage, or a line longer than it
		}
		used += n + 1
	}
	return used
}

// maxRecordHead bounds a record's bytes before its message's: array and map headers, EventTime, the "log"
// key and the message's string header.
const maxRecordHead = 32

// stageBytes is the size of a stage (chunkBuilder.stage): records are copied into the chunk that many
// bytes at a time, from a buffer that stays in the core's first-level cache.
const stageBytes = 16 << 10

// roomInStage reports whether a record of n bytes goes through the stage: there is one, and n fits in it,
// once what it holds is copied into the chunk if need be. The stage never grows.
func (b *chunkBuilder) roomInStage(n int) bool {
	if b.stage == nil || n > cap(b.stage) {
		return false
	}
	if len(b.stage)+n > cap(b.stage) {
		b.flushStage()
	}
	return true
}

// flushStage copies the staged records into the chunk.
func (b *chunkBuilder) flushStage() {
	if len(b.stage) == 0 {
		return
	}
	b.entries = append(b.room(len(b.stage)), b.stage...)
	b.stage = b.stage[:0]
}

// room returns the chunk's buffer with room for n more bytes. It grows by doubling, and to a full chunk's
// size once double is more than half of that: a chunk that fills up then ends in a buffer that later full
// chunks reuse. (Grown by msgp's doubling, a chunk's buffer went from 1 MiB to 2 MiB for its last stage,
// or stayed at 1 MiB, short of the 1 MiB and 16 KiB a full chunk asks for: either way the next chunk took
// new memory.) The bigger buffer comes from spare; the smaller one is left to the garbage collector.
func (b *chunkBuilder) room(n int) []byte {
	e := b.chunkBuffer()
	if cap(e)-len(e) >= n {
		return e
	}
	size := max(2*cap(e), len(e)+n)
	if size > b.capacity/2 && len(e)+n <= b.capacity {
		size = b.capacity
	}
	return append(b.take(size), e...)
}

// useStage lends the builder a stage; returnStage copies what it holds into the chunk and takes it back.
func (b *chunkBuilder) useStage(stage []byte) { b.stage = stage[:0] }

func (b *chunkBuilder) returnStage() []byte {
	b.flushStage()
	stage := b.stage
	b.stage = nil
	return stage
}

// size is the bytes of the records added to the chunk so far, staged or not.
func (b *chunkBuilder) size() int { return len(b.entries) + len(b.stage) }

// setContainer makes the records added next those of the container with this metadata, under this tag.
func (b *chunkBuilder) setContainer(meta []byte, tag string) {
	b.meta, b.tag = meta, tag
	b.tails[0] = appendTail(b.tails[0][:0], Stdout, meta)
	b.tails[1] = appendTail(b.tails[1][:0], Stderr, meta)
}

// appendTail appends the fields that follow a record's message: its stream and its container's metadata.
func appendTail(dst []byte, stream Stream, meta []byte) []byte {
	dst = msgp.AppendString(dst, "stream")
	dst = msgp.AppendString(dst, string(stream))
	dst = msgp.AppendString(dst, "kubernetes")
	return append(dst, meta...)
}

// chunkBuffer is the chunk's buffer, taken when its first record comes.
func (b *chunkBuilder) chunkBuffer() []byte {
	if b.entries == nil {
		b.entries = b.newBuffer()
	}
	return b.entries
}

// newBuffer is the buffer a new chunk starts with: of size next, and small for a follower's first chunk
// (an agent starting beside 110 pods has as many first chunks at once) unless expectFull said otherwise.
func (b *chunkBuilder) newBuffer() []byte { return b.take(max(b.next, minChunkBuffer)) }

// take returns an empty buffer with room for n bytes, from spare when the builder has one.
func (b *chunkBuilder) take(n int) []byte {
	if b.spare != nil {
		return b.spare(n)
	}
	return make([]byte, 0, n)
}

// expectFull makes the next chunk start in a full chunk's buffer: its file holds a chunk's worth of
// lines not read yet, so growing from a small buffer would only copy the records over and over.
func (b *chunkBuilder) expectFull() { b.next = b.capacity }

// extraFields counts the fields of a JSON message that a record adds to those every record has.
func extraFields(fields map[string]any) int {
	if len(fields) == 0 { // no ranging over an empty map: it costs a call, and this runs once per line
		return 0
	}
	extra := 0
	for k := range fields {
		if !recordKeys[k] {
			extra++
		}
	}
	return extra
}

// appendFields appends the fields of a JSON message, but those every record has.
func (b *chunkBuilder) appendFields(fields map[string]any) {
	for k, v := range fields {
		if recordKeys[k] {
			continue
		}
		b.entries = msgp.AppendString(b.entries, k)
		var err error
		if b.entries, err = msgp.AppendIntf(b.entries, v); err != nil {
			// Values decoded from JSON are all encodable; keep the stream well formed if one is not.
			b.entries = msgp.AppendString(b.entries, fmt.Sprint(v))
		}
	}
}

// jsonObject returns the fields of a message that is one JSON object, or nil.
func jsonObject(msg []byte) map[string]any {
	trimmed := bytes.TrimSpace(msg)
	if len(trimmed) < 2 || trimmed[0] != '{' {
		return nil
	}
	var fields map[string]any
	if json.Unmarshal(trimmed, &fields) != nil {
		return nil
	}
	return fields
}

// message returns what was added as a Message under the builder's tag, compressed if asked, and empties
// the builder. Uncompressed, the Message's entries are the builder's buffer, handed over. Either way the
// builder keeps no buffer: the next record's add takes one, so an idle follower holds none.
func (b *chunkBuilder) message(compress bool) (Message, error) {
	b.flushStage()
	m := Message{Tag: b.tag, Entries: b.entries, Records: b.records}
	b.records, b.lineBytes, b.entries = 0, 0, nil
	b.next = min(2*len(m.Entries), b.capacity)
	if !compress {
		return m, nil
	}
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(m.Entries); err != nil {
		return Message{}, fmt.Errorf("compressing a chunk: %w", err)
	}
	if err := zw.Close(); err != nil {
		return Message{}, fmt.Errorf("compressing a chunk: %w", err)
	}
	m.Entries, m.Compressed = buf.Bytes(), true
	return m, nil
}

// appendRecordHead appends what comes before a record's message: [ (an array of two), the protocol's
// EventTime (extension type 0 with seconds and nanoseconds, each a big-endian uint32: fixext 8), the
// record's map header for fields fields, the "log" key and the message's string header. It is the
// encoding msgp's Append functions give, written as appends of single bytes, which compile to stores
// without calls: it runs once per line, and msgp's five calls were a tenth of a follower's instructions.
func appendRecordHead(e []byte, sec int64, nsec int, fields int, msgLen int) []byte {
	s, ns := uint32(sec), uint32(nsec)
	e = append(e, 0x92, 0xd7, 0x00, byte(s>>24), byte(s>>16), byte(s>>8), byte(s), byte(ns>>24), byte(ns>>16), byte(ns>>8), byte(ns))
	switch { // more than the three fields every record has only with a JSON message's own
	case fields < 16:
		e = append(e, 0x80|byte(fields)) // fixmap
	case fields < 1<<16:
		e = append(e, 0xde, byte(fields>>8), byte(fields))
	default:
		e = append(e, 0xdf, byte(fields>>24), byte(fields>>16), byte(fields>>8), byte(fields))
	}
	e = append(e, 0xa3, 'l', 'o', 'g')
	switch {
	case msgLen < 32:
		return append(e, 0xa0|byte(msgLen)) // fixstr
	case msgLen < 1<<8:
		return append(e, 0xd9, byte(msgLen))
	case msgLen < 1<<16:
		return append(e, 0xda, byte(msgLen>>8), byte(msgLen))
	}
	return append(e, 0xdb, byte(msgLen>>24), byte(msgLen>>16), byte(msgLen>>8), byte(msgLen))
}
