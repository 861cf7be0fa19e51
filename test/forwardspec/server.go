// Package forwardspec is a Fluentd forward protocol v1 receiver written from the protocol's specification
// (github.com/fluent/fluentd/wiki/Forward-Protocol-Specification-v1), for what the OpenTelemetry
// Collector's fluentforward receiver does not do: TLS and the shared-key HELO/PING/PONG handshake, with
// user authentication. It also serves as a fast acknowledging sink for benchmarks. Tests and hack/bench use
// it; the agent does not.
package forwardspec

import (
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"crypto/sha512"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"

	"github.com/tinylib/msgp/msgp"
)

// Config is what the receiver asks of its clients.
type Config struct {
	// TLS, when set, makes the listener a TLS one.
	TLS *tls.Config
	// SharedKey, when set, makes the receiver open each connection with HELO and accept only a PING whose
	// digest proves the client knows the key; Users (name → password) adds user authentication.
	SharedKey string
	Hostname  string
	Users     map[string]string
	// Impostor accepts any PING: a receiver that does not know the client's key, for testing that clients
	// check the PONG's digest.
	Impostor bool
	// Decode keeps every record's "log" field, by tag; otherwise only counts are kept (for benchmarks).
	Decode bool
	// NoKeepalive (with SharedKey) says keepalive false in the HELO and closes each connection after its
	// first message, as a Fluentd receiver with deny_keepalive does.
	NoKeepalive bool
}

// ReadBufferBytes is how much the receiver reads from a connection at a time. Benchmarks that measure a
// limit with a receiver of their own read as much, so that the limit's receiver costs what this one does.
const ReadBufferBytes = 256 << 10

// Server is a running receiver.
type Server struct {
	cfg      Config
	listener net.Listener
	wg       sync.WaitGroup

	mu       sync.Mutex
	accepted int
	logs     map[string][]string
	records  int
	bytes    int64
	refusals []string
	conns    map[net.Conn]bool
}

// Listen starts a receiver on addr (a loopback address; port 0 picks one).
func Listen(addr string, cfg Config) (*Server, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	if cfg.TLS != nil {
		l = tls.NewListener(l, cfg.TLS)
	}
	s := &Server{cfg: cfg, listener: l, logs: map[string][]string{}, conns: map[net.Conn]bool{}}
	s.wg.Add(1)
	go s.accept()
	return s, nil
}

// Addr is the address the receiver listens on.
func (s *Server) Addr() string { return s.listener.Addr().String() }

// Close stops the receiver and waits for its connections.
func (s *Server) Close() {
	s.listener.Close()
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// Logs returns the "log" fields received under tag, in order (with Decode).
func (s *Server) Logs(tag string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.logs[tag]...)
}

// Counts returns the records and the bytes of entries acknowledged so far.
func (s *Server) Counts() (records int, bytes int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.records, s.bytes
}

// Connections returns how many connections the receiver accepted.
func (s *Server) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.accepted
}

// Refusals returns why handshakes were refused.
func (s *Server) Refusals() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.refusals...)
}

func (s *Server) accept() {
	defer s.wg.Done()
	for {
		conn, err := s.listener.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conns[conn] = true
		s.accepted++
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer func() {
				conn.Close()
				s.mu.Lock()
				delete(s.conns, conn)
				s.mu.Unlock()
			}()
			_ = s.serve(conn)
		}()
	}
}

func (s *Server) serve(conn net.Conn) error {
	r := msgp.NewReaderSize(conn, ReadBufferBytes)
	w := msgp.NewWriter(conn)
	if s.cfg.SharedKey != "" {
		if err := s.handshake(r, w); err != nil {
			return err
		}
	}
	var buf []byte // the entries' memory, reused from message to message
	for {
		if err := s.message(r, w, &buf); err != nil {
			return err
		}
		if s.cfg.NoKeepalive {
			return nil
		}
	}
}

// handshake sends HELO, checks the client's PING and answers PONG.
func (s *Server) handshake(r *msgp.Reader, w *msgp.Writer) error {
	nonce := random()
	var authSalt []byte
	if len(s.cfg.Users) > 0 {
		authSalt = random()
	}
	_ = w.WriteArrayHeader(2)
	_ = w.WriteString("HELO")
	_ = w.WriteMapHeader(3)
	_ = w.WriteString("nonce")
	_ = w.WriteBytes(nonce)
	_ = w.WriteString("auth")
	_ = w.WriteBytes(authSalt)
	_ = w.WriteString("keepalive")
	_ = w.WriteBool(!s.cfg.NoKeepalive)
	if err := w.Flush(); err != nil {
		return err
	}
	var fields [6]string
	n, err := r.ReadArrayHeader()
	if err != nil {
		return err
	}
	if n != 6 {
		return fmt.Errorf("PING with %d fields", n)
	}
	for i := range fields {
		b, err := readStringOrBytes(r)
		if err != nil {
			return err
		}
		fields[i] = string(b)
	}
	kind, host, salt, digest, user, password := fields[0], fields[1], fields[2], fields[3], fields[4], fields[5]
	reason := ""
	switch {
	case kind != "PING":
		reason = "expected PING, got " + kind
	case !s.cfg.Impostor && digest != sha512Hex(salt, host, string(nonce), s.cfg.SharedKey):
		reason = "shared key mismatch"
	case len(s.cfg.Users) > 0 && (s.cfg.Users[user] == "" || password != sha512Hex(string(authSalt), user, s.cfg.Users[user])):
		reason = "username/password mismatch"
	}
	if reason != "" { // recorded before the client can read the answer
		s.mu.Lock()
		s.refusals = append(s.refusals, reason)
		s.mu.Unlock()
	}
	_ = w.WriteArrayHeader(5)
	_ = w.WriteString("PONG")
	_ = w.WriteBool(reason == "")
	_ = w.WriteString(reason)
	_ = w.WriteString(s.cfg.Hostname)
	_ = w.WriteString(sha512Hex(salt, s.cfg.Hostname, string(nonce), s.cfg.SharedKey))
	if err := w.Flush(); err != nil {
		return err
	}
	if reason != "" {
		return errors.New(reason)
	}
	return nil
}

