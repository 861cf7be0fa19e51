package nft

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"syscall"
	"time"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Open opens an nftables connection in the network namespace netnsFd (0: the caller's).
//
// google/nftables v0.3.0 asks the kernel to acknowledge every message of a transaction and reads the
// acknowledgements one recvmsg (two, with mdlayher/netlink's peek) at a time. A full sync of thousands of
// Services is tens of thousands of messages: the acknowledgements overflow the socket (ENOBUFS) and reading
// them took half of the sync. So the library talks to an ackTrimmer through its test-dial hook, which sends
// each batch with one acknowledgement asked for (the last message's), learns from the kernel's replies
// which messages failed, and answers the library as the kernel would have, message by message.
func Open(netnsFd int) (*nftables.Conn, error) {
	sock, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: netnsFd})
	if err != nil {
		return nil, fmt.Errorf("connecting to nftables: %w", err)
	}
	raw, err := sock.SyscallConn()
	if err != nil {
		_ = sock.Close()
		return nil, fmt.Errorf("connecting to nftables: %w", err)
	}
	t := &ackTrimmer{sock: sock, raw: raw, buf: make([]byte, 1<<20)}
	if err := t.control(func(fd int) error {
		// Dumps of a big table come in many datagrams; errors of a failed batch may be many too.
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, socketBufferBytes); err != nil {
			return err
		}
		// One send carries the whole batch.
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, socketBufferBytes); err != nil {
			return err
		}
		tv := unix.NsecToTimeval(replyTimeout.Nanoseconds())
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			return err
		}
		// The kernel then says which attribute it refused, and why.
		return unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_EXT_ACK, 1)
	}); err != nil {
		_ = sock.Close()
		return nil, fmt.Errorf("setting up the nftables socket: %w", err)
	}
	return nftables.New(nftables.WithTestDial(t.roundTrip), nftables.AsLasting())
}

// socketBufferBytes bounds the socket's buffers (a limit, not an allocation), past rmem_max and wmem_max as
// nft(8) does; it needs CAP_NET_ADMIN, which writing nftables needs anyway.
const socketBufferBytes = 64 << 20

// replyTimeout bounds the wait for the kernel's answer; it answers a batch as it applies it, in the send.
const replyTimeout = time.Minute

// ackTrimmer sits between google/nftables and a netlink socket; see NewConn. It is used by one
// nftables.Conn, which serialises its calls.
type ackTrimmer struct {
	sock *netlink.Conn // owns the socket
	raw  syscall.RawConn
	buf  []byte
	// pending are the answers to the last request not yet read by the library: one datagram per Receive,
	// as the socket would give them.
	pending [][]netlink.Message
}

func (t *ackTrimmer) control(fn func(fd int) error) error {
	var ferr error
	if err := t.raw.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return err
	}
	return ferr
}

// roundTrip is the library's test dial function (an nltest.Func): req is what the library sends (nil when it only receives).
func (t *ackTrimmer) roundTrip(req []netlink.Message) ([]netlink.Message, error) {
	if req == nil {
		if len(t.pending) == 0 {
			return nil, io.EOF // nothing more: what a socket with no reply would give
		}
		// Each answer goes once read: after a full sync at 10,000 Services the answers of its transaction
		// were 8 MB kept in memory until the next request, by the slice's backing array.
		next := t.pending[0]
		t.pending[0] = nil
		if t.pending = t.pending[1:]; len(t.pending) == 0 {
			t.pending = nil
		}
		return next, nil
	}
	t.pending = nil
	var answers [][]netlink.Message
	var err error
	if req[0].Header.Type == netlink.HeaderType(unix.NFNL_MSG_BATCH_BEGIN) {
		answers, err = t.batch(req)
	} else {
		answers, err = t.request(req)
	}
	if err != nil || len(answers) == 0 {
		return nil, err
	}
	t.pending = answers[1:]
	return answers[0], nil
}

// batch sends a transaction with only its last message acknowledged and returns what the kernel would have
// answered each message that asked for an acknowledgement, each in a datagram of its own: its error, or
// success.
func (t *ackTrimmer) batch(req []netlink.Message) ([][]netlink.Message, error) {
	msgs := make([]netlink.Message, len(req))
	copy(msgs, req)
	inner := msgs[1 : len(msgs)-1] // between BATCH_BEGIN and BATCH_END
	if len(inner) == 0 {
		return nil, nil
	}
	wanted := make([]bool, len(inner))
	for i := range inner {
		wanted[i] = inner[i].Header.Flags&netlink.Acknowledge != 0
		inner[i].Header.Flags &^= netlink.Acknowledge
	}
	last := &inner[len(inner)-1]
	last.Header.Flags |= netlink.Acknowledge
	if err := t.send(msgs); err != nil {
		return nil, err
	}
	// The kernel applies the batch inside the send, so its answers are queued: errors of failed messages
	// (all of them: it goes on to report every one), then the last message's acknowledgement or error. An
	// error for BATCH_BEGIN means nothing was applied and nothing else comes.
	failed := map[uint32]netlink.Message{}
	done := false
	for !done {
		replies, err := t.receive()
		if err != nil {
			return nil, err
		}
		for _, m := range replies {
			if m.Header.Type != netlink.Error {
				continue
			}
			seq, code := errorOf(m)
			if code != 0 {
				m.Header.PID = msgs[0].Header.PID
				failed[seq] = m
			}
			if seq == last.Header.Sequence || seq == msgs[0].Header.Sequence {
				done = true
			}
		}
	}
	if m, ok := failed[msgs[0].Header.Sequence]; ok {
		return [][]netlink.Message{{m}}, nil
	}
	var answers [][]netlink.Message
	for i, m := range inner {
		if !wanted[i] {
			continue
		}
		if e, ok := failed[m.Header.Sequence]; ok {
			answers = append(answers, []netlink.Message{e})
			continue
		}
		answers = append(answers, []netlink.Message{ackFor(m)})
	}
	return answers, nil
}

