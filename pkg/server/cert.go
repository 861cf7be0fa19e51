package server

import (
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"path/filepath"

	certutil "k8s.io/client-go/util/cert"
	"k8s.io/client-go/util/keyutil"
)

// servingCert is the configured serving certificate, or the self-signed one in CertDir, made at first start
// as the kubelet makes its own (kubelet.crt, kubelet.key), but with the node's IP addresses as well as its
// host name among the names: metrics-server and the API server reach a node by address, and a certificate
// without an IP SAN is metrics-server's most reported failure with the kubelet's.
func servingCert(cfg NodeAPIConfig) (tls.Certificate, error) {
	certFile, keyFile := cfg.CertFile, cfg.KeyFile
	if certFile == "" && keyFile == "" {
		certFile, keyFile = filepath.Join(cfg.CertDir, "kubelet.crt"), filepath.Join(cfg.CertDir, "kubelet.key")
		if err := ensureSelfSigned(certFile, keyFile, cfg.Hostname, cfg.HostIPs); err != nil {
			return tls.Certificate{}, err
		}
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("node API serving certificate: %w", err)
	}
	return cert, nil
}

// ensureSelfSigned writes a self-signed certificate for hostname and ips unless the files exist.
func ensureSelfSigned(certFile, keyFile, hostname string, ips []string) error {
	if _, err := os.Stat(certFile); err == nil {
		return nil
	}
	var alternateIPs []net.IP
	for _, ip := range ips {
		if parsed := net.ParseIP(ip); parsed != nil {
			alternateIPs = append(alternateIPs, parsed)
		}
	}
	certPEM, keyPEM, err := certutil.GenerateSelfSignedCertKey(hostname, alternateIPs, nil)
	if err != nil {
		return fmt.Errorf("self-signed node API certificate: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(certFile), 0o750); err != nil {
		return fmt.Errorf("node API certificate directory: %w", err)
	}
	if err := keyutil.WriteKey(keyFile, keyPEM); err != nil {
		return fmt.Errorf("writing %s: %w", keyFile, err)
	}
	if err := certutil.WriteCert(certFile, certPEM); err != nil {
		return fmt.Errorf("writing %s: %w", certFile, err)
	}
	return nil
}
