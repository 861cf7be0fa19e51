package logs

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
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
// (not a malformed line kept raw) has its JSON fields merged.
func (b *chunkBuilder) addLine(sec int64, nsec int, stream Stream, msg []byte, parsed bool) {
	var fields map[string]any
	if b.parseJSON && parsed {
		fields = jsonObject(msg)
	}
	extra := extraFields(fields)
	if b.entries == nil {
		b.entries = b.newBuffer()
	}
	b.entries = msgp.AppendArrayHeader(b.entries, 2)
	b.entries = appendEventTime(b.entries, sec, nsec)
	b.entries = msgp.AppendMapHeader(b.entries, uint32(3+extra))
	b.entries = append(b.entries, logKey...)
	b.entries = msgp.AppendStringFromBytes(b.entries, msg)
	switch stream {
	case Stdout:
		b.entries = append(b.entries, b.tails[0]...)
	case Stderr:
		b.entries = append(b.entries, b.tails[1]...)
	default: // a malformed line's record has no stream
		b.entries = appendTail(b.entries, stream, b.meta)
	}
	if extra > 0 {
		b.appendFields(fields)
	}
	b.records++
	b.lineBytes += len(msg)
}

// logKey is the first key of every record, encoded.
var logKey = msgp.AppendString(nil, "log")

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

// newBuffer is the buffer a new chunk starts with: of size next, and small for a follower's first chunk
// (an agent starting beside 110 pods has as many first chunks at once).
func (b *chunkBuilder) newBuffer() []byte {
	n := max(b.next, minChunkBuffer)
	if b.spare != nil {
		return b.spare(n)
	}
	return make([]byte, 0, n)
}

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

// appendEventTime appends the protocol's EventTime: extension type 0 with seconds and nanoseconds, each a
// big-endian uint32 (fixext 8).
func appendEventTime(b []byte, sec int64, nsec int) []byte {
	b = append(b, 0xd7, 0x00)
	b = binary.BigEndian.AppendUint32(b, uint32(sec))
	return binary.BigEndian.AppendUint32(b, uint32(nsec))
}
