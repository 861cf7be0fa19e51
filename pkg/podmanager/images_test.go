package podmanager

import (
	"context"
	"encoding/base64"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestPullCredentialsMatchLikeTheKubeletsKeyring(t *testing.T) {
	pod := testPod("img")
	pod.Spec.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "json"}, {Name: "legacy"}, {Name: "missing"}}
	f := newFixture(t, pod)
	ctx := context.Background()
	basic := base64.StdEncoding.EncodeToString([]byte("hub-user:hub-pass"))
	for _, s := range []*corev1.Secret{
		{ObjectMeta: metav1.ObjectMeta{Name: "json", Namespace: "default"}, Type: corev1.SecretTypeDockerConfigJson,
			Data: map[string][]byte{corev1.DockerConfigJsonKey: []byte(`{"auths":{
				"registry.example.com:5000":{"username":"port-user","password":"p1"},
				"*.corp.example":{"username":"glob-user","password":"p2"},
				"registry.example.com/team":{"username":"team-user","password":"p3"},
				"https://index.docker.io/v1/":{"auth":"` + basic + `"}}}`)}},
		{ObjectMeta: metav1.ObjectMeta{Name: "legacy", Namespace: "default"}, Type: corev1.SecretTypeDockercfg,
			Data: map[string][]byte{corev1.DockerConfigKey: []byte(`{"registry.example.com":{"username":"legacy-user","password":"p4"}}`)}},
	} {
		if _, err := f.client.CoreV1().Secrets("default").Create(ctx, s, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	users := func(image string) []string {
		var out []string
		for _, a := range f.worker.pullCredentials(ctx, pod, image) {
			out = append(out, a.Username)
		}
		return out
	}
	for image, want := range map[string][]string{
		"registry.example.com:5000/app:v1":      {"port-user"},
		"registry.example.com/team/app:v1":      {"team-user", "legacy-user"}, // the longer key first
		"registry.example.com/other/app":        {"legacy-user"},
		"registry.example.com/teamwork/app":     {"legacy-user"}, // a path prefix ends at a slash
		"build.corp.example/tools/go@sha256:ab": {"glob-user"},
		"busybox:1.36":                          {"hub-user"},
		"docker.io/library/nginx":               {"hub-user"},
		"localhost/pause:local":                 nil,
	} {
		got := users(image)
		if len(got) != len(want) {
			t.Errorf("%s: credentials of %v, want %v", image, got, want)
			continue
		}
		for i := range got {
			if got[i] != want[i] {
				t.Errorf("%s: credentials of %v, want %v", image, got, want)
			}
		}
	}
	if creds := f.worker.pullCredentials(ctx, pod, "busybox"); creds[0].Password != "hub-pass" {
		t.Errorf("auth field not decoded: %+v", creds[0])
	}
}

// blockingPuller is a runtime whose pulls wait until released, counting how many run at once.
type blockingPuller struct {
	fakeRuntime
	release           chan struct{}
	mu                sync.Mutex
	inFlight, maxSeen int
}

func (b *blockingPuller) PullImage(ctx context.Context, spec *runtimeapi.ImageSpec, _ *runtimeapi.AuthConfig,
	_ *runtimeapi.PodSandboxConfig) (string, error) {
	b.mu.Lock()
	b.inFlight++
	b.maxSeen = max(b.maxSeen, b.inFlight)
	b.mu.Unlock()
	<-b.release
	b.mu.Lock()
	b.inFlight--
	b.mu.Unlock()
	return spec.Image, nil
}

func TestImagePullsAreBoundedAcrossPods(t *testing.T) {
	f := newFixture(t, testPod("img"))
	runtime := &blockingPuller{fakeRuntime: f.runtime, release: make(chan struct{})}
	m := New(Config{MaxParallelImagePulls: 2}, runtime, nil, f.client, Sources{}, nil)
	var wg sync.WaitGroup
	for i := range 5 {
		wg.Go(func() {
			if _, err := m.pullImage(context.Background(), &runtimeapi.ImageSpec{Image: string(rune('a' + i))}, nil, nil); err != nil {
				t.Error(err)
			}
		})
	}
	// Let the pulls finish one by one, each time once the limit's worth are in flight (fewer at the end).
	for left := 5; left > 0; left-- {
		deadline := time.Now().Add(5 * time.Second)
		for {
			runtime.mu.Lock()
			n := runtime.inFlight
			runtime.mu.Unlock()
			if n >= min(2, left) || time.Now().After(deadline) {
				break
			}
			time.Sleep(time.Millisecond)
		}
		runtime.release <- struct{}{}
	}
	wg.Wait()
	if runtime.maxSeen != 2 {
		t.Errorf("at most %d pulls ran at once, want exactly the limit 2", runtime.maxSeen)
	}
}
