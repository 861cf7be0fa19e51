package dns

import (
	"context"
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/nodeagent/nodeagent/internal/dnsnet"
	"github.com/nodeagent/nodeagent/pkg/source"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"
)

// The cluster every test in this file asks about.
func clusterObjects() []runtime.Object {
	return []runtime.Object{
		service("web", "10.96.0.10", corev1.ServicePort{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80},
			corev1.ServicePort{Name: "dns", Protocol: corev1.ProtocolUDP, Port: 53}),
		service("dual", "10.96.0.11", corev1.ServicePort{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80}),
		service("db", corev1.ClusterIPNone, corev1.ServicePort{Name: "pg", Protocol: corev1.ProtocolTCP, Port: 5432}),
		slice("db", discoveryv1.AddressTypeIPv4, "pg", 5432,
			readyEndpoint("10.244.0.5", "db-0", true), readyEndpoint("10.244.0.6", "", true), readyEndpoint("10.244.0.7", "", false)),
		service("empty", corev1.ClusterIPNone),
		publishNotReady(service("peers", corev1.ClusterIPNone)),
		slice("peers", discoveryv1.AddressTypeIPv4, "", 0, readyEndpoint("10.244.0.8", "", false)),
		externalName("ext", "www.example.org"),
		externalName("alias", "web.default.svc.cluster.local"),
	}
}

func service(name, clusterIP string, ports ...corev1.ServicePort) *corev1.Service {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
		Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, ClusterIP: clusterIP, ClusterIPs: []string{clusterIP}, Ports: ports},
	}
	if name == "dual" {
		svc.Spec.ClusterIPs = append(svc.Spec.ClusterIPs, "fd00:96::11")
	}
	return svc
}

func publishNotReady(svc *corev1.Service) *corev1.Service {
	svc.Spec.PublishNotReadyAddresses = true
	return svc
}

func externalName(name, target string) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
		Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: target},
	}
}

func slice(svc string, family discoveryv1.AddressType, portName string, port int32, eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		// The fixture's slices are all of headless Services, labelled as the EndpointSlice controller does.
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: svc + "-abc",
			Labels: map[string]string{discoveryv1.LabelServiceName: svc, corev1.IsHeadlessService: ""}},
		AddressType: family,
		Endpoints:   eps,
	}
	if portName != "" {
		s.Ports = []discoveryv1.EndpointPort{{Name: ptr.To(portName), Port: ptr.To(port), Protocol: ptr.To(corev1.ProtocolTCP)}}
	}
	return s
}

func readyEndpoint(ip, hostname string, ready bool) discoveryv1.Endpoint {
	ep := discoveryv1.Endpoint{Addresses: []string{ip}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(ready)}}
	if hostname != "" {
		ep.Hostname = ptr.To(hostname)
	}
	return ep
}

// startStubUpstream is the resolver on loopback standing in for the node's upstream: it knows a few names.
func startStubUpstream(t testing.TB) *dnsnet.Stub {
	t.Helper()
	stub, err := dnsnet.StartStub(func(req, resp *dns.Msg) {
		q := req.Question[0]
		switch strings.ToLower(q.Name) {
		case "www.example.org.":
			if q.Qtype == dns.TypeA {
				resp.Answer = append(resp.Answer, mustRR(t, "www.example.org. 300 IN A 192.0.2.10"))
			}
		case "big.example.org.":
			for i := range 40 {
				resp.Answer = append(resp.Answer, mustRR(t, "big.example.org. 300 IN TXT \"record "+strings.Repeat("x", 40)+" "+string(rune('A'+i%26))+"\""))
			}
		default:
			resp.Rcode = dns.RcodeNameError
			resp.Ns = append(resp.Ns, mustRR(t, "example.org. 3600 IN SOA ns.example.org. hostmaster.example.org. 1 7200 900 1209600 60"))
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stub.Stop)
	return stub
}

func mustRR(t testing.TB, s string) dns.RR {
	rr, err := dns.NewRR(s)
	if err != nil {
		t.Fatal(err)
	}
	return rr
}

// testServer is the server under test, on a loopback port, fed by a fake clientset's informers.
type testServer struct {
	addr     string
	client   *fake.Clientset
	registry *prometheus.Registry
	server   *Server
}

func startServer(t testing.TB, cfg Config, objs ...runtime.Object) *testServer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	client := fake.NewClientset(objs...)
	factory := informers.NewSharedInformerFactory(client, 0)
	reg := prometheus.NewRegistry()
	cfg.Domain, cfg.Listen, cfg.Metrics, cfg.CacheSize = "cluster.local", []string{"127.0.0.1:0"}, reg, 100
	s, err := New(cfg, source.NewFactoryServices(factory))
	if err != nil {
		t.Fatal(err)
	}
	factory.Start(ctx.Done())
	factory.WaitForCacheSync(ctx.Done())
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
		factory.Shutdown()
	})
	return &testServer{addr: s.Addrs()[0], client: client, registry: reg, server: s}
}

