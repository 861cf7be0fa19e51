package logs

import (
	"context"
	"crypto/rand"
	"crypto/sha512"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/tinylib/msgp/msgp"
)

// ForwardClient sends messages over the Fluentd forward protocol v1, in PackedForward mode
// (CompressedPackedForward for compressed entries), each with a `chunk` option, and waits for every
// message's acknowledgement: a message is either acknowledged or reported failed, never assumed delivered.
// It keeps its connection open between sends (keepalive), fails over to the next receiver when one fails,
// and speaks TLS and the shared-key handshake when configured.
type ForwardClient struct {
	// Receivers are host:port addresses, the first preferred: a new connection tries them in order,
	// starting after the one that failed last.
	Receivers []string
	// TLS, when set, wraps each connection (its ServerName is taken from the receiver's host when empty).
	TLS *tls.Config
	// SharedKey, when set, answers the receiver's HELO with the PING of the protocol's handshake and
	// checks the PONG; Username and Password add user authentication to it.
	SharedKey          string
	SelfHostname       string
	Username, Password string
	// Timeout bounds the connection and the handshake, and each Write and Wait.
	Timeout time.Duration

	conn    net.Conn
	reader  *msgp.Reader
	current int // index of the connected receiver, or of the one the next connection tries first
	// closeAfterSend is set when the receiver's HELO said it does not keep connections.
	closeAfterSend bool
	// pending are the chunk ids of the messages written on conn whose acks are not read yet, oldest first.
	pending []string
}

// Write writes msgs on the connection, opening one first if there is none, without waiting for their
// acknowledgements: Wait reads them, so the receiver can read one batch while the next is written. It
// returns how many of msgs it wrote: all, except to a receiver whose HELO refused keepalive, which gets one
// message per connection (none while one is waiting for its ack). On an error the connection is closed and
// the next Write opens one to the next receiver: the caller writes every unacknowledged message again, so
// one the receiver had taken before the error arrives twice (at least once, never lost).
func (c *ForwardClient) Write(ctx context.Context, msgs []Message) (int, error) {
	if c.conn == nil {
		if err := c.connect(ctx); err != nil {
			return 0, fmt.Errorf("forwarding %d messages: %w", len(msgs), err)
		}
	}
	if c.closeAfterSend {
		if len(c.pending) > 0 {
			return 0, nil
		}
		msgs = msgs[:min(len(msgs), 1)]
	}
	var frames [][]byte
	ids := make([]string, len(msgs))
	for i, m := range msgs {
		parts, id, err := frame(m)
		if err != nil {
			return 0, err
		}
		frames, ids[i] = append(frames, parts...), id
	}
	if err := c.conn.SetWriteDeadline(c.deadline(ctx)); err != nil {
		return 0, c.fail(len(msgs), err)
	}
	if err := writeBuffers(c.conn, frames); err != nil {
		return 0, c.fail(len(msgs), err)
	}
	c.pending = append(c.pending, ids...)
	return len(msgs), nil
}

// Wait reads the acknowledgements of the n oldest messages written and not yet acknowledged, in order. On
// an error the connection is closed, as for Write, and every message still pending must be written again.
func (c *ForwardClient) Wait(ctx context.Context, n int) error {
	if c.conn == nil || n > len(c.pending) {
		return fmt.Errorf("waiting for %d acks with %d messages written", n, len(c.pending))
	}
	if err := c.conn.SetReadDeadline(c.deadline(ctx)); err != nil {
		return c.fail(n, err)
	}
	for range n {
		ack, err := readAck(c.reader)
		if err != nil {
			return c.fail(n, fmt.Errorf("waiting for the ack: %w", err))
		}
		if ack != c.pending[0] {
			return c.fail(n, fmt.Errorf("ack for chunk %q, want %q", ack, c.pending[0]))
		}
		c.pending = c.pending[1:]
	}
	if c.closeAfterSend && len(c.pending) == 0 {
		c.Close()
	}
	return nil
}

