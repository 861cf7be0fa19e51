// Package dns owns the node's cluster DNS server: the names of the cluster domain (Services, their
// endpoints, pods, the schema version) answered from the shared informer cache, and every other name
// forwarded to upstream resolvers through a bounded cache. It reads the cache and never calls the API server
// per query; it owns its sockets and nothing else on the host: the address it listens on is the caller's to
// provide.
package dns

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	"github.com/nodeagent/nodeagent/internal/dnsnet"
	"github.com/nodeagent/nodeagent/pkg/source"
)

// Config is what the server needs to know.
type Config struct {
	// Domain is the cluster domain, e.g. cluster.local.
	Domain string
	// Listen are the host:port addresses served on both UDP and TCP.
	Listen []string
	// Upstreams are the host:port resolvers that names outside the cluster are forwarded to, tried in order.
	Upstreams []string
	// UpstreamTimeout bounds one exchange with one upstream.
	UpstreamTimeout time.Duration
	// TTL is the time-to-live of the cluster's records; short, since they follow the cache (CoreDNS: 5 s).
	TTL uint32
	// CacheSize bounds the number of upstream answers kept.
	CacheSize int
	// RecursionAllowed says whether a client may have names outside the cluster resolved (no open resolver
	// for the world); nil allows loopback clients only. Cluster names are answered to anyone.
	RecursionAllowed func(netip.Addr) bool
	// Metrics, when set, gets CoreDNS's metrics (coredns_*).
	Metrics prometheus.Registerer
}

// Server answers DNS on the configured addresses.
type Server struct {
	cfg     Config
	zone    *zone
	fwd     *forwarder
	metrics *metrics

	packetConns []net.PacketConn
	listeners   []net.Listener
	// forwarding holds a token per UDP question waiting for an upstream (maxForwarding).
	forwarding chan struct{}
}

// serverBufferSize is the EDNS0 UDP size the server advertises to its clients.
const serverBufferSize = 1232

// Objects are the Services and EndpointSlices the server answers from (source.Source and
// source.FactoryServices implement it).
type Objects interface {
	Services() cache.SharedIndexInformer
	EndpointSlices() cache.SharedIndexInformer
	ServiceSlices() (*source.ServiceSlices, error)
}

// New adds the indexes that answers use (PTR among them) to the informers of objects; the caller starts
// them and waits for their caches before serving.
func New(cfg Config, objects Objects) (*Server, error) {
	if cfg.Domain == "" {
		return nil, errors.New("dns: the cluster domain is empty")
	}
	if cfg.TTL == 0 {
		cfg.TTL = 5
	}
	if cfg.UpstreamTimeout == 0 {
		cfg.UpstreamTimeout = 2 * time.Second
	}
	services := objects.Services()
	if err := services.AddIndexers(cache.Indexers{servicesByClusterIP: clusterIPs}); err != nil {
		return nil, fmt.Errorf("indexing Services by ClusterIP: %w", err)
	}
	slices := objects.EndpointSlices()
	serviceSlices, err := objects.ServiceSlices()
	if err != nil {
		return nil, err
	}
	if err := slices.AddIndexers(cache.Indexers{slicesByAddress: sliceAddresses}); err != nil {
		return nil, fmt.Errorf("indexing EndpointSlices by address: %w", err)
	}
	label := "dns://:53"
	if len(cfg.Listen) > 0 {
		label = "dns://" + cfg.Listen[0]
	}
	answers := newAnswerCache(cfg.CacheSize, time.Now)
	m := newMetrics(label, answers.counts)
	if cfg.Metrics != nil {
		for _, c := range m.all {
			if err := cfg.Metrics.Register(c); err != nil {
				return nil, fmt.Errorf("registering DNS metrics: %w", err)
			}
		}
	}
	return &Server{
		cfg:        cfg,
		zone:       newZone(cfg.Domain, cfg.TTL, services.GetIndexer(), slices.GetIndexer(), serviceSlices),
		fwd:        newForwarder(cfg.Upstreams, cfg.UpstreamTimeout, answers, m),
		metrics:    m,
		forwarding: make(chan struct{}, maxForwarding),
	}, nil
}

// Listen opens the UDP and TCP sockets, so that an address in use stops start-up with a clear error.
func (s *Server) Listen() error {
	for _, addr := range s.cfg.Listen {
		pc, l, err := dnsnet.ListenUDPAndTCP(addr)
		if err != nil {
			s.closeAll()
			return err
		}
		s.packetConns, s.listeners = append(s.packetConns, pc), append(s.listeners, l)
	}
	return nil
}

// Adopt serves pc and l (sockets the holder keeps) instead of opening its own; call it instead of Listen.
func (s *Server) Adopt(pc net.PacketConn, l net.Listener) {
	s.packetConns, s.listeners = []net.PacketConn{pc}, []net.Listener{l}
}

