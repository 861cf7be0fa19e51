package podmanager

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/tools/record"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	critest "k8s.io/cri-api/pkg/apis/testing"
)

// An httpGet postStart hook goes to the pod's address as the runtime reports it (the posted status has none
// yet), accepts any certificate, passes whatever the status code (only a failed request fails a hook), and an
// HTTPS hook answered in plain HTTP is retried over HTTP with a LifecycleHTTPFallback event, as the kubelet's.
func TestHTTPGetHooksAsTheKubeletRunsThem(t *testing.T) {
	// The fake runtime gives every sandbox this address; the hooks' servers listen there.
	saved := critest.FakePodSandboxIPs
	critest.FakePodSandboxIPs = []string{"127.0.0.1"}
	defer func() { critest.FakePodSandboxIPs = saved }()

	var mu sync.Mutex
	var got []string
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, r.URL.Path+" "+r.UserAgent())
		mu.Unlock()
		w.WriteHeader(http.StatusInternalServerError)
	})
	tlsSrv := httptest.NewTLSServer(handler)
	defer tlsSrv.Close()
	plainSrv := httptest.NewServer(handler)
	defer plainSrv.Close()

	for _, tc := range []struct {
		name, server, event string
	}{
		{"https with a certificate nobody signed", tlsSrv.URL, ""},
		{"https answered in plain http", plainSrv.URL, "LifecycleHTTPFallback"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got = nil
			u, _ := url.Parse(tc.server)
			port, _ := strconv.Atoi(u.Port())
			pod := testPod("busybox")
			pod.Spec.Containers[0].Lifecycle = &corev1.Lifecycle{PostStart: &corev1.LifecycleHandler{
				HTTPGet: &corev1.HTTPGetAction{Path: "/started", Port: intstr.FromInt(port), Scheme: corev1.URISchemeHTTPS}}}
			f := newFixture(t, pod)
			recorder := record.NewFakeRecorder(100)
			f.worker.m.recorder = recorder
			f.runtime.SetFakeImages([]string{"busybox"})
			if _, err := f.worker.sync(context.Background()); err != nil {
				t.Fatal(err)
			}
			containers, _ := f.runtime.ListContainers(context.Background(), nil)
			if len(containers) != 1 || containers[0].State != runtimeapi.ContainerState_CONTAINER_RUNNING {
				t.Errorf("containers %v, want one running: the hook should have passed", containers)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(got) == 0 || got[len(got)-1] != "/started kube-lifecycle/1.37" {
				t.Errorf("hook requests %q, want /started from kube-lifecycle/1.37", got)
			}
			all := strings.Join(recordedEvents(recorder), "\n")
			if strings.Contains(all, "FailedPostStartHook") {
				t.Errorf("events:\n%s", all)
			}
			if tc.event != "" && !strings.Contains(all, tc.event) {
				t.Errorf("no %s event in:\n%s", tc.event, all)
			}
		})
	}
}