// request passes a query (a dump, a get) through and returns every reply to it: a dump's parts together,
// ending with its Done (the library's test socket reads a multi-part answer in one piece), a get's object
// and acknowledgement one per Receive, as a socket gives them.
func (t *ackTrimmer) request(req []netlink.Message) ([][]netlink.Message, error) {
	if err := t.send(req); err != nil {
		return nil, err
	}
	q := req[len(req)-1]
	dump := q.Header.Flags&netlink.Dump != 0
	var all []netlink.Message
	for last := false; !last; {
		replies, err := t.receive()
		if err != nil {
			return nil, err
		}
		for _, m := range replies {
			if m.Header.Sequence != q.Header.Sequence {
				continue // a late answer to something earlier
			}
			m.Header.PID = q.Header.PID // the library checks replies against the PID it sent
			all = append(all, m)
			last = last || m.Header.Type == netlink.Done || m.Header.Type == netlink.Error ||
				q.Header.Flags&(netlink.Dump|netlink.Acknowledge) == 0
		}
	}
	if dump {
		return [][]netlink.Message{all}, nil
	}
	out := make([][]netlink.Message, len(all))
	for i, m := range all {
		out[i] = []netlink.Message{m}
	}
	return out, nil
}

// send writes msgs as one datagram (a batch must arrive whole). The datagram is allocated once at its size
// and each message encoded in place: a full sync's transaction is tens of megabytes, and encoding each
// message apart and appending it to a growing buffer allocated about three times that.
func (t *ackTrimmer) send(msgs []netlink.Message) error {
	size := 0
	for _, m := range msgs {
		size += nlmsgAlign(unix.NLMSG_HDRLEN + len(m.Data))
	}
	b := make([]byte, size)
	at := 0
	for _, m := range msgs {
		n := unix.NLMSG_HDRLEN + len(m.Data)
		binary.NativeEndian.PutUint32(b[at:], uint32(n))
		binary.NativeEndian.PutUint16(b[at+4:], uint16(m.Header.Type))
		binary.NativeEndian.PutUint16(b[at+6:], uint16(m.Header.Flags))
		binary.NativeEndian.PutUint32(b[at+8:], m.Header.Sequence)
		binary.NativeEndian.PutUint32(b[at+12:], m.Header.PID)
		copy(b[at+unix.NLMSG_HDRLEN:], m.Data)
		at += nlmsgAlign(n) // the padding stays zero
	}
	return t.control(func(fd int) error {
		if err := unix.Sendto(fd, b, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
			return fmt.Errorf("sending to nftables: %w", err)
		}
		return nil
	})
}

// receive reads one datagram of replies.
func (t *ackTrimmer) receive() ([]netlink.Message, error) {
	var n int
	err := t.control(func(fd int) error {
		for {
			var err error
			n, _, err = unix.Recvfrom(fd, t.buf, 0)
			if !errors.Is(err, unix.EINTR) {
				return err
			}
		}
	})
	if err != nil {
		return nil, fmt.Errorf("receiving from nftables: %w", err)
	}
	var out []netlink.Message
	b := t.buf[:n]
	for len(b) >= unix.NLMSG_HDRLEN {
		size := int(binary.NativeEndian.Uint32(b[:4]))
		if size < unix.NLMSG_HDRLEN || size > len(b) {
			return nil, fmt.Errorf("receiving from nftables: a message of %d bytes in %d", size, len(b))
		}
		out = append(out, netlink.Message{
			Header: netlink.Header{Length: uint32(size),
				Type:     netlink.HeaderType(binary.NativeEndian.Uint16(b[4:6])),
				Flags:    netlink.HeaderFlags(binary.NativeEndian.Uint16(b[6:8])),
				Sequence: binary.NativeEndian.Uint32(b[8:12]),
				PID:      binary.NativeEndian.Uint32(b[12:16])},
			Data: append([]byte(nil), b[unix.NLMSG_HDRLEN:size]...), // the buffer is reused
		})
		b = b[min(nlmsgAlign(size), len(b)):]
	}
	return out, nil
}

func nlmsgAlign(n int) int { return (n + unix.NLMSG_ALIGNTO - 1) &^ (unix.NLMSG_ALIGNTO - 1) }

// errorOf reads an NLMSG_ERROR: the sequence number of the message it answers and the error code (0 for
// an acknowledgement).
func errorOf(m netlink.Message) (seq uint32, code int32) {
	if len(m.Data) < 4+unix.NLMSG_HDRLEN {
		return m.Header.Sequence, -int32(unix.EPROTO)
	}
	return m.Header.Sequence, int32(binary.NativeEndian.Uint32(m.Data[:4]))
}

// ackFor is the acknowledgement the kernel sends for a message that succeeded.
func ackFor(m netlink.Message) netlink.Message {
	data := make([]byte, 4+unix.NLMSG_HDRLEN) // error 0, then the request's header
	binary.NativeEndian.PutUint32(data[4:], uint32(unix.NLMSG_HDRLEN+len(m.Data)))
	binary.NativeEndian.PutUint16(data[8:], uint16(m.Header.Type))
	binary.NativeEndian.PutUint16(data[10:], uint16(m.Header.Flags))
	binary.NativeEndian.PutUint32(data[12:], m.Header.Sequence)
	binary.NativeEndian.PutUint32(data[16:], m.Header.PID)
	return netlink.Message{
		Header: netlink.Header{Type: netlink.Error, Sequence: m.Header.Sequence, PID: m.Header.PID,
			Length: uint32(unix.NLMSG_HDRLEN + len(data))},
		Data: data,
	}
}
