package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/remotecommand"
)

// nodeAPIURL is the e2e node's API, reached over loopback.
const nodeAPIURL = "https://127.0.0.1:10250"

// Who may do what on the node API, on the real API server's TokenReview and SubjectAccessReview: strangers
// and tokens without RBAC are refused, nodes/metrics reads metrics and nothing else, get nodes/proxy reads
// but cannot exec by either method, create nodes/proxy can, a client certificate from another CA is refused,
// and repeated requests are answered from the node's cache without asking the API server again.
func TestNodeAPIRefusesStrangersAndFollowsRBAC(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ns := newNamespace(t)
	startBusybox(ctx, t, ns, "target", "echo logged; exec sleep 3600")
	nobody := nodeAccessToken(ctx, t, ns, "nobody", "")
	metricsReader := nodeAccessToken(ctx, t, ns, "metrics-reader", "metrics", "get")
	proxyReader := nodeAccessToken(ctx, t, ns, "proxy-reader", "proxy", "get")
	proxyCreator := nodeAccessToken(ctx, t, ns, "proxy-creator", "proxy", "create", "get")
	client := nodeAPIClient(t, nil)
	exec := "/exec/" + ns + "/target/c?command=echo&command=hi&output=1"

	for _, c := range []struct {
		who, token, method, path string
		upgrade                  bool
		want                     int
	}{
		{"anonymous", "", http.MethodGet, "/pods", false, http.StatusUnauthorized},
		{"anonymous", "", http.MethodGet, "/metrics", false, http.StatusUnauthorized},
		{"a token nobody granted anything", nobody, http.MethodGet, "/metrics", false, http.StatusForbidden},
		{"a token nobody granted anything", nobody, http.MethodGet, "/pods", false, http.StatusForbidden},
		{"nodes/metrics", metricsReader, http.MethodGet, "/metrics", false, http.StatusOK},
		{"nodes/metrics", metricsReader, http.MethodGet, "/metrics/resource", false, http.StatusOK},
		{"nodes/metrics", metricsReader, http.MethodGet, "/pods", false, http.StatusForbidden},
		{"nodes/metrics", metricsReader, http.MethodGet, "/stats/summary", false, http.StatusForbidden},
		{"nodes/metrics", metricsReader, http.MethodGet, "/containerLogs/" + ns + "/target/c", false, http.StatusForbidden},
		{"nodes/metrics", metricsReader, http.MethodPost, exec, false, http.StatusForbidden},
		{"get nodes/proxy", proxyReader, http.MethodGet, "/pods", false, http.StatusOK},
		{"get nodes/proxy", proxyReader, http.MethodGet, "/containerLogs/" + ns + "/target/c", false, http.StatusOK},
		{"get nodes/proxy", proxyReader, http.MethodPost, exec, false, http.StatusForbidden},
		{"get nodes/proxy", proxyReader, http.MethodGet, exec, true, http.StatusForbidden},
	} {
		code, body := nodeAPIRequest(ctx, t, client, c.token, c.method, c.path, c.upgrade)
		if code != c.want {
			t.Errorf("%s: %s %s%s answered %d (%.80q), want %d", c.who, c.method, c.path, map[bool]string{true: " (upgrade)"}[c.upgrade],
				code, body, c.want)
		}
	}

	// create nodes/proxy runs a command.
	cfg := &rest.Config{Host: nodeAPIURL, BearerToken: proxyCreator,
		TLSClientConfig: rest.TLSClientConfig{CAFile: servingCertFile(), ServerName: nodeName}}
	execURL, err := url.Parse(nodeAPIURL + exec)
	if err != nil {
		t.Fatal(err)
	}
	executor, err := remotecommand.NewSPDYExecutor(cfg, http.MethodPost, execURL)
	if err != nil {
		t.Fatal(err)
	}
	var stdout strings.Builder
	if err := executor.StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: &stdout}); err != nil || stdout.String() != "hi\n" {
		t.Errorf("create nodes/proxy: exec gave %q, %v; want hi", stdout.String(), err)
	}

	// A client certificate that the cluster CA did not sign, even for system:masters, is refused.
	strangerClient := nodeAPIClient(t, foreignClientCert(t))
	if resp, err := strangerClient.Get(nodeAPIURL + "/pods"); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("a client certificate from another CA got %d on /pods, want the handshake refused or 401", resp.StatusCode)
		}
	}

	// The node caches the API server's answers: after a first request, twenty more with the same token ask
	// the API server nothing.
	nodeAPIRequest(ctx, t, client, metricsReader, http.MethodGet, "/metrics", false)
	reviewsBefore := apiServerReviews(ctx, t)
	for range 20 {
		if code, _ := nodeAPIRequest(ctx, t, client, metricsReader, http.MethodGet, "/metrics", false); code != http.StatusOK {
			t.Fatalf("a repeated /metrics request answered %d", code)
		}
	}
	if after := apiServerReviews(ctx, t); after != reviewsBefore {
		t.Errorf("twenty repeated requests made the API server answer %v reviews, want none (before %v)",
			after.minus(reviewsBefore), reviewsBefore)
	}
	// And the counts do count: a token not seen before makes one TokenReview and one SubjectAccessReview.
	newcomer := nodeAccessToken(ctx, t, ns, "newcomer", "metrics", "get")
	nodeAPIRequest(ctx, t, client, newcomer, http.MethodGet, "/metrics", false)
	if d := apiServerReviews(ctx, t).minus(reviewsBefore); d.tokenReviews != 1 || d.accessReviews != 1 {
		t.Errorf("a new token's request made %+v, want one TokenReview and one SubjectAccessReview", d)
	}
}

