package podmanager

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"path"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"
)

// pullImage pulls through the runtime, at most cfg.MaxParallelImagePulls at a time across all pods, trying
// each credential in turn (anonymously when there are none) as the kubelet does; it returns the image
// reference of the first pull that succeeds.
func (m *Manager) pullImage(ctx context.Context, spec *runtimeapi.ImageSpec, creds []*runtimeapi.AuthConfig,
	sandboxConfig *runtimeapi.PodSandboxConfig) (string, error) {
	release, err := m.pullSlots.acquire(ctx)
	if err != nil {
		return "", err
	}
	defer release()
	if len(creds) == 0 {
		return m.runtime.PullImage(ctx, spec, nil, sandboxConfig)
	}
	var errs []error
	for _, auth := range creds {
		ref, err := m.runtime.PullImage(ctx, spec, auth, sandboxConfig)
		if err == nil {
			return ref, nil
		}
		errs = append(errs, err)
	}
	return "", errors.Join(errs...)
}

// runPodSandbox creates a sandbox, at most cfg.MaxParallelSandboxes at a time.
func (m *Manager) runPodSandbox(ctx context.Context, runtime Runtime, config *runtimeapi.PodSandboxConfig) (string, error) {
	release, err := m.sandboxSlots.acquire(ctx)
	if err != nil {
		return "", err
	}
	defer release()
	return runtime.RunPodSandbox(ctx, config, "")
}

// limiter bounds how many callers hold it at once; a nil limiter bounds nothing.
type limiter chan struct{}

func newLimiter(n int) limiter {
	if n <= 0 {
		return nil
	}
	return make(limiter, n)
}

// acquire waits for a slot (or ctx) and returns the function that frees it.
func (l limiter) acquire(ctx context.Context) (release func(), err error) {
	if l == nil {
		return func() {}, nil
	}
	select {
	case l <- struct{}{}:
		return func() { <-l }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// pullCredentials returns the credentials in the pod's imagePullSecrets that apply to image, most specific
// registry key first. A secret that cannot be read is reported by an event and skipped, as with the kubelet.
func (w *worker) pullCredentials(ctx context.Context, pod *corev1.Pod, image string) []*runtimeapi.AuthConfig {
	var keyring []registryCredential
	for _, ref := range pod.Spec.ImagePullSecrets {
		secret, err := w.m.objects.Secret(ctx, w.uid, pod.Namespace, ref.Name)
		if err == nil {
			var creds []registryCredential
			creds, err = parseDockerConfig(secret)
			keyring = append(keyring, creds...)
		}
		if err != nil {
			klog.InfoS("Unable to use image pull secret", "pod", w.key, "secret", ref.Name, "err", err)
			w.m.recorder.Eventf(pod, corev1.EventTypeWarning, "FailedToRetrieveImagePullSecret",
				"Unable to retrieve some image pull secrets (%s); attempting to pull the image may not succeed.", ref.Name)
		}
	}
	sort.SliceStable(keyring, func(i, j int) bool { return keyring[i].key > keyring[j].key })
	host, repo := splitImage(image)
	var out []*runtimeapi.AuthConfig
	for _, c := range keyring {
		if c.matches(host, repo) {
			out = append(out, c.auth)
		}
	}
	return out
}

// registryCredential is one entry of a docker config: a registry key (host[:port][/path], the host possibly
// with * globs) and its credentials.
type registryCredential struct {
	key  string
	auth *runtimeapi.AuthConfig
}

type dockerConfigEntry struct {
	Username      string `json:"username"`
	Password      string `json:"password"`
	Auth          string `json:"auth"`
	IdentityToken string `json:"identitytoken"`
}

// parseDockerConfig reads a kubernetes.io/dockerconfigjson or kubernetes.io/dockercfg Secret.
func parseDockerConfig(secret *corev1.Secret) ([]registryCredential, error) {
	var entries map[string]dockerConfigEntry
	switch secret.Type {
	case corev1.SecretTypeDockerConfigJson:
		var cfg struct {
			Auths map[string]dockerConfigEntry `json:"auths"`
		}
		if err := json.Unmarshal(secret.Data[corev1.DockerConfigJsonKey], &cfg); err != nil {
			return nil, fmt.Errorf("secret %s: %s: %w", secret.Name, corev1.DockerConfigJsonKey, err)
		}
		entries = cfg.Auths
	case corev1.SecretTypeDockercfg:
		if err := json.Unmarshal(secret.Data[corev1.DockerConfigKey], &entries); err != nil {
			return nil, fmt.Errorf("secret %s: %s: %w", secret.Name, corev1.DockerConfigKey, err)
		}
	default:
		return nil, fmt.Errorf("secret %s has type %q, want %s or %s", secret.Name, secret.Type,
			corev1.SecretTypeDockerConfigJson, corev1.SecretTypeDockercfg)
	}
	var out []registryCredential
	for key, e := range entries {
		user, password := e.Username, e.Password
		if user == "" && e.Auth != "" {
			decoded, err := base64.StdEncoding.DecodeString(e.Auth)
			if err != nil {
				return nil, fmt.Errorf("secret %s: auth of %s: %w", secret.Name, key, err)
			}
			user, password, _ = strings.Cut(string(decoded), ":")
		}
		// ServerAddress stays empty, as the kubelet leaves it: the runtime parses it as a URL (which
		// "host:port" is not) and, when empty, uses the credentials for the image's own registry.
		out = append(out, registryCredential{key: normalizeRegistryKey(key), auth: &runtimeapi.AuthConfig{
			Username: user, Password: password, IdentityToken: e.IdentityToken}})
	}
	return out, nil
}

// normalizeRegistryKey strips the scheme and the Docker Hub's legacy /v1/ suffix from a config key.
func normalizeRegistryKey(key string) string {
	key = strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(key, "https://"), "http://"), "/")
	host, rest, hasPath := strings.Cut(key, "/")
	switch {
	case !isDockerHub(host):
		return key
	case !hasPath || rest == "v1" || rest == "v2":
		return "docker.io"
	}
	return "docker.io/" + rest
}