// digResult is what dig printed, one record per line with single spaces.
type digResult struct {
	status                     string
	flags                      []string
	answer, authority, additnl []string
	udpSize                    string
}

// dig asks the server with dig, the real client users debug DNS with.
func dig(t *testing.T, server string, args ...string) digResult {
	t.Helper()
	if _, err := exec.LookPath("dig"); err != nil {
		t.Fatal("dig is not installed: hack/setup-node.sh installs dnsutils")
	}
	host, port, _ := net.SplitHostPort(server)
	cmdArgs := append([]string{"@" + host, "-p", port, "+noall", "+comments", "+answer", "+authority", "+additional", "+tries=1", "+time=2"}, args...)
	out, err := exec.Command("dig", cmdArgs...).CombinedOutput()
	if err != nil {
		t.Fatalf("dig %v: %v\n%s", args, err, out)
	}
	var r digResult
	var section *[]string
	for _, line := range strings.Split(string(out), "\n") {
		switch {
		case strings.Contains(line, "->>HEADER<<-"):
			r.status = strings.TrimSuffix(strings.Fields(strings.SplitAfter(line, "status: ")[1])[0], ",")
		case strings.HasPrefix(line, ";; flags:"):
			r.flags = strings.Fields(strings.TrimSuffix(strings.SplitN(strings.TrimPrefix(line, ";; flags:"), ";", 2)[0], ";"))
		case strings.Contains(line, "; EDNS:"):
			r.udpSize = strings.TrimSpace(strings.SplitAfter(line, "udp:")[1])
		case line == ";; ANSWER SECTION:":
			section = &r.answer
		case line == ";; AUTHORITY SECTION:":
			section = &r.authority
		case line == ";; ADDITIONAL SECTION:":
			section = &r.additnl
		case line == "" || strings.HasPrefix(line, ";"):
		case section != nil:
			*section = append(*section, strings.Join(strings.Fields(line), " "))
		}
	}
	slices.Sort(r.answer)
	slices.Sort(r.additnl)
	return r
}

const soa = "cluster.local. 5 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. 1 7200 1800 86400 5"

