package e2e

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// imageDir holds the image tarballs hack/imagebuild wrote (make test and make images put them here).
func imageDir() string {
	if dir := os.Getenv("NODEAGENT_CACHE"); dir != "" {
		return filepath.Join(dir, "images")
	}
	return "/var/cache/nodeagent/images"
}

// privateRegistry serves an in-memory registry on loopback that demands HTTP basic auth, holding the
// busybox test image as <host>/e2e/busybox:v1; it returns that image's name.
func privateRegistry(t *testing.T, user, password string) string {
	t.Helper()
	handler := registry.New()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		if !ok || subtle.ConstantTimeCompare([]byte(u+":"+p), []byte(user+":"+password)) != 1 {
			w.Header().Set("WWW-Authenticate", `Basic realm="nodeagent-e2e"`)
			http.Error(w, "authentication required", http.StatusUnauthorized)
			return
		}
		handler.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	image := strings.TrimPrefix(srv.URL, "http://") + "/e2e/busybox:v1"
	ref, err := name.NewTag(image, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	img, err := tarball.ImageFromPath(filepath.Join(imageDir(), "localhost_busybox_local.tar"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img, remote.WithAuth(&authn.Basic{Username: user, Password: password})); err != nil {
		t.Fatalf("pushing %s: %v", image, err)
	}
	// The pulled name must not outlive the test: later runs have to pull again. Only the name goes: the
	// content is localhost/busybox:local's too (crictl rmi would delete that image with it).
	t.Cleanup(func() {
		_ = exec.Command("ctr", "-n", "k8s.io", "images", "rm", image).Run()
		out, err := exec.Command("ctr", "-n", "k8s.io", "images", "ls", "-q", "name==localhost/busybox:local").Output()
		if err != nil || strings.TrimSpace(string(out)) == "" {
			t.Errorf("localhost/busybox:local is gone after removing %s (%v)", image, err)
		}
	})
	return image
}

// Images from a registry that requires credentials: a pod with an imagePullSecret pulls (pull policy
// Always) and runs, one without it shows ErrImagePull with the registry's 401 and backs off.
func TestImagePullSecrets(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ns := newNamespace(t)
	image := privateRegistry(t, "e2e-user", "e2e-password")
	host, _, _ := strings.Cut(image, "/")
	config, err := json.Marshal(map[string]any{"auths": map[string]any{
		host: map[string]string{"username": "e2e-user", "password": "e2e-password"}}})
	if err != nil {
		t.Fatal(err)
	}
	core := stack.client.CoreV1()
	if _, err := core.Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "registry"},
		Type: corev1.SecretTypeDockerConfigJson, Data: map[string][]byte{corev1.DockerConfigJsonKey: config}},
		metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	withSecret := busyboxPod("with-secret", 1, "echo pulled-with-credentials; exec sleep 3600")
	withSecret.Spec.Containers[0].Image, withSecret.Spec.Containers[0].ImagePullPolicy = image, corev1.PullAlways
	withSecret.Spec.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "registry"}}
	without := withSecret.DeepCopy()
	without.Name, without.Spec.ImagePullSecrets = "without-secret", nil
	for _, p := range []*corev1.Pod{withSecret, without} {
		if _, err := core.Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	pod := waitForPod(ctx, t, ns, "with-secret", "Running", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning })
	waitForLog(ctx, t, logFile(pod, "c"), "pulled-with-credentials")
	waitForPod(ctx, t, ns, "without-secret", "refused by the registry", func(p *corev1.Pod) bool {
		if len(p.Status.ContainerStatuses) == 0 || p.Status.ContainerStatuses[0].State.Waiting == nil {
			return false
		}
		w := p.Status.ContainerStatuses[0].State.Waiting
		return w.Reason == "ErrImagePull" || w.Reason == "ImagePullBackOff"
	})
	err = pollUntil(ctx, func() (bool, error) {
		events, err := core.Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=without-secret,reason=Failed"})
		return err == nil && len(events.Items) > 0 && strings.Contains(events.Items[0].Message, "401 Unauthorized"), nil
	})
	if err != nil {
		t.Errorf("no Failed event with the registry's 401 Unauthorized for the pod without the secret: %v\n%s", err, describe(ns))
	}
	err = pollUntil(ctx, func() (bool, error) {
		events, err := core.Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=with-secret,reason=Pulled"})
		return err == nil && len(events.Items) > 0, nil
	})
	if err != nil {
		t.Errorf("no Pulled event for the pod with the secret (%v)", err)
	}
}
