package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"

	"github.com/nodeagent/nodeagent/internal/netnsutil"
	"github.com/nodeagent/nodeagent/internal/tcprelay"
)

const (
	proxyRunDir = "/var/run/nodeagent-bench-proxy"
	proxyNode   = "bench-proxy"
	// backendIP is the one real endpoint: a listener of the benchmark's own inside each proxy's network
	// namespace, behind the probe Service. Every other endpoint is an address that nothing answers on.
	backendIP   = "10.250.0.1"
	backendPort = 8080
	serviceCIDR = "10.100.0.0/16"
	// apiserverAddr is the benchmark's API server on the host's loopback, relayed into the namespace.
	apiserverAddr = "127.0.0.1:27443"
)

// Endpoint addresses are numbered from endpointBase; the addresses that changes bring in, from changeBase.
var (
	endpointBase = netip.MustParseAddr("10.128.0.0")
	changeBase   = netip.MustParseAddr("10.200.0.0")
)

func nthAddr(base netip.Addr, n int) netip.Addr {
	b := base.As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v += uint32(n)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

var proxyClusterEnv = []string{
	"NODEAGENT_RUN=" + proxyRunDir, "APISERVER_PORT=" + apiserverAddr[strings.LastIndexByte(apiserverAddr, ':')+1:], "ETCD_PORT=24379", "KCM_PORT=31257",
	"SCHEDULER_PORT=31259", "SERVICE_CIDR=" + serviceCIDR, "SERVICE_IP=10.100.0.1", "NODE_NAMES=" + proxyNode,
}

// proxyPeer is one of the two proxies compared, started inside a network namespace of the benchmark's.
type proxyPeer struct {
	name string
	argv []string
}

// proxyFigures are one proxy's results at one number of Services.
type proxyFigures struct {
	fullSync []time.Duration // the first is on an empty table, the others after a restart
	replaced []time.Duration // EndpointSlice update replacing an endpoint → the new endpoint in the kernel
	added    []time.Duration // EndpointSlice update adding an endpoint → the new endpoint in the kernel
	missed   int             // changes never seen in the kernel within the deadline
	connect  []time.Duration // TCP connect through the probe VIP
	// peakRSS is the most memory the proxy and its children held at once from its first start to the end
	// of its first full sync, or its own peak after (VmHWM) if higher; steadyRSS is its RSS after the
	// endpoint changes.
	peakRSS, steadyRSS int64
	cpuFullSync        float64 // CPU seconds of the first full sync, children's (nft) included
	order              int     // 1 if this proxy went first at this size
}

func runProxyBench(ctx context.Context, sizes []int, endpoints, changes, connects, rounds int, firstPeer string) error {
	repo, err := os.Getwd()
	if err != nil {
		return err
	}
	k8sBin, err := shell(repo, nil, "source hack/lib/common.sh && echo $K8S_BIN")
	if err != nil {
		return err
	}
	if _, err := shell(repo, nil, "hack/build-k8s.sh kube-proxy"); err != nil {
		return err
	}
	agentBin, err := buildAgent(repo, proxyRunDir)
	if err != nil {
		return err
	}
	client, kubeconfig, stopCluster, err := startBenchCluster(repo, proxyRunDir, proxyClusterEnv)
	if err != nil {
		return err
	}
	defer stopCluster()
	if err := createProxyNode(ctx, client); err != nil {
		return err
	}
	peers := []proxyPeer{
		{"nodeagent", []string{agentBin, "--proxy-only", "--kubeconfig", kubeconfig, "--hostname-override", proxyNode,
			"--nodeport-addresses", backendIP + "/32", "--cluster-cidr", "10.244.0.0/16",
			"--metrics-bind-address", "127.0.0.1:10249", "--healthz-bind-address", "127.0.0.1:10256"}},
		{"kube-proxy", []string{filepath.Join(strings.TrimSpace(k8sBin), "kube-proxy"), "--proxy-mode", "nftables",
			"--kubeconfig", kubeconfig, "--hostname-override", proxyNode,
			"--nodeport-addresses", backendIP + "/32", "--cluster-cidr", "10.244.0.0/16",
			"--metrics-bind-address", "127.0.0.1:10249", "--healthz-bind-address", "127.0.0.1:10256",
			// A network namespace cannot change the conntrack table's size or timeouts: leave them.
			"--conntrack-max-per-core", "0", "--conntrack-tcp-timeout-established", "0",
			"--conntrack-tcp-timeout-close-wait", "0", "--conntrack-udp-timeout", "0", "--conntrack-udp-timeout-stream", "0"}},
	}
	results := map[int]map[string]*proxyFigures{}
	created := 0
	changeAddrs := 0 // the addresses changes bring in are never used twice, across sizes and proxies
	for i, size := range sizes {
		fmt.Fprintf(os.Stderr, "bench: %d Services × %d endpoints\n", size, endpoints)
		if err := createServices(ctx, client, created, size, endpoints); err != nil {
			return err
		}
		created = size
		results[size] = map[string]*proxyFigures{}
		// Which proxy goes first alternates with the size (and with --first-peer): the second one finds
		// an API server and a machine that have already served the first.
		order := slices.Clone(peers)
		if (i%2 == 1) != (firstPeer == "kube-proxy") {
			slices.Reverse(order)
		}
		tables := map[string]*proxyTable{}
		err := func() error {
			defer func() {
				for _, t := range tables {
					t.close()
				}
			}()
			for _, peer := range order {
				f, table, err := benchProxy(ctx, client, peer, size, endpoints, changes, changeAddrs, rounds)
				changeAddrs += 2 * changes
				if err != nil {
					return fmt.Errorf("%s with %d Services: %w", peer.name, size, err)
				}
				f.order = len(tables) + 1
				results[size][peer.name], tables[peer.name] = f, table
			}
			return measureConnects(tables, results[size], connects)
		}()
		if err != nil {
			return err
		}
	}
	reportProxy(sizes, endpoints, results)
	return nil
}

// createProxyNode registers the node both proxies run as, with the backend's address as its InternalIP.
func createProxyNode(ctx context.Context, client kubernetes.Interface) error {
	_, err := client.CoreV1().Nodes().Create(ctx, &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: proxyNode, Labels: map[string]string{corev1.LabelHostname: proxyNode}},
		Spec:       corev1.NodeSpec{PodCIDR: "10.244.0.0/24", PodCIDRs: []string{"10.244.0.0/24"}},
		Status:     corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: backendIP}}},
	}, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}

