package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/nodeagent/nodeagent/pkg/source"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

const testNode = "node-a"

// runningProxy is a Proxier writing into a test network's node namespace, fed by a fake clientset.
type runningProxy struct {
	client *fake.Clientset
	proxy  *Proxier
	// stop stops the proxy and waits for it; the test's cleanup calls it too.
	stop    func()
	metrics *prometheus.Registry
}

// startProxy runs a Proxier for n's node namespace until the test ends. The objects are in the API before
// it starts, as they are when the agent starts: its first sync is a full one with all of them.
func startProxy(t *testing.T, n *testNet, objects ...runtime.Object) *runningProxy {
	t.Helper()
	client := fake.NewClientset(objects...)
	reg := prometheus.NewRegistry()
	factory := informers.NewSharedInformerFactory(client, 0)
	p, err := New(Config{
		NodeName: testNode,
		NodePortIPs: func() []netip.Addr {
			return []netip.Addr{netip.MustParseAddr(nodeIP), netip.MustParseAddr(nodeIP6)}
		},
		LocalCIDRs: func() []netip.Prefix {
			return []netip.Prefix{netip.MustParsePrefix(podCIDR), netip.MustParsePrefix(podCIDR6)}
		},
		FullSyncPeriod: time.Hour,
		Listen: func(network, address string) (ln net.Listener, err error) {
			err = inNS(n.node, func() error { ln, err = net.Listen(network, address); return err })
			return ln, err
		},
		Metrics: reg,
	}, nftConn(t, n.node), source.NewFactoryServices(factory))
	must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	stop := sync.OnceFunc(func() { cancel(); <-done; factory.Shutdown() })
	t.Cleanup(stop)
	factory.Start(ctx.Done())
	factory.WaitForCacheSync(ctx.Done())
	go func() { defer close(done); p.Run(ctx) }()
	n.dumpRulesetOnFailure(t)
	return &runningProxy{client: client, proxy: p, stop: stop, metrics: reg}
}

// apply creates or updates a Service or an EndpointSlice.
func (rp *runningProxy) apply(t *testing.T, obj runtime.Object) {
	t.Helper()
	ctx := context.Background()
	var err error
	switch o := obj.(type) {
	case *corev1.Service:
		services := rp.client.CoreV1().Services(o.Namespace)
		if _, err = services.Update(ctx, o, metav1.UpdateOptions{}); err != nil {
			_, err = services.Create(ctx, o, metav1.CreateOptions{})
		}
	case *discoveryv1.EndpointSlice:
		slices := rp.client.DiscoveryV1().EndpointSlices(o.Namespace)
		if _, err = slices.Update(ctx, o, metav1.UpdateOptions{}); err != nil {
			_, err = slices.Create(ctx, o, metav1.CreateOptions{})
		}
	default:
		err = fmt.Errorf("cannot apply %T", obj)
	}
	must(t, err)
}

// service is a ClusterIP Service "default/<name>" with TCP port 80 → named target "http" and UDP 53 → "dns".
func service(name, clusterIP string, mutate ...func(*corev1.Service)) *corev1.Service {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
		Spec: corev1.ServiceSpec{
			Type: corev1.ServiceTypeClusterIP, ClusterIP: clusterIP, ClusterIPs: []string{clusterIP},
			Ports: []corev1.ServicePort{
				{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80, TargetPort: intstr.FromString("http")},
				{Name: "dns", Protocol: corev1.ProtocolUDP, Port: 53, TargetPort: intstr.FromInt32(5353)},
			},
		},
	}
	for _, m := range mutate {
		m(svc)
	}
	return svc
}

// endpointSlice is the slice of Service "default/<svc>" with the given backends of n, ready, and the named
// port "http" on 8080 (or the port given) and "dns" on 5353. Backends listed in local are on this node.
func endpointSlice(n *testNet, svc string, httpPort int32, backends []string, local ...string) *discoveryv1.EndpointSlice {
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: svc + "-abc",
			Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports: []discoveryv1.EndpointPort{
			{Name: ptr.To("http"), Protocol: ptr.To(corev1.ProtocolTCP), Port: ptr.To(httpPort)},
			{Name: ptr.To("dns"), Protocol: ptr.To(corev1.ProtocolUDP), Port: ptr.To[int32](5353)},
		},
	}
	for _, b := range backends {
		node := "node-b"
		if slices.Contains(local, b) {
			node = testNode
		}
		slice.Endpoints = append(slice.Endpoints, discoveryv1.Endpoint{
			Addresses: []string{n.backendIPs[b].String()}, NodeName: ptr.To(node),
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)},
		})
	}
	return slice
}

