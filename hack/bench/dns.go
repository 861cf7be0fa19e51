package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"
	"github.com/nodeagent/nodeagent/internal/dnsnet"
	agentdns "github.com/nodeagent/nodeagent/pkg/dns"
)

const (
	dnsRunDir      = "/var/run/nodeagent-bench-dns"
	dnsNode        = "bench-dns"
	coreDNSVersion = "v1.15.0"
	// The servers answer on loopback, one port each; the benchmark's upstream too.
	coreDNSPort   = 5301
	agentDNSPort  = 5302
	externalZone  = "example.test."
	externalNames = 200
	// serverCPU and clientCPU keep the server under test on one core and dnsperf on the other.
	serverCPU = "1"
	clientCPU = "0"
	// latencyQPS is the fixed rate at which latency is measured: well under both servers' limits, so the
	// figure is the time to answer, not the time queued.
	latencyQPS = 5000
)

var dnsClusterEnv = []string{
	"NODEAGENT_RUN=" + dnsRunDir, "APISERVER_PORT=28443", "ETCD_PORT=25379", "KCM_PORT=32257",
	"SCHEDULER_PORT=32259", "NODE_NAMES=" + dnsNode,
}

// dnsFigures are one server's results for one kind of name.
type dnsFigures struct {
	qps      []float64       // dnsperf's queries per second at full load, one per round
	latency  []time.Duration // every answer's latency at latencyQPS, all rounds
	lost     int             // queries without an answer at the fixed rate, all rounds
	cpuPerKQ []float64       // server CPU seconds per 1,000 answered queries at full load
}

// runDNSBench compares `nodeagent --dns-only` with CoreDNS (kubernetes, cache and forward plugins) on the
// same API server: dnsperf's throughput and the latency of each answer, for cluster names and for external
// names already in the cache. Each server runs alone, pinned to one core with GOMAXPROCS=1; dnsperf and the
// control plane run on the other core. Every address is on loopback: the upstream is the benchmark's own stub.
func runDNSBench(ctx context.Context, services, seconds, rounds int) error {
	repo, err := os.Getwd()
	if err != nil {
		return err
	}
	if _, err := exec.LookPath("dnsperf"); err != nil {
		if _, err := shell(repo, nil, "DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends dnsperf >/dev/null"); err != nil {
			return err
		}
	}
	agentBin, err := buildAgent(repo, dnsRunDir)
	if err != nil {
		return err
	}
	coreDNSBin, err := buildCoreDNS(repo)
	if err != nil {
		return err
	}
	client, kubeconfig, stopCluster, err := startBenchCluster(repo, dnsRunDir, dnsClusterEnv)
	if err != nil {
		return err
	}
	defer stopCluster()
	// The server under test gets its core to itself: the control plane shares dnsperf's.
	if _, err := shell(repo, nil, "for f in "+filepath.Join(dnsRunDir, "cluster", "pids")+"/*.pid; do taskset -a -p -c "+clientCPU+" $(cat $f) >/dev/null; done"); err != nil {
		return err
	}
	if err := createServices(ctx, client, 0, services, 1); err != nil {
		return err
	}
	stub, err := startExternalStub()
	if err != nil {
		return err
	}
	defer stub.Stop()
	upstream := stub.Addr
	files, err := writeQueryFiles(services)
	if err != nil {
		return err
	}
	corefile := filepath.Join(dnsRunDir, "Corefile")
	if err := writeCorefile(corefile, coreDNSPort, kubeconfig, upstream); err != nil {
		return err
	}
	pinned := []string{"env", "GOMAXPROCS=1", "taskset", "-c", serverCPU}
	peers := []struct {
		name string
		port int
		argv []string
	}{
		{"nodeagent", agentDNSPort, append(slices.Clone(pinned), agentBin, "--dns-only", "--kubeconfig", kubeconfig,
			"--hostname-override", dnsNode, "--dns-address", "127.0.0.1", "--dns-port", strconv.Itoa(agentDNSPort),
			"--dns-upstreams", upstream, "--metrics-bind-address", "127.0.0.1:10249")},
		{"coredns", coreDNSPort, append(slices.Clone(pinned), coreDNSBin, "-conf", corefile)},
	}
	// The agent keeps its DNS sockets in a holder that outlives it (dns.socketHolder); it goes with the bench.
	if control, err := agentdns.HolderControl(net.JoinHostPort("127.0.0.1", strconv.Itoa(agentDNSPort))); err == nil {
		defer agentdns.StopHolder(control)
	}
	results := map[string]map[string]*dnsFigures{}
	for _, p := range peers {
		results[p.name] = map[string]*dnsFigures{"cluster": {}, "external": {}}
	}
	for round := range rounds {
		for _, p := range peers {
			fmt.Fprintf(os.Stderr, "bench: round %d, %s\n", round+1, p.name)
			proc, err := startProcess(p.name, filepath.Join(dnsRunDir, p.name+".log"), p.argv...)
			if err != nil {
				return err
			}
			err = benchDNSServer(ctx, proc, p.port, files, seconds, results[p.name], services)
			proc.stop()
			if err != nil {
				return fmt.Errorf("%s: %w (log: %s)", p.name, err, filepath.Join(dnsRunDir, p.name+".log"))
			}
		}
	}
	reportDNS(services, seconds, rounds, results)
	return nil
}