func (s *Server) closeAll() {
	for _, pc := range s.packetConns {
		pc.Close()
	}
	for _, l := range s.listeners {
		l.Close()
	}
	s.packetConns, s.listeners = nil, nil
}

// Addrs are the UDP addresses being served (TCP uses the same), once Listen returned.
func (s *Server) Addrs() []string {
	var addrs []string
	for _, pc := range s.packetConns {
		addrs = append(addrs, pc.LocalAddr().String())
	}
	return addrs
}

// Serve answers on the sockets Listen opened until ctx ends.
func (s *Server) Serve(ctx context.Context) error {
	// Headless Services' answers read their slices, which come to the zone through its own handler.
	if err := s.zone.serviceSlices.WaitForSync(ctx); err != nil {
		return nil // ctx ended
	}
	h := s.Handler(ctx)
	var tcpServers []*dns.Server
	started := make(chan struct{}, len(s.listeners))
	for _, l := range s.listeners {
		tcpServers = append(tcpServers, &dns.Server{Listener: l, Handler: h, MsgInvalidFunc: s.invalid,
			NotifyStartedFunc: func() { started <- struct{}{} }})
	}
	errs := make(chan error, len(tcpServers)+len(s.packetConns))
	var wg, pending sync.WaitGroup
	for _, srv := range tcpServers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- srv.ActivateAndServe()
		}()
	}
	for _, pc := range s.packetConns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- s.serveUDP(ctx, pc, &pending)
		}()
	}
	// Each TCP server either starts or fails; one shut down before it started would start afterwards and
	// never end, so the shutdown below waits for all of them to be one or the other.
	var err error
	for range tcpServers {
		select {
		case <-started:
		case serveErr := <-errs:
			err = cmp.Or(err, fmt.Errorf("dns: serving: %w", serveErr))
		}
	}
	if err == nil {
		klog.InfoS("Serving cluster DNS", "addresses", s.Addrs(), "domain", s.zone.origin, "upstreams", s.cfg.Upstreams)
		select {
		case <-ctx.Done():
		case serveErr := <-errs:
			err = fmt.Errorf("dns: serving: %w", serveErr)
		}
	}
	for _, srv := range tcpServers {
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if shutErr := srv.ShutdownContext(shutdownCtx); shutErr != nil {
			klog.V(2).InfoS("DNS server did not shut down cleanly", "err", shutErr)
		}
		cancel()
	}
	for _, pc := range s.packetConns {
		pc.Close() // ends serveUDP
	}
	wg.Wait()
	pending.Wait()
	return err
}

func (s *Server) invalid([]byte, error) { s.metrics.malformed.Inc() }

// Handler is the query path as a miekg/dns handler (the TCP listener's); forwarded questions end with ctx.
func (s *Server) Handler(ctx context.Context) dns.Handler {
	return dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		client, proto := remote(w.RemoteAddr())
		resp, _ := s.respond(ctx, time.Now(), client, proto, req, s.fwd.resolve)
		if err := w.WriteMsg(resp); err != nil {
			klog.V(4).InfoS("Could not write a DNS answer", "client", client, "err", err)
		}
	})
}

// respond answers req and counts it: the answer with the client's EDNS0 and, over UDP, cut to the size the
// client takes. An error is resolve's (errNotCached), and then nothing was answered or counted.
func (s *Server) respond(ctx context.Context, start time.Time, client netip.Addr, proto string, req *dns.Msg, resolve resolver) (*dns.Msg, error) {
	resp, zoneLabel, plugin, err := s.answer(ctx, client, req, resolve)
	if err != nil {
		return nil, err
	}
	if opt := req.IsEdns0(); opt != nil {
		resp.SetEdns0(serverBufferSize, opt.Do())
	}
	if proto == "udp" {
		resp.Truncate(clientBufferSize(req))
	}
	family := 1
	if client.Is6() {
		family = 2
	}
	var qtype uint16
	if len(req.Question) > 0 {
		qtype = req.Question[0].Qtype
	}
	s.metrics.request(zoneLabel, proto, family, qtype, resp.Rcode, plugin, time.Since(start))
	return resp, nil
}

func remote(addr net.Addr) (netip.Addr, string) {
	switch a := addr.(type) {
	case *net.UDPAddr:
		return a.AddrPort().Addr().Unmap(), "udp"
	case *net.TCPAddr:
		return a.AddrPort().Addr().Unmap(), "tcp"
	}
	return netip.Addr{}, "udp"
}

// clientBufferSize is the largest UDP answer the client takes: its EDNS0 size, at least 512 bytes.
func clientBufferSize(req *dns.Msg) int {
	if opt := req.IsEdns0(); opt != nil {
		return max(int(opt.UDPSize()), dns.MinMsgSize)
	}
	return dns.MinMsgSize
}

