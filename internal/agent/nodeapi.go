package agent

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/nodeagent/nodeagent/pkg/config"
	"github.com/nodeagent/nodeagent/pkg/logs"
	"github.com/nodeagent/nodeagent/pkg/metrics"
	"github.com/nodeagent/nodeagent/pkg/server"
	"github.com/prometheus/client_golang/prometheus"
)

// newNodeAPI makes the node API server of the full node and opens its port.
func newNodeAPI(cfg *config.Configuration, nodeName string, internalIPs []string, pods corelisters.PodLister,
	runningPods func() []*corev1.Pod, registry *prometheus.Registry, resourceMetrics, probeMetrics http.Handler,
	summary func(context.Context) (any, error),
	runtime server.StreamingRuntime, client kubernetes.Interface) (*server.NodeAPI, error) {
	ca, err := nodeAPIClientCA(cfg)
	if err != nil {
		return nil, err
	}
	api, err := server.NewNodeAPI(server.NodeAPIConfig{
		Address:  net.JoinHostPort(cfg.Address, strconv.Itoa(int(cfg.KubeletPort))),
		NodeName: nodeName, CertFile: cfg.TLSCertFile, KeyFile: cfg.TLSPrivateKeyFile,
		CertDir: filepath.Join(cfg.RootDir, "pki"), HostIPs: internalIPs, Hostname: nodeName,
		ClientCA: ca, PodLogsDir: cfg.PodLogsDir, ParseLogLine: parseLogLine, RunningPods: runningPods, Configz: cfg,
		Metrics: metrics.Handler(registry), Registry: registry, ResourceMetrics: resourceMetrics, ProbeMetrics: probeMetrics,
		StatsSummary: summary,
	}, pods, runtime, client)
	if err != nil {
		return nil, err
	}
	return api, api.Listen()
}

// nodeAPIClientCA is the CA bundle of the node API's client certificates: the configured file, else the
// kubeconfig's cluster CA (kubeadm signs the API server's kubelet client certificate with it).
func nodeAPIClientCA(cfg *config.Configuration) ([]byte, error) {
	if file := cfg.Authentication.X509.ClientCAFile; file != "" {
		ca, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("authentication.x509.clientCAFile: %w", err)
		}
		return ca, nil
	}
	restConfig, err := clientcmd.BuildConfigFromFlags("", cfg.Kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("loading kubeconfig %s: %w", cfg.Kubeconfig, err)
	}
	if len(restConfig.CAData) > 0 {
		return restConfig.CAData, nil
	}
	if restConfig.CAFile == "" {
		return nil, fmt.Errorf("the kubeconfig has no cluster CA: set authentication.x509.clientCAFile")
	}
	ca, err := os.ReadFile(restConfig.CAFile)
	if err != nil {
		return nil, fmt.Errorf("the kubeconfig's cluster CA: %w", err)
	}
	return ca, nil
}

// parseLogLine reads a CRI log line with the log shipper's parser, for the node API's /containerLogs.
func parseLogLine(raw []byte) (server.LogLine, error) {
	line, err := logs.ParseLine(raw)
	return server.LogLine{Time: line.Time, Partial: line.Partial, Message: line.Message}, err
}
