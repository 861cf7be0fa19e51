// Package dnsnet is DNS over UDP and TCP on one port: the socket pair the cluster DNS server listens on,
// and the stub upstream resolver that tests and benchmarks stand in for the node's resolvers with (on
// loopback only: nothing they send leaves the machine).
package dnsnet

import (
	"fmt"
	"net"
	"sync/atomic"

	"github.com/miekg/dns"
)

// ListenUDPAndTCP opens UDP and TCP on addr, as a DNS server needs. With port 0 the kernel picks a free UDP
// port and TCP takes the same number, which another TCP socket may hold: then it tries again with another
// UDP port, a bounded number of times.
func ListenUDPAndTCP(addr string) (net.PacketConn, net.Listener, error) {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, fmt.Errorf("dns: listen address %q: %w", addr, err)
	}
	attempts := 1
	if port == "0" {
		attempts = 10
	}
	for {
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return nil, nil, fmt.Errorf("dns: listening on udp %s: %w", addr, err)
		}
		l, err := net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			return pc, l, nil
		}
		pc.Close()
		if attempts--; attempts == 0 {
			return nil, nil, fmt.Errorf("dns: listening on tcp %s: %w", addr, err)
		}
	}
}

// Stub is a resolver on a loopback port, over UDP and TCP, answering as its answer function says; it counts
// the questions it gets by transport, so tests see what a cache saved.
type Stub struct {
	Addr                   string
	UDPQueries, TCPQueries atomic.Int32
	servers                []*dns.Server
}

// StartStub serves on 127.0.0.1. answer fills resp, already a reply to req with recursion available;
// answers over UDP are truncated to the client's buffer, as a real resolver does.
func StartStub(answer func(req, resp *dns.Msg)) (*Stub, error) {
	pc, l, err := ListenUDPAndTCP("127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("DNS stub: %w", err)
	}
	s := &Stub{Addr: pc.LocalAddr().String()}
	handler := dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		_, overUDP := w.RemoteAddr().(*net.UDPAddr)
		if overUDP {
			s.UDPQueries.Add(1)
		} else {
			s.TCPQueries.Add(1)
		}
		resp := new(dns.Msg)
		resp.SetReply(req)
		resp.RecursionAvailable = true
		answer(req, resp)
		size := dns.MinMsgSize
		if opt := req.IsEdns0(); opt != nil {
			resp.SetEdns0(opt.UDPSize(), false)
			size = max(int(opt.UDPSize()), dns.MinMsgSize)
		}
		if overUDP {
			resp.Truncate(size)
		}
		_ = w.WriteMsg(resp)
	})
	s.servers = []*dns.Server{{PacketConn: pc, Handler: handler}, {Listener: l, Handler: handler}}
	for _, srv := range s.servers {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go func() { _ = srv.ActivateAndServe() }()
		<-started
	}
	return s, nil
}

// Stop shuts both servers down.
func (s *Stub) Stop() {
	for _, srv := range s.servers {
		_ = srv.Shutdown()
	}
}
