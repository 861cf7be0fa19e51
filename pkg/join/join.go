// Package join takes the node into a cluster that someone else made, with what `kubeadm token create
// --print-join-command` prints: it finds the cluster through the kube-public/cluster-info ConfigMap (whose
// JWS signature proves the token's holder made it, and whose CA is pinned by hash), writes the bootstrap
// kubeconfig and the CA, and maps the cluster's kube-system/kubelet-config onto the agent's configuration, as
// kubeadm join does for a kubelet. It must not start anything: the agent does, with what it returns.
package join

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	certutil "k8s.io/client-go/util/cert"
	bootstrapapi "k8s.io/cluster-bootstrap/token/api"
	"k8s.io/cluster-bootstrap/token/jws"
	bootstraputil "k8s.io/cluster-bootstrap/token/util"
	"k8s.io/klog/v2"
	kubeletv1beta1 "k8s.io/kubelet/config/v1beta1"
	"sigs.k8s.io/yaml"
)

// Options are kubeadm join's discovery arguments.
type Options struct {
	// APIServer is the host:port to discover the cluster from.
	APIServer string
	// Token is the bootstrap token, id.secret.
	Token string
	// CACertHashes pin the cluster CA: sha256:<hex of the SHA-256 of its SubjectPublicKeyInfo>.
	CACertHashes []string
	// UnsafeSkipCAVerification trusts the CA that cluster-info names, without a pin.
	UnsafeSkipCAVerification bool
	// Timeout bounds the discovery: an unreachable server, or a cluster-info not (yet) signed for the
	// token, is retried until then.
	Timeout time.Duration
}

// Cluster is what discovery found, verified.
type Cluster struct {
	// Server is the API server's URL as cluster-info names it (kubeadm uses it, not the discovery address).
	Server string
	// CA is the cluster CA bundle, PEM.
	CA []byte
	// BootstrapKubeconfig authenticates with the token against Server, trusting CA.
	BootstrapKubeconfig []byte
	// Kubelet is the cluster's kubelet-config, nil when the cluster has none (not made by kubeadm).
	Kubelet *kubeletv1beta1.KubeletConfiguration
}

// tokenUser is the user name kubeadm writes into bootstrap kubeconfigs.
const tokenUser = "tls-bootstrap-token-user"

// Discover finds and verifies the cluster as kubeadm's token discovery does, then reads its kubelet-config
// with the token. The errors say what to do about them.
func Discover(ctx context.Context, opts Options) (*Cluster, error) {
	id, secret, err := parseToken(opts.Token)
	if err != nil {
		return nil, err
	}
	pins, err := parsePins(opts.CACertHashes)
	if err != nil {
		return nil, err
	}
	if len(pins) == 0 && !opts.UnsafeSkipCAVerification {
		return nil, errors.New("--discovery-token-ca-cert-hash is required to trust the cluster's CA (or --discovery-token-unsafe-skip-ca-verification to trust whatever the server says)")
	}
	if _, _, err := net.SplitHostPort(opts.APIServer); err != nil {
		return nil, fmt.Errorf("API server address %q: want host:port: %w", opts.APIServer, err)
	}
	ctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()

	// First without verifying the server: the JWS signature (made with the token's secret by the
	// controller-manager's bootstrapsigner) proves that cluster-info came from someone who knows the token.
	insecure := &rest.Config{Host: "https://" + opts.APIServer, TLSClientConfig: rest.TLSClientConfig{Insecure: true}}
	kubeconfig, err := signedClusterInfo(ctx, insecure, id, secret)
	if err != nil {
		return nil, err
	}
	info, err := clientcmd.Load(kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("the kubeconfig in cluster-info does not parse: %w", err)
	}
	cluster := firstCluster(info)
	if cluster == nil || cluster.Server == "" {
		return nil, errors.New("the kubeconfig in cluster-info names no cluster")
	}
	ca := cluster.CertificateAuthorityData
	if len(pins) > 0 {
		if err := checkPins(ca, pins); err != nil {
			return nil, err
		}
		// Then again trusting the pinned CA, so a server that only replayed cluster-info cannot go on.
		secure := &rest.Config{Host: "https://" + opts.APIServer, TLSClientConfig: rest.TLSClientConfig{CAData: ca}}
		again, err := signedClusterInfo(ctx, secure, id, secret)
		if err != nil {
			return nil, fmt.Errorf("cluster-info through the pinned CA: %w", err)
		}
		if !bytes.Equal(again, kubeconfig) {
			return nil, errors.New("cluster-info read through the pinned CA differs from the first read")
		}
	}
	c := &Cluster{Server: cluster.Server, CA: ca}
	if c.BootstrapKubeconfig, err = bootstrapKubeconfig(cluster.Server, ca, opts.Token); err != nil {
		return nil, err
	}
	if c.Kubelet, err = kubeletConfig(ctx, c); err != nil {
		return nil, err
	}
	return c, nil
}

func parseToken(token string) (id, secret string, err error) {
	if !bootstraputil.IsValidBootstrapToken(token) {
		return "", "", fmt.Errorf("--token %q is not a bootstrap token: want [a-z0-9]{6}.[a-z0-9]{16}", token)
	}
	id, secret, _ = strings.Cut(token, ".")
	return id, secret, nil
}

// parsePins reads sha256:<hex> hashes, as kubeadm's pubkeypin.
func parsePins(hashes []string) ([][]byte, error) {
	var pins [][]byte
	for _, h := range hashes {
		algo, value, ok := strings.Cut(h, ":")
		sum, err := hex.DecodeString(value)
		if !ok || algo != "sha256" || err != nil || len(sum) != sha256.Size {
			return nil, fmt.Errorf("--discovery-token-ca-cert-hash %q: want sha256:<64 hex digits>", h)
		}
		pins = append(pins, sum)
	}
	return pins, nil
}