// resolver answers a question from outside the cluster: forwarder.resolve, or forwarder.cached, which
// never waits for the network.
type resolver func(ctx context.Context, q dns.Question, do bool) (*dns.Msg, error)

// answer builds the reply to req, and says which zone and which part of the server answered, for metrics.
// Its only error is resolve's errNotCached.
func (s *Server) answer(ctx context.Context, client netip.Addr, req *dns.Msg, resolve resolver) (resp *dns.Msg, zoneLabel, plugin string, err error) {
	resp = new(dns.Msg)
	resp.SetReply(req)
	recursion := s.recursionAllowed(client)
	resp.RecursionAvailable = recursion
	if req.Opcode != dns.OpcodeQuery || len(req.Question) != 1 {
		resp.SetRcode(req, dns.RcodeNotImplemented)
		return resp, ".", "", nil
	}
	q := req.Question[0]
	if q.Qclass != dns.ClassINET && q.Qclass != dns.ClassANY {
		resp.Rcode = dns.RcodeRefused
		return resp, ".", "", nil
	}
	name := strings.ToLower(q.Name)
	if s.zone.contains(name) {
		s.fill(resp, s.zone.lookup(q))
		if err := s.followCNAME(ctx, resp, q, recursion, req, resolve); err != nil {
			return nil, "", "", err
		}
		return resp, s.zone.origin, "kubernetes", nil
	}
	if addr, ok := reverseAddr(name); ok {
		if r := s.zone.reverse(q, addr); !r.notOurs {
			s.fill(resp, r)
			if addr.Is4() {
				return resp, "in-addr.arpa.", "kubernetes", nil
			}
			return resp, "ip6.arpa.", "kubernetes", nil
		}
	}
	if !recursion {
		resp.Rcode = dns.RcodeRefused
		return resp, ".", "", nil
	}
	up, err := resolve(ctx, q, isDO(req))
	if errors.Is(err, errNotCached) {
		return nil, "", "", err
	}
	if err != nil {
		klog.V(2).InfoS("Could not resolve a name upstream", "name", q.Name, "type", dns.TypeToString[q.Qtype], "err", err)
		resp.Rcode = dns.RcodeServerFailure
		return resp, ".", "forward", nil
	}
	resp.Rcode = up.Rcode
	resp.Answer, resp.Ns, resp.Extra = up.Answer, up.Ns, up.Extra
	resp.AuthenticatedData = up.AuthenticatedData
	return resp, ".", "forward", nil
}

func isDO(req *dns.Msg) bool {
	opt := req.IsEdns0()
	return opt != nil && opt.Do()
}

// fill puts a zone result in resp: an authoritative answer, with the SOA in the authority section when there
// is no record (NXDOMAIN or NODATA), so that resolvers cache the denial for the SOA's short TTL.
func (s *Server) fill(resp *dns.Msg, r result) {
	resp.Authoritative = true
	resp.Rcode = r.rcode
	resp.Answer, resp.Extra = r.answer, r.extra
	if len(r.answer) == 0 {
		resp.Ns = []dns.RR{s.zone.soa}
	}
}

// maxCNAMEHops bounds following ExternalName Services that point at each other.
const maxCNAMEHops = 8

// followCNAME completes an ExternalName answer with the records of its target, as CoreDNS does: from the
// zone when the target is a cluster name, from upstream (when the client may recurse) otherwise.
func (s *Server) followCNAME(ctx context.Context, resp *dns.Msg, q dns.Question, recursion bool, req *dns.Msg, resolve resolver) error {
	if q.Qtype == dns.TypeCNAME {
		return nil
	}
	for range maxCNAMEHops {
		if len(resp.Answer) == 0 {
			return nil
		}
		cname, ok := resp.Answer[len(resp.Answer)-1].(*dns.CNAME)
		if !ok {
			return nil
		}
		next := dns.Question{Name: cname.Target, Qtype: q.Qtype, Qclass: q.Qclass}
		if !s.zone.contains(cname.Target) {
			if !recursion {
				return nil
			}
			up, err := resolve(ctx, next, isDO(req))
			if errors.Is(err, errNotCached) {
				return err
			}
			if err == nil {
				resp.Answer = append(resp.Answer, up.Answer...)
				resp.Rcode = up.Rcode
			}
			return nil
		}
		r := s.zone.lookup(next)
		resp.Answer = append(resp.Answer, r.answer...)
		resp.Rcode = r.rcode
	}
	return nil
}

// recursionAllowed is whether client may use the server as a resolver for any name.
func (s *Server) recursionAllowed(client netip.Addr) bool {
	if s.cfg.RecursionAllowed == nil {
		return client.IsLoopback()
	}
	return s.cfg.RecursionAllowed(client)
}