// endpointSlice6 is endpointSlice's IPv6 twin: the same backends by their IPv6 addresses.
func endpointSlice6(n *testNet, svc string, httpPort int32, backends []string, local ...string) *discoveryv1.EndpointSlice {
	slice := endpointSlice(n, svc, httpPort, backends, local...)
	slice.Name, slice.AddressType = svc+"-v6", discoveryv1.AddressTypeIPv6
	for i, b := range backends {
		slice.Endpoints[i].Addresses = []string{n.backendIPs6[b].String()}
	}
	return slice
}

// dualStack makes a Service dual-stack, IPv4 first, with the IPv6 ClusterIP given.
func dualStack(clusterIP6 string) func(*corev1.Service) {
	return func(s *corev1.Service) {
		s.Spec.ClusterIPs = append(s.Spec.ClusterIPs, clusterIP6)
		s.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv4Protocol, corev1.IPv6Protocol}
		s.Spec.IPFamilyPolicy = ptr.To(corev1.IPFamilyPolicyRequireDualStack)
	}
}

// spread makes count TCP connections from ns to addr and counts the answers by backend.
func spread(t *testing.T, n *testNet, from string, addr string, count int) map[string]int {
	t.Helper()
	ns := n.client
	if from == "node" {
		ns = n.node
	}
	seen := map[string]int{}
	for range count {
		r, err := dialTCP(ns, addr, 2*time.Second)
		if err != nil {
			t.Fatalf("connecting from %s to %s: %v", from, addr, err)
		}
		seen[r.backend]++
	}
	return seen
}

func TestClusterIPReachesEveryBackendOverTCPAndUDP(t *testing.T) {
	n := newTestNet(t, "a", "b", "c")
	startProxy(t, n, service("web", "10.96.0.10"), endpointSlice(n, "web", 8080, []string{"a", "b", "c"}))

	waitFor(t, "the VIP answers", 5*time.Second, func() error {
		_, err := dialTCP(n.client, "10.96.0.10:80", time.Second)
		return err
	})
	for _, from := range []string{"client", "node"} {
		seen := spread(t, n, from, "10.96.0.10:80", 60)
		if len(seen) != 3 {
			t.Errorf("60 TCP connections from the %s reached %v, want all of a, b, c", from, seen)
		}
	}
	udpSeen := map[string]int{}
	for range 60 {
		r, err := exchangeUDP(n.client, "10.96.0.10:53", 2*time.Second)
		if err != nil {
			t.Fatalf("UDP through the VIP: %v", err)
		}
		udpSeen[r.backend]++
	}
	if len(udpSeen) != 3 {
		t.Errorf("60 UDP exchanges reached %v, want all of a, b, c", udpSeen)
	}
}

func TestServiceWithoutEndpointsRefusesAtOnce(t *testing.T) {
	n := newTestNet(t, "a")
	startProxy(t, n, service("empty", "10.96.0.20"))

	for _, from := range []string{"client", "node"} {
		ns := n.client
		if from == "node" {
			ns = n.node
		}
		waitFor(t, "the VIP refuses", 5*time.Second, func() error {
			start := time.Now()
			_, err := dialTCP(ns, "10.96.0.20:80", 2*time.Second)
			took := time.Since(start)
			if !errors.Is(err, syscall.ECONNREFUSED) {
				return fmt.Errorf("connecting from the %s: %v, want connection refused", from, err)
			}
			if took > 100*time.Millisecond {
				return fmt.Errorf("refused after %s, want within 100ms", took)
			}
			return nil
		})
	}
}

func TestNodePortFromAnotherNamespace(t *testing.T) {
	n := newTestNet(t, "a", "b")
	startProxy(t, n,
		service("np", "10.96.0.30", func(s *corev1.Service) {
			s.Spec.Type = corev1.ServiceTypeNodePort
			s.Spec.Ports[0].NodePort = 30080
			s.Spec.Ports[1].NodePort = 30053
		}),
		endpointSlice(n, "np", 8080, []string{"a", "b"}))

	waitFor(t, "the NodePort answers", 5*time.Second, func() error {
		_, err := dialTCP(n.client, nodeIP+":30080", time.Second)
		return err
	})
	if seen := spread(t, n, "client", nodeIP+":30080", 40); len(seen) != 2 {
		t.Errorf("40 connections to the NodePort reached %v, want a and b", seen)
	}
	r, err := exchangeUDP(n.client, nodeIP+":30053", 2*time.Second)
	if err != nil || r.backend == "" {
		t.Errorf("UDP NodePort: %v %v", r, err)
	}
	// externalTrafficPolicy Cluster: masqueraded, so the backend sees the node, not the client.
	if r, err := dialTCP(n.client, nodeIP+":30080", time.Second); err != nil || r.source == clientIP {
		t.Errorf("NodePort with externalTrafficPolicy Cluster: backend saw %q (%v), want the node's address", r.source, err)
	}
}