// checkPins accepts the CA bundle when one of its certificates' public keys is pinned.
func checkPins(caPEM []byte, pins [][]byte) error {
	certs, err := certutil.ParseCertsPEM(caPEM)
	if err != nil {
		return fmt.Errorf("the CA in cluster-info does not parse: %w", err)
	}
	var found []string
	for _, cert := range certs {
		sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
		for _, pin := range pins {
			if bytes.Equal(sum[:], pin) {
				return nil
			}
		}
		found = append(found, "sha256:"+hex.EncodeToString(sum[:]))
	}
	return fmt.Errorf("the cluster CA does not match --discovery-token-ca-cert-hash: cluster-info's CA has %s", strings.Join(found, ", "))
}

// CACertHash is the pin of a CA certificate, as --discovery-token-ca-cert-hash wants it.
func CACertHash(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// signedClusterInfo reads kube-public/cluster-info anonymously and returns its kubeconfig once it carries a
// valid signature for the token. An unreachable server and a missing signature (bootstrapsigner not yet
// done, or the token unknown or expired) are retried until ctx ends; a wrong signature is not.
func signedClusterInfo(ctx context.Context, cfg *rest.Config, id, secret string) ([]byte, error) {
	cfg.Timeout = 10 * time.Second
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("client for %s: %w", cfg.Host, err)
	}
	var last error
	for {
		cm, err := client.CoreV1().ConfigMaps(metav1.NamespacePublic).Get(ctx, bootstrapapi.ConfigMapClusterInfo, metav1.GetOptions{})
		switch {
		case err != nil:
			last = fmt.Errorf("reading %s/%s from %s: %w", metav1.NamespacePublic, bootstrapapi.ConfigMapClusterInfo, cfg.Host, err)
		case cm.Data[bootstrapapi.JWSSignatureKeyPrefix+id] == "":
			last = fmt.Errorf("token id %q is invalid for this cluster or it has expired: cluster-info carries no signature for it (kubeadm token create makes a new one)", id)
		default:
			content := cm.Data[bootstrapapi.KubeConfigKey]
			if !jws.DetachedTokenIsValid(cm.Data[bootstrapapi.JWSSignatureKeyPrefix+id], content, id, secret) {
				return nil, fmt.Errorf("the JWS signature of cluster-info does not match token id %q: wrong token secret, or a server that cannot be trusted", id)
			}
			return []byte(content), nil
		}
		klog.V(2).InfoS("Discovery retrying", "err", last)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("discovery gave up: %w", last)
		case <-time.After(time.Second):
		}
	}
}

func firstCluster(cfg *clientcmdapi.Config) *clientcmdapi.Cluster {
	if ctx := cfg.Contexts[cfg.CurrentContext]; ctx != nil && cfg.Clusters[ctx.Cluster] != nil {
		return cfg.Clusters[ctx.Cluster]
	}
	for _, c := range cfg.Clusters {
		return c
	}
	return nil
}

// bootstrapKubeconfig is kubeadm's: the server and CA of cluster-info and the token.
func bootstrapKubeconfig(server string, ca []byte, token string) ([]byte, error) {
	cfg := clientcmdapi.Config{
		Clusters:       map[string]*clientcmdapi.Cluster{"kubernetes": {Server: server, CertificateAuthorityData: ca}},
		AuthInfos:      map[string]*clientcmdapi.AuthInfo{tokenUser: {Token: token}},
		Contexts:       map[string]*clientcmdapi.Context{tokenUser + "@kubernetes": {Cluster: "kubernetes", AuthInfo: tokenUser}},
		CurrentContext: tokenUser + "@kubernetes",
	}
	data, err := clientcmd.Write(cfg)
	if err != nil {
		return nil, fmt.Errorf("bootstrap kubeconfig: %w", err)
	}
	return data, nil
}

// kubeletConfig reads kube-system/kubelet-config with the bootstrap token (kubeadm's kubeadm:kubelet-config
// Role lets bootstrap tokens read it); a cluster without one (not made by kubeadm) gives nil.
func kubeletConfig(ctx context.Context, c *Cluster) (*kubeletv1beta1.KubeletConfiguration, error) {
	restConfig, err := clientcmd.RESTConfigFromKubeConfig(c.BootstrapKubeconfig)
	if err != nil {
		return nil, err
	}
	restConfig.Timeout = 10 * time.Second
	client, err := kubernetes.NewForConfig(restConfig)
	if err != nil {
		return nil, err
	}
	cm, err := client.CoreV1().ConfigMaps(metav1.NamespaceSystem).Get(ctx, "kubelet-config", metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		klog.InfoS("The cluster has no kube-system/kubelet-config: the agent's defaults stand")
		return nil, nil
	}
	if apierrors.IsUnauthorized(err) {
		return nil, fmt.Errorf("the API server refused the bootstrap token (expired, or deleted): %w", err)
	}
	if err != nil {
		return nil, fmt.Errorf("reading kube-system/kubelet-config: %w", err)
	}
	return decodeKubelet(cm)
}

func decodeKubelet(cm *corev1.ConfigMap) (*kubeletv1beta1.KubeletConfiguration, error) {
	data, ok := cm.Data["kubelet"]
	if !ok {
		return nil, errors.New("kube-system/kubelet-config has no \"kubelet\" key")
	}
	var kc kubeletv1beta1.KubeletConfiguration
	if err := yaml.Unmarshal([]byte(data), &kc); err != nil {
		return nil, fmt.Errorf("kube-system/kubelet-config: %w", err)
	}
	return &kc, nil
}
