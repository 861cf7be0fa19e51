package proxy

import (
	"fmt"
	"net/netip"
	"runtime"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/nodeagent/nodeagent/internal/testutil"
)

// BenchmarkPartialSync is the agent's and the kernel's part of the time from an EndpointSlice change to
// its rule: one Service's endpoints change in a table of many (10 endpoints each), and the transaction
// that writes it commits. In a network namespace of its own; no traffic.
//
//	go test ./pkg/proxy -run '^$' -bench PartialSync -benchtime 200x
func BenchmarkPartialSync(b *testing.B) {
	for _, size := range []int{100, 10000} {
		for _, change := range []string{"replace", "add"} {
			b.Run(fmt.Sprintf("services=%d/%s", size, change), func(b *testing.B) { benchmarkPartialSync(b, size, change) })
		}
	}
}

// BenchmarkFullSync is the agent's and the kernel's part of a first full sync: every Service rendered and
// written in one transaction to an empty table (a new network namespace each time). Its CPU and memory
// profiles show where a full sync's cost goes:
//
//	go test ./pkg/proxy -run '^$' -bench FullSync -benchtime 3x -benchmem -cpuprofile cpu.out -memprofile mem.out
func BenchmarkFullSync(b *testing.B) {
	for _, size := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("services=%d", size), func(b *testing.B) {
			b.ReportAllocs()
			r, ports, _ := benchServices(size)
			for range b.N {
				b.StopTimer()
				tbl := newTable(nftConn(b, newNS(b)))
				b.StartTimer()
				all := make(map[string]*serviceRules, size)
				for i := range ports {
					all[fmt.Sprint(i)] = r.render(ports[i])
				}
				must(b, tbl.fullSync(all))
			}
		})
	}
}

// BenchmarkAppliedRulesHeap reports the heap the table keeps per Service after a full sync of 10,000
// Services of 10 endpoints: the rules it applied, which the next partial sync compares with, and the
// hairpin counts.
//
//	go test ./pkg/proxy -run '^$' -bench AppliedRulesHeap -benchtime 1x
func BenchmarkAppliedRulesHeap(b *testing.B) {
	const size = 10000
	r, ports, _ := benchServices(size)
	for range b.N {
		tbl := newTable(nftConn(b, newNS(b)))
		before := testutil.LiveHeap()
		all := make(map[string]*serviceRules, size)
		for i := range ports {
			all[fmt.Sprint(i)] = r.render(ports[i])
		}
		must(b, tbl.fullSync(all))
		b.ReportMetric(float64(testutil.LiveHeap()-before)/size, "heap-B/service")
		runtime.KeepAlive(tbl)
	}
}

// benchServices is size Services of one port and 10 endpoints each, and a source of new endpoints.
func benchServices(size int) (renderer, [][]servicePort, func() endpoint) {
	r := newRenderer([]netip.Prefix{netip.MustParsePrefix(podCIDR)})
	next := netip.MustParseAddr("10.128.0.0")
	newEndpoint := func() endpoint {
		next = next.Next()
		return endpoint{addr: next, port: 8080, ready: true}
	}
	ports := make([][]servicePort, size)
	for i := range ports {
		sp := servicePort{name: fmt.Sprintf("bench/svc-%d/tcp/http", i), protocol: corev1.ProtocolTCP, family: familyIPv4,
			clusterIP: netip.AddrFrom4([4]byte{10, 96, byte(i >> 8), byte(i)}), port: 80}
		for range 10 {
			sp.endpoints = append(sp.endpoints, newEndpoint())
		}
		ports[i] = []servicePort{sp}
	}
	return r, ports, newEndpoint
}

func benchmarkPartialSync(b *testing.B, size int, change string) {
	tbl := newTable(nftConn(b, newNS(b)))
	r, ports, newEndpoint := benchServices(size)
	all := map[string]*serviceRules{}
	for i := range ports {
		all[fmt.Sprint(i)] = r.render(ports[i])
	}
	must(b, tbl.fullSync(all))

	b.ResetTimer()
	for i := range b.N {
		k := i % size
		sp := &ports[k][0]
		if change == "add" {
			sp.endpoints = append(sp.endpoints, newEndpoint())
		} else {
			sp.endpoints[0] = newEndpoint()
		}
		must(b, tbl.syncServices(map[string]*serviceRules{fmt.Sprint(k): r.render(ports[k])}))
	}
}
