package dns

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// recorder is a ResponseWriter that keeps what the handler wrote.
type recorder struct {
	remote net.Addr
	msg    *dns.Msg
}

func (r *recorder) LocalAddr() net.Addr         { return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 53} }
func (r *recorder) RemoteAddr() net.Addr        { return r.remote }
func (r *recorder) WriteMsg(m *dns.Msg) error   { r.msg = m; return nil }
func (r *recorder) Write(b []byte) (int, error) { return len(b), nil }
func (r *recorder) Close() error                { return nil }
func (r *recorder) TsigStatus() error           { return nil }
func (r *recorder) TsigTimersOnly(bool)         {}
func (r *recorder) Hijack()                     {}

// FuzzQuery sends arbitrary packets down the server's query path, as the UDP listener does: whatever
// arrives, the server drops it, refuses it, or answers with a message that packs, for the same ID, and
// never panics. Upstream forwarding has no upstream here, so nothing leaves the process.
func FuzzQuery(f *testing.F) {
	for _, q := range []struct {
		name  string
		qtype uint16
	}{
		{"web.default.svc.cluster.local.", dns.TypeA}, {"_http._tcp.web.default.svc.cluster.local.", dns.TypeSRV},
		{"db.default.svc.cluster.local.", dns.TypeAAAA}, {"10-244-0-6.db.default.svc.cluster.local.", dns.TypeA},
		{"_pg._tcp.db.default.svc.cluster.local.", dns.TypeSRV}, {"10.0.96.10.in-addr.arpa.", dns.TypePTR},
		{"1.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.6.9.0.0.0.0.d.f.ip6.arpa.", dns.TypePTR},
		{"ext.default.svc.cluster.local.", dns.TypeA}, {"alias.default.svc.cluster.local.", dns.TypeANY},
		{"dns-version.cluster.local.", dns.TypeTXT}, {"fd00--1.default.pod.cluster.local.", dns.TypeAAAA},
		{"cluster.local.", dns.TypeSOA}, {"www.example.org.", dns.TypeA}, {"_tcp.svc.cluster.local.", dns.TypeNS},
	} {
		m := new(dns.Msg)
		m.SetQuestion(q.name, q.qtype)
		m.SetEdns0(4096, true)
		packed, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(packed)
	}
	ts := startServer(f, Config{}, clusterObjects()...)
	client := netip.MustParseAddr("127.0.0.1")
	f.Fuzz(func(t *testing.T, packet []byte) {
		// The UDP listener's path: decode, then answer.
		req, reply := ts.server.decode(packet)
		if req == nil {
			if reply != nil {
				if _, err := reply.Pack(); err != nil {
					t.Fatalf("refusal does not pack: %v", err)
				}
			}
			return
		}
		resp, err := ts.server.respond(context.Background(), time.Now(), client, "udp", req, ts.server.fwd.resolve)
		if err != nil {
			t.Fatalf("no answer: %v", err)
		}
		if resp.Id != req.Id || !resp.Response {
			t.Fatalf("answer id %d response=%v for query id %d", resp.Id, resp.Response, req.Id)
		}
		if _, err := resp.Pack(); err != nil {
			t.Fatalf("answer does not pack: %v\n%v", err, resp)
		}
	})
}

// BenchmarkQuery is the server's own work for one question, without sockets: the handler from a decoded
// query to the answer handed to the writer.
func BenchmarkQuery(b *testing.B) {
	stub := startStubUpstream(b)
	ts := startServer(b, Config{Upstreams: []string{stub.Addr}}, clusterObjects()...)
	h := ts.server.Handler(context.Background())
	for _, c := range []struct{ name, qname string }{
		{"cluster", "web.default.svc.cluster.local."}, {"headless", "db.default.svc.cluster.local."},
		{"external-cached", "www.example.org."},
	} {
		req := new(dns.Msg)
		req.SetQuestion(c.qname, dns.TypeA)
		w := &recorder{remote: &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}}
		h.ServeDNS(w, req) // fills the cache for the external name
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				h.ServeDNS(w, req)
			}
			if w.msg.Rcode != dns.RcodeSuccess || len(w.msg.Answer) == 0 {
				b.Fatalf("answer %v", w.msg)
			}
		})
	}
}