// buildCoreDNS installs CoreDNS from its Go module once; its binary is cached like the Kubernetes ones.
func buildCoreDNS(repo string) (string, error) {
	out, err := shell(repo, nil, "source hack/lib/common.sh && echo $NODEAGENT_CACHE")
	if err != nil {
		return "", err
	}
	dir := filepath.Join(strings.TrimSpace(out), "coredns-"+coreDNSVersion)
	bin := filepath.Join(dir, "coredns")
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	fmt.Fprintf(os.Stderr, "bench: building CoreDNS %s from its Go module\n", coreDNSVersion)
	if _, err := shell(repo, nil, "GOBIN="+dir+" go install github.com/coredns/coredns@"+coreDNSVersion); err != nil {
		return "", err
	}
	return bin, nil
}

// writeCorefile writes the Corefile of CoreDNS as a cluster runs it (kubernetes, cache and forward plugins,
// and its metrics), answering on loopback port port from the API server of kubeconfig and forwarding the
// rest to upstream.
func writeCorefile(path string, port int, kubeconfig, upstream string) error {
	return os.WriteFile(path, []byte(fmt.Sprintf(`.:%d {
    bind 127.0.0.1
    errors
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig %s
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }
    prometheus 127.0.0.1:9253
    cache 30
    forward . %s
}
`, port, kubeconfig, upstream)), 0o644)
}

// startExternalStub answers every name under externalZone with an address and a one-hour TTL, on loopback.
func startExternalStub() (*dnsnet.Stub, error) {
	return dnsnet.StartStub(func(req, resp *dns.Msg) {
		if q := req.Question[0]; dns.IsSubDomain(externalZone, strings.ToLower(q.Name)) && q.Qtype == dns.TypeA {
			resp.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 3600},
				A: net.IPv4(192, 0, 2, byte(len(q.Name)))}}
		} else {
			resp.Rcode = dns.RcodeNameError
		}
	})
}

// writeQueryFiles writes dnsperf's inputs: every Service's name, and the external names.
func writeQueryFiles(services int) (map[string]string, error) {
	files := map[string]string{"cluster": filepath.Join(dnsRunDir, "cluster.queries"), "external": filepath.Join(dnsRunDir, "external.queries")}
	var cluster, external strings.Builder
	for i := range services {
		fmt.Fprintf(&cluster, "svc-%d.default.svc.cluster.local A\n", i)
	}
	for i := range externalNames {
		fmt.Fprintf(&external, "host-%d.%s A\n", i, externalZone)
	}
	if err := os.WriteFile(files["cluster"], []byte(cluster.String()), 0o644); err != nil {
		return nil, err
	}
	return files, os.WriteFile(files["external"], []byte(external.String()), 0o644)
}

// benchDNSServer waits until the server answers the last Service's name, fills its cache with one pass
// over the external names, then measures each kind of name: throughput at full load, then latency at a
// fixed rate.
func benchDNSServer(ctx context.Context, proc *process, port int, files map[string]string, seconds int,
	figures map[string]*dnsFigures, services int) error {
	server := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	last := fmt.Sprintf("svc-%d.default.svc.cluster.local.", services-1)
	if err := poll(ctx, time.Minute, func() bool { return answers(server, last) }); err != nil {
		return fmt.Errorf("never answered %s: %w", last, err)
	}
	if _, err := dnsperf(port, files["external"], "-n", "1"); err != nil {
		return err
	}
	for _, kind := range []string{"cluster", "external"} {
		cpuBefore, err := proc.cpuSeconds()
		if err != nil {
			return err
		}
		out, err := dnsperf(port, files[kind], "-l", strconv.Itoa(seconds), "-c", "20", "-q", "500")
		if err != nil {
			return err
		}
		cpuAfter, err := proc.cpuSeconds()
		if err != nil {
			return err
		}
		qps, completed, _, err := parseDNSPerf(out)
		if err != nil {
			return err
		}
		f := figures[kind]
		f.qps = append(f.qps, qps)
		// Queries lost at full load (outstanding when the time ran out, or shed by a saturated socket) are
		// not counted: the fixed-rate run below says whether any are dropped.
		if completed > 0 {
			f.cpuPerKQ = append(f.cpuPerKQ, (cpuAfter-cpuBefore)/float64(completed)*1000)
		}
		out, err = dnsperf(port, files[kind], "-l", strconv.Itoa(seconds), "-Q", strconv.Itoa(latencyQPS), "-v")
		if err != nil {
			return err
		}
		latencies, lost, err := parseLatencies(out)
		if err != nil {
			return err
		}
		f.latency = append(f.latency, latencies...)
		f.lost += lost // at a rate both servers keep up with, a lost query is a dropped one
	}
	return nil
}