func TestExternalTrafficPolicyLocalKeepsTheClientAddress(t *testing.T) {
	n := newTestNet(t, "a", "b")
	startProxy(t, n,
		service("local", "10.96.0.40", func(s *corev1.Service) {
			s.Spec.Type = corev1.ServiceTypeNodePort
			s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
			s.Spec.Ports[0].NodePort = 30040
			s.Spec.Ports[1].NodePort = 30041
			s.Spec.HealthCheckNodePort = 30042
		}),
		endpointSlice(n, "local", 8080, []string{"a", "b"}, "a"))

	waitFor(t, "the NodePort answers", 5*time.Second, func() error {
		_, err := dialTCP(n.client, nodeIP+":30040", time.Second)
		return err
	})
	for range 20 {
		r, err := dialTCP(n.client, nodeIP+":30040", 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if r.backend != "a" || r.source != clientIP {
			t.Fatalf("NodePort with externalTrafficPolicy Local answered by %q seeing %q, want the local backend a seeing %s",
				r.backend, r.source, clientIP)
		}
	}
	// The ClusterIP still uses every endpoint.
	if seen := spread(t, n, "client", "10.96.0.40:80", 40); len(seen) != 2 {
		t.Errorf("ClusterIP of an externalTrafficPolicy Local Service reached %v, want a and b", seen)
	}
}

func TestHealthCheckNodePortCountsLocalEndpoints(t *testing.T) {
	n := newTestNet(t, "a", "b", "c")
	svc := service("lb", "10.96.0.45", func(s *corev1.Service) {
		s.Spec.Type = corev1.ServiceTypeLoadBalancer
		s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
		s.Spec.Ports[0].NodePort = 30045
		s.Spec.Ports[1].NodePort = 30046
		s.Spec.HealthCheckNodePort = 30047
	})
	rp := startProxy(t, n, svc, endpointSlice(n, "lb", 8080, []string{"a", "b", "c"}, "a", "b"))
	check := "http://" + nodeIP + ":30047/"
	want := `{"service":{"namespace":"default","name":"lb"},"localEndpoints":2,"serviceProxyHealthy":true}`
	waitFor(t, "the health check answers 200 with two local endpoints", 5*time.Second, func() error {
		return expectHTTP(n.client, check, http.StatusOK, want)
	})
	// No endpoint on this node any more: the load balancer must stop sending here.
	rp.apply(t, endpointSlice(n, "lb", 8080, []string{"c"}))
	want = `{"service":{"namespace":"default","name":"lb"},"localEndpoints":0,"serviceProxyHealthy":true}`
	waitFor(t, "the health check answers 503", 5*time.Second, func() error {
		return expectHTTP(n.client, check, http.StatusServiceUnavailable, want)
	})
	// externalTrafficPolicy Cluster has no health check port: its server goes away.
	svc.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyCluster
	svc.Spec.HealthCheckNodePort = 0
	rp.apply(t, svc)
	waitFor(t, "the health check port closes", 5*time.Second, func() error {
		if _, err := dialTCP(n.client, nodeIP+":30047", time.Second); !errors.Is(err, syscall.ECONNREFUSED) {
			return fmt.Errorf("connecting: %v, want connection refused", err)
		}
		return nil
	})
}

// loadBalancerSourceRanges let only the listed sources reach the load-balancer IP; others are dropped (a
// time-out, as with kube-proxy), while the NodePort stays open to them.
func TestLoadBalancerSourceRangesFilterTheLoadBalancerIP(t *testing.T) {
	n := newTestNet(t, "a")
	// The load-balancer IP is the node namespace's own (as kube-proxy's IPVS mode or a local LB would have
	// it): a packet the rules let through without DNAT finds no listener there and is refused, so only the
	// firewall's drop makes a time-out.
	const lbIP = "203.0.113.10"
	must(t, inNS(n.node, func() error {
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		return netlink.AddrAdd(lo, mustAddr(lbIP+"/32"))
	}))
	svc := service("fw", "10.96.0.48", func(s *corev1.Service) {
		s.Spec.Type = corev1.ServiceTypeLoadBalancer
		s.Spec.Ports[0].NodePort = 30048
		s.Spec.Ports[1].NodePort = 30049
		s.Spec.LoadBalancerSourceRanges = []string{clientIP + "/32", "10.0.0.0/8"}
		s.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: lbIP}}
	})
	rp := startProxy(t, n, svc, endpointSlice(n, "fw", 8080, []string{"a"}))
	waitFor(t, "the client, in the ranges, reaches the load-balancer IP", 5*time.Second, func() error {
		_, err := dialTCP(n.client, lbIP+":80", time.Second)
		return err
	})

	svc.Spec.LoadBalancerSourceRanges = []string{"10.0.0.0/8"} // the client is no longer allowed
	rp.apply(t, svc)
	waitFor(t, "the client's connections to the load-balancer IP are dropped", 5*time.Second, func() error {
		var timeout net.Error // dropped, so neither answered nor refused
		if _, err := dialTCP(n.client, lbIP+":80", 300*time.Millisecond); !errors.As(err, &timeout) || !timeout.Timeout() {
			return fmt.Errorf("connecting: %v, want a time-out", err)
		}
		return nil
	})
	if _, err := dialTCP(n.client, nodeIP+":30048", time.Second); err != nil {
		t.Errorf("the NodePort of a Service with source ranges: %v, want it open", err)
	}
}

