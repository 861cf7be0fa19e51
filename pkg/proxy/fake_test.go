package proxy

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/nftables"
	corev1 "k8s.io/api/core/v1"

	"github.com/nodeagent/nodeagent/internal/nft"
)

// Both connections the proxy writes through satisfy Conn.
var (
	_ Conn = (*nftables.Conn)(nil)
	_ Conn = (*nft.Fake)(nil)
)

var agentTable = &nftables.Table{Name: TableName, Family: nftables.TableFamilyINet}

// fixture builds Services with every feature the renderer has, and changes them at random.
type fixture struct {
	rnd      *rand.Rand
	renderer renderer
	next     netip.Addr
	ports    map[string][]servicePort // by Service key
}

func newFixture(seed uint64) *fixture {
	return &fixture{
		rnd:      rand.New(rand.NewPCG(seed, seed)),
		renderer: renderer{localCIDRs: []netip.Prefix{netip.MustParsePrefix(podCIDR), netip.MustParsePrefix(podCIDR6)}},
		next:     netip.MustParseAddr("10.244.0.10"),
		ports:    map[string][]servicePort{},
	}
}

func (f *fixture) endpoint() endpoint {
	f.next = f.next.Next()
	return endpoint{addr: f.next, port: 8080, ready: true, serving: true, local: f.rnd.IntN(2) == 0}
}

// service i is one of a few kinds, by i: plain, NodePort with Local external policy, affinity, load balancer
// with source ranges, internal policy Local, dual-stack.
func (f *fixture) service(i int) []servicePort {
	sp := servicePort{name: fmt.Sprintf("ns/svc-%d/tcp/http", i), protocol: corev1.ProtocolTCP, family: familyIPv4,
		clusterIP: netip.AddrFrom4([4]byte{10, 96, 0, byte(i)}), port: 80}
	switch i % 6 {
	case 1:
		sp.nodePort, sp.externalLocal = uint16(30000+i), true
	case 2:
		sp.affinitySeconds = 10800
	case 3:
		lb := netip.AddrFrom4([4]byte{192, 0, 2, byte(i)})
		sp.nodePort, sp.externalAddrs, sp.firewalledAddrs = uint16(30000+i), []netip.Addr{lb}, []netip.Addr{lb}
		sp.sourceRanges = []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}
	case 4:
		sp.internalLocal = true
		sp.protocol = corev1.ProtocolUDP
		sp.name = fmt.Sprintf("ns/svc-%d/udp/dns", i)
	}
	for range f.rnd.IntN(4) {
		sp.endpoints = append(sp.endpoints, f.endpoint())
	}
	ports := []servicePort{sp}
	if i%6 == 5 {
		v6 := sp
		v6.family, v6.clusterIP = familyIPv6, netip.MustParseAddr(fmt.Sprintf("fd00:96::%x", i))
		v6.endpoints = []endpoint{{addr: netip.MustParseAddr(fmt.Sprintf("fd00:244::%x", 0x100+i)), port: 8080, ready: true}}
		ports = append(ports, v6)
	}
	return ports
}

func (f *fixture) rules(key string) *serviceRules {
	if f.ports[key] == nil {
		return nil
	}
	return f.renderer.render(f.ports[key])
}

func (f *fixture) all() map[string]*serviceRules {
	out := map[string]*serviceRules{}
	for key := range f.ports {
		out[key] = f.rules(key)
	}
	return out
}

// change changes one Service at random (its endpoints, or it goes, or comes back) and returns its key.
func (f *fixture) change(services int) string {
	i := f.rnd.IntN(services)
	key := fmt.Sprint(i)
	ports := f.ports[key]
	switch op := f.rnd.IntN(5); {
	case ports == nil:
		f.ports[key] = f.service(i)
	case op == 0:
		delete(f.ports, key)
	case op == 1 && len(ports[0].endpoints) > 0:
		ports[0].endpoints = ports[0].endpoints[1:]
	case op == 2 && len(ports[0].endpoints) > 0:
		ports[0].endpoints = append([]endpoint{f.endpoint()}, ports[0].endpoints[1:]...)
	case op == 3 && len(ports[0].endpoints) > 0:
		terminating := ports[0].endpoints[0]
		terminating.ready, terminating.terminating = false, true // still serving
		ports[0].endpoints = append([]endpoint{terminating}, ports[0].endpoints[1:]...)
	default:
		ports[0].endpoints = append(slices.Clone(ports[0].endpoints), f.endpoint())
	}
	return key
}