func TestClusterRecordsAsDigSeesThem(t *testing.T) {
	stub := startStubUpstream(t)
	ts := startServer(t, Config{Upstreams: []string{stub.Addr}}, clusterObjects()...)
	cases := []struct {
		name      string
		args      []string
		status    string
		answer    []string
		authority []string
		additnl   []string
	}{
		{name: "ClusterIP A", args: []string{"web.default.svc.cluster.local", "A"}, status: "NOERROR",
			answer: []string{"web.default.svc.cluster.local. 5 IN A 10.96.0.10"}},
		{name: "names are matched in any case and answered as asked", args: []string{"WEB.Default.svc.Cluster.Local", "A"}, status: "NOERROR",
			answer: []string{"WEB.Default.svc.Cluster.Local. 5 IN A 10.96.0.10"}},
		{name: "NODATA: the name exists, not with this type", args: []string{"web.default.svc.cluster.local", "AAAA"}, status: "NOERROR",
			authority: []string{soa}},
		{name: "NXDOMAIN with the SOA", args: []string{"missing.default.svc.cluster.local", "A"}, status: "NXDOMAIN",
			authority: []string{soa}},
		{name: "dual-stack AAAA", args: []string{"dual.default.svc.cluster.local", "AAAA"}, status: "NOERROR",
			answer: []string{"dual.default.svc.cluster.local. 5 IN AAAA fd00:96::11"}},
		{name: "SRV of a ClusterIP Service", args: []string{"_http._tcp.web.default.svc.cluster.local", "SRV"}, status: "NOERROR",
			answer:  []string{"_http._tcp.web.default.svc.cluster.local. 5 IN SRV 0 100 80 web.default.svc.cluster.local."},
			additnl: []string{"web.default.svc.cluster.local. 5 IN A 10.96.0.10"}},
		{name: "SRV of a UDP port", args: []string{"_dns._udp.web.default.svc.cluster.local", "SRV"}, status: "NOERROR",
			answer:  []string{"_dns._udp.web.default.svc.cluster.local. 5 IN SRV 0 100 53 web.default.svc.cluster.local."},
			additnl: []string{"web.default.svc.cluster.local. 5 IN A 10.96.0.10"}},
		{name: "SRV of a port with another protocol", args: []string{"_http._udp.web.default.svc.cluster.local", "SRV"}, status: "NXDOMAIN",
			authority: []string{soa}},
		{name: "the protocol label above SRV names exists", args: []string{"_tcp.web.default.svc.cluster.local", "A"}, status: "NOERROR",
			authority: []string{soa}},
		{name: "headless: ready endpoints only", args: []string{"db.default.svc.cluster.local", "A"}, status: "NOERROR",
			answer: []string{"db.default.svc.cluster.local. 5 IN A 10.244.0.5", "db.default.svc.cluster.local. 5 IN A 10.244.0.6"}},
		{name: "headless: endpoint by hostname", args: []string{"db-0.db.default.svc.cluster.local", "A"}, status: "NOERROR",
			answer: []string{"db-0.db.default.svc.cluster.local. 5 IN A 10.244.0.5"}},
		{name: "headless: endpoint without hostname by its dashed address", args: []string{"10-244-0-6.db.default.svc.cluster.local", "A"}, status: "NOERROR",
			answer: []string{"10-244-0-6.db.default.svc.cluster.local. 5 IN A 10.244.0.6"}},
		{name: "headless: a not-ready endpoint has no name", args: []string{"10-244-0-7.db.default.svc.cluster.local", "A"}, status: "NXDOMAIN",
			authority: []string{soa}},
		{name: "headless SRV: one per ready endpoint", args: []string{"_pg._tcp.db.default.svc.cluster.local", "SRV"}, status: "NOERROR",
			answer: []string{
				"_pg._tcp.db.default.svc.cluster.local. 5 IN SRV 0 50 5432 10-244-0-6.db.default.svc.cluster.local.",
				"_pg._tcp.db.default.svc.cluster.local. 5 IN SRV 0 50 5432 db-0.db.default.svc.cluster.local.",
			},
			additnl: []string{"10-244-0-6.db.default.svc.cluster.local. 5 IN A 10.244.0.6", "db-0.db.default.svc.cluster.local. 5 IN A 10.244.0.5"}},
		{name: "headless without ready endpoints is NXDOMAIN", args: []string{"empty.default.svc.cluster.local", "A"}, status: "NXDOMAIN",
			authority: []string{soa}},
		{name: "publishNotReadyAddresses", args: []string{"peers.default.svc.cluster.local", "A"}, status: "NOERROR",
			answer: []string{"peers.default.svc.cluster.local. 5 IN A 10.244.0.8"}},
		{name: "PTR of a ClusterIP", args: []string{"-x", "10.96.0.10"}, status: "NOERROR",
			answer: []string{"10.0.96.10.in-addr.arpa. 5 IN PTR web.default.svc.cluster.local."}},
		{name: "PTR of another ClusterIP of the same /24 (the index's bucket)", args: []string{"-x", "10.96.0.11"}, status: "NOERROR",
			answer: []string{"11.0.96.10.in-addr.arpa. 5 IN PTR dual.default.svc.cluster.local."}},
		{name: "PTR of an IPv6 ClusterIP", args: []string{"-x", "fd00:96::11"}, status: "NOERROR",
			answer: []string{"1.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.6.9.0.0.0.0.d.f.ip6.arpa. 5 IN PTR dual.default.svc.cluster.local."}},
		{name: "PTR of a headless endpoint", args: []string{"-x", "10.244.0.5"}, status: "NOERROR",
			answer: []string{"5.0.244.10.in-addr.arpa. 5 IN PTR db-0.db.default.svc.cluster.local."}},
		{name: "ExternalName: CNAME and the target's address from upstream", args: []string{"ext.default.svc.cluster.local", "A"}, status: "NOERROR",
			answer: []string{"ext.default.svc.cluster.local. 5 IN CNAME www.example.org.", "www.example.org. 300 IN A 192.0.2.10"}},
		{name: "ExternalName to a cluster name", args: []string{"alias.default.svc.cluster.local", "A"}, status: "NOERROR",
			answer: []string{"alias.default.svc.cluster.local. 5 IN CNAME web.default.svc.cluster.local.", "web.default.svc.cluster.local. 5 IN A 10.96.0.10"}},
		{name: "schema version", args: []string{"dns-version.cluster.local", "TXT"}, status: "NOERROR",
			answer: []string{`dns-version.cluster.local. 5 IN TXT "1.1.0"`}},
		{name: "pod A record", args: []string{"10-244-0-9.default.pod.cluster.local", "A"}, status: "NOERROR",
			answer: []string{"10-244-0-9.default.pod.cluster.local. 5 IN A 10.244.0.9"}},
		{name: "a namespace with Services exists", args: []string{"default.svc.cluster.local", "A"}, status: "NOERROR",
			authority: []string{soa}},
		{name: "a namespace without Services does not", args: []string{"nothing.svc.cluster.local", "A"}, status: "NXDOMAIN",
			authority: []string{soa}},
		{name: "the zone's SOA", args: []string{"cluster.local", "SOA"}, status: "NOERROR", answer: []string{soa}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := dig(t, ts.addr, c.args...)
			if got.status != c.status || !slices.Equal(got.answer, c.answer) || !slices.Equal(got.authority, c.authority) ||
				!slices.Equal(got.additnl, c.additnl) {
				t.Errorf("dig %v:\n got %s\nanswer %q\nauthority %q\nadditional %q\nwant %s\nanswer %q\nauthority %q\nadditional %q",
					c.args, got.status, got.answer, got.authority, got.additnl, c.status, c.answer, c.authority, c.additnl)
			}
			if !slices.Contains(got.flags, "aa") {
				t.Errorf("flags %v: a cluster answer is authoritative", got.flags)
			}
		})
	}
}

