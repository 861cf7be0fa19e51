package agent

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/nodeagent/nodeagent/pkg/certificate"
	"github.com/nodeagent/nodeagent/pkg/config"
	"github.com/nodeagent/nodeagent/pkg/logs"
	"github.com/nodeagent/nodeagent/pkg/server"
)

// newNodeAPI makes the node API server of the full node and opens its port: api holds what the node's
// parts serve, to which this adds what the configuration says (address, certificates, client CAs).
func newNodeAPI(cfg *config.Configuration, api server.NodeAPIConfig, pods corelisters.PodLister,
	runtime server.StreamingRuntime, client kubernetes.Interface) (*server.NodeAPI, error) {
	api.Address = net.JoinHostPort(cfg.Address, strconv.Itoa(int(cfg.KubeletPort)))
	api.CertFile, api.KeyFile, api.CertDir = cfg.TLSCertFile, cfg.TLSPrivateKeyFile, filepath.Join(cfg.RootDir, "pki")
	api.LocalSocket, api.PodLogsDir, api.ParseLogLine, api.Configz = cfg.LocalAPISocket, cfg.PodLogsDir, parseLogLine, cfg
	api.Access = server.Access{Anonymous: cfg.Authentication.Anonymous.Enabled, NoTokens: !cfg.Authentication.Webhook.Enabled,
		AlwaysAllow: cfg.Authorization.Mode == config.AuthorizationModeAlwaysAllow, TokenTTL: cfg.Authentication.Webhook.CacheTTL.Duration,
		AllowedTTL: cfg.Authorization.Webhook.CacheAuthorizedTTL.Duration, DeniedTTL: cfg.Authorization.Webhook.CacheUnauthorizedTTL.Duration}
	if client == nil {
		// Standalone: no API server to review tokens or access. Clients of the configured CA are trusted
		// with everything, as the kubelet's AlwaysAllow; without a CA the port stays closed and the local
		// socket serves root on this host.
		api.Access.NoTokens, api.Access.AlwaysAllow = true, true
		if cfg.Authentication.X509.ClientCAFile == "" {
			api.Address = ""
		}
	}
	if api.Address != "" {
		ca, err := nodeAPIClientCA(cfg)
		if err != nil {
			return nil, err
		}
		api.ClientCA = ca
	}
	s, err := server.NewNodeAPI(api, pods, runtime, client)
	if err != nil {
		return nil, err
	}
	return s, s.Listen()
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

// newServingCertificate is the node API's certificate signed by the cluster (serverTLSBootstrap), for the
// addresses the Node reports, with its metrics in the agent's registry.
func newServingCertificate(cfg *config.Configuration, s *shared) (*certificate.Serving, error) {
	serving, err := certificate.NewServing(s.client, certificate.ServingConfig{
		NodeName: s.nodeName,
		Addresses: func() []corev1.NodeAddress {
			if node := s.src.Node(); node != nil {
				return node.Status.Addresses
			}
			return nil
		},
		Dir: filepath.Join(cfg.RootDir, "pki"), CertFile: cfg.TLSCertFile, KeyFile: cfg.TLSPrivateKeyFile,
	})
	if err != nil {
		return nil, err
	}
	return serving, serving.Register(s.registry)
}
