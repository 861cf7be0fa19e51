package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/klog/v2"

	"github.com/nodeagent/nodeagent/pkg/config"
	"github.com/nodeagent/nodeagent/pkg/logs"
	"github.com/nodeagent/nodeagent/pkg/metrics"
	"github.com/nodeagent/nodeagent/pkg/source"
)

// podFinder finds the pod a log directory belongs to in the agent's caches: the API server's pods, then the
// static pods (whose log directories carry the static UID, not the mirror pod's).
type podFinder struct {
	pods   corelisters.PodLister
	static *source.StaticPods
}

func (f podFinder) find(namespace, name, uid string) *corev1.Pod {
	if f.static != nil {
		if pod, ok := f.static.Get(namespace, name); ok && string(pod.UID) == uid {
			return pod
		}
	}
	if f.pods == nil {
		return nil
	}
	if pod, err := f.pods.Pods(namespace).Get(name); err == nil && string(pod.UID) == uid {
		return pod
	}
	return nil
}

// newShipper sets up log shipping with its state under rootDir/logs.
func newShipper(cfg *config.Configuration, nodeName string, pods podFinder, reg prometheus.Registerer) (*logs.Shipper, error) {
	tag, err := logs.ParseTagTemplate(cfg.Logs.TagTemplate)
	if err != nil {
		return nil, fmt.Errorf("logs.tagTemplate: %w", err)
	}
	client := &logs.ForwardClient{Receivers: cfg.Logs.Receivers, Timeout: cfg.Logs.Timeout.Duration,
		SelfHostname: nodeName, Username: cfg.Logs.Username}
	if client.TLS, err = logsTLS(cfg.Logs.TLS); err != nil {
		return nil, err
	}
	if cfg.Logs.SharedKeyFile != "" {
		if client.SharedKey, err = readSecret("logs.sharedKeyFile", cfg.Logs.SharedKeyFile); err != nil {
			return nil, err
		}
	}
	if cfg.Logs.PasswordFile != "" {
		if client.Password, err = readSecret("logs.passwordFile", cfg.Logs.PasswordFile); err != nil {
			return nil, err
		}
	}
	return logs.NewShipper(logs.ShipperConfig{
		PodLogsDir: cfg.PodLogsDir, StateDir: filepath.Join(cfg.RootDir, "logs"),
		Client: client, Tag: tag, Gzip: cfg.Logs.Gzip, ParseJSON: cfg.Logs.ParseJSON,
		ChunkRecords: 100_000, ChunkBytes: int(cfg.LogsChunkBytes()), FlushInterval: cfg.Logs.FlushInterval.Duration,
		BufferLimit: cfg.LogsBufferBytes(), MemoryBufferLimit: min(32<<20, cfg.LogsBufferBytes()), InFlight: 8, Poll: 250 * time.Millisecond,
		RetryMax: cfg.Logs.RetryMaxInterval.Duration, NodeName: nodeName, Pod: pods.find, Metrics: reg,
	})
}

func readSecret(field, path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("%s: %w", field, err)
	}
	secret := strings.TrimSpace(string(data))
	if secret == "" {
		return "", fmt.Errorf("%s: %s is empty", field, path)
	}
	return secret, nil
}

func logsTLS(c *config.LogsTLSConfiguration) (*tls.Config, error) {
	if c == nil {
		return nil, nil
	}
	t := &tls.Config{ServerName: c.ServerName, InsecureSkipVerify: c.InsecureSkipVerify, MinVersion: tls.VersionTLS12}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("logs.tls.caFile: %w", err)
		}
		t.RootCAs = x509.NewCertPool()
		if !t.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("logs.tls.caFile: no PEM certificate in %s", c.CAFile)
		}
	}
	if c.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("logs.tls.certFile/keyFile: %w", err)
		}
		t.Certificates = []tls.Certificate{cert}
	}
	return t, nil
}

// runLogsOnly runs the log shipper alone, as Fluent Bit runs on a node. With a kubeconfig it enriches records
// from the node's pods; without one, from the log paths only (namespace, pod, UID, container).
func runLogsOnly(ctx context.Context, cfg *config.Configuration) error {
	nodeName, err := cfg.NodeName()
	if err != nil {
		return fmt.Errorf("node name: %w", err)
	}
	klog.InfoS("Starting nodeagent as a log shipper only", "version", version, "node", nodeName, "receivers", cfg.Logs.Receivers)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	var finder podFinder
	var src *source.Source
	if cfg.Kubeconfig != "" {
		var client kubernetes.Interface
		if nodeName, client, err = connect(cfg); err != nil {
			return err
		}
		src = source.New(client, nodeName, 0)
		finder.pods = src.Pods()
	}
	registry := metrics.NewRegistry()
	shipper, err := newShipper(cfg, nodeName, finder, registry)
	if err != nil {
		return err
	}
	if err := serveEndpoints(ctx, &wg, cfg, registry, nil, src); err != nil {
		return err
	}
	if src != nil {
		if err := src.Start(ctx); err != nil {
			return err
		}
		defer src.Shutdown()
	}
	shipper.Run(ctx)
	return nil
}