func TestForwardingCachesAnswersAndDenials(t *testing.T) {
	stub := startStubUpstream(t)
	ts := startServer(t, Config{Upstreams: []string{stub.Addr}}, clusterObjects()...)

	first := dig(t, ts.addr, "www.example.org", "A")
	if first.status != "NOERROR" || !slices.Equal(first.answer, []string{"www.example.org. 300 IN A 192.0.2.10"}) {
		t.Fatalf("forwarded answer: %s %q", first.status, first.answer)
	}
	if !slices.Contains(first.flags, "ra") || slices.Contains(first.flags, "aa") {
		t.Errorf("flags %v: a forwarded answer has recursion available and is not authoritative", first.flags)
	}
	if first.udpSize != "1232" {
		t.Errorf("EDNS0 UDP size %q, want the server's 1232", first.udpSize)
	}
	dig(t, ts.addr, "WWW.example.org", "A") // the same question in other case: one cache entry
	if n := stub.UDPQueries.Load(); n != 1 {
		t.Errorf("upstream asked %d times for one name asked twice, want 1 (the second from the cache)", n)
	}

	for range 2 {
		nx := dig(t, ts.addr, "nothing.example.org", "A")
		if nx.status != "NXDOMAIN" || len(nx.authority) != 1 || !strings.Contains(nx.authority[0], "IN SOA ns.example.org.") {
			t.Fatalf("forwarded NXDOMAIN: %s %q", nx.status, nx.authority)
		}
	}
	if n := stub.UDPQueries.Load(); n != 2 {
		t.Errorf("upstream asked %d times in all, want 2: the NXDOMAIN is cached for the SOA's minimum TTL", n)
	}
	hits := testutil.ToFloat64(ts.server.metrics.cacheHits.WithLabelValues(ts.server.metrics.server, "success", ".", "")) +
		testutil.ToFloat64(ts.server.metrics.cacheHits.WithLabelValues(ts.server.metrics.server, "denial", ".", ""))
	if hits != 2 {
		t.Errorf("coredns_cache_hits_total = %v, want 2", hits)
	}
	// One answer and one denial are in the cache; the gauge reads them when scraped.
	if err := testutil.GatherAndCompare(ts.registry, strings.NewReader(`
# HELP coredns_cache_entries The number of elements in the cache.
# TYPE coredns_cache_entries gauge
coredns_cache_entries{server="`+ts.server.metrics.server+`",type="denial",view="",zones="."} 1
coredns_cache_entries{server="`+ts.server.metrics.server+`",type="success",view="",zones="."} 1
`), "coredns_cache_entries"); err != nil {
		t.Error(err)
	}
}