// createServices creates Services from..to-1 in the default namespace, each a selectorless ClusterIP
// Service with one TCP port and an EndpointSlice of its own; svc-0 is the probe, whose one endpoint is the
// backend.
func createServices(ctx context.Context, client kubernetes.Interface, from, to, endpoints int) error {
	work := make(chan int)
	errs := make(chan error, 16)
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				if err := createService(ctx, client, i, endpoints); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	start := time.Now()
loop:
	for i := from; i < to; i++ {
		select {
		case work <- i:
		case err := <-errs:
			close(work)
			wg.Wait()
			return err
		case <-ctx.Done():
			break loop
		}
	}
	close(work)
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "bench: created Services %d..%d in %s\n", from, to-1, time.Since(start).Round(time.Second))
	return ctx.Err()
}

func createService(ctx context.Context, client kubernetes.Interface, i, endpoints int) error {
	name := fmt.Sprintf("svc-%d", i)
	_, err := client.CoreV1().Services("default").Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80,
			TargetPort: intstr.FromInt32(backendPort)}}},
	}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("creating Service %s: %w", name, err)
	}
	addrs := []string{backendIP}
	if i != 0 {
		addrs = nil
		for e := range endpoints {
			addrs = append(addrs, nthAddr(endpointBase, i*endpoints+e).String())
		}
	}
	_, err = client.DiscoveryV1().EndpointSlices("default").Create(ctx, benchSlice(name, addrs), metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("creating the EndpointSlice of %s: %w", name, err)
	}
	return nil
}

func benchSlice(service string, addrs []string) *discoveryv1.EndpointSlice {
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: service, Labels: map[string]string{
			discoveryv1.LabelServiceName: service, discoveryv1.LabelManagedBy: "bench"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports: []discoveryv1.EndpointPort{{Name: ptr.To("http"), Protocol: ptr.To(corev1.ProtocolTCP),
			Port: ptr.To[int32](backendPort)}},
	}
	for _, a := range addrs {
		slice.Endpoints = append(slice.Endpoints, discoveryv1.Endpoint{Addresses: []string{a},
			NodeName: ptr.To(proxyNode), Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}})
	}
	return slice
}