// expectHTTP GETs url from ns and compares the status code and body.
func expectHTTP(ns netns.NsHandle, url string, code int, body string) error {
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (conn net.Conn, err error) {
			err = inNS(ns, func() error { conn, err = (&net.Dialer{}).DialContext(ctx, network, addr); return err })
			return conn, err
		},
	}}
	defer client.CloseIdleConnections()
	resp, err := client.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != code || strings.TrimSpace(string(got)) != body {
		return fmt.Errorf("got %d %s, want %d %s", resp.StatusCode, got, code, body)
	}
	return nil
}

func TestSessionAffinityClientIPSticks(t *testing.T) {
	n := newTestNet(t, "a", "b", "c")
	startProxy(t, n,
		service("sticky", "10.96.0.50", func(s *corev1.Service) {
			s.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
			s.Spec.SessionAffinityConfig = &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: ptr.To[int32](60)}}
		}),
		endpointSlice(n, "sticky", 8080, []string{"a", "b", "c"}))

	waitFor(t, "the VIP answers", 5*time.Second, func() error {
		_, err := dialTCP(n.client, "10.96.0.50:80", time.Second)
		return err
	})
	if seen := spread(t, n, "client", "10.96.0.50:80", 30); len(seen) != 1 {
		t.Errorf("30 connections from one client with ClientIP affinity reached %v, want one backend", seen)
	}
}

func TestEndpointChurnKeepsEveryNewConnectionWorking(t *testing.T) {
	n := newTestNet(t, "a", "b", "c")
	rp := startProxy(t, n, service("churn", "10.96.0.60"), endpointSlice(n, "churn", 8080, []string{"a"}))
	waitFor(t, "the VIP answers", 5*time.Second, func() error {
		_, err := dialTCP(n.client, "10.96.0.60:80", time.Second)
		return err
	})

	// Cycle through endpoint sets that always keep at least one backend while a client keeps connecting;
	// each change waits for a few connections against the set before it.
	sets := [][]string{{"a", "b"}, {"b"}, {"c"}, {"b", "c"}, {"a", "c"}, {"a"}, {"a", "b", "c"}}
	ctx, cancel := context.WithCancel(context.Background())
	var ok, failed atomic.Int64
	firstErr := make(chan error, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil && ok.Load()+failed.Load() < 20000 {
			if _, err := dialTCP(n.client, "10.96.0.60:80", 2*time.Second); err != nil {
				failed.Add(1)
				select {
				case firstErr <- err:
				default:
				}
			} else {
				ok.Add(1)
			}
		}
	}()
	for range 5 {
		for _, set := range sets {
			rp.apply(t, endpointSlice(n, "churn", 8080, set))
			before := ok.Load() + failed.Load()
			waitFor(t, "the client keeps connecting", 10*time.Second, func() error {
				if ok.Load()+failed.Load() < before+5 {
					return errors.New("fewer than 5 connections since the last change")
				}
				return nil
			})
		}
	}
	cancel()
	<-done
	if failed.Load() > 0 || ok.Load() == 0 {
		t.Errorf("during endpoint churn %d connections succeeded and %d failed (first: %v), want none failed", ok.Load(), failed.Load(), <-firstErr)
	}
	t.Logf("%d connections during %d endpoint changes, none failed", ok.Load(), 5*len(sets))

	// The endpoint maps that the changes replaced are deleted soon after; one per port remains.
	waitFor(t, "replaced endpoint maps are deleted", 5*time.Second, func() error {
		if maps := endpointMaps(t, n, ""); len(maps) != 2 {
			return fmt.Errorf("endpoint maps %v, want one for tcp/http and one for udp/dns", maps)
		}
		return nil
	})
}

// rulesOf returns the rules of the agent's chains whose names start with prefix.
func rulesOf(t *testing.T, n *testNet, prefix string) []*nftables.Rule {
	t.Helper()
	conn := nftConn(t, n.node)
	table := &nftables.Table{Name: TableName, Family: nftables.TableFamilyINet}
	chains, err := conn.ListChainsOfTableFamily(nftables.TableFamilyINet)
	must(t, err)
	var all []*nftables.Rule
	for _, ch := range chains {
		if ch.Table.Name != TableName || !strings.HasPrefix(ch.Name, prefix) {
			continue
		}
		rules, err := conn.GetRules(table, ch)
		must(t, err)
		all = append(all, rules...)
	}
	return all
}