func TestLargeAnswersGoOverTCP(t *testing.T) {
	stub := startStubUpstream(t)
	ts := startServer(t, Config{Upstreams: []string{stub.Addr}})
	// dig offers 512 bytes, gets a truncated answer and asks again over TCP, as resolvers do.
	got := dig(t, ts.addr, "+bufsize=512", "big.example.org", "TXT")
	if got.status != "NOERROR" || len(got.answer) != 40 {
		t.Fatalf("%s with %d records, want all 40", got.status, len(got.answer))
	}
	if stub.TCPQueries.Load() != 1 {
		t.Errorf("upstream got %d TCP questions, want 1: its UDP answer was truncated", stub.TCPQueries.Load())
	}
	if n := testutil.ToFloat64(ts.server.metrics.requests.WithLabelValues(ts.server.metrics.server, ".", "", "tcp", "1", "TXT")); n != 1 {
		t.Errorf("coredns_dns_requests_total{proto=tcp} = %v, want 1 (dig's retry)", n)
	}
}

func TestUpstreamDownIsServfail(t *testing.T) {
	closed, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := closed.LocalAddr().String()
	closed.Close()
	ts := startServer(t, Config{Upstreams: []string{addr}, UpstreamTimeout: 200 * time.Millisecond}, clusterObjects()...)
	if got := dig(t, ts.addr, "www.example.org", "A"); got.status != "SERVFAIL" {
		t.Errorf("status %s with the upstream down, want SERVFAIL", got.status)
	}
	if got := dig(t, ts.addr, "web.default.svc.cluster.local", "A"); got.status != "NOERROR" || len(got.answer) != 1 {
		t.Errorf("cluster name with the upstream down: %s %q", got.status, got.answer)
	}
}

