// Command bench compares nodeagent with its upstream peer on this machine, side by side in one run, and
// prints both columns and their ratio (these machines are noisy: ratios mean more than absolute figures).
//
//	go run ./hack/bench pods [--pods 30,110] [--rounds 3] [--runtime containerd|containerd2]
//
// pods: against a local control plane of its own (hack/controlplane.sh under /var/run/nodeagent-bench),
// creates N pods at once on a node run by nodeagent, then on a node run by the kubelet v1.37 built by
// hack/build-k8s.sh, both on this machine's containerd, and reports the time from each pod's creation to its
// Running-and-Ready status seen by a watch (p50, p99), with the agent's CPU seconds and peak RSS for the burst.
// Between the two it starts the same pods itself straight through CRI (the runtime alone, the floor for any
// node agent). The two nodes run one after the other, never together: a kubelet kills every pod in its
// runtime that it does not own. Run it as root after `make test` or `make images` has set up the node.
//
// idle: on the same cluster as pods, runs N pods (110, the maxPods default) on each node and, once they run
// and nothing changes, counts for a window the CRI calls each agent makes (at a gRPC proxy of the
// benchmark's in front of the runtime's socket, the same for both) and its CPU.
//
// footprint: on the same cluster as pods (with the API server's audit log on), creates N Services of 10
// endpoints each, then runs each side in turn with M pods (110) until they run, settles 30 s and measures an
// idle window: nodeagent with every component (kubelet, proxy, DNS, log shipper to a receiver on loopback),
// then the kubelet, kube-proxy --proxy-mode=nftables and CoreDNS (one replica, as a process on loopback)
// together. Per daemon: peak RSS (VmHWM, or the sampled peak of it and its children), steady RSS, idle CPU
// seconds per minute, and from the audit log the watches it holds open and its requests per minute. The
// proxies program the host's nftables (each side's table is removed after it); DNS upstreams are a stub on
// loopback.
//
// proxy: against a control plane of its own (NODEAGENT_RUN=/var/run/nodeagent-bench-proxy), creates N
// selectorless Services with an EndpointSlice of M endpoints each, then runs `nodeagent --proxy-only` and
// kube-proxy v1.37 --proxy-mode=nftables one after the other, each alone in a network namespace of the
// benchmark's, and reports the full sync time (the proxies' own kubeproxy_sync_full_proxy_rules_duration
// metric), the time from an EndpointSlice update to the kernel's notification of the new rule, and TCP
// connect times through a VIP to a backend inside the namespace. No traffic leaves the namespace.
//
// logs: writes container logs in the kubelet's layout, then measures the raw limit (the same bytes read
// from disk and written to a loopback socket by a minimal loop), `nodeagent --logs-only` shipping them to
// a forward receiver on loopback that acknowledges every chunk (test/forwardspec), the OpenTelemetry
// Collector (hack/otelcol: filelog receiver with the container parser, batch processor, otlphttp exporter) on
// the same files to an OTLP receiver of the benchmark's that acknowledges every request, and the raw limit
// again writing as many bytes as the agent sent (the records with their metadata), alternating; then writes
// at a steady rate and reports the agent's CPU. No cluster: records carry what the log paths say.
//
// logs-ab: the log shipper's change in minutes: the agent built from the repository and the agent binaries
// named after the flags (built before the change) ship the same files in turn, each run followed by the
// raw limit for the bytes it sent; per agent the median rate, its ratio to that limit, its CPU per GB and
// its rate against the repository's agent within each round.
//
// nodeapi: on the same cluster as pods, runs one pod writing a log line every 20 ms on each node and times,
// against each node's API over loopback with the API server's kubelet client certificate, an exec of `true`
// (N of them, one after the other) and the delay of a followed log line (from the runtime's timestamp to the
// line's arrival).
//
// dns: against a control plane of its own (NODEAGENT_RUN=/var/run/nodeagent-bench-dns) with N Services,
// runs `nodeagent --dns-only` and CoreDNS v1.15 (kubernetes, cache, forward) one after the other on
// loopback, each pinned to one core with GOMAXPROCS=1, and reports dnsperf's queries per second at full
// load and each answer's latency at a fixed rate, for cluster names and for external names in the cache;
// external names come from a stub upstream of the benchmark's on loopback.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const usage = `usage: bench pods [--pods N[,N...]] [--rounds R] [--runtime containerd|containerd2]
       bench idle [--pods 110] [--seconds 60] [--runtime containerd|containerd2]
       bench proxy [--services 10,1000,10000] [--endpoints 10] [--changes 40] [--connects 2000] [--rounds 3] [--first nodeagent|kube-proxy]
       bench footprint [--services 10000] [--pods 110] [--seconds 60] [--runtime containerd|containerd2] [--first nodeagent|peers] [--agent-only] [--profile]
       bench nodeapi [--execs 200] [--lines 500] [--runtime containerd|containerd2]
       bench dns [--services 1000] [--seconds 10] [--rounds 3]
       bench logs [--containers 8] [--megabytes 1024] [--line-bytes 200] [--rounds 5] [--steady-mbps 50] [--steady-seconds 20]
       bench logs-ab [--containers 8] [--megabytes 1024] [--line-bytes 200] [--rounds 5] AGENT_BINARY...`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(2)
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	ctx, cancelTimeout := context.WithTimeout(ctx, 45*time.Minute)
	defer cancelTimeout()
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	var run func() error
	switch os.Args[1] {
	case "pods":
		pods := fs.String("pods", "30", "pods created at once per round; several sizes comma-separated (30,110)")
		rounds := fs.Int("rounds", 3, "rounds per node")
		runtime := fs.String("runtime", "containerd", "containerd (the machine's 1.6) or containerd2 (v2, hack/setup-containerd2.sh)")
		profile := fs.Bool("profile", false, "run nodeagent with --profiling and save a CPU profile of its first burst of each size into "+runDir)
		run = func() error {
			sizes, err := sizeList("--pods", *pods, 110)
			if err != nil {
				return err
			}
			return runPods(ctx, sizes, *rounds, *runtime, *profile)
		}
	case "idle":
		pods := fs.Int("pods", 110, "running pods (110 is the maxPods default)")
		seconds := fs.Int("seconds", 60, "length of the counted window per node")
		runtime := fs.String("runtime", "containerd", "containerd (the machine's 1.6) or containerd2 (v2, hack/setup-containerd2.sh)")
		run = func() error {
			return runIdle(ctx, max(*pods, 1), time.Duration(max(*seconds, 1))*time.Second, *runtime)
		}
	case "footprint":
		services := fs.Int("services", 10000, "Services of 10 endpoints each in the cluster")
		pods := fs.Int("pods", 110, "running pods (110 is the maxPods default)")
		seconds := fs.Int("seconds", 60, "length of the idle window per side")
		runtime := fs.String("runtime", "containerd", "containerd (the machine's 1.6) or containerd2 (v2, hack/setup-containerd2.sh)")
		first := fs.String("first", "nodeagent", "the side that goes first: nodeagent or peers")
		agentOnly := fs.Bool("agent-only", false, "measure nodeagent alone (no peers, no report: its figures on stderr)")
		profile := fs.Bool("profile", false, "run nodeagent with --profiling and save its heap profile at rest into "+runDir)
		run = func() error {
			if *first != "nodeagent" && *first != "peers" {
				return fmt.Errorf("--first %q: want nodeagent or peers", *first)
			}
			return runFootprint(ctx, max(*services, 2), max(*pods, 1), time.Duration(max(*seconds, 1))*time.Second, *runtime,
				*first, *agentOnly, *profile)
		}
	case "nodeapi":
		execs := fs.Int("execs", 200, "execs timed per node")
		lines := fs.Int("lines", 500, "followed log lines timed per node")
		runtime := fs.String("runtime", "containerd", "containerd (the machine's 1.6) or containerd2 (v2, hack/setup-containerd2.sh)")
		run = func() error { return runNodeAPIBench(ctx, max(*execs, 1), max(*lines, 1), *runtime) }
	case "proxy":
		services := fs.String("services", "10,1000,10000", "numbers of Services, ascending")
		endpoints := fs.Int("endpoints", 10, "endpoints per Service")
		changes := fs.Int("changes", 40, "EndpointSlice changes timed per proxy and size, of each kind (replace, add)")
		connects := fs.Int("connects", 2000, "TCP connections timed through the probe VIP per proxy and size")
		rounds := fs.Int("rounds", 3, "proxy starts per size: one on an empty table, the rest restarts")
		firstPeer := fs.String("first", "nodeagent", "the proxy that goes first at the first size (nodeagent or kube-proxy); the order alternates with the size")
		run = func() error {
			if *firstPeer != "nodeagent" && *firstPeer != "kube-proxy" {
				return fmt.Errorf("--first %q: want nodeagent or kube-proxy", *firstPeer)
			}
			sizes, err := sizeList("--services", *services, 30000)
			if err != nil {
				return err
			}
			return runProxyBench(ctx, sizes, *endpoints, *changes, *connects, max(*rounds, 1), *firstPeer)
		}
	case "dns":
		services := fs.Int("services", 1000, "Services in the cluster, each queried by name")
		seconds := fs.Int("seconds", 10, "length of each dnsperf run")
		rounds := fs.Int("rounds", 3, "runs per server, alternating")
		run = func() error { return runDNSBench(ctx, max(*services, 1), max(*seconds, 1), max(*rounds, 1)) }
	case "logs":
		containers := fs.Int("containers", 8, "container log files")
		megabytes := fs.Int64("megabytes", 1024, "MiB of logs in all")
		lineBytes := fs.Int("line-bytes", 200, "bytes per CRI line")
		rounds := fs.Int("rounds", 5, "rounds of nodeagent, the limits beside it and the Collector")
		steadyMBps := fs.Int("steady-mbps", 50, "MB/s written for the CPU figure")
		steadySeconds := fs.Int("steady-seconds", 20, "seconds of writing for the CPU figure")
		profile := fs.Bool("profile", false, "run nodeagent with --profiling and save a CPU profile of its run into "+logsRunDir)
		run = func() error {
			return runLogsBench(ctx, max(*containers, 1), max(*megabytes, 1), max(*lineBytes, 80), max(*rounds, 1), max(*steadyMBps, 1),
				max(*steadySeconds, 1), *profile)
		}
	case "limit-writer": // runLimit's child, not for people
		run = func() error { return limitWriterMain(fs.Args()) }
	case "logs-ab":
		containers := fs.Int("containers", 8, "container log files")
		megabytes := fs.Int64("megabytes", 1024, "MiB of logs in all")
		lineBytes := fs.Int("line-bytes", 200, "bytes per CRI line")
		rounds := fs.Int("rounds", 5, "runs of each agent, in turn")
		run = func() error {
			return runLogsAB(ctx, fs.Args(), max(*containers, 1), max(*megabytes, 1), max(*lineBytes, 80), max(*rounds, 1))
		}
	default:
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(2)
	}
	_ = fs.Parse(os.Args[2:])
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		os.Exit(1)
	}
}

// sizeList parses a flag's comma-separated ascending numbers from 1 to most.
func sizeList(flag, value string, most int) ([]int, error) {
	var sizes []int
	for _, f := range strings.Split(value, ",") {
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 || n > most || (len(sizes) > 0 && n <= sizes[len(sizes)-1]) {
			return nil, fmt.Errorf("%s %q: want ascending numbers from 1 to %d", flag, value, most)
		}
		sizes = append(sizes, n)
	}
	return sizes, nil
}
