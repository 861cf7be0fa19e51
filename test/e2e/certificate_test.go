package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// With serverTLSBootstrap the node asks the cluster for its serving certificate as the kubelet does: a
// kubelet-serving CSR for its addresses; the node API refuses handshakes until an admin approves it, then
// serves the certificate the cluster signed, reports its TTL, requests the next one before it expires
// (the e2e signer issues 3-minute certificates) and serves that without a restart; a restart reuses the
// stored one.
func TestServerTLSBootstrapAndRotation(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	node, err := stack.client.CoreV1().Nodes().Get(ctx, nodeName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var internalIP string
	for _, a := range node.Status.Addresses {
		if a.Type == corev1.NodeInternalIP {
			internalIP = a.Address
		}
	}
	caPEM, err := os.ReadFile(filepath.Join(runDir, "cluster/pki/ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	clusterCA := x509.NewCertPool()
	clusterCA.AppendCertsFromPEM(caPEM)
	// The serving certificate as a client that trusts only the cluster CA and reaches the node by its
	// InternalIP sees it (over loopback).
	served := func() (*x509.Certificate, error) {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", "127.0.0.1:10250",
			&tls.Config{RootCAs: clusterCA, ServerName: internalIP, MinVersion: tls.VersionTLS12})
		if err != nil {
			return nil, err
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0], nil
	}

	// A first start with serverTLSBootstrap: no certificate stored from an earlier run, none to serve
	// until the CSR is approved.
	started := time.Now()
	if err := stack.killAgent(); err != nil {
		t.Fatal(err)
	}
	stored, _ := filepath.Glob(filepath.Join(runDir, "root/pki/kubelet-server-*.pem"))
	for _, f := range stored {
		if err := os.Remove(f); err != nil {
			t.Fatal(err)
		}
	}
	stack.configExtra = "serverTLSBootstrap: true\n"
	if err := stack.startAgent(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stack.configExtra = ""
		restartAgent(t)
	})

	first := waitForServingCSR(ctx, t, started, nil)
	if ips := csrIPs(t, first); !slices.Contains(ips, internalIP) {
		t.Errorf("the CSR names the IP addresses %v, want the node's InternalIP %s among them", ips, internalIP)
	}
	if _, err := served(); err == nil {
		t.Errorf("the node API served a certificate before the CSR was approved")
	}
	approveCSR(ctx, t, first)
	var cert *x509.Certificate
	if err := pollUntil(ctx, func() (bool, error) {
		cert, err = served()
		return err == nil, nil
	}); err != nil {
		t.Fatalf("the node API does not serve a certificate the cluster CA signed for %s: %v", internalIP, err)
	}
	if cert.Subject.CommonName != "system:node:"+nodeName {
		t.Errorf("served certificate for %q, want system:node:%s", cert.Subject.CommonName, nodeName)
	}
	if ttl := nodeMetric(ctx, t, "kubelet_certificate_manager_server_ttl_seconds"); ttl <= 0 || ttl > 3*60 {
		t.Errorf("kubelet_certificate_manager_server_ttl_seconds = %v, want the 3-minute certificate's remaining seconds", ttl)
	}
	checkWithPromtool(ctx, t, "metrics")

	// Rotation, before the certificate expires and without a restart.
	approveCSR(ctx, t, waitForServingCSR(ctx, t, started, []string{first.Name}))
	var rotated *x509.Certificate
	if err := pollUntil(ctx, func() (bool, error) {
		rotated, err = served()
		return err == nil && rotated.SerialNumber.Cmp(cert.SerialNumber) != 0, nil
	}); err != nil {
		t.Fatalf("the node API still serves the first certificate (%v)", err)
	}
	if !time.Now().Before(cert.NotAfter) {
		t.Errorf("the certificate was rotated at %v, after it expired at %v", time.Now(), cert.NotAfter)
	}
	if n := nodeMetric(ctx, t, "kubelet_certificate_manager_server_rotation_seconds_count"); n < 1 {
		t.Errorf("kubelet_certificate_manager_server_rotation_seconds counted %v rotations, want 1 or more", n)
	}

	// A restart serves the stored certificate at once, with no new CSR.
	restartAgent(t)
	var again *x509.Certificate
	if err := pollUntil(ctx, func() (bool, error) {
		again, err = served()
		return err == nil, nil
	}); err != nil || again.SerialNumber.Cmp(rotated.SerialNumber) != 0 {
		t.Errorf("after a restart the node API serves %v (%v), want the stored certificate %v", again.SerialNumber, err, rotated.SerialNumber)
	}
}

// waitForServingCSR waits for a kubelet-serving CSR of the e2e node created after since and not among
// seen, and checks the usages it asks for.
func waitForServingCSR(ctx context.Context, t *testing.T, since time.Time, seen []string) *certificatesv1.CertificateSigningRequest {
	t.Helper()
	csrs := stack.client.CertificatesV1().CertificateSigningRequests()
	var csr *certificatesv1.CertificateSigningRequest
	if err := pollUntil(ctx, func() (bool, error) {
		list, err := csrs.List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		for i := range list.Items {
			c := &list.Items[i]
			if c.Spec.SignerName == certificatesv1.KubeletServingSignerName && c.Spec.Username == "system:node:"+nodeName &&
				!c.CreationTimestamp.Time.Before(since.Truncate(time.Second)) && !slices.Contains(seen, c.Name) {
				csr = c
				return true, nil
			}
		}
		return false, nil
	}); err != nil {
		t.Fatalf("no kubelet-serving CSR from %s: %v", nodeName, err)
	}
	if u := csr.Spec.Usages; !slices.Contains(u, certificatesv1.UsageServerAuth) || !slices.Contains(u, certificatesv1.UsageDigitalSignature) {
		t.Errorf("the CSR asks for the usages %v, want server auth and digital signature", u)
	}
	return csr
}

// approveCSR approves a CSR as an admin would (kubelet-serving CSRs are not approved by the
// controller-manager).
func approveCSR(ctx context.Context, t *testing.T, csr *certificatesv1.CertificateSigningRequest) {
	t.Helper()
	csrs := stack.client.CertificatesV1().CertificateSigningRequests()
	csr.Status.Conditions = append(csr.Status.Conditions, certificatesv1.CertificateSigningRequestCondition{
		Type: certificatesv1.CertificateApproved, Status: corev1.ConditionTrue, Reason: "E2EApproved", Message: "approved by the e2e test"})
	if _, err := csrs.UpdateApproval(ctx, csr.Name, csr, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("approving %s: %v", csr.Name, err)
	}
}

// nodeRequest is a CSR's request, after checking its subject is the node's: CN=system:node:<name>,
// O=system:nodes.
func nodeRequest(t *testing.T, csr *certificatesv1.CertificateSigningRequest) *x509.CertificateRequest {
	t.Helper()
	block, _ := pem.Decode(csr.Spec.Request)
	if block == nil {
		t.Fatalf("CSR %s holds no PEM request", csr.Name)
	}
	req, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if req.Subject.CommonName != "system:node:"+nodeName || !slices.Equal(req.Subject.Organization, []string{"system:nodes"}) {
		t.Errorf("CSR %s asks for %v, want CN=system:node:%s, O=system:nodes", csr.Name, req.Subject, nodeName)
	}
	return req
}

// csrIPs are the IP addresses a CSR asks for, after checking its subject is the node's.
func csrIPs(t *testing.T, csr *certificatesv1.CertificateSigningRequest) []string {
	t.Helper()
	req := nodeRequest(t, csr)
	var ips []string
	for _, ip := range req.IPAddresses {
		ips = append(ips, ip.String())
	}
	return ips
}

// nodeMetric reads a metric from the node's /metrics through the API server: its one series, or the sum
// of its labelled series. The test fails when the metric is missing.
func nodeMetric(ctx context.Context, t *testing.T, name string) float64 {
	t.Helper()
	raw, err := stack.client.CoreV1().RESTClient().Get().AbsPath("/api/v1/nodes", nodeName, "proxy", "metrics").DoRaw(ctx)
	if err != nil {
		t.Fatalf("/metrics: %v", err)
	}
	sum, found := 0.0, false
	for _, line := range strings.Split(string(raw), "\n") {
		series, value, ok := strings.Cut(line, " ")
		if !ok || (series != name && !strings.HasPrefix(series, name+"{")) {
			continue
		}
		var v float64
		if _, err := fmt.Sscan(value, &v); err != nil {
			t.Fatalf("%s: %q is not a number", name, value)
		}
		sum, found = sum+v, true
	}
	if !found {
		t.Fatalf("/metrics has no %s", name)
	}
	return sum
}