func TestNoRecursionForClientsOutsideTheCluster(t *testing.T) {
	stub := startStubUpstream(t)
	onlyNode := netip.MustParseAddr("127.0.0.1")
	ts := startServer(t, Config{Upstreams: []string{stub.Addr}, RecursionAllowed: func(a netip.Addr) bool { return a == onlyNode }},
		clusterObjects()...)
	// 127.0.0.2 stands for a client outside the pod CIDR and the node.
	outside := dig(t, ts.addr, "-b", "127.0.0.2", "www.example.org", "A")
	if outside.status != "REFUSED" || stub.UDPQueries.Load() != 0 {
		t.Errorf("outside client: %s, upstream asked %d times; want REFUSED and no upstream question", outside.status, stub.UDPQueries.Load())
	}
	if slices.Contains(outside.flags, "ra") {
		t.Errorf("flags %v: no recursion is available to this client", outside.flags)
	}
	cluster := dig(t, ts.addr, "-b", "127.0.0.2", "web.default.svc.cluster.local", "A")
	if cluster.status != "NOERROR" || len(cluster.answer) != 1 {
		t.Errorf("outside client, cluster name: %s %q; cluster names are answered to anyone", cluster.status, cluster.answer)
	}
	if inside := dig(t, ts.addr, "-b", "127.0.0.1", "www.example.org", "A"); inside.status != "NOERROR" {
		t.Errorf("allowed client: %s", inside.status)
	}
}

