package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"
)

// idleResult is one node agent's cost while its pods run and nothing changes.
type idleResult struct {
	calls      map[string]int64 // CRI calls by method during the window
	cpuSeconds float64
	window     time.Duration
}

// runIdle measures a node agent at rest: N running pods, no change, for a fixed window; the CRI calls it
// makes (counted by a proxy on the runtime's socket) and its CPU. nodeagent and the kubelet run one after
// the other, each through the same proxy.
func runIdle(ctx context.Context, pods int, window time.Duration, runtimeName string) error {
	c, err := startPodCluster(ctx, runtimeName)
	if err != nil {
		return err
	}
	defer c.down()
	socket := filepath.Join(runDir, "cri-proxy.sock")
	proxy, err := startCRIProxy(socket, c.rt.endpoint)
	if err != nil {
		return err
	}
	defer proxy.stop()
	endpoint := "unix://" + socket
	agent, err := idleNode(ctx, c, proxy, agentNode, pods, window, func() (*process, error) { return c.startAgent(endpoint) })
	if err != nil {
		return fmt.Errorf("nodeagent: %w", err)
	}
	kubelet, err := idleNode(ctx, c, proxy, kubeletNode, pods, window, func() (*process, error) { return c.startKubelet(endpoint) })
	if err != nil {
		return fmt.Errorf("kubelet: %w", err)
	}
	fmt.Printf("idle: %d running pods, nothing changing, %s window per node, on %s; CRI calls counted at a proxy on the runtime's socket\n",
		pods, window, c.rt.description)
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 3, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "\tnodeagent\tkubelet v1.37.2\tratio\t")
	aCalls, aTop := summarizeCalls(agent.calls)
	kCalls, kTop := summarizeCalls(kubelet.calls)
	aRate, kRate := float64(aCalls)/agent.window.Seconds(), float64(kCalls)/kubelet.window.Seconds()
	fmt.Fprintf(tw, "CRI calls per second\t%.1f\t%.1f\t%.2f\t\n", aRate, kRate, aRate/kRate)
	aCPU, kCPU := agent.cpuSeconds/agent.window.Minutes(), kubelet.cpuSeconds/kubelet.window.Minutes()
	fmt.Fprintf(tw, "CPU seconds per minute\t%.2f\t%.2f\t%.2f\t\n", aCPU, kCPU, aCPU/kCPU)
	_ = tw.Flush()
	fmt.Printf("nodeagent's calls: %s\nkubelet's calls: %s\n", strings.Join(aTop, ", "), strings.Join(kTop, ", "))
	return nil
}

// idleNode starts a node's agent, waits for the Node to be Ready and its pods to run, lets it settle, then
// counts over the window; it deletes the pods and stops the agent again.
func idleNode(ctx context.Context, c *podCluster, proxy *criProxy, node string, pods int, window time.Duration,
	start func() (*process, error)) (idleResult, error) {
	var res idleResult
	p, err := startReadyNode(ctx, c.client, node, start)
	if err != nil {
		return res, err
	}
	defer p.stop()
	if _, _, err := createReady(ctx, c.client, node, "idle", pods); err != nil {
		return res, err
	}
	// Start-up work (status posts, first probes, log links) is done well within this.
	select {
	case <-time.After(20 * time.Second):
	case <-ctx.Done():
		return res, ctx.Err()
	}
	before, err := p.cpuSeconds()
	if err != nil {
		return res, err
	}
	proxy.take()
	began := time.Now()
	select {
	case <-time.After(window):
	case <-ctx.Done():
		return res, ctx.Err()
	}
	res.calls, res.window = proxy.take(), time.Since(began)
	after, err := p.cpuSeconds()
	if err != nil {
		return res, err
	}
	res.cpuSeconds = after - before
	fmt.Fprintf(os.Stderr, "bench: %s idle: %d CRI calls, %.2f CPU s in %s\n", node, sumCalls(res.calls), res.cpuSeconds, res.window.Round(time.Second))
	return res, deleteBenchPods(ctx, c.client, node, "idle")
}

func sumCalls(calls map[string]int64) int64 {
	total, _ := summarizeCalls(calls)
	return total
}
