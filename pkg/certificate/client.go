package certificate

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	certificatesv1 "k8s.io/api/certificates/v1"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/client-go/util/certificate"
	"k8s.io/client-go/util/connrotation"
	"k8s.io/klog/v2"
)

// Client is the node's client certificate for the API server, as the kubelet's with --bootstrap-kubeconfig:
// requested with the bootstrap credentials as a kubernetes.io/kube-apiserver-client-kubelet CSR, stored in
// Dir (kubelet-client-current.pem), named by the kubeconfig it writes, and rotated with the current
// certificate at 70–90% of its lifetime. Connections made with an older certificate are closed when a new
// one arrives, so the API server sees the new one at once.
type Client struct {
	manager       certificate.Manager
	dialer        *connrotation.Dialer
	restConfig    *rest.Config
	renewFailures prometheus.Counter
}

// ClientConfig says whose certificate it is, where it is kept and which credentials ask for the first one.
type ClientConfig struct {
	NodeName string
	// Kubeconfig is the kubeconfig the agent uses; while it holds no valid certificate, it is written to
	// name the stored one, with the bootstrap kubeconfig's server and CA.
	Kubeconfig string
	// BootstrapKubeconfig holds the credentials (a bootstrap token) that may create the first CSR.
	BootstrapKubeconfig string
	// Dir holds the certificates (the kubelet's --cert-dir).
	Dir string
}

// NewClient loads the stored certificate or the kubeconfig's, and prepares to request one with the bootstrap
// credentials when neither is valid. Run requests and rotates it; WaitForCertificate waits for the first.
func NewClient(cfg ClientConfig) (*Client, error) {
	store, err := certificate.NewFileStore("kubelet-client", cfg.Dir, cfg.Dir, "", "")
	if err != nil {
		return nil, fmt.Errorf("client certificate store %s: %w", cfg.Dir, err)
	}
	// As the kubelet: a kubeconfig whose certificate is still valid is used as it is (its certificate seeds
	// the store); otherwise it is rewritten to name the store's certificate, which the bootstrap credentials
	// will ask for.
	base, initial, err := validKubeconfig(cfg.Kubeconfig)
	if err != nil {
		return nil, err
	}
	var bootstrap *rest.Config
	if cfg.BootstrapKubeconfig != "" {
		if bootstrap, err = clientcmd.BuildConfigFromFlags("", cfg.BootstrapKubeconfig); err != nil {
			return nil, fmt.Errorf("loading bootstrap kubeconfig %s: %w", cfg.BootstrapKubeconfig, err)
		}
	}
	if base == nil {
		if bootstrap == nil {
			return nil, fmt.Errorf("kubeconfig %s holds no valid client certificate and there is no bootstrap kubeconfig to request one", cfg.Kubeconfig)
		}
		base = rest.AnonymousClientConfig(bootstrap)
		if err := writeKubeconfig(cfg.Kubeconfig, base, store.CurrentPath()); err != nil {
			return nil, err
		}
	}
	c := &Client{
		dialer: connrotation.NewDialer((&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext),
		renewFailures: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "kubelet", Subsystem: "certificate_manager",
			Name: "client_expiration_renew_errors", Help: "Counter of certificate renewal errors."}),
	}
	if c.restConfig, err = c.rotatingConfig(base); err != nil {
		return nil, err
	}
	current, err := kubernetes.NewForConfig(c.restConfig)
	if err != nil {
		return nil, fmt.Errorf("client with the node's certificate: %w", err)
	}
	var withBootstrap kubernetes.Interface
	if bootstrap != nil {
		if withBootstrap, err = kubernetes.NewForConfig(bootstrap); err != nil {
			return nil, fmt.Errorf("client with the bootstrap credentials: %w", err)
		}
	}
	c.manager, err = certificate.NewManager(&certificate.Config{
		Name: "kubelet-client",
		// The current certificate renews itself (the selfnodeclient approval); only without one do the
		// bootstrap credentials ask.
		ClientsetFn: func(cert *tls.Certificate) (kubernetes.Interface, error) {
			if cert != nil {
				return current, nil
			}
			if withBootstrap == nil {
				return nil, errors.New("no valid client certificate and no bootstrap kubeconfig")
			}
			return withBootstrap, nil
		},
		Template: &x509.CertificateRequest{
			Subject: pkix.Name{CommonName: "system:node:" + cfg.NodeName, Organization: []string{"system:nodes"}},
		},
		SignerName:              certificatesv1.KubeAPIServerClientKubeletSignerName,
		GetUsages:               certificate.DefaultKubeletClientGetUsages,
		BootstrapCertificatePEM: initial.cert,
		BootstrapKeyPEM:         initial.key,
		CertificateStore:        store,
		CertificateRenewFailure: c.renewFailures,
	})
	if err != nil {
		return nil, fmt.Errorf("client certificate manager: %w", err)
	}
	return c, nil
}

// RESTConfig is the API server's address and CA with the node's current certificate: every connection
// presents the newest one. Callers may set the user agent, rates and content types; not TLS.
func (c *Client) RESTConfig() *rest.Config { return rest.CopyConfig(c.restConfig) }

