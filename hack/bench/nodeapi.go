package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/remotecommand"
)

// nodeAPIResult is one node's node API latencies.
type nodeAPIResult struct {
	exec   []time.Duration // a whole exec of `true`: request, upgrade, the runtime's exec, the exit status
	follow []time.Duration // from the runtime writing a log line (its CRI timestamp) to the line reaching a follower
}

// The ports the two node APIs listen on (loopback for the kubelet; the agent's default address).
const (
	agentNodeAPI   = "https://127.0.0.1:10250"
	kubeletNodeAPI = "https://127.0.0.1:20250"
)

// runNodeAPIBench measures what a user of kubectl exec and kubectl logs -f waits for, at the node: the round
// trip of an exec, and the delay of a followed log line, against each node's API directly over loopback with
// the API server's kubelet client certificate (both nodes allow it without asking the API server). One pod
// per node writes a line every 20 ms; the nodes run one after the other.
func runNodeAPIBench(ctx context.Context, execs, lines int, runtimeName string) error {
	c, err := startPodCluster(ctx, runtimeName)
	if err != nil {
		return err
	}
	defer c.down()
	agent, err := nodeAPINode(ctx, c, agentNode, agentNodeAPI, execs, lines, func() (*process, error) { return c.startAgent(c.rt.endpoint) })
	if err != nil {
		return fmt.Errorf("nodeagent: %w", err)
	}
	kubelet, err := nodeAPINode(ctx, c, kubeletNode, kubeletNodeAPI, execs, lines, func() (*process, error) { return c.startKubelet(c.rt.endpoint) })
	if err != nil {
		return fmt.Errorf("kubelet: %w", err)
	}
	fmt.Printf("node API: %d execs of `true` one after the other, %d followed log lines (one per 20 ms), on %s\n",
		execs, lines, c.rt.description)
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 3, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "\tnodeagent\tkubelet v1.37.2\tratio\t")
	for _, row := range []struct {
		name       string
		agent, kub []time.Duration
		p          int
	}{
		{"exec round trip p50", agent.exec, kubelet.exec, 50},
		{"exec round trip p99", agent.exec, kubelet.exec, 99},
		{"log follow delay p50", agent.follow, kubelet.follow, 50},
		{"log follow delay p99", agent.follow, kubelet.follow, 99},
	} {
		a, k := quantile(row.agent, row.p), quantile(row.kub, row.p)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.2f\t\n", row.name, a.Round(10*time.Microsecond), k.Round(10*time.Microsecond),
			a.Seconds()/k.Seconds())
	}
	return tw.Flush()
}

// nodeAPINode starts a node's agent, runs the writing pod on it, times the execs and the followed lines,
// and removes the pod and stops the agent again.
func nodeAPINode(ctx context.Context, c *podCluster, node, api string, execs, lines int, start func() (*process, error)) (nodeAPIResult, error) {
	var res nodeAPIResult
	p, err := startReadyNode(ctx, c.client, node, start)
	if err != nil {
		return res, err
	}
	defer p.stop()
	pod := benchPod(node+"-writer", node, benchSelector(node, "nodeapi"))
	pod.Spec.Containers[0].Command = []string{"sh", "-c", "while true; do echo tick; usleep 20000; done"}
	if _, err := c.client.CoreV1().Pods(namespace).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		return res, err
	}
	defer func() { _ = deleteBenchPods(ctx, c.client, node, "nodeapi") }()
	if err := poll(ctx, 2*time.Minute, func() bool {
		got, err := c.client.CoreV1().Pods(namespace).Get(ctx, pod.Name, metav1.GetOptions{})
		return err == nil && runningAndReady(got)
	}); err != nil {
		return res, fmt.Errorf("the writer pod did not start: %w", err)
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(c.pki, "apiserver-kubelet-client.crt"), filepath.Join(c.pki, "apiserver-kubelet-client.key"))
	if err != nil {
		return res, err
	}
	path := "/" + namespace + "/" + pod.Name + "/c"
	if res.exec, err = timeExecs(ctx, c.pki, api, path, execs); err != nil {
		return res, err
	}
	if res.follow, err = timeFollow(ctx, &cert, api, path, lines); err != nil {
		return res, err
	}
	fmt.Fprintf(os.Stderr, "bench: %s: exec p50 %s, follow p50 %s\n", node, quantile(res.exec, 50), quantile(res.follow, 50))
	return res, nil
}

// timeExecs runs `true` in the container n times, one after the other, through the node API's SPDY exec.
func timeExecs(ctx context.Context, pki, api, path string, n int) ([]time.Duration, error) {
	cfg := &rest.Config{Host: api, TLSClientConfig: rest.TLSClientConfig{Insecure: true, // each node's own self-signed certificate
		CertFile: filepath.Join(pki, "apiserver-kubelet-client.crt"), KeyFile: filepath.Join(pki, "apiserver-kubelet-client.key")}}
	target, err := url.Parse(api + "/exec" + path + "?command=true&output=1&error=1")
	if err != nil {
		return nil, err
	}
	out := make([]time.Duration, 0, n)
	for range n {
		began := time.Now()
		executor, err := remotecommand.NewSPDYExecutor(cfg, http.MethodPost, target)
		if err != nil {
			return nil, err
		}
		var discard strings.Builder
		if err := executor.StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: &discard, Stderr: &discard}); err != nil {
			return nil, fmt.Errorf("exec: %w", err)
		}
		out = append(out, time.Since(began))
	}
	return out, nil
}

// timeFollow follows the container's log with timestamps and returns, for n lines, the time from the
// runtime's timestamp of each line to its arrival. Both clocks are this machine's.
func timeFollow(ctx context.Context, cert *tls.Certificate, api, path string, n int) ([]time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Duration(n)*20*time.Millisecond+time.Minute)
	defer cancel()
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{
		InsecureSkipVerify: true, Certificates: []tls.Certificate{*cert}}}} //nolint:gosec // each node's own self-signed certificate
	since := time.Now().UTC().Format(time.RFC3339)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, api+"/containerLogs"+path+"?follow=true&timestamps=true&sinceTime="+since, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("follow: %s", resp.Status)
	}
	scanner := bufio.NewScanner(resp.Body)
	out := make([]time.Duration, 0, n)
	for skipped := 0; len(out) < n && scanner.Scan(); {
		arrived := time.Now()
		stamp, _, _ := strings.Cut(scanner.Text(), " ")
		written, err := time.Parse(time.RFC3339Nano, stamp)
		if err != nil {
			return nil, fmt.Errorf("follow: %q has no timestamp", scanner.Text())
		}
		if skipped < 10 { // the lines written before the follow began arrive at once
			skipped++
			continue
		}
		out = append(out, arrived.Sub(written))
	}
	if len(out) < n {
		return nil, fmt.Errorf("follow: %d of %d lines before it ended: %v", len(out), n, scanner.Err())
	}
	return out, nil
}