// fail closes the connection after an error, so that the next Write tries the next receiver.
func (c *ForwardClient) fail(messages int, err error) error {
	addr := c.Receivers[c.current]
	c.Close()
	c.current = (c.current + 1) % len(c.Receivers)
	return fmt.Errorf("forwarding %d messages to %s: %w", messages, addr, err)
}

// Close closes the connection, if one is open; messages waiting for their acks are then unacknowledged.
func (c *ForwardClient) Close() {
	if c.conn != nil {
		c.conn.Close()
		c.conn, c.reader, c.pending = nil, nil, nil
	}
}

func (c *ForwardClient) deadline(ctx context.Context) time.Time {
	deadline := time.Now().Add(c.Timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	return deadline
}

// connect opens a connection to the first receiver, from the current one on, that takes it.
func (c *ForwardClient) connect(ctx context.Context) error {
	var errs []error
	for range c.Receivers {
		addr := c.Receivers[c.current]
		conn, reader, err := c.dial(ctx, addr)
		if err == nil {
			c.conn, c.reader = conn, reader
			return nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", addr, err))
		c.current = (c.current + 1) % len(c.Receivers)
	}
	return errors.Join(errs...)
}

func (c *ForwardClient) dial(ctx context.Context, addr string) (net.Conn, *msgp.Reader, error) {
	dialer := net.Dialer{Timeout: c.Timeout, KeepAlive: 30 * time.Second}
	conn, err := dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	if err := conn.SetDeadline(c.deadline(ctx)); err != nil {
		conn.Close()
		return nil, nil, err
	}
	if c.TLS != nil {
		cfg := c.TLS.Clone()
		if cfg.ServerName == "" {
			cfg.ServerName, _, _ = net.SplitHostPort(addr)
		}
		tlsConn := tls.Client(conn, cfg)
		if err := tlsConn.HandshakeContext(ctx); err != nil {
			conn.Close()
			return nil, nil, fmt.Errorf("TLS handshake: %w", err)
		}
		conn = tlsConn
	}
	reader := msgp.NewReader(conn)
	c.closeAfterSend = false
	if c.SharedKey != "" {
		if err := c.handshake(conn, reader); err != nil {
			conn.Close()
			return nil, nil, fmt.Errorf("forward handshake: %w", err)
		}
	}
	return conn, reader, nil
}

// handshake is the protocol's authentication: the receiver sends HELO [nonce, user auth salt, keepalive];
// the client answers PING with a digest of the shared key (and of its password when the receiver asks for
// user authentication); the receiver answers PONG with its own digest, which proves it knows the key too.
func (c *ForwardClient) handshake(conn net.Conn, r *msgp.Reader) error {
	nonce, authSalt, keepalive, err := readHelo(r)
	if err != nil {
		return err
	}
	// A hex string, as Fluentd's out_forward sends it.
	saltBytes := make([]byte, 16)
	if _, err := rand.Read(saltBytes); err != nil {
		return err
	}
	salt := []byte(hex.EncodeToString(saltBytes))
	ping := msgp.AppendArrayHeader(nil, 6)
	ping = msgp.AppendString(ping, "PING")
	ping = msgp.AppendString(ping, c.SelfHostname)
	ping = msgp.AppendStringFromBytes(ping, salt)
	ping = msgp.AppendString(ping, sha512Hex(salt, []byte(c.SelfHostname), nonce, []byte(c.SharedKey)))
	if len(authSalt) > 0 {
		ping = msgp.AppendString(ping, c.Username)
		ping = msgp.AppendString(ping, sha512Hex(authSalt, []byte(c.Username), []byte(c.Password)))
	} else {
		ping = msgp.AppendString(ping, "")
		ping = msgp.AppendString(ping, "")
	}
	if _, err := conn.Write(ping); err != nil {
		return err
	}
	n, err := r.ReadArrayHeader()
	if err != nil {
		return fmt.Errorf("reading PONG: %w", err)
	}
	if n != 5 {
		return fmt.Errorf("PONG with %d fields, want 5", n)
	}
	var kind, reason, serverHost, digest string
	var ok bool
	kind, err = r.ReadString()
	if err == nil {
		ok, err = r.ReadBool()
	}
	if err == nil {
		reason, err = r.ReadString()
	}
	if err == nil {
		serverHost, err = r.ReadString()
	}
	if err == nil {
		digest, err = r.ReadString()
	}
	switch {
	case err != nil:
		return fmt.Errorf("reading PONG: %w", err)
	case kind != "PONG":
		return fmt.Errorf("got %q, want PONG", kind)
	case !ok:
		return fmt.Errorf("the receiver refused: %s", reason)
	case digest != sha512Hex(salt, []byte(serverHost), nonce, []byte(c.SharedKey)):
		return errors.New("the receiver's PONG digest does not match the shared key")
	}
	c.closeAfterSend = !keepalive
	return nil
}

func readHelo(r *msgp.Reader) (nonce, authSalt []byte, keepalive bool, err error) {
	n, err := r.ReadArrayHeader()
	if err != nil {
		return nil, nil, false, fmt.Errorf("reading HELO: %w", err)
	}
	kind, err := r.ReadString()
	if err != nil || n != 2 || kind != "HELO" {
		return nil, nil, false, fmt.Errorf("expected HELO, got %q (%d fields, %v)", kind, n, err)
	}
	fields, err := r.ReadMapHeader()
	if err != nil {
		return nil, nil, false, fmt.Errorf("reading HELO options: %w", err)
	}
	keepalive = true
	for range fields {
		key, err := r.ReadString()
		if err != nil {
			return nil, nil, false, fmt.Errorf("reading HELO options: %w", err)
		}
		switch key {
		case "nonce":
			nonce, err = readBytesOrString(r)
		case "auth":
			authSalt, err = readBytesOrString(r)
		case "keepalive":
			keepalive, err = r.ReadBool()
		default:
			err = r.Skip()
		}
		if err != nil {
			return nil, nil, false, fmt.Errorf("reading HELO option %s: %w", key, err)
		}
	}
	if len(nonce) == 0 {
		return nil, nil, false, errors.New("HELO without a nonce")
	}
	return nonce, authSalt, keepalive, nil
}

// readBytesOrString reads a bin or a str: implementations send the nonce and salt as either.
func readBytesOrString(r *msgp.Reader) ([]byte, error) {
	t, err := r.NextType()
	if err != nil {
		return nil, err
	}
	if t == msgp.StrType {
		s, err := r.ReadString()
		return []byte(s), err
	}
	return r.ReadBytes(nil)
}

func sha512Hex(parts ...[]byte) string {
	h := sha512.New()
	for _, p := range parts {
		h.Write(p)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// frame encodes [tag, entries, {"size": n, "chunk": id[, "compressed": "gzip"]}] with a new chunk id, as
// three buffers (the entries are not copied: the three are written with one writev).
func frame(m Message) ([][]byte, string, error) {
	id := make([]byte, 16)
	if _, err := rand.Read(id); err != nil {
		return nil, "", err
	}
	chunk := base64.StdEncoding.EncodeToString(id)
	head := msgp.AppendArrayHeader(make([]byte, 0, len(m.Tag)+16), 3)
	head = msgp.AppendString(head, m.Tag)
	head = msgp.AppendBytesHeader(head, uint32(len(m.Entries)))
	options := uint32(2)
	if m.Compressed {
		options++
	}
	tail := msgp.AppendMapHeader(make([]byte, 0, 64), options)
	tail = msgp.AppendString(tail, "size")
	tail = msgp.AppendInt(tail, m.Records)
	tail = msgp.AppendString(tail, "chunk")
	tail = msgp.AppendString(tail, chunk)
	if m.Compressed {
		tail = msgp.AppendString(tail, "compressed")
		tail = msgp.AppendString(tail, "gzip")
	}
	return [][]byte{head, m.Entries, tail}, chunk, nil
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
