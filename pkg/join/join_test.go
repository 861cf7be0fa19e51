package join

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/cluster-bootstrap/token/jws"

	"github.com/nodeagent/nodeagent/pkg/config"
)

const (
	tokenID     = "abcdef"
	tokenSecret = "0123456789abcdef"
)

// fakeCluster serves cluster-info signed for the token, and a kubelet-config, over TLS, as a kubeadm
// control plane does; signedFor is the secret the signature is made with.
func fakeCluster(t *testing.T, signedFor string) (addr, hash string) {
	t.Helper()
	mux := http.NewServeMux()
	srv := httptest.NewUnstartedServer(mux)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	kubeconfig, err := clientcmd.Write(clientcmdapi.Config{Clusters: map[string]*clientcmdapi.Cluster{"": {Server: srv.URL, CertificateAuthorityData: ca}}})
	if err != nil {
		t.Fatal(err)
	}
	sig, err := jws.ComputeDetachedSignature(string(kubeconfig), tokenID, signedFor)
	if err != nil {
		t.Fatal(err)
	}
	serve := func(cm *corev1.ConfigMap) http.HandlerFunc {
		return func(w http.ResponseWriter, _ *http.Request) {
			cm.APIVersion, cm.Kind = "v1", "ConfigMap"
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(cm)
		}
	}
	mux.Handle("/api/v1/namespaces/kube-public/configmaps/cluster-info", serve(&corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "cluster-info", Namespace: "kube-public"},
		Data:       map[string]string{"kubeconfig": string(kubeconfig), "jws-kubeconfig-" + tokenID: sig}}))
	mux.Handle("/api/v1/namespaces/kube-system/configmaps/kubelet-config", serve(&corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "kubelet-config", Namespace: "kube-system"},
		Data: map[string]string{"kubelet": "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n" +
			"clusterDNS: [10.96.0.10]\nclusterDomain: example.internal\nnodeStatusReportFrequency: 0s\n" +
			"authorization: {mode: Webhook, webhook: {cacheAuthorizedTTL: 0s}}\nevictionHard: {memory.available: 200Mi}\n"}}))
	return strings.TrimPrefix(srv.URL, "https://"), CACertHash(srv.Certificate())
}

func TestDiscoverVerifiesTheClusterAndReadsItsKubeletConfig(t *testing.T) {
	addr, hash := fakeCluster(t, tokenSecret)
	c, err := Discover(context.Background(), Options{APIServer: addr, Token: tokenID + "." + tokenSecret, CACertHashes: []string{hash}, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if c.Server != "https://"+addr || c.Kubelet == nil || c.Kubelet.ClusterDomain != "example.internal" {
		t.Fatalf("discovered server %q, kubelet config %+v", c.Server, c.Kubelet)
	}
	boot, err := clientcmd.RESTConfigFromKubeConfig(c.BootstrapKubeconfig)
	if err != nil || boot.BearerToken != tokenID+"."+tokenSecret || boot.Host != c.Server {
		t.Errorf("bootstrap kubeconfig: %v, token %q, host %q", err, boot.BearerToken, boot.Host)
	}

	cfg := config.Default()
	before := *cfg
	c.Configure(cfg, DefaultFiles("/var/lib/x", ""))
	if strings.Join(cfg.ClusterDNS, ",") != "10.96.0.10" || cfg.ClusterDomain != "example.internal" ||
		cfg.EvictionHard["memory.available"] != "200Mi" || cfg.Authorization.Mode != "Webhook" {
		t.Errorf("configured: clusterDNS %v, domain %q, evictionHard %v, authorization %q", cfg.ClusterDNS, cfg.ClusterDomain, cfg.EvictionHard, cfg.Authorization.Mode)
	}
	// kubeadm writes 0s for what it leaves to the defaults.
	if cfg.NodeStatusReportFrequency != before.NodeStatusReportFrequency || cfg.Authorization.Webhook.CacheAuthorizedTTL != before.Authorization.Webhook.CacheAuthorizedTTL {
		t.Errorf("a 0s in the kubelet-config replaced a default: %v, %v", cfg.NodeStatusReportFrequency, cfg.Authorization.Webhook.CacheAuthorizedTTL)
	}
	if cfg.Kubeconfig != "/var/lib/x/kubeconfig" || cfg.BootstrapKubeconfig != "/var/lib/x/bootstrap-kubeconfig" || cfg.Authentication.X509.ClientCAFile != "/var/lib/x/pki/ca.crt" {
		t.Errorf("files: kubeconfig %q, bootstrap %q, client CA %q", cfg.Kubeconfig, cfg.BootstrapKubeconfig, cfg.Authentication.X509.ClientCAFile)
	}
}

func TestDiscoverRefuses(t *testing.T) {
	addr, hash := fakeCluster(t, tokenSecret)
	forged, _ := fakeCluster(t, "ffffffffffffffff")
	tests := []struct {
		name string
		opts Options
		want string
	}{
		{"another CA", Options{APIServer: addr, Token: tokenID + "." + tokenSecret, CACertHashes: []string{"sha256:" + strings.Repeat("0", 64)}},
			"the cluster CA does not match --discovery-token-ca-cert-hash: cluster-info's CA has " + hash},
		{"a signature made with another secret", Options{APIServer: forged, Token: tokenID + "." + tokenSecret, UnsafeSkipCAVerification: true},
			`the JWS signature of cluster-info does not match token id "abcdef"`},
		{"a token the cluster did not sign for", Options{APIServer: addr, Token: "zzzzzz." + tokenSecret, CACertHashes: []string{hash}},
			`token id "zzzzzz" is invalid for this cluster or it has expired`},
		{"no pin", Options{APIServer: addr, Token: tokenID + "." + tokenSecret}, "--discovery-token-ca-cert-hash is required"},
		{"a malformed token", Options{APIServer: addr, Token: "abc", CACertHashes: []string{hash}}, "is not a bootstrap token"},
		{"a malformed hash", Options{APIServer: addr, Token: tokenID + "." + tokenSecret, CACertHashes: []string{"md5:00"}}, "want sha256:<64 hex digits>"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.Timeout = 1500 * time.Millisecond
			_, err := Discover(context.Background(), tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Discover: %v, want an error saying %q", err, tc.want)
			}
		})
	}
}
