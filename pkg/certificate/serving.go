// Package certificate owns the node's certificates that the cluster signs, as the kubelet's: the client
// certificate for the API server (requested with bootstrap credentials as a
// kubernetes.io/kube-apiserver-client-kubelet CSR) and, with serverTLSBootstrap, the node API's serving
// certificate (a kubernetes.io/kubelet-serving CSR); both are rotated before they expire. It keeps them in the root directory's pki and exposes the kubelet's certificate
// manager metrics. It must not approve CSRs (the cluster's approver does) nor serve anything.
package certificate

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math"
	"net"
	"sort"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/certificate"
)

// rotationBuckets are the kubelet's, from a minute to four years.
var rotationBuckets = []float64{60, 3600, 14400, 86400, 604800, 2592000, 7776000, 15552000, 31104000, 124416000}

// Serving is the node API's serving certificate, signed by the cluster: client-go's certificate manager
// (the kubelet's) with the kubelet's file store and metrics.
type Serving struct {
	manager       certificate.Manager
	renewFailures prometheus.Counter
	rotation      prometheus.Histogram
}

// ServingConfig says whose certificate it is and where it is kept.
type ServingConfig struct {
	NodeName string
	// Addresses are the node's addresses as its status reports them; the certificate names its IP
	// addresses and host names, and is requested again when they change. None yet: no request.
	Addresses func() []corev1.NodeAddress
	// Dir holds kubelet-server-current.pem (a link to the newest pair), as the kubelet's --cert-dir.
	Dir string
	// CertFile and KeyFile, when set, are served until the first signed certificate arrives.
	CertFile, KeyFile string
	// Lifetime asks the signer for this lifetime (the CSR's expirationSeconds); zero leaves it to the signer.
	Lifetime time.Duration
}

// NewServing loads the stored certificate, if any; Run requests and rotates it.
func NewServing(client kubernetes.Interface, cfg ServingConfig) (*Serving, error) {
	store, err := certificate.NewFileStore("kubelet-server", cfg.Dir, cfg.Dir, cfg.CertFile, cfg.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("serving certificate store %s: %w", cfg.Dir, err)
	}
	s := &Serving{
		renewFailures: prometheus.NewCounter(prometheus.CounterOpts{Subsystem: "kubelet", Name: "server_expiration_renew_errors",
			Help: "Counter of certificate renewal errors."}),
		rotation: prometheus.NewHistogram(prometheus.HistogramOpts{Subsystem: "kubelet", Name: "certificate_manager_server_rotation_seconds",
			Help: "Histogram of the number of seconds the previous certificate lived before being rotated.", Buckets: rotationBuckets}),
	}
	var lifetime *time.Duration
	if cfg.Lifetime > 0 {
		lifetime = &cfg.Lifetime
	}
	s.manager, err = certificate.NewManager(&certificate.Config{
		Name:                         "kubelet-serving",
		ClientsetFn:                  func(*tls.Certificate) (kubernetes.Interface, error) { return client, nil },
		GetTemplate:                  servingTemplate(cfg.NodeName, cfg.Addresses),
		SignerName:                   certificatesv1.KubeletServingSignerName,
		GetUsages:                    certificate.DefaultKubeletServingGetUsages,
		RequestedCertificateLifetime: lifetime,
		CertificateStore:             store,
		CertificateRotation:          s.rotation,
		CertificateRenewFailure:      s.renewFailures,
	})
	if err != nil {
		return nil, fmt.Errorf("serving certificate manager: %w", err)
	}
	return s, nil
}

// Run requests the certificate when there is none or the node's addresses changed, and rotates it at 70–90%
// of its lifetime, until ctx ends. The CSR must be approved by the cluster (kubelet-serving CSRs are not
// approved by the controller-manager); until then the node API refuses handshakes.
func (s *Serving) Run(ctx context.Context) {
	s.manager.Start()
	<-ctx.Done()
	s.manager.Stop()
}

// Current is the certificate to serve, nil while there is none (not yet signed, or expired).
func (s *Serving) Current() *tls.Certificate { return s.manager.Current() }

// Register adds the kubelet's serving-certificate series: its TTL, the lifetime of rotated ones and the
// renewal errors, which kubernetes-mixin's KubeletServerCertificateExpiration and
// KubeletServerCertificateRenewalErrors alerts read.
func (s *Serving) Register(reg prometheus.Registerer) error {
	ttl := ttlGauge("certificate_manager_server_ttl_seconds", "Gauge of the shortest TTL (time-to-live) of the Kubelet's serving certificate. The value is in seconds "+
		"until certificate expiry (negative if already expired). If serving certificate is invalid or unused, the value will be +INF.",
		s.manager)
	return register(reg, s.renewFailures, s.rotation, ttl)
}

// ttlGauge is the kubelet's gauge of the seconds until the manager's certificate expires, +Inf without one.
func ttlGauge(name, help string, m certificate.Manager) prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Subsystem: "kubelet", Name: name, Help: help}, func() float64 {
		if c := m.Current(); c != nil && c.Leaf != nil {
			return math.Trunc(time.Until(c.Leaf.NotAfter).Seconds())
		}
		return math.Inf(1)
	})
}

func register(reg prometheus.Registerer, collectors ...prometheus.Collector) error {
	for _, c := range collectors {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("registering certificate metrics: %w", err)
		}
	}
	return nil
}

// servingTemplate is the kubelet's CSR template: system:node:<name> in system:nodes, with the node's host
// names and IP addresses; nil (no request) while the node has no IP address.
func servingTemplate(nodeName string, addresses func() []corev1.NodeAddress) func() *x509.CertificateRequest {
	return func() *x509.CertificateRequest {
		names, ips := namesAndIPs(addresses())
		if len(ips) == 0 {
			return nil
		}
		return &x509.CertificateRequest{
			Subject:     pkix.Name{CommonName: "system:node:" + nodeName, Organization: []string{"system:nodes"}},
			DNSNames:    names,
			IPAddresses: ips,
		}
	}
}

// namesAndIPs sorts the node's addresses into host names and IP addresses, without repeats and in a
// stable order, so an unchanged node asks for an unchanged certificate.
func namesAndIPs(addresses []corev1.NodeAddress) ([]string, []net.IP) {
	names, ips := map[string]bool{}, map[string]net.IP{}
	for _, a := range addresses {
		ip := net.ParseIP(a.Address)
		switch {
		case a.Address == "":
		case ip != nil && (a.Type == corev1.NodeHostName || a.Type == corev1.NodeInternalIP || a.Type == corev1.NodeExternalIP):
			ips[ip.String()] = ip
		case ip == nil && (a.Type == corev1.NodeHostName || a.Type == corev1.NodeInternalDNS || a.Type == corev1.NodeExternalDNS):
			names[a.Address] = true
		}
	}
	var dnsNames []string
	for n := range names {
		dnsNames = append(dnsNames, n)
	}
	sort.Strings(dnsNames)
	var keys []string
	for k := range ips {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var sorted []net.IP
	for _, k := range keys {
		sorted = append(sorted, ips[k])
	}
	return dnsNames, sorted
}
