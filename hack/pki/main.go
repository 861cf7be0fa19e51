// Command pki writes the certificates and kubeconfigs of a local test cluster into one directory: a CA, the
// API server's serving and kubelet-client certificates, the service-account key pair, and kubeconfigs for
// the admin (system:masters), the controller-manager, the scheduler and each named node
// (system:node:NAME in system:nodes, as the Node authorizer expects). Existing files are kept, so a second
// run only adds what is missing.
//
// Usage: go run ./hack/pki --dir DIR --server https://127.0.0.1:6443 [--node NAME]...
package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

const validity = 10 * 365 * 24 * time.Hour

type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func main() {
	dir := flag.String("dir", "", "output directory")
	server := flag.String("server", "https://127.0.0.1:6443", "API server URL written into kubeconfigs")
	serviceIP := flag.String("service-ip", "10.96.0.1", "first IP of the service range (the kubernetes Service)")
	var nodes stringList
	flag.Var(&nodes, "node", "node name to write <name>.kubeconfig for (repeatable)")
	flag.Parse()
	if *dir == "" {
		fmt.Fprintln(os.Stderr, "pki: --dir is required")
		os.Exit(2)
	}
	if err := run(*dir, *server, *serviceIP, nodes); err != nil {
		fmt.Fprintf(os.Stderr, "pki: %v\n", err)
		os.Exit(1)
	}
}

func run(dir, server, serviceIP string, nodes []string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	ca, err := loadOrCreateCA(dir, "ca", "nodeagent-dev-ca")
	if err != nil {
		return err
	}
	// The aggregation layer's, as kubeadm makes them: a CA of its own for the API server's proxy client, so a
	// client certificate of the cluster CA cannot pose as the front proxy.
	frontProxyCA, err := loadOrCreateCA(dir, "front-proxy-ca", "nodeagent-dev-front-proxy-ca")
	if err != nil {
		return err
	}
	if err := ensureCert(dir, "front-proxy-client", frontProxyCA, clientTemplate("front-proxy-client", "")); err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(dir, "sa.key")); errors.Is(err, os.ErrNotExist) {
		key, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return err
		}
		if err := writeKey(filepath.Join(dir, "sa.key"), key); err != nil {
			return err
		}
		pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
		if err != nil {
			return err
		}
		if err := writePEM(filepath.Join(dir, "sa.pub"), "PUBLIC KEY", pub); err != nil {
			return err
		}
	}
	apiserver := &x509.Certificate{
		Subject:     pkix.Name{CommonName: "kube-apiserver"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames: []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
			"kubernetes.default.svc.cluster.local"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP(serviceIP)},
	}
	if err := ensureCert(dir, "apiserver", ca, apiserver); err != nil {
		return err
	}
	if err := ensureCert(dir, "apiserver-kubelet-client", ca, clientTemplate("kube-apiserver-kubelet-client", "system:masters")); err != nil {
		return err
	}
	clients := map[string]*x509.Certificate{
		"admin":              clientTemplate("kubernetes-admin", "system:masters"),
		"controller-manager": clientTemplate("system:kube-controller-manager", ""),
		"scheduler":          clientTemplate("system:kube-scheduler", ""),
	}
	for _, node := range nodes {
		clients[node] = clientTemplate("system:node:"+node, "system:nodes")
	}
	for name, tmpl := range clients {
		if err := ensureKubeconfig(dir, name, server, ca, tmpl); err != nil {
			return fmt.Errorf("kubeconfig %s: %w", name, err)
		}
	}
	return nil
}

type authority struct {
	cert *x509.Certificate
	key  crypto.Signer
	pem  []byte
}

func clientTemplate(cn, org string) *x509.Certificate {
	t := &x509.Certificate{
		Subject:     pkix.Name{CommonName: cn},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if org != "" {
		t.Subject.Organization = []string{org}
	}
	return t
}

// loadOrCreateCA loads the CA <name>.crt and <name>.key from dir, or makes one with the common name cn.
func loadOrCreateCA(dir, name, cn string) (*authority, error) {
	certPath, keyPath := filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	if certPEM, err := os.ReadFile(certPath); err == nil {
		keyPEM, err := os.ReadFile(keyPath)
		if err != nil {
			return nil, err
		}
		return parseCA(certPEM, keyPEM)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	if err := writeKey(keyPath, key); err != nil {
		return nil, err
	}
	if err := writePEM(certPath, "CERTIFICATE", der); err != nil {
		return nil, err
	}
	certPEM, _ := os.ReadFile(certPath)
	keyPEM, _ := os.ReadFile(keyPath)
	return parseCA(certPEM, keyPEM)
}

func parseCA(certPEM, keyPEM []byte) (*authority, error) {
	cb, _ := pem.Decode(certPEM)
	kb, _ := pem.Decode(keyPEM)
	if cb == nil || kb == nil {
		return nil, errors.New("ca.crt or ca.key is not PEM")
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, err
	}
	key, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		return nil, err
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, errors.New("ca.key is not a signing key")
	}
	return &authority{cert: cert, key: signer, pem: certPEM}, nil
}

// issue signs tmpl with the CA and returns the certificate and key, PEM-encoded.
func (ca *authority) issue(tmpl *x509.Certificate) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl.SerialNumber = serial()
	tmpl.NotBefore = time.Now().Add(-time.Hour)
	tmpl.NotAfter = time.Now().Add(validity)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return nil, nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), nil
}

func ensureCert(dir, name string, ca *authority, tmpl *x509.Certificate) error {
	certPath := filepath.Join(dir, name+".crt")
	if _, err := os.Stat(certPath); err == nil {
		return nil
	}
	certPEM, keyPEM, err := ca.issue(tmpl)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, name+".key"), keyPEM, 0o600); err != nil {
		return err
	}
	return os.WriteFile(certPath, certPEM, 0o644)
}

func ensureKubeconfig(dir, name, server string, ca *authority, tmpl *x509.Certificate) error {
	path := filepath.Join(dir, name+".kubeconfig")
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	certPEM, keyPEM, err := ca.issue(tmpl)
	if err != nil {
		return err
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["local"] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: ca.pem}
	cfg.AuthInfos[name] = &clientcmdapi.AuthInfo{ClientCertificateData: certPEM, ClientKeyData: keyPEM}
	cfg.Contexts["local"] = &clientcmdapi.Context{Cluster: "local", AuthInfo: name}
	cfg.CurrentContext = "local"
	return clientcmd.WriteToFile(*cfg, path)
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return n
}

func writeKey(path string, key crypto.Signer) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	return writePEM(path, "PRIVATE KEY", der)
}

func writePEM(path, kind string, der []byte) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600)
}