// ruleHandles returns the handles of the rules of the chains whose names start with prefix: a rule that is
// rewritten gets a new handle.
func ruleHandles(t *testing.T, n *testNet, prefix string) []uint64 {
	t.Helper()
	var handles []uint64
	for _, r := range rulesOf(t, n, prefix) {
		handles = append(handles, r.Handle)
	}
	slices.Sort(handles)
	return handles
}

func TestAChangeToOneServiceRewritesOnlyItsRules(t *testing.T) {
	n := newTestNet(t, "a", "b")
	rp := startProxy(t, n,
		service("one", "10.96.0.71"), endpointSlice(n, "one", 8080, []string{"a"}),
		service("two", "10.96.0.72"), endpointSlice(n, "two", 8080, []string{"a", "b"}))
	waitFor(t, "both VIPs answer", 5*time.Second, func() error {
		for _, vip := range []string{"10.96.0.71:80", "10.96.0.72:80"} {
			if _, err := dialTCP(n.client, vip, time.Second); err != nil {
				return err
			}
		}
		return nil
	})
	twoBefore := ruleHandles(t, n, "service-default/two/")
	oneBefore := ruleHandles(t, n, "service-default/one/")
	if len(twoBefore) == 0 || len(oneBefore) == 0 {
		t.Fatalf("no rules found for the Services' chains: %v %v", oneBefore, twoBefore)
	}

	// Session affinity takes other rules.
	rp.apply(t, service("one", "10.96.0.71", func(s *corev1.Service) { s.Spec.SessionAffinity = corev1.ServiceAffinityClientIP }))
	waitFor(t, "service one's rules are rewritten", 5*time.Second, func() error {
		if oneAfter := ruleHandles(t, n, "service-default/one/"); slices.Equal(oneAfter, oneBefore) {
			return fmt.Errorf("service one's rules kept their handles %v after it got session affinity", oneBefore)
		}
		return nil
	})
	if _, err := dialTCP(n.client, "10.96.0.71:80", time.Second); err != nil {
		t.Errorf("service one with session affinity: %v", err)
	}
	if twoAfter := ruleHandles(t, n, "service-default/two/"); !slices.Equal(twoAfter, twoBefore) {
		t.Errorf("service two's rules were rewritten (handles %v → %v) by a change to service one", twoBefore, twoAfter)
	}
}

// A change of endpoints, whether one is replaced, added or removed, changes only the elements of the
// Service's endpoint map: its rules and its map stay, and new connections go to the new endpoints, in
// equal shares.
func TestEndpointChangesChangeOnlyMapElements(t *testing.T) {
	n := newTestNet(t, "a", "b", "c")
	rp := startProxy(t, n, service("swap", "10.96.0.73"), endpointSlice(n, "swap", 8080, []string{"a", "b"}))
	answeredBy := func(want ...string) func() error {
		return func() error {
			seen := map[string]int{}
			for range 60 {
				r, err := dialTCP(n.client, "10.96.0.73:80", time.Second)
				if err != nil {
					return err
				}
				seen[r.backend]++
			}
			if got := slices.Sorted(maps.Keys(seen)); !slices.Equal(got, want) {
				return fmt.Errorf("60 connections answered by %v, want %v", seen, want)
			}
			return nil
		}
	}
	waitFor(t, "backends a and b answer", 5*time.Second, answeredBy("a", "b"))
	handlesBefore := ruleHandles(t, n, "service-default/swap/")
	mapsBefore := endpointMaps(t, n, "service-default/swap/")
	if len(mapsBefore) != 2 {
		t.Fatalf("the Service's rules use endpoint maps %v, want one per port", mapsBefore)
	}

	for _, backends := range [][]string{{"a", "c"}, {"a", "b", "c"}, {"b"}} {
		rp.apply(t, endpointSlice(n, "swap", 8080, backends))
		waitFor(t, fmt.Sprintf("backends %v answer", backends), 5*time.Second, answeredBy(backends...))
		if after := ruleHandles(t, n, "service-default/swap/"); !slices.Equal(after, handlesBefore) {
			t.Errorf("the Service's rules were rewritten (handles %v → %v) for endpoints %v", handlesBefore, after, backends)
		}
		if after := endpointMaps(t, n, "service-default/swap/"); !slices.Equal(after, mapsBefore) {
			t.Errorf("endpoint maps are %v, were %v: want the same maps with new elements", after, mapsBefore)
		}
	}
}

