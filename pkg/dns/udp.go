package dns

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"k8s.io/klog/v2"
)

// udpBatch is how many datagrams one system call takes or sends. Under load the queries waiting in the
// socket are read, answered and sent back together: two system calls for a batch instead of two per query,
// which is most of a small query's cost.
const udpBatch = 64

// udpReadSize is the largest query taken: more than any EDNS0 buffer a client announces in practice.
const udpReadSize = 4096

// batchConn is what ipv4.PacketConn and ipv6.PacketConn have in common: recvmmsg and sendmmsg.
type batchConn interface {
	ReadBatch(ms []ipv4.Message, flags int) (int, error)
	WriteBatch(ms []ipv4.Message, flags int) (int, error)
}

// serveUDP answers the queries that arrive on pc until it is closed. Answers that the zone or the cache
// hold are written in the reading goroutine, a batch at a time; a question that must go upstream is
// answered by a goroutine of its own (tracked by pending), so a slow upstream never holds back the others.
func (s *Server) serveUDP(ctx context.Context, pc net.PacketConn, pending *sync.WaitGroup) error {
	var conn batchConn = ipv4.NewPacketConn(pc)
	if addr, ok := pc.LocalAddr().(*net.UDPAddr); ok && addr.IP.To4() == nil {
		conn = ipv6.NewPacketConn(pc)
	}
	in, out := make([]ipv4.Message, udpBatch), make([]ipv4.Message, udpBatch)
	for i := range in {
		in[i].Buffers = [][]byte{make([]byte, udpReadSize)}
		out[i].Buffers = [][]byte{make([]byte, udpReadSize)}
	}
	for {
		n, err := conn.ReadBatch(in, 0)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			klog.V(2).InfoS("Reading DNS queries failed", "err", err)
			continue
		}
		start := time.Now()
		replies := 0
		for i := range n {
			packet, from := in[i].Buffers[0][:in[i].N], in[i].Addr
			req, reply := s.decode(packet)
			if req == nil {
				if reply != nil && s.pack(reply, &out[replies], from) {
					replies++
				}
				continue
			}
			client, _ := remote(from)
			resp, err := s.respond(ctx, start, client, "udp", req, s.fwd.cached)
			if errors.Is(err, errNotCached) {
				select {
				case s.forwarding <- struct{}{}:
					pending.Add(1)
					go func() {
						defer func() { <-s.forwarding; pending.Done() }()
						s.forwardUDP(ctx, pc, from, client, req)
					}()
					continue
				default: // as many questions as allowed wait for upstreams already: SERVFAIL at once
					s.metrics.forwardRejects.Inc()
					resp, _ = s.respond(ctx, start, client, "udp", req, refuseUpstream)
				}
			}
			if s.pack(resp, &out[replies], from) {
				replies++
			}
		}
		for sent := 0; sent < replies; {
			k, err := conn.WriteBatch(out[sent:replies], 0)
			if err != nil {
				klog.V(4).InfoS("Writing DNS answers failed", "err", err)
				break
			}
			sent += k
		}
	}
}

// maxForwarding bounds the UDP questions waiting for an upstream at once, as CoreDNS's forward plugin's
// max_concurrent does: a flood of names nobody cached costs a bounded number of goroutines.
const maxForwarding = 1000

// errTooManyForwarded is refuseUpstream's error: it makes the answer SERVFAIL.
var errTooManyForwarded = errors.New("too many questions waiting for an upstream")

func refuseUpstream(context.Context, dns.Question, bool) (*dns.Msg, error) {
	return nil, errTooManyForwarded
}

// forwardUDP answers one query that needs an upstream, from its own goroutine.
func (s *Server) forwardUDP(ctx context.Context, pc net.PacketConn, to net.Addr, client netip.Addr, req *dns.Msg) {
	resp, err := s.respond(ctx, time.Now(), client, "udp", req, s.fwd.resolve)
	if err != nil {
		return // resolve answers every question: SERVFAIL when no upstream does
	}
	packed, err := resp.Pack()
	if err != nil {
		klog.V(2).InfoS("Could not pack a DNS answer", "name", req.Question[0].Name, "err", err)
		return
	}
	if _, err := pc.WriteTo(packed, to); err != nil {
		klog.V(4).InfoS("Could not write a DNS answer", "client", client, "err", err)
	}
}

// pack puts msg into m's buffer, addressed to to; false when it does not pack.
func (s *Server) pack(msg *dns.Msg, m *ipv4.Message, to net.Addr) bool {
	packed, err := msg.PackBuffer(m.Buffers[0][:cap(m.Buffers[0])])
	if err != nil {
		klog.V(2).InfoS("Could not pack a DNS answer", "err", err)
		return false
	}
	// PackBuffer writes in place when the answer fits, and into a new buffer (kept for next time) when not.
	m.Buffers[0], m.Addr = packed, to
	return true
}

// decode reads a query as the miekg/dns server does: a packet shorter than a header, or a response, gets
// no answer; one the server does not take (several questions, an update, ...) gets FORMERR or NOTIMP; one
// that does not decode gets FORMERR and is counted.
func (s *Server) decode(packet []byte) (req, reply *dns.Msg) {
	if len(packet) < 12 {
		s.metrics.malformed.Inc()
		return nil, nil
	}
	h := dns.Header{
		Id: binary.BigEndian.Uint16(packet[0:]), Bits: binary.BigEndian.Uint16(packet[2:]),
		Qdcount: binary.BigEndian.Uint16(packet[4:]), Ancount: binary.BigEndian.Uint16(packet[6:]),
		Nscount: binary.BigEndian.Uint16(packet[8:]), Arcount: binary.BigEndian.Uint16(packet[10:]),
	}
	refuse := func(rcode int) *dns.Msg {
		m := new(dns.Msg)
		m.Id, m.Response, m.Opcode, m.Rcode = h.Id, true, int(h.Bits>>11)&0xF, rcode
		return m
	}
	switch dns.DefaultMsgAcceptFunc(h) {
	case dns.MsgIgnore:
		return nil, nil
	case dns.MsgReject:
		return nil, refuse(dns.RcodeFormatError)
	case dns.MsgRejectNotImplemented:
		return nil, refuse(dns.RcodeNotImplemented)
	}
	req = new(dns.Msg)
	if err := req.Unpack(packet); err != nil {
		s.metrics.malformed.Inc()
		return nil, refuse(dns.RcodeFormatError)
	}
	return req, nil
}
