// Command bench compares nodeagent with its upstream peer on this machine, side by side in one run, and
// prints both columns and their ratio (these machines are noisy: ratios mean more than absolute figures).
//
//	go run ./hack/bench pods [--pods 30] [--rounds 3] [--runtime containerd|containerd2]
//
// pods: against a local control plane of its own (hack/controlplane.sh under /var/run/nodeagent-bench),
// creates N pods at once on a node run by nodeagent, then on a node run by the kubelet v1.37 built by
// hack/build-k8s.sh, both on this machine's containerd, and reports the time from each pod's creation to its
// Running-and-Ready status seen by a watch (p50, p99), with the agent's CPU seconds and peak RSS for the burst.
// The two nodes run one after the other, never together: a kubelet kills every pod in its runtime that it
// does not own. Run it as root after `make test` or `make images` has set up the node.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 || os.Args[1] != "pods" {
		fmt.Fprintln(os.Stderr, "usage: bench pods [--pods N] [--rounds R] [--runtime containerd|containerd2]")
		os.Exit(2)
	}
	fs := flag.NewFlagSet("pods", flag.ExitOnError)
	pods := fs.Int("pods", 30, "pods created at once per round")
	rounds := fs.Int("rounds", 3, "rounds per node")
	runtime := fs.String("runtime", "containerd", "containerd (the machine's 1.6) or containerd2 (v2, hack/setup-containerd2.sh)")
	_ = fs.Parse(os.Args[2:])

	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	ctx, cancelTimeout := context.WithTimeout(ctx, 30*time.Minute)
	defer cancelTimeout()
	if err := runPods(ctx, *pods, *rounds, *runtime); err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		os.Exit(1)
	}
}