// Partial syncs end with the table a full sync of the same Services writes, in what a packet can reach:
// the proxy's incremental path (element changes, map updates in place, retired maps and chains) checked
// against its simplest one, through hundreds of random changes, without root.
func TestPartialSyncsEndWhereAFullSyncWould(t *testing.T) {
	const services, changes = 24, 400
	f := newFixture(1)
	for i := range services / 2 {
		f.ports[fmt.Sprint(i)] = f.service(i)
	}
	incremental := nft.NewFake()
	tbl := newTable(incremental)
	must(t, tbl.fullSync(f.all()))
	for n := range changes {
		key := f.change(services)
		must(t, tbl.syncServices(map[string]*serviceRules{key: f.rules(key)}))
		if n%50 != 49 {
			continue
		}
		full := nft.NewFake()
		must(t, newTable(full).fullSync(f.all()))
		got, want := reachable(t, incremental), reachable(t, full)
		if got != want {
			t.Fatalf("after %d changes the partial syncs left\n%s\na full sync writes\n%s", n+1, got, want)
		}
	}
}

// The Fake holds what the kernel holds after the same syncs, for every kind of rule the proxy writes, so
// the test above says something about the kernel. Needs root for the kernel's half.
func TestTheFakeHoldsWhatTheKernelHolds(t *testing.T) {
	kernel := newTable(nftConn(t, newNS(t)))
	fake := newTable(nft.NewFake())
	kernel.nodePortIPs = []netip.Addr{netip.MustParseAddr(nodeIP), netip.MustParseAddr(nodeIP6)}
	fake.nodePortIPs = kernel.nodePortIPs
	f := newFixture(2)
	for i := range 12 {
		f.ports[fmt.Sprint(i)] = f.service(i)
	}
	must(t, kernel.fullSync(f.all()))
	must(t, fake.fullSync(f.all()))
	compareDumps(t, "after a full sync", kernel.conn, fake.conn)
	for range 40 {
		key := f.change(12)
		changed := map[string]*serviceRules{key: f.rules(key)}
		must(t, kernel.syncServices(changed))
		must(t, fake.syncServices(changed))
	}
	compareDumps(t, "after 40 partial syncs", kernel.conn, fake.conn)
}

// compareDumps compares what a packet can reach: the proxy names its endpoint maps in the order of a Go map.
// google/nftables v0.3.0 does not read byteorder expressions back from the kernel, so the fake's are left out.
func compareDumps(t *testing.T, when string, kernel, fake Conn) {
	t.Helper()
	k := reachable(t, kernel.(nft.Reader))
	f := byteorder.ReplaceAllString(reachable(t, fake.(nft.Reader)), "")
	if k != f {
		t.Fatalf("%s the kernel holds\n%s\nthe fake holds\n%s", when, k, f)
	}
}

var (
	chainRef  = regexp.MustCompile(`(?:jump|goto) ([^\s;]+)`)
	setRef    = regexp.MustCompile(`@([^\s;]+)`)
	byteorder = regexp.MustCompile(`byteorder [^;]*; `)
)

// reachable is the table's dump cut down to what a packet can reach from the hooked chains, with each
// endpoint map written out in place of its name: objects waiting to be deleted, and the names the proxy
// gives its maps, do not show.
func reachable(t *testing.T, conn nft.Reader) string {
	t.Helper()
	d, err := nft.Dump(conn, agentTable)
	must(t, err)
	chains, sets := map[string]*[]string{}, map[string]*[]string{}
	var queue []string // chains to visit, the hooked ones first
	var cur *[]string
	for _, l := range strings.Split(d, "\n") {
		switch {
		case strings.HasPrefix(l, "\tchain "):
			name, hook, _ := strings.Cut(strings.TrimPrefix(l, "\tchain "), " ")
			if hook != "" {
				queue = append(queue, name)
			}
			cur = &[]string{}
			chains[name] = cur
		case strings.HasPrefix(l, "\tset "):
			name, _, _ := strings.Cut(strings.TrimPrefix(l, "\tset "), " ")
			cur = &[]string{}
			sets[name] = cur
		case strings.HasPrefix(l, "\t\t"):
			*cur = append(*cur, strings.TrimSpace(l))
		}
	}
	seenChains, seenSets := map[string]bool{}, map[string]bool{}
	follow := func(line string) {
		for _, m := range chainRef.FindAllStringSubmatch(line, -1) {
			queue = append(queue, m[1])
		}
	}
	var out []string
	for len(queue) > 0 {
		name := queue[0]
		queue = queue[1:]
		if seenChains[name] {
			continue
		}
		seenChains[name] = true
		out = append(out, "chain "+name)
		if chains[name] == nil {
			t.Fatalf("a rule or element points at chain %q, which is not in\n%s", name, d)
		}
		for _, rule := range *chains[name] {
			follow(rule)
			rule = setRef.ReplaceAllStringFunc(rule, func(ref string) string {
				set := ref[1:]
				for _, e := range *sets[set] {
					follow(e)
				}
				if strings.HasPrefix(set, endpointMapPrefix) {
					return "@{" + strings.Join(*sets[set], ", ") + "}"
				}
				seenSets[set] = true
				return ref
			})
			out = append(out, "\t"+rule)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(seenSets)) {
		out = append(out, "set "+name)
		for _, e := range *sets[name] {
			out = append(out, "\t"+e)
		}
	}
	return strings.Join(out, "\n")
}