// A name that did not exist a moment ago is answered as soon as the cache has it, never held back by an
// NXDOMAIN given before: cluster answers are never cached by the server.
func TestNewServiceIsAnsweredWithinOneSecond(t *testing.T) {
	ts := startServer(t, Config{}, clusterObjects()...)
	if got := dig(t, ts.addr, "fresh.default.svc.cluster.local", "A"); got.status != "NXDOMAIN" {
		t.Fatalf("before the Service exists: %s", got.status)
	}
	created := time.Now()
	if _, err := ts.client.CoreV1().Services("default").Create(context.Background(), service("fresh", "10.96.0.99"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for deadline := created.Add(time.Second); ; {
		got := dig(t, ts.addr, "fresh.default.svc.cluster.local", "A")
		if got.status == "NOERROR" && slices.Equal(got.answer, []string{"fresh.default.svc.cluster.local. 5 IN A 10.96.0.99"}) {
			t.Logf("answered %v after the Service was created", time.Since(created))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("1 s after the Service was created dig still says %s %q", got.status, got.answer)
		}
	}
	// An endpoint change: the headless Service's new ready endpoint is in the next answer.
	s, err := ts.client.DiscoveryV1().EndpointSlices("default").Get(context.Background(), "db-abc", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s.Endpoints[2].Conditions.Ready = ptr.To(true)
	changed := time.Now()
	if _, err := ts.client.DiscoveryV1().EndpointSlices("default").Update(context.Background(), s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	for deadline := changed.Add(time.Second); ; {
		if got := dig(t, ts.addr, "db.default.svc.cluster.local", "A"); len(got.answer) == 3 {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("1 s after the endpoint became ready: %q", got.answer)
		}
	}
}

// Packets that are not queries the server can read get FORMERR or nothing, are counted, and the server goes
// on answering.
func TestMalformedPacketsGetFormerrOrNothing(t *testing.T) {
	ts := startServer(t, Config{}, clusterObjects()...)
	conn, err := net.Dial("udp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	twoQuestions := new(dns.Msg)
	twoQuestions.Id = 4242
	twoQuestions.Question = []dns.Question{{Name: "a.", Qtype: dns.TypeA, Qclass: dns.ClassINET}, {Name: "b.", Qtype: dns.TypeA, Qclass: dns.ClassINET}}
	packed, err := twoQuestions.Pack()
	if err != nil {
		t.Fatal(err)
	}
	// A header that promises a question the packet does not hold.
	cut := []byte{0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, 'w', 'e'}
	for _, c := range []struct {
		name   string
		packet []byte
		rcode  int // -1: no answer expected
	}{
		{"shorter than a header", []byte{0x01, 0x02, 0x03}, -1},
		{"two questions", packed, dns.RcodeFormatError},
		{"a cut question", cut, dns.RcodeFormatError},
	} {
		if _, err := conn.Write(c.packet); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 512)
		_ = conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		n, err := conn.Read(buf)
		if c.rcode < 0 {
			if err == nil {
				t.Errorf("%s: got a %d-byte answer, want none", c.name, n)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: no answer: %v", c.name, err)
		}
		resp := new(dns.Msg)
		if err := resp.Unpack(buf[:n]); err != nil {
			t.Fatalf("%s: answer does not unpack: %v", c.name, err)
		}
		if resp.Rcode != c.rcode {
			t.Errorf("%s: rcode %s, want %s", c.name, dns.RcodeToString[resp.Rcode], dns.RcodeToString[c.rcode])
		}
	}
	if n := testutil.ToFloat64(ts.server.metrics.malformed); n != 2 {
		t.Errorf("nodeagent_dns_malformed_requests_total = %v, want 2 (the short packet and the cut question)", n)
	}
	if got := dig(t, ts.addr, "web.default.svc.cluster.local", "A"); got.status != "NOERROR" {
		t.Errorf("after malformed packets: %s", got.status)
	}
}

func TestMetricsHaveCoreDNSNames(t *testing.T) {
	ts := startServer(t, Config{}, clusterObjects()...)
	dig(t, ts.addr, "web.default.svc.cluster.local", "A")
	dig(t, ts.addr, "missing.default.svc.cluster.local", "A")
	for _, c := range []struct {
		metric string
		labels []string
		want   float64
	}{
		{"coredns_dns_requests_total", []string{"cluster.local.", "", "udp", "1", "A"}, 2},
		{"coredns_dns_responses_total NOERROR", []string{"cluster.local.", "", "NOERROR", "kubernetes"}, 1},
		{"coredns_dns_responses_total NXDOMAIN", []string{"cluster.local.", "", "NXDOMAIN", "kubernetes"}, 1},
	} {
		vec := ts.server.metrics.requests
		if strings.HasPrefix(c.metric, "coredns_dns_responses_total") {
			vec = ts.server.metrics.responses
		}
		if got := testutil.ToFloat64(vec.WithLabelValues(append([]string{ts.server.metrics.server}, c.labels...)...)); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.metric, c.labels, got, c.want)
		}
	}
	if n, err := testutil.GatherAndCount(ts.registry, "coredns_dns_request_duration_seconds"); err != nil || n != 1 {
		t.Errorf("coredns_dns_request_duration_seconds: %d series, %v", n, err)
	}
}

// A flood of uncached names costs a bounded number of goroutines: past maxForwarding questions waiting for
// an upstream, the next is answered SERVFAIL at once and counted, as CoreDNS's max_concurrent does.
func TestForwardingIsBounded(t *testing.T) {
	stub := startStubUpstream(t)
	ts := startServer(t, Config{Upstreams: []string{stub.Addr}}, clusterObjects()...)
	for range maxForwarding { // as if that many questions were waiting for the upstream
		ts.server.forwarding <- struct{}{}
	}
	if got := dig(t, ts.addr, "www.example.org", "A"); got.status != "SERVFAIL" {
		t.Errorf("with %d questions waiting: %s, want SERVFAIL", maxForwarding, got.status)
	}
	if n := testutil.ToFloat64(ts.server.metrics.forwardRejects); n != 1 || stub.UDPQueries.Load() != 0 {
		t.Errorf("coredns_forward_max_concurrent_rejects_total = %v, upstream asked %d times; want 1 and 0", n, stub.UDPQueries.Load())
	}
	if got := dig(t, ts.addr, "web.default.svc.cluster.local", "A"); got.status != "NOERROR" {
		t.Errorf("cluster name while upstream questions are full: %s", got.status)
	}
	for range maxForwarding {
		<-ts.server.forwarding
	}
	if got := dig(t, ts.addr, "www.example.org", "A"); got.status != "NOERROR" {
		t.Errorf("after the waiting questions ended: %s", got.status)
	}
}