// A new proxy (an agent restart) reconciles the table an earlier one left: what still exists keeps
// answering throughout, what was deleted meanwhile goes, what was added comes.
func TestRestartedProxyReconcilesTheTableInPlace(t *testing.T) {
	n := newTestNet(t, "a", "b")
	first := startProxy(t, n,
		service("kept", "10.96.0.81"), endpointSlice(n, "kept", 8080, []string{"a", "b"}),
		service("removed", "10.96.0.82", func(s *corev1.Service) {
			s.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
		}), endpointSlice(n, "removed", 8080, []string{"a"}))
	waitFor(t, "both VIPs answer", 5*time.Second, func() error {
		for _, vip := range []string{"10.96.0.81:80", "10.96.0.82:80"} {
			if _, err := dialTCP(n.client, vip, time.Second); err != nil {
				return err
			}
		}
		return nil
	})
	keptMaps := endpointMaps(t, n, "service-default/kept/")
	if len(keptMaps) != 2 {
		t.Fatalf("the kept Service's rules use endpoint maps %v, want one per port", keptMaps)
	}
	first.stop() // the agent stops; its table stays

	// The second proxy's API state: "removed" is gone, "added" is new.
	ctx, cancel := context.WithCancel(context.Background())
	failures := make(chan error, 1)
	go func() {
		defer close(failures)
		for i := 0; ctx.Err() == nil && i < 5000; i++ {
			if _, err := dialTCP(n.client, "10.96.0.81:80", 2*time.Second); err != nil {
				failures <- err
				return
			}
		}
	}()
	startProxy(t, n,
		service("kept", "10.96.0.81"), endpointSlice(n, "kept", 8080, []string{"a", "b"}),
		service("added", "10.96.0.83"), endpointSlice(n, "added", 8080, []string{"b"}))
	waitFor(t, "the new Service answers", 5*time.Second, func() error {
		_, err := dialTCP(n.client, "10.96.0.83:80", time.Second)
		return err
	})
	waitFor(t, "the removed Service's chains and sets go", 5*time.Second, func() error {
		if h := ruleHandles(t, n, "service-default/removed/"); len(h) > 0 {
			return fmt.Errorf("chains of the removed Service still have %d rules", len(h))
		}
		if h := ruleHandles(t, n, "endpoint-service-default/removed/"); len(h) > 0 {
			return fmt.Errorf("endpoint chains of the removed Service still have %d rules", len(h))
		}
		sets, err := nftConn(t, n.node).GetSets(&nftables.Table{Name: TableName, Family: nftables.TableFamilyINet})
		must(t, err)
		for _, s := range sets {
			if strings.Contains(s.Name, "removed") {
				return fmt.Errorf("set %s is still there", s.Name)
			}
		}
		// The kept Service's endpoints did not change: its rules took over the maps they had.
		if now := endpointMaps(t, n, "service-default/kept/"); !slices.Equal(now, keptMaps) {
			return fmt.Errorf("the kept Service's endpoint maps are %v, were %v", now, keptMaps)
		}
		return nil
	})
	cancel()
	if err := <-failures; err != nil {
		t.Errorf("a connection to the kept Service failed while the new proxy took over: %v", err)
	}
}