// benchProxy measures one proxy at one number of Services: full syncs (the first on an empty table, then
// after restarts), then partial syncs and connections through the probe VIP.
func benchProxy(ctx context.Context, client kubernetes.Interface, peer proxyPeer, size, endpoints, changes, firstAddr, rounds int) (_ *proxyFigures, _ *proxyTable, err error) {
	ns, err := newBenchNetns()
	if err != nil {
		return nil, nil, err
	}
	stopBackend, err := ns.serveBackend()
	if err != nil {
		ns.remove()
		return nil, nil, err
	}
	left := &proxyTable{ns: ns, close: func() { stopBackend(); ns.remove() }}
	defer func() {
		if err != nil {
			left.close()
		}
	}()
	stopRelay, err := ns.relay(apiserverAddr)
	if err != nil {
		return nil, nil, err
	}
	defer stopRelay()
	probe, err := client.CoreV1().Services("default").Get(ctx, "svc-0", metav1.GetOptions{})
	if err != nil {
		return nil, nil, err
	}
	left.vip = net.JoinHostPort(probe.Spec.ClusterIP, "80")

	f := &proxyFigures{}
	var proc *process
	var stopRSS func() int64
	defer func() {
		if proc != nil {
			proc.stop()
		}
	}()
	for round := range rounds {
		// nsenter, not `ip netns exec`: that would also give the proxy a mount namespace of its own, holding
		// copies of containerd's network namespace mounts, which containerd then cannot remove.
		argv := append([]string{"nsenter", "--net=" + ns.path(), "--"}, peer.argv...)
		logPath := filepath.Join(proxyRunDir, fmt.Sprintf("%s-%d-%d.log", peer.name, size, round))
		if proc, err = startProcess(peer.name, logPath, argv...); err != nil {
			return nil, nil, err
		}
		if round == 0 {
			stopRSS = proc.treeRSS()
		}
		took, err := ns.waitFullSync(ctx, proc)
		if err != nil {
			return nil, nil, fmt.Errorf("%w (log: %s)", err, logPath)
		}
		f.fullSync = append(f.fullSync, took)
		if round == 0 {
			if f.cpuFullSync, err = proc.cpuSeconds(); err != nil {
				return nil, nil, err
			}
		}
		// The probe VIP must answer before anything is measured through it.
		if err := poll(ctx, 30*time.Second, func() bool { _, err := ns.connect(left.vip); return err == nil }); err != nil {
			return nil, nil, fmt.Errorf("the probe VIP %s never answered: %w (log: %s)", left.vip, err, logPath)
		}
		if round == 0 {
			f.peakRSS = stopRSS() // the first start: an empty table, the whole ruleset written
		}
		if round < rounds-1 {
			proc.stop()
			proc = nil
		}
	}
	fmt.Fprintf(os.Stderr, "bench: %s full syncs %v\n", peer.name, f.fullSync)

	if f.replaced, f.added, f.missed, err = ns.measureChanges(ctx, client, size, changes, firstAddr); err != nil {
		return nil, nil, err
	}
	if f.steadyRSS, err = proc.rss(); err != nil {
		return nil, nil, err
	}
	if hwm, err := proc.peakRSS(); err == nil {
		f.peakRSS = max(f.peakRSS, hwm)
	}
	return f, left, nil
}

// proxyTable is what a proxy leaves once it has stopped: its network namespace, whose nftables table still
// carries its rules, with the backend listening behind the probe's VIP.
type proxyTable struct {
	ns    *benchNetns
	vip   string
	close func()
}

// measureConnects times TCP connections through the probe VIP of each proxy's table, in blocks of 100
// that alternate between the tables (and which goes first), so that neither gets a quieter moment of the
// machine. No proxy process runs meanwhile: the packets meet only the rules in the kernel.
func measureConnects(tables map[string]*proxyTable, results map[string]*proxyFigures, connects int) error {
	names := slices.Sorted(maps.Keys(tables))
	const block = 100
	for done := 0; done < connects; done += block {
		if done/block%2 == 1 {
			slices.Reverse(names)
		}
		for _, name := range names {
			for range min(block, connects-done) {
				took, err := tables[name].ns.connect(tables[name].vip)
				if err != nil {
					return fmt.Errorf("connecting through %s's %s: %w", name, tables[name].vip, err)
				}
				results[name].connect = append(results[name].connect, took)
			}
		}
	}
	return nil
}