func answers(server, name string) bool {
	req := new(dns.Msg)
	req.SetQuestion(name, dns.TypeA)
	resp, _, err := (&dns.Client{Timeout: time.Second}).Exchange(req, server)
	return err == nil && resp.Rcode == dns.RcodeSuccess && len(resp.Answer) > 0
}

// dnsperf runs dnsperf on the client core against a loopback port and returns its report.
func dnsperf(port int, file string, args ...string) (string, error) {
	argv := append([]string{"-c", clientCPU, "dnsperf", "-s", "127.0.0.1", "-p", strconv.Itoa(port), "-d", file}, args...)
	out, err := exec.Command("taskset", argv...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("dnsperf %v: %w\n%s", args, err, out)
	}
	return string(out), nil
}

// parseDNSPerf reads dnsperf's summary: queries per second, queries completed and queries lost.
func parseDNSPerf(out string) (qps float64, completed, lost int, err error) {
	var found int
	for _, line := range strings.Split(out, "\n") {
		fields := strings.Fields(line)
		switch {
		case strings.HasPrefix(strings.TrimSpace(line), "Queries per second:") && len(fields) >= 4:
			qps, err = strconv.ParseFloat(fields[3], 64)
			found++
		case strings.HasPrefix(strings.TrimSpace(line), "Queries completed:") && len(fields) >= 3:
			completed, err = strconv.Atoi(fields[2])
			found++
		case strings.HasPrefix(strings.TrimSpace(line), "Queries lost:") && len(fields) >= 3:
			lost, err = strconv.Atoi(fields[2])
			found++
		}
		if err != nil {
			return 0, 0, 0, fmt.Errorf("dnsperf line %q: %w", line, err)
		}
	}
	if found != 3 {
		return 0, 0, 0, fmt.Errorf("no summary in dnsperf's output:\n%s", out)
	}
	return qps, completed, lost, nil
}

// parseLatencies reads the latency of each answer from dnsperf -v: lines "> RCODE name type seconds".
func parseLatencies(out string) ([]time.Duration, int, error) {
	var latencies []time.Duration
	scanner := bufio.NewScanner(strings.NewReader(out))
	for scanner.Scan() {
		fields := strings.Fields(scanner.Text())
		if len(fields) < 3 || fields[0] != ">" {
			continue
		}
		s, err := strconv.ParseFloat(fields[len(fields)-1], 64)
		if err != nil {
			continue
		}
		latencies = append(latencies, time.Duration(s*float64(time.Second)))
	}
	_, _, lost, err := parseDNSPerf(out)
	if err != nil {
		return nil, 0, err
	}
	if len(latencies) == 0 {
		return nil, 0, fmt.Errorf("no per-query latencies in dnsperf -v output")
	}
	return latencies, lost, nil
}

func reportDNS(services, seconds, rounds int, results map[string]map[string]*dnsFigures) {
	fmt.Printf("Cluster DNS: nodeagent --dns-only vs CoreDNS %s (kubernetes, cache, forward, prometheus), each on one core (GOMAXPROCS=1),\n"+
		"dnsperf 2.10 on the other; %d Services; %d rounds of %d s per figure; latency at %d queries/s\n",
		coreDNSVersion, services, rounds, seconds, latencyQPS)
	fmt.Printf("%-9s %-34s %12s %12s %7s\n", "names", "figure", "nodeagent", "coredns", "ratio")
	for _, kind := range []string{"cluster", "external"} {
		a, c := results["nodeagent"][kind], results["coredns"][kind]
		row := func(figure string, av, cv float64, format func(float64) string) {
			ratio := "-"
			if cv > 0 {
				ratio = fmt.Sprintf("%.2f", av/cv)
			}
			fmt.Printf("%-9s %-34s %12s %12s %7s\n", kind, figure, format(av), format(cv), ratio)
		}
		qpsFmt := func(v float64) string { return fmt.Sprintf("%.0f", v) }
		usFmt := func(v float64) string { return fmt.Sprintf("%.0fµs", v) }
		row("queries/s at full load (median)", median(a.qps), median(c.qps), qpsFmt)
		row("latency p50", float64(quantile(a.latency, 50).Microseconds()), float64(quantile(c.latency, 50).Microseconds()), usFmt)
		row("latency p99", float64(quantile(a.latency, 99).Microseconds()), float64(quantile(c.latency, 99).Microseconds()), usFmt)
		row("server CPU ms per 1,000 queries", median(a.cpuPerKQ)*1000, median(c.cpuPerKQ)*1000, func(v float64) string { return fmt.Sprintf("%.1f", v) })
		row(fmt.Sprintf("queries lost at %d/s", latencyQPS), float64(a.lost), float64(c.lost), qpsFmt)
	}
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}
