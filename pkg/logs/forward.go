package logs

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/tinylib/msgp/msgp"
)

// Entry is one record to send: its time and its fields (strings, byte slices, numbers, nested maps).
type Entry struct {
	Time   time.Time
	Record map[string]any
}

// ForwardClient sends chunks of records to one receiver over the Fluentd forward protocol v1, in
// PackedForward mode (CompressedPackedForward with Gzip), and waits for each chunk's acknowledgement, so a
// chunk is either acknowledged or reported failed: never assumed delivered.
type ForwardClient struct {
	Address string
	// Gzip sends CompressedPackedForward.
	Gzip bool
	// Timeout bounds the connection, the write of a chunk and the wait for its ack.
	Timeout time.Duration

	conn   net.Conn
	reader *msgp.Reader
}

// Send sends entries as one chunk under tag and returns once the receiver acknowledged it. On an error the
// connection is closed, and the next Send opens a new one: the caller sends the chunk again, so a chunk the
// receiver had taken before the error arrives twice (at least once, never lost).
func (c *ForwardClient) Send(ctx context.Context, tag string, entries []Entry) error {
	frame, chunk, err := c.frame(tag, entries)
	if err != nil {
		return err
	}
	if err := c.exchange(ctx, frame, chunk); err != nil {
		c.Close()
		return fmt.Errorf("forwarding %d records to %s: %w", len(entries), c.Address, err)
	}
	return nil
}

// Close closes the connection, if one is open.
func (c *ForwardClient) Close() {
	if c.conn != nil {
		c.conn.Close()
		c.conn, c.reader = nil, nil
	}
}

func (c *ForwardClient) exchange(ctx context.Context, frame []byte, chunk string) error {
	if c.conn == nil {
		dialer := net.Dialer{Timeout: c.Timeout}
		conn, err := dialer.DialContext(ctx, "tcp", c.Address)
		if err != nil {
			return err
		}
		c.conn, c.reader = conn, msgp.NewReader(conn)
	}
	deadline := time.Now().Add(c.Timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if err := c.conn.SetDeadline(deadline); err != nil {
		return err
	}
	if _, err := c.conn.Write(frame); err != nil {
		return err
	}
	ack, err := readAck(c.reader)
	if err != nil {
		return fmt.Errorf("waiting for the ack: %w", err)
	}
	if ack != chunk {
		return fmt.Errorf("ack for chunk %q, want %q", ack, chunk)
	}
	return nil
}

// frame encodes [tag, entries, {"size": n, "chunk": id[, "compressed": "gzip"]}], the entries a msgpack
// stream of [EventTime, record] pairs.
func (c *ForwardClient) frame(tag string, entries []Entry) ([]byte, string, error) {
	var stream []byte
	for _, e := range entries {
		stream = msgp.AppendArrayHeader(stream, 2)
		stream = appendEventTime(stream, e.Time)
		var err error
		if stream, err = msgp.AppendIntf(stream, e.Record); err != nil {
			return nil, "", fmt.Errorf("encoding a record: %w", err)
		}
	}
	if c.Gzip {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		if _, err := zw.Write(stream); err != nil {
			return nil, "", err
		}
		if err := zw.Close(); err != nil {
			return nil, "", err
		}
		stream = buf.Bytes()
	}
	id := make([]byte, 16)
	if _, err := rand.Read(id); err != nil {
		return nil, "", err
	}
	chunk := base64.StdEncoding.EncodeToString(id)
	options := 2
	if c.Gzip {
		options++
	}
	frame := msgp.AppendArrayHeader(nil, 3)
	frame = msgp.AppendString(frame, tag)
	frame = msgp.AppendBytes(frame, stream)
	frame = msgp.AppendMapHeader(frame, uint32(options))
	frame = msgp.AppendString(frame, "size")
	frame = msgp.AppendInt(frame, len(entries))
	frame = msgp.AppendString(frame, "chunk")
	frame = msgp.AppendString(frame, chunk)
	if c.Gzip {
		frame = msgp.AppendString(frame, "compressed")
		frame = msgp.AppendString(frame, "gzip")
	}
	return frame, chunk, nil
}

// appendEventTime appends the protocol's EventTime: extension type 0 with seconds and nanoseconds, each a
// big-endian uint32 (fixext 8).
func appendEventTime(b []byte, t time.Time) []byte {
	b = append(b, 0xd7, 0x00)
	b = binary.BigEndian.AppendUint32(b, uint32(t.Unix()))
	return binary.BigEndian.AppendUint32(b, uint32(t.Nanosecond()))
}

// readAck reads the receiver's {"ack": chunk} answer.
func readAck(r *msgp.Reader) (string, error) {
	n, err := r.ReadMapHeader()
	if err != nil {
		return "", err
	}
	ack := ""
	for range n {
		key, err := r.ReadString()
		if err != nil {
			return "", err
		}
		if key != "ack" {
			if err := r.Skip(); err != nil {
				return "", err
			}
			continue
		}
		if ack, err = r.ReadString(); err != nil {
			return "", err
		}
	}
	if ack == "" {
		return "", errors.New("answer without an ack")
	}
	return ack, nil
}