// benchNetns is the network namespace a proxy runs in: loopback, and a veth pair (this kernel has no dummy
// interfaces) whose both ends stay inside, with the backend's address and a route for the Service range, so
// connections to VIPs go through the proxy's rules and nowhere else.
type benchNetns struct {
	handle netns.NsHandle
}

// newBenchNetns creates the namespace without a name: `ip netns add` would bind-mount /run/netns over
// itself on a machine where it is not a mount point yet, hiding the network namespaces that containerd
// mounted there, which it then cannot remove. The namespace lives as long as its handle.
func newBenchNetns() (*benchNetns, error) {
	h, err := netnsutil.New()
	if err != nil {
		return nil, err
	}
	n := &benchNetns{handle: h}
	in := "nsenter --net=" + n.path() + " "
	script := in + `ip link set lo up &&
		` + in + `ip link add eth0 type veth peer name eth1 &&
		` + in + `ip addr add ` + backendIP + `/32 dev eth0 &&
		` + in + `ip link set eth0 up && ` + in + `ip link set eth1 up &&
		` + in + `ip route add ` + serviceCIDR + ` dev eth0`
	if _, err := shell("/", nil, script); err != nil {
		_ = h.Close()
		return nil, err
	}
	return n, nil
}

// path names the namespace for other processes (nsenter --net=PATH) while this one holds its handle.
func (n *benchNetns) path() string { return fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), int(n.handle)) }

func (n *benchNetns) remove() { _ = n.handle.Close() }

// in runs fn on a thread in the namespace; sockets fn opens stay in it.
func (n *benchNetns) in(fn func() error) error { return netnsutil.Do(n.handle, fn) }

// relay makes the host's loopback address addr reachable at the same address inside the namespace (the
// API server's certificate names 127.0.0.1): both proxies reach the API server the same way. The relay's
// goroutines dial from threads in the host's namespace.
func (n *benchNetns) relay(addr string) (stop func(), err error) {
	var ln net.Listener
	if err := n.in(func() (err error) { ln, err = net.Listen("tcp4", addr); return err }); err != nil {
		return nil, err
	}
	return tcprelay.Start(ln, addr), nil
}

// serveBackend accepts connections on the backend address and closes them at once.
func (n *benchNetns) serveBackend() (stop func(), err error) {
	var ln net.Listener
	if err := n.in(func() (err error) {
		ln, err = net.Listen("tcp4", net.JoinHostPort(backendIP, strconv.Itoa(backendPort)))
		return err
	}); err != nil {
		return nil, err
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.Close()
		}
	}()
	return func() { _ = ln.Close(); <-done }, nil
}

// connect opens one TCP connection to addr from inside the namespace and returns how long it took.
func (n *benchNetns) connect(addr string) (time.Duration, error) {
	var took time.Duration
	err := n.in(func() error {
		start := time.Now()
		c, err := net.DialTimeout("tcp4", addr, 2*time.Second)
		took = time.Since(start)
		if err != nil {
			return err
		}
		// No TIME_WAIT left behind: a long run must not run out of ports.
		_ = c.(*net.TCPConn).SetLinger(0)
		return c.Close()
	})
	return took, err
}

// fullSyncMetric is the IPv4 full sync figure: kube-proxy syncs IPv6 too, in a proxier of its own.
var fullSyncMetric = regexp.MustCompile(`(?m)^kubeproxy_sync_full_proxy_rules_duration_seconds_(sum|count)\{ip_family="IPv4"\} ([0-9.e+-]+)$`)

// waitFullSync waits for the proxy's first full sync and returns its duration from the proxy's own
// metric, which kube-proxy and nodeagent both measure around the rule computation and the kernel write.
func (n *benchNetns) waitFullSync(ctx context.Context, proc *process) (time.Duration, error) {
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (c net.Conn, err error) {
			err = n.in(func() error { c, err = (&net.Dialer{}).DialContext(ctx, network, addr); return err })
			return c, err
		},
	}}
	defer client.CloseIdleConnections()
	var took time.Duration
	var lastBody string
	err := poll(ctx, 5*time.Minute, func() bool {
		select {
		case <-proc.done:
			return true
		default:
		}
		resp, err := client.Get("http://127.0.0.1:10249/metrics")
		if err != nil {
			return false
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		lastBody = string(body)
		var sum, count float64
		for _, m := range fullSyncMetric.FindAllStringSubmatch(string(body), -1) {
			v, _ := strconv.ParseFloat(m[2], 64)
			if m[1] == "sum" {
				sum = v
			} else {
				count = v
			}
		}
		if count < 1 {
			return false
		}
		took = time.Duration(sum / count * float64(time.Second))
		return true
	})
	select {
	case <-proc.done:
		return 0, errors.New("the proxy exited")
	default:
	}
	if err != nil {
		var syncLines []string
		for _, l := range strings.Split(lastBody, "\n") {
			if strings.HasPrefix(l, "kubeproxy_sync") && !strings.Contains(l, "_bucket") {
				syncLines = append(syncLines, l)
			}
		}
		return 0, fmt.Errorf("no full sync in its metrics: %w; they had %q", err, syncLines)
	}
	return took, nil
}