// servingCertFile is the e2e node's self-signed serving certificate, which holds its CA.
func servingCertFile() string { return filepath.Join(runDir, "root/pki/kubelet.crt") }

// nodeAPIClient is an HTTPS client that trusts the node's self-signed certificate, presenting cert if given.
func nodeAPIClient(t *testing.T, cert *tls.Certificate) *http.Client {
	t.Helper()
	caPEM, err := os.ReadFile(servingCertFile())
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	cfg := &tls.Config{RootCAs: roots, ServerName: nodeName, MinVersion: tls.VersionTLS12}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
}

// nodeAPIRequest sends one request to the node API with token (none when empty), as an SPDY upgrade when
// asked, and returns the status and the start of the body.
func nodeAPIRequest(ctx context.Context, t *testing.T, client *http.Client, token, method, path string, upgrade bool) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, nodeAPIURL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if upgrade {
		req.Header.Set("Connection", "Upgrade")
		req.Header.Set("Upgrade", "SPDY/3.1")
		req.Header.Set("X-Stream-Protocol-Version", "v4.channel.k8s.io")
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusSwitchingProtocols {
		return resp.StatusCode, "" // the body is the upgraded stream: nothing to read, and no end to wait for
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	return resp.StatusCode, string(body)
}

// foreignClientCert is a client certificate for system:admin in system:masters from a CA of its own.
func foreignClientCert(t *testing.T) *tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	template := &x509.Certificate{SerialNumber: big.NewInt(1),
		Subject:   pkix.Name{CommonName: "system:admin", Organization: []string{"system:masters"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true, IsCA: true}
	der, err := x509.CreateCertificate(rand.Reader, template, template, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// reviews are how many TokenReviews and SubjectAccessReviews the API server has answered.
type reviews struct{ tokenReviews, accessReviews int }

func (r reviews) minus(o reviews) reviews {
	return reviews{r.tokenReviews - o.tokenReviews, r.accessReviews - o.accessReviews}
}

// apiServerReviews reads the API server's apiserver_request_total for the two review resources.
func apiServerReviews(ctx context.Context, t *testing.T) reviews {
	t.Helper()
	raw, err := stack.client.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		t.Fatalf("the API server's /metrics: %v", err)
	}
	var r reviews
	for _, line := range strings.Split(string(raw), "\n") {
		if !strings.HasPrefix(line, "apiserver_request_total{") || !strings.Contains(line, `verb="POST"`) {
			continue
		}
		var n float64
		fields := strings.Fields(line)
		if _, err := fmt.Sscan(fields[len(fields)-1], &n); err != nil {
			t.Fatalf("apiserver_request_total: %q", line)
		}
		switch {
		case strings.Contains(line, `resource="tokenreviews"`):
			r.tokenReviews += int(n)
		case strings.Contains(line, `resource="subjectaccessreviews"`):
			r.accessReviews += int(n)
		}
	}
	return r
}