// histogramCount returns how many observations the histogram name in reg holds, and their sum.
func histogramCount(t *testing.T, reg *prometheus.Registry, name string) (uint64, float64) {
	t.Helper()
	families, err := reg.Gather()
	must(t, err)
	for _, f := range families {
		if f.GetName() == name {
			h := f.GetMetric()[0].GetHistogram()
			return h.GetSampleCount(), h.GetSampleSum()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0, 0
}

func TestMetricsCountSyncsAndNetworkProgrammingLatency(t *testing.T) {
	n := newTestNet(t, "a", "b")
	// A slice that changed an hour ago, before the proxy started: the first full sync writes it, and that is
	// no network programming latency of an hour.
	old := endpointSlice(n, "metered", 8080, []string{"a"})
	old.Annotations = map[string]string{corev1.EndpointsLastChangeTriggerTime: time.Now().Add(-time.Hour).Format(time.RFC3339Nano)}
	rp := startProxy(t, n, service("metered", "10.96.0.70"), old)
	waitFor(t, "the full sync is counted", 5*time.Second, func() error {
		if c, _ := histogramCount(t, rp.metrics, "kubeproxy_sync_full_proxy_rules_duration_seconds"); c != 1 {
			return fmt.Errorf("%d full syncs, want 1", c)
		}
		return nil
	})

	// The EndpointSlice controller stamps when it saw the change; the metric is the time from then until
	// the rules carry it.
	changed := time.Now()
	slice := endpointSlice(n, "metered", 8080, []string{"a", "b"})
	slice.Annotations = map[string]string{corev1.EndpointsLastChangeTriggerTime: changed.Format(time.RFC3339Nano)}
	rp.apply(t, slice)
	waitFor(t, "the change is measured", 5*time.Second, func() error {
		count, sum := histogramCount(t, rp.metrics, "kubeproxy_network_programming_duration_seconds")
		if count != 1 {
			return fmt.Errorf("%d observations, want 1", count)
		}
		if elapsed := time.Since(changed).Seconds(); sum <= 0 || sum > elapsed {
			return fmt.Errorf("network programming took %.3fs by the metric, want between 0 and %.3fs", sum, elapsed)
		}
		return nil
	})
	if c, _ := histogramCount(t, rp.metrics, "kubeproxy_sync_partial_proxy_rules_duration_seconds"); c == 0 {
		t.Error("the partial sync of the change is not counted")
	}
	if seen := spread(t, n, "client", "10.96.0.70:80", 30); len(seen) != 2 {
		t.Errorf("after the measured change 30 connections reached %v, want a and b", seen)
	}
}

// A full sync of thousands of Services is one transaction of tens of thousands of netlink messages, each
// acknowledged by the kernel: the socket must hold them all (without its larger buffers: ENOBUFS).
func TestFullSyncOfThousandsOfServicesIsOneTransaction(t *testing.T) {
	n := newTestNet(t, "a")
	const count = 3000
	objects := []runtime.Object{}
	for i := range count {
		name := fmt.Sprintf("many-%d", i)
		objects = append(objects, service(name, fmt.Sprintf("10.96.%d.%d", 100+i/250, 1+i%250)),
			endpointSlice(n, name, 8080, []string{"a"}))
	}
	rp := startProxy(t, n, objects...)
	waitFor(t, "the full sync is written", time.Minute, func() error {
		if c, _ := histogramCount(t, rp.metrics, "kubeproxy_sync_full_proxy_rules_duration_seconds"); c != 1 {
			return fmt.Errorf("%d full syncs, want 1", c)
		}
		return nil
	})
	set, err := nftConn(t, n.node).GetSetByName(&nftables.Table{Name: TableName, Family: nftables.TableFamilyINet}, mapServiceIPs)
	must(t, err)
	elems, err := nftConn(t, n.node).GetSetElements(set)
	must(t, err)
	if len(elems) != 2*count { // a TCP and a UDP port each
		t.Errorf("%s has %d elements after the full sync, want %d", mapServiceIPs, len(elems), 2*count)
	}
	if r, err := dialTCP(n.client, "10.96.111.250:80", 2*time.Second); err != nil || r.backend != "a" {
		t.Errorf("the last Service answered %v, %v; want backend a", r, err)
	}
}

// endpointMaps returns the names of the endpoint maps that the rules of the chains whose names start with
// chainPrefix look up; with no prefix, of every endpoint map in the table, used or not.
func endpointMaps(t *testing.T, n *testNet, chainPrefix string) []string {
	t.Helper()
	var names []string
	if chainPrefix == "" {
		sets, err := nftConn(t, n.node).GetSets(&nftables.Table{Name: TableName, Family: nftables.TableFamilyINet})
		must(t, err)
		for _, s := range sets {
			if strings.HasPrefix(s.Name, endpointMapPrefix) {
				names = append(names, s.Name)
			}
		}
	} else {
		for _, r := range rulesOf(t, n, chainPrefix) {
			for _, e := range r.Exprs {
				if l, ok := e.(*expr.Lookup); ok && strings.HasPrefix(l.SetName, endpointMapPrefix) {
					names = append(names, l.SetName)
				}
			}
		}
	}
	slices.Sort(names)
	return names
}

// A dual-stack Service answers on its IPv6 ClusterIP and NodePort as on the IPv4 ones, with IPv6 endpoints:
// spread over every backend, masqueraded from outside the pod range, a pod reaching itself (hairpin),
// externalTrafficPolicy Local keeping the client's address, session affinity, and refusal without endpoints.
func TestDualStackServicesAnswerOverIPv6(t *testing.T) {
	n := newTestNet(t, "a", "b")
	nodePort := func(tcp, udp int32) func(*corev1.Service) {
		return func(s *corev1.Service) {
			s.Spec.Type = corev1.ServiceTypeNodePort
			s.Spec.Ports[0].NodePort, s.Spec.Ports[1].NodePort = tcp, udp
		}
	}
	startProxy(t, n,
		service("dual", "10.96.0.90", dualStack("fd00:96::90"), nodePort(30090, 30091)),
		endpointSlice(n, "dual", 8080, []string{"a", "b"}), endpointSlice6(n, "dual", 8080, []string{"a", "b"}),
		service("local", "10.96.0.91", dualStack("fd00:96::91"), nodePort(30092, 30093), func(s *corev1.Service) {
			s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
		}),
		endpointSlice6(n, "local", 8080, []string{"a", "b"}, "a"),
		service("sticky", "fd00:96::92", func(s *corev1.Service) {
			s.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv6Protocol}
			s.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
		}),
		endpointSlice6(n, "sticky", 8080, []string{"a", "b"}),
		service("empty", "fd00:96::93", func(s *corev1.Service) { s.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv6Protocol} }))

	vip6 := "[fd00:96::90]:80"
	waitFor(t, "the IPv6 VIP answers", 5*time.Second, func() error {
		_, err := dialTCP(n.client, vip6, time.Second)
		return err
	})
	for _, addr := range []string{vip6, "10.96.0.90:80", "[" + nodeIP6 + "]:30090"} {
		if seen := spread(t, n, "client", addr, 40); len(seen) != 2 {
			t.Errorf("40 connections from the client to %s reached %v, want a and b", addr, seen)
		}
	}
	if seen := spread(t, n, "node", vip6, 40); len(seen) != 2 {
		t.Errorf("40 connections from the node to %s reached %v, want a and b", vip6, seen)
	}
	if r, err := exchangeUDP(n.client, "[fd00:96::90]:53", 2*time.Second); err != nil || r.backend == "" {
		t.Errorf("UDP through the IPv6 VIP: %v %v", r, err)
	}
	// From outside the pod range the backend sees the node's address; through the NodePort too.
	for _, addr := range []string{vip6, "[" + nodeIP6 + "]:30090"} {
		if r, err := dialTCP(n.client, addr, time.Second); err != nil || r.source == clientIP6 {
			t.Errorf("connection to %s: backend saw %q (%v), want a node address, not the client's", addr, r.source, err)
		}
	}
	// A backend reaching its own Service gets itself about half the time; it is masqueraded then (the
	// bridge's address), or its reply would never be un-NATed.
	hairpins := 0
	for range 40 {
		r, err := dialTCP(n.backends["a"], vip6, 2*time.Second)
		if err != nil {
			t.Fatalf("backend a through its own Service's IPv6 VIP: %v", err)
		}
		if r.backend == "a" {
			hairpins++
			if r.source != bridgeIP6 {
				t.Errorf("hairpin connection seen from %q, want the bridge's %s", r.source, bridgeIP6)
			}
		}
	}
	if hairpins == 0 {
		t.Errorf("40 connections from backend a to its own Service never reached a")
	}

	// externalTrafficPolicy Local over IPv6: the local endpoint only, seeing the client's address.
	for range 20 {
		r, err := dialTCP(n.client, "["+nodeIP6+"]:30092", 2*time.Second)
		if err != nil || r.backend != "a" || r.source != clientIP6 {
			t.Fatalf("IPv6 NodePort with externalTrafficPolicy Local: answered by %q seeing %q (%v), want a seeing %s",
				r.backend, r.source, err, clientIP6)
		}
	}
	// The IPv4 side of that Service has no endpoints (no IPv4 slice): refused.
	if _, err := dialTCP(n.client, "10.96.0.91:80", time.Second); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("IPv4 ClusterIP of a Service with only IPv6 endpoints: %v, want connection refused", err)
	}

	if seen := spread(t, n, "client", "[fd00:96::92]:80", 20); len(seen) != 1 {
		t.Errorf("20 connections to an IPv6 Service with ClientIP affinity reached %v, want one backend", seen)
	}

	start := time.Now()
	_, err := dialTCP(n.client, "[fd00:96::93]:80", 2*time.Second)
	if took := time.Since(start); !errors.Is(err, syscall.ECONNREFUSED) || took > 100*time.Millisecond {
		t.Errorf("IPv6 VIP without endpoints: %v after %s, want connection refused within 100ms", err, took)
	}
}