// Run requests the certificate when there is none and rotates it, until ctx ends; when a new certificate
// arrives it closes the connections made with the old one.
func (c *Client) Run(ctx context.Context) {
	c.manager.Start()
	defer c.manager.Stop()
	last := c.manager.Current()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		cur := c.manager.Current()
		if cur == nil || cur == last {
			continue
		}
		// The first certificate needs no closing: no connection presented one before it.
		if last != nil {
			klog.InfoS("Client certificate rotated, closing the connections made with the previous one", "notAfter", cur.Leaf.NotAfter)
			c.dialer.CloseAll()
		}
		last = cur
	}
}

// WaitForCertificate returns once there is a certificate to present, or with ctx's error. The first
// certificate of a node needs its CSR approved: by the controller-manager when the bootstrap token's group
// is bound to the nodeclient approval role, as kubeadm does, or by hand.
func (c *Client) WaitForCertificate(ctx context.Context) error {
	if c.manager.Current() != nil {
		return nil
	}
	klog.InfoS("Waiting for the node's client certificate: a kubernetes.io/kube-apiserver-client-kubelet CSR must be approved")
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for c.manager.Current() == nil {
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for the node's client certificate: %w", ctx.Err())
		case <-tick.C:
		}
	}
	klog.InfoS("Client certificate issued", "notAfter", c.manager.Current().Leaf.NotAfter)
	return nil
}

// Register adds the kubelet's client-certificate series: its TTL and the renewal errors.
func (c *Client) Register(reg prometheus.Registerer) error {
	ttl := ttlGauge("certificate_manager_client_ttl_seconds", "Gauge of the TTL (time-to-live) of the Kubelet's client certificate. "+
		"The value is in seconds until certificate expiry (negative if already expired). If client certificate is invalid or unused, the value will be +INF.",
		c.manager)
	return register(reg, c.renewFailures, ttl)
}

// rotatingConfig is base's server and CA with a transport that presents the manager's current certificate
// on each handshake and dials through c.dialer, whose connections Run closes at a rotation.
func (c *Client) rotatingConfig(base *rest.Config) (*rest.Config, error) {
	tlsConfig, err := rest.TLSConfigFor(base)
	if err != nil {
		return nil, fmt.Errorf("TLS settings of %s: %w", base.Host, err)
	}
	if tlsConfig == nil {
		tlsConfig = &tls.Config{}
	}
	tlsConfig.Certificates = nil
	tlsConfig.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		if cur := c.manager.Current(); cur != nil {
			return cur, nil
		}
		return &tls.Certificate{}, nil
	}
	cfg := rest.AnonymousClientConfig(base)
	cfg.TLSClientConfig = rest.TLSClientConfig{}
	cfg.Transport = utilnet.SetTransportDefaults(&http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		TLSHandshakeTimeout: 10 * time.Second,
		TLSClientConfig:     tlsConfig,
		MaxIdleConnsPerHost: 25,
		DialContext:         c.dialer.DialContext,
	})
	return cfg, nil
}

// pemPair is a certificate and its key, PEM-encoded.
type pemPair struct{ cert, key []byte }

// validKubeconfig loads path when it exists and its client certificate has not expired; it returns nil
// (and no error) when the file is missing or holds no valid certificate, as the kubelet does.
func validKubeconfig(path string) (*rest.Config, pemPair, error) {
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil, pemPair{}, nil
	} else if err != nil {
		return nil, pemPair{}, fmt.Errorf("kubeconfig %s: %w", path, err)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		klog.InfoS("Kubeconfig unreadable, bootstrapping a new one", "path", path, "err", err)
		return nil, pemPair{}, nil
	}
	pair := pemPair{cert: cfg.CertData, key: cfg.KeyData}
	if cfg.CertFile != "" {
		if pair.cert, err = os.ReadFile(cfg.CertFile); err != nil {
			return nil, pemPair{}, nil
		}
	}
	if cfg.KeyFile != "" {
		if pair.key, err = os.ReadFile(cfg.KeyFile); err != nil {
			return nil, pemPair{}, nil
		}
	}
	cert, err := tls.X509KeyPair(pair.cert, pair.key)
	if err != nil || cert.Leaf == nil || time.Now().After(cert.Leaf.NotAfter) {
		klog.InfoS("Kubeconfig holds no valid client certificate, bootstrapping a new one", "path", path)
		return nil, pemPair{}, nil
	}
	return cfg, pair, nil
}

// writeKubeconfig writes the kubelet's bootstrapped kubeconfig: base's server and CA, and the client
// certificate and key both in pemPath (the store's link to the current pair).
func writeKubeconfig(path string, base *rest.Config, pemPath string) error {
	cluster := &clientcmdapi.Cluster{Server: base.Host, InsecureSkipTLSVerify: base.Insecure,
		CertificateAuthority: base.CAFile, TLSServerName: base.ServerName}
	if base.CAFile == "" {
		cluster.CertificateAuthorityData = base.CAData
	}
	kubeconfig := clientcmdapi.Config{
		Clusters:       map[string]*clientcmdapi.Cluster{"default-cluster": cluster},
		AuthInfos:      map[string]*clientcmdapi.AuthInfo{"default-auth": {ClientCertificate: pemPath, ClientKey: pemPath}},
		Contexts:       map[string]*clientcmdapi.Context{"default-context": {Cluster: "default-cluster", AuthInfo: "default-auth", Namespace: "default"}},
		CurrentContext: "default-context",
	}
	if err := clientcmd.WriteToFile(kubeconfig, path); err != nil {
		return fmt.Errorf("writing kubeconfig %s: %w", path, err)
	}
	return nil
}