// message reads one PackedForward or CompressedPackedForward message, its entries into *buf, and acks it
// if asked.
func (s *Server) message(r *msgp.Reader, w *msgp.Writer, buf *[]byte) error {
	n, err := r.ReadArrayHeader()
	if err != nil {
		return err
	}
	if n < 2 || n > 3 {
		return fmt.Errorf("message with %d fields", n)
	}
	tag, err := r.ReadString()
	if err != nil {
		return err
	}
	t, err := r.NextType()
	if err != nil {
		return err
	}
	if t != msgp.BinType && t != msgp.StrType { // Forward mode's array of entries is not what the agent sends
		return fmt.Errorf("entries of type %v", t)
	}
	if !s.cfg.Decode {
		// A sink for benchmarks reads past the entries without copying them, as the raw limit's reader
		// does: it counts the records from the size option.
		return s.skipEntries(r, w, t, n, tag)
	}
	var entries []byte
	if t == msgp.BinType {
		*buf, err = r.ReadBytes((*buf)[:0])
		entries = *buf
	} else {
		entries, err = r.ReadStringAsBytes(nil)
	}
	if err != nil {
		return err
	}
	size := int64(len(entries))
	options, err := readOptions(r, n)
	if err != nil {
		return err
	}
	if options["compressed"] == "gzip" {
		zr, err := gzip.NewReader(bytes.NewReader(entries))
		if err != nil {
			return err
		}
		if entries, err = io.ReadAll(zr); err != nil {
			return err
		}
	}
	var logs []string
	er := msgp.NewReader(bytes.NewReader(entries))
	for {
		if _, err := er.ReadArrayHeader(); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return err
		}
		if err := er.Skip(); err != nil { // EventTime
			return err
		}
		rec := map[string]any{}
		if err := er.ReadMapStrIntf(rec); err != nil {
			return err
		}
		logs = append(logs, fmt.Sprint(rec["log"]))
	}
	s.received(tag, logs, len(logs), size)
	return ack(w, options)
}

// skipEntries reads the rest of a message whose entries (of type t) are not kept.
func (s *Server) skipEntries(r *msgp.Reader, w *msgp.Writer, t msgp.Type, fields uint32, tag string) error {
	var size uint32
	var err error
	if t == msgp.BinType {
		size, err = r.ReadBytesHeader()
	} else {
		size, err = r.ReadStringHeader()
	}
	if err != nil {
		return err
	}
	if _, err := r.R.Skip(int(size)); err != nil {
		return err
	}
	options, err := readOptions(r, fields)
	if err != nil {
		return err
	}
	records := 0
	switch n := options["size"].(type) {
	case int64:
		records = int(n)
	case uint64:
		records = int(n)
	}
	s.received(tag, nil, records, int64(size))
	return ack(w, options)
}

// readOptions reads a message's option map, the third of its fields when there is one.
func readOptions(r *msgp.Reader, fields uint32) (map[string]any, error) {
	options := map[string]any{}
	if fields == 3 {
		if err := r.ReadMapStrIntf(options); err != nil {
			return nil, err
		}
	}
	return options, nil
}

func (s *Server) received(tag string, logs []string, records int, size int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.logs[tag] = append(s.logs[tag], logs...)
	s.records += records
	s.bytes += size
}

// ack answers a message that asked for an acknowledgement.
func ack(w *msgp.Writer, options map[string]any) error {
	chunk, ok := options["chunk"].(string)
	if !ok {
		return nil
	}
	_ = w.WriteMapHeader(1)
	_ = w.WriteString("ack")
	_ = w.WriteString(chunk)
	return w.Flush()
}

func readStringOrBytes(r *msgp.Reader) ([]byte, error) {
	t, err := r.NextType()
	if err != nil {
		return nil, err
	}
	if t == msgp.StrType {
		return r.ReadStringAsBytes(nil)
	}
	return r.ReadBytes(nil)
}

func random() []byte {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return b
}

func sha512Hex(parts ...string) string {
	h := sha512.New()
	for _, p := range parts {
		h.Write([]byte(p))
	}
	return hex.EncodeToString(h.Sum(nil))
}