// measureChanges updates the EndpointSlices of random Services one at a time with an endpoint address
// never used before (firstAddr on), and times each from just before the update to the kernel's announcement
// of a rule or element holding that address (nftables' netlink notifications, sent when a transaction
// commits). Changes alternate between replacing an endpoint (a rolling update's step when maxSurge pods are
// already counted) and adding one (a scale-up), changes of each. They are 1.1 s apart: kube-proxy's default
// minSyncPeriod is 1 s.
func (n *benchNetns) measureChanges(ctx context.Context, client kubernetes.Interface, size, changes, firstAddr int) (replaced, added []time.Duration, missed int, err error) {
	mon, err := n.monitorNftables()
	if err != nil {
		return nil, nil, 0, err
	}
	defer mon.close()
	for k := range 2 * changes {
		svc := fmt.Sprintf("svc-%d", 1+rand.IntN(max(size-1, 1)))
		addr := nthAddr(changeBase, firstAddr+k)
		slice, err := client.DiscoveryV1().EndpointSlices("default").Get(ctx, svc, metav1.GetOptions{})
		if err != nil {
			return nil, nil, 0, err
		}
		adding := k%2 == 1
		if adding {
			extra := slice.Endpoints[0]
			extra.Addresses = []string{addr.String()}
			slice.Endpoints = append(slice.Endpoints, extra)
		} else {
			slice.Endpoints[0].Addresses = []string{addr.String()}
		}
		want := addr.As4()
		seen := mon.expect(want[:])
		start := time.Now()
		if _, err := client.DiscoveryV1().EndpointSlices("default").Update(ctx, slice, metav1.UpdateOptions{}); err != nil {
			return nil, nil, 0, err
		}
		select {
		case at := <-seen:
			if adding {
				added = append(added, at.Sub(start))
			} else {
				replaced = append(replaced, at.Sub(start))
			}
		case <-time.After(10 * time.Second):
			missed++
		case <-ctx.Done():
			return nil, nil, 0, ctx.Err()
		}
		time.Sleep(1100 * time.Millisecond)
	}
	return replaced, added, missed, nil
}

// nftMonitor reads nftables notifications in the namespace and reports when one holds the expected bytes.
type nftMonitor struct {
	fd     int
	done   chan struct{}
	exited chan struct{}

	mu     sync.Mutex
	want   []byte
	notify chan time.Time
}

func (n *benchNetns) monitorNftables() (*nftMonitor, error) {
	var fd int
	err := n.in(func() (err error) {
		fd, err = unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("netlink socket: %w", err)
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 16<<20)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: 1 << (unix.NFNLGRP_NFTABLES - 1)}); err != nil {
		_ = unix.Close(fd)
		return nil, fmt.Errorf("joining the nftables notification group: %w", err)
	}
	// A read wakes up every 200 ms, so close is noticed.
	_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 200000})
	m := &nftMonitor{fd: fd, done: make(chan struct{}), exited: make(chan struct{})}
	go m.read()
	return m, nil
}

func (m *nftMonitor) read() {
	defer close(m.exited)
	buf := make([]byte, 1<<20)
	for {
		select {
		case <-m.done:
			return
		default:
		}
		k, _, err := unix.Recvfrom(m.fd, buf, 0)
		if err != nil {
			continue // a timeout, or ENOBUFS after a burst: the next change is still seen
		}
		at := time.Now()
		m.mu.Lock()
		if m.want != nil && bytes.Contains(buf[:k], m.want) {
			m.notify <- at
			m.want = nil
		}
		m.mu.Unlock()
	}
}

// expect arms the monitor for one change; the channel gets the time it was seen.
func (m *nftMonitor) expect(b []byte) <-chan time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.want = slices.Clone(b)
	m.notify = make(chan time.Time, 1)
	return m.notify
}