func isDockerHub(host string) bool {
	return host == "docker.io" || host == "index.docker.io" || host == "registry-1.docker.io"
}

// splitImage returns an image reference's registry host (with port) and repository path, defaulting to
// Docker Hub as the runtime does.
func splitImage(image string) (host, repo string) {
	name := image
	if i := strings.IndexByte(name, '@'); i >= 0 {
		name = name[:i]
	}
	if i := strings.LastIndexByte(name, ':'); i > strings.LastIndexByte(name, '/') {
		name = name[:i] // the tag
	}
	first, rest, ok := strings.Cut(name, "/")
	if !ok || !strings.ContainsAny(first, ".:") && first != "localhost" {
		return "docker.io", name
	}
	if isDockerHub(first) {
		return "docker.io", rest
	}
	return first, rest
}

// matches follows the kubelet's keyring: the host must match (each dot-separated part a glob), the port
// must be equal, and the key's path must be a prefix of the repository path.
func (c registryCredential) matches(host, repo string) bool {
	keyHost, keyPath, _ := strings.Cut(c.key, "/")
	kh, kp := splitPort(keyHost)
	ih, ip := splitPort(host)
	if kp != ip {
		return false
	}
	keyParts, hostParts := strings.Split(kh, "."), strings.Split(ih, ".")
	if len(keyParts) != len(hostParts) {
		return false
	}
	for i := range keyParts {
		if ok, err := path.Match(keyParts[i], hostParts[i]); err != nil || !ok {
			return false
		}
	}
	return keyPath == "" || repo == keyPath || strings.HasPrefix(repo, keyPath+"/")
}

func splitPort(hostport string) (host, port string) {
	if h, p, err := net.SplitHostPort(hostport); err == nil {
		return h, p
	}
	return hostport, ""
}