// An endpoint address is in the hairpin set while any Service sends to it: two Services share backend a,
// and a stays when one of them goes, and goes with the second.
func TestHairpinSetFollowsTheServicesThatUseAnAddress(t *testing.T) {
	n := newTestNet(t, "a", "b")
	rp := startProxy(t, n,
		service("one", "10.96.0.81"), endpointSlice(n, "one", 8080, []string{"a", "b"}),
		service("two", "10.96.0.82"), endpointSlice(n, "two", 8080, []string{"a"}))
	pair := func(name string) string {
		a := n.backendIPs[name].AsSlice()
		return string(append(a, a...))
	}
	hairpinIs := func(want ...string) func() error {
		return func() error {
			set, err := nftConn(t, n.node).GetSetByName(&nftables.Table{Name: TableName, Family: nftables.TableFamilyINet}, setHairpin)
			if err != nil {
				return err
			}
			elems, err := nftConn(t, n.node).GetSetElements(set)
			if err != nil {
				return err
			}
			var got []string
			for _, e := range elems {
				got = append(got, string(e.Key))
			}
			slices.Sort(got)
			if slices.Sort(want); !slices.Equal(got, want) {
				return fmt.Errorf("hairpin set holds %q, want %q", got, want)
			}
			return nil
		}
	}
	waitFor(t, "a and b in the hairpin set", 5*time.Second, hairpinIs(pair("a"), pair("b")))
	must(t, rp.client.CoreV1().Services("default").Delete(context.Background(), "one", metav1.DeleteOptions{}))
	waitFor(t, "only a, which two still uses", 5*time.Second, hairpinIs(pair("a")))
	must(t, rp.client.CoreV1().Services("default").Delete(context.Background(), "two", metav1.DeleteOptions{}))
	waitFor(t, "an empty hairpin set", 5*time.Second, hairpinIs())
}