func (m *nftMonitor) close() {
	close(m.done)
	<-m.exited
	_ = unix.Close(m.fd)
}

// reportProxy prints both columns and nodeagent's ratio to kube-proxy (below 1 is better).
func reportProxy(sizes []int, endpoints int, results map[int]map[string]*proxyFigures) {
	fmt.Printf("Service proxy: nodeagent vs kube-proxy v1.37.2 --proxy-mode=nftables, each alone in a network namespace, same apiserver\n")
	fmt.Printf("%-9s %-40s %14s %14s %7s\n", "Services", "figure", "nodeagent", "kube-proxy", "ratio")
	line := func(size int, what string, a, k time.Duration) {
		fmt.Printf("%-9d %-40s %14s %14s %7.2f\n", size, what, a.Round(10*time.Microsecond), k.Round(10*time.Microsecond),
			float64(a)/float64(max(k, 1)))
	}
	for _, size := range sizes {
		a, k := results[size]["nodeagent"], results[size]["kube-proxy"]
		line(size, "full sync, empty table", a.fullSync[0], k.fullSync[0])
		if len(a.fullSync) > 1 {
			line(size, "full sync after a restart (median)", quantile(a.fullSync[1:], 50), quantile(k.fullSync[1:], 50))
		}
		line(size, fmt.Sprintf("endpoint replaced → kernel, p50 (n=%d)", len(a.replaced)), quantile(a.replaced, 50), quantile(k.replaced, 50))
		line(size, "endpoint replaced → kernel, p99", quantile(a.replaced, 99), quantile(k.replaced, 99))
		line(size, fmt.Sprintf("endpoint added → kernel, p50 (n=%d)", len(a.added)), quantile(a.added, 50), quantile(k.added, 50))
		line(size, "endpoint added → kernel, p99", quantile(a.added, 99), quantile(k.added, 99))
		line(size, fmt.Sprintf("TCP connect via VIP, p50 (n=%d)", len(a.connect)), quantile(a.connect, 50), quantile(k.connect, 50))
		line(size, "TCP connect via VIP, p99", quantile(a.connect, 99), quantile(k.connect, 99))
		fmt.Printf("%-9d %-40s %14.2f %14.2f %7.2f\n", size, "CPU seconds to the first full sync", a.cpuFullSync, k.cpuFullSync, a.cpuFullSync/max(k.cpuFullSync, 0.01))
		fmt.Printf("%-9d %-40s %14s %14s %7.2f\n", size, "peak RSS (with children)", mib(a.peakRSS), mib(k.peakRSS), float64(a.peakRSS)/float64(max(k.peakRSS, 1)))
		fmt.Printf("%-9d %-40s %14s %14s %7.2f\n", size, "RSS after the changes", mib(a.steadyRSS), mib(k.steadyRSS), float64(a.steadyRSS)/float64(max(k.steadyRSS, 1)))
		first := "nodeagent"
		if k.order == 1 {
			first = "kube-proxy"
		}
		fmt.Printf("%-9d %s went first; connects alternate between the two tables in blocks of 100\n", size, first)
		if a.missed+k.missed > 0 {
			fmt.Printf("%-9d changes never seen within 10 s: nodeagent %d, kube-proxy %d\n", size, a.missed, k.missed)
		}
	}
	fmt.Printf("(%d endpoints per Service; every Service's slice has them, the probe Service one real backend)\n", endpoints)
}

func mib(b int64) string { return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20)) }

// startBenchCluster brings up a control plane of the benchmark's own (env says where and on which ports)
// and returns an admin client with generous rate limits, the admin kubeconfig, and how to take it down.
func startBenchCluster(repo, runDir string, env []string) (kubernetes.Interface, string, func(), error) {
	if _, err := shell(repo, env, "hack/controlplane.sh up"); err != nil {
		return nil, "", nil, err
	}
	stop := func() { _, _ = shell(repo, append(env, "CLEAN=1"), "hack/controlplane.sh down") }
	kubeconfig := filepath.Join(runDir, "cluster", "pki", "admin.kubeconfig")
	restConfig, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		stop()
		return nil, "", nil, err
	}
	restConfig.QPS, restConfig.Burst = 1000, 2000
	client, err := kubernetes.NewForConfig(restConfig)
	if err != nil {
		stop()
		return nil, "", nil, err
	}
	return client, kubeconfig, stop, nil
}
