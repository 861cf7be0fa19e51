package join

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/nodeagent/nodeagent/pkg/config"
)

// Files are where join leaves what the agent reads, so that a restart (`nodeagent --config Config`) runs the
// joined node without joining again. The defaults sit in the root directory, as the kubelet's in
// /var/lib/kubelet.
type Files struct {
	// BootstrapKubeconfig holds the token; Kubeconfig is written by the agent once its certificate is issued.
	BootstrapKubeconfig, Kubeconfig string
	// CA is the cluster CA that discovery verified: the node API's client CA.
	CA string
	// Config is the agent's configuration with the cluster's kubelet settings.
	Config string
}

// DefaultFiles are the files under rootDir; a kubeconfig already chosen is kept.
func DefaultFiles(rootDir, kubeconfig string) Files {
	f := Files{
		BootstrapKubeconfig: filepath.Join(rootDir, "bootstrap-kubeconfig"),
		Kubeconfig:          kubeconfig,
		CA:                  filepath.Join(rootDir, "pki", "ca.crt"),
		Config:              filepath.Join(rootDir, "config.yaml"),
	}
	if f.Kubeconfig == "" {
		f.Kubeconfig = filepath.Join(rootDir, "kubeconfig")
	}
	return f
}

// Configure maps the cluster's kubelet-config onto cfg, field by field where the two mean the same, and
// points cfg at files. What the kubelet-config leaves unset (kubeadm strips defaults) keeps cfg's value; what
// is about this host rather than the cluster (the runtime endpoint, the cgroup driver, staticPodPath, the
// health port) is not taken. The client CA file is the CA that discovery verified, wherever the cluster's
// kubelets keep theirs.
func (c *Cluster) Configure(cfg *config.Configuration, files Files) {
	cfg.Kubeconfig = files.Kubeconfig
	cfg.BootstrapKubeconfig = files.BootstrapKubeconfig
	cfg.Authentication.X509.ClientCAFile = files.CA
	kc := c.Kubelet
	if kc == nil {
		return
	}
	if len(kc.ClusterDNS) > 0 {
		cfg.ClusterDNS = kc.ClusterDNS
	}
	setString(&cfg.ClusterDomain, kc.ClusterDomain)
	setInt(&cfg.MaxPods, kc.MaxPods)
	if len(kc.EvictionHard) > 0 {
		cfg.EvictionHard = kc.EvictionHard
	}
	if len(kc.EvictionSoft) > 0 {
		cfg.EvictionSoft, cfg.EvictionSoftGracePeriod = kc.EvictionSoft, kc.EvictionSoftGracePeriod
	}
	setInt(&cfg.EvictionMaxPodGracePeriod, kc.EvictionMaxPodGracePeriod)
	setIntPtr(&cfg.ImageGCHighThresholdPercent, kc.ImageGCHighThresholdPercent)
	setIntPtr(&cfg.ImageGCLowThresholdPercent, kc.ImageGCLowThresholdPercent)
	setString(&cfg.ContainerLogMaxSize, kc.ContainerLogMaxSize)
	setIntPtr(&cfg.ContainerLogMaxFiles, kc.ContainerLogMaxFiles)
	setInt(&cfg.NodeLeaseDurationSeconds, kc.NodeLeaseDurationSeconds)
	setDuration(&cfg.NodeStatusUpdateFrequency, kc.NodeStatusUpdateFrequency)
	setDuration(&cfg.NodeStatusReportFrequency, kc.NodeStatusReportFrequency)
	setDuration(&cfg.RuntimeRequestTimeout, kc.RuntimeRequestTimeout)
	setDuration(&cfg.ImageMinimumGCAge, kc.ImageMinimumGCAge)
	setDuration(&cfg.EvictionPressureTransitionPeriod, kc.EvictionPressureTransitionPeriod)
	cfg.ServerTLSBootstrap = cfg.ServerTLSBootstrap || kc.ServerTLSBootstrap
	authn, authz := kc.Authentication, kc.Authorization
	if authn.Anonymous.Enabled != nil {
		cfg.Authentication.Anonymous.Enabled = *authn.Anonymous.Enabled
	}
	if authn.Webhook.Enabled != nil {
		cfg.Authentication.Webhook.Enabled = *authn.Webhook.Enabled
	}
	setDuration(&cfg.Authentication.Webhook.CacheTTL, authn.Webhook.CacheTTL)
	setString(&cfg.Authorization.Mode, string(authz.Mode))
	setDuration(&cfg.Authorization.Webhook.CacheAuthorizedTTL, authz.Webhook.CacheAuthorizedTTL)
	setDuration(&cfg.Authorization.Webhook.CacheUnauthorizedTTL, authz.Webhook.CacheUnauthorizedTTL)
}

// Write leaves the CA, the bootstrap kubeconfig and cfg in files (owner-only: the token is a credential).
func (c *Cluster) Write(files Files, cfg *config.Configuration) error {
	data, err := yaml.Marshal(cfg)
	if err != nil {
		return fmt.Errorf("encoding the configuration: %w", err)
	}
	for path, content := range map[string][]byte{files.CA: c.CA, files.BootstrapKubeconfig: c.BootstrapKubeconfig, files.Config: data} {
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return fmt.Errorf("writing %s: %w", path, err)
		}
		if err := os.WriteFile(path, content, 0o600); err != nil {
			return fmt.Errorf("writing %s: %w", path, err)
		}
	}
	return nil
}

func setString(dst *string, src string) {
	if src != "" {
		*dst = src
	}
}

func setInt(dst *int32, src int32) {
	if src > 0 {
		*dst = src
	}
}

// setDuration takes src unless it is zero: kubeadm writes 0s for what it leaves to the kubelet's default.
func setDuration(dst *metav1.Duration, src metav1.Duration) {
	if src.Duration > 0 {
		*dst = src
	}
}

func setIntPtr(dst *int32, src *int32) {
	if src != nil {
		*dst = *src
	}
}

// Joined is the outcome of Join: the configuration to run and where it was written.
type Joined struct {
	Config *config.Configuration
	Files  Files
	Server string
}

// Join discovers the cluster and writes the files the agent needs to run in it. load reads the user's
// settings (the config file, then the flags) over a base configuration: once over the defaults, to learn
// where the files go, and once over the cluster's kubelet settings, so the user's win over the cluster's.
func Join(ctx context.Context, opts Options, load func(base *config.Configuration) (*config.Configuration, error)) (*Joined, error) {
	cluster, err := Discover(ctx, opts)
	if err != nil {
		return nil, err
	}
	own, err := load(config.Default())
	if err != nil {
		return nil, err
	}
	files := DefaultFiles(own.RootDir, own.Kubeconfig)
	cfg := config.Default()
	cluster.Configure(cfg, files)
	if cfg, err = load(cfg); err != nil {
		return nil, err
	}
	if err := cluster.Write(files, cfg); err != nil {
		return nil, err
	}
	return &Joined{Config: cfg, Files: files, Server: cluster.Server}, nil
}
