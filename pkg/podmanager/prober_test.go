package podmanager

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// The handlers against servers on loopback: the pod IP of these probes is 127.0.0.1.
func TestRunProbeHandlers(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ok":
			if r.Header.Get("X-Probe") != "yes" || !strings.HasPrefix(r.UserAgent(), "kube-probe/") {
				w.WriteHeader(http.StatusBadRequest)
			}
		case "/moved":
			http.Redirect(w, r, "http://127.0.0.2:1/elsewhere", http.StatusFound) // followed, it would be refused
		case "/moved-here":
			http.Redirect(w, r, "/fail", http.StatusFound) // on the same host: followed
		default:
			w.WriteHeader(http.StatusInternalServerError)
		}
	}))
	defer srv.Close()
	// A pod's serving certificate is rarely signed for its address: the kubelet does not verify it.
	tlsSrv := httptest.NewTLSServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer tlsSrv.Close()
	tlsURL, _ := url.Parse(tlsSrv.URL)
	tlsPort, _ := strconv.Atoi(tlsURL.Port())
	u, _ := url.Parse(srv.URL)
	port, _ := strconv.Atoi(u.Port())
	closed, _ := net.Listen("tcp", "127.0.0.1:0")
	closedPort := closed.Addr().(*net.TCPAddr).Port
	closed.Close()

	target := probeTarget{podIP: "127.0.0.1", containerID: "c1",
		ports: []corev1.ContainerPort{{Name: "http", ContainerPort: int32(port)}},
		exec: func(_ context.Context, id string, cmd []string, _ time.Duration) error {
			if id != "c1" || cmd[0] != "true" {
				return errors.New("command exited with 1")
			}
			return nil
		}}
	httpGet := func(path string, port intstr.IntOrString) corev1.ProbeHandler {
		return corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: path, Port: port,
			HTTPHeaders: []corev1.HTTPHeader{{Name: "X-Probe", Value: "yes"}}}}
	}
	tests := []struct {
		name    string
		handler corev1.ProbeHandler
		ok      bool
		warns   bool // passes with a ProbeWarning
	}{
		{"http 200 on a named port", httpGet("/ok", intstr.FromString("http")), true, false},
		{"http redirect to another host passes, unfollowed", httpGet("/moved", intstr.FromInt(port)), true, true},
		{"http redirect on the same host is followed", httpGet("/moved-here", intstr.FromInt(port)), false, false},
		{"https with a certificate nobody signed", corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
			Scheme: corev1.URISchemeHTTPS, Port: intstr.FromInt(tlsPort)}}, true, false},
		{"http 500", httpGet("/fail", intstr.FromInt(port)), false, false},
		{"unknown named port", httpGet("/ok", intstr.FromString("nope")), false, false},
		{"tcp open", corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt(port)}}, true, false},
		{"tcp closed", corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt(closedPort)}}, false, false},
		{"exec success", corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"true"}}}, true, false},
		{"exec failure", corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"false"}}}, false, false},
		{"grpc refused", corev1.ProbeHandler{GRPC: &corev1.GRPCAction{Port: int32(closedPort)}}, false, false},
	}
	for _, tt := range tests {
		err := runProbe(context.Background(), &corev1.Probe{ProbeHandler: tt.handler}, target, 2*time.Second)
		var warning errProbeWarning
		if warned := errors.As(err, &warning); warned != tt.warns {
			t.Errorf("%s: err = %v, want a ProbeWarning %v", tt.name, err, tt.warns)
		} else if warned {
			if !strings.HasPrefix(warning.msg, "Probe terminated redirects") {
				t.Errorf("%s: warning %q", tt.name, warning.msg)
			}
			err = nil
		}
		if (err == nil) != tt.ok {
			t.Errorf("%s: err = %v, want success %v", tt.name, err, tt.ok)
		}
	}
}

// A container killed for a failed liveness or startup probe gets the probe's own terminationGracePeriodSeconds
// when it has one, else the pod's, as with the kubelet.
func TestProbeFailureKillsWithTheProbesGracePeriod(t *testing.T) {
	probeGrace, podGrace := int64(5), int64(30)
	for _, tc := range []struct {
		name  string
		kind  probeKind
		probe *corev1.Probe
		want  int64
	}{
		{"liveness with its own grace", livenessProbe, &corev1.Probe{TerminationGracePeriodSeconds: &probeGrace}, probeGrace},
		{"startup with its own grace", startupProbe, &corev1.Probe{TerminationGracePeriodSeconds: &probeGrace}, probeGrace},
		{"liveness without", livenessProbe, &corev1.Probe{}, podGrace},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := testPod("busybox")
			pod.Spec.TerminationGracePeriodSeconds = &podGrace
			tc.probe.Exec = &corev1.ExecAction{Command: []string{"check"}}
			if tc.kind == startupProbe {
				pod.Spec.Containers[0].StartupProbe = tc.probe
			} else {
				pod.Spec.Containers[0].LivenessProbe = tc.probe
			}
			f := newFixture(t, pod)
			f.runtime.SetFakeImages([]string{"busybox"})
			if _, err := f.worker.sync(context.Background()); err != nil {
				t.Fatal(err)
			}
			containers, _ := f.runtime.ListContainers(context.Background(), nil)
			if len(containers) != 1 {
				t.Fatalf("containers %v, want one", containers)
			}
			// The prober of the running container has given up on it.
			key := proberKey(tc.kind, "server")
			f.worker.stopProber(key)
			failed := &prober{kind: tc.kind, containerID: containers[0].Id, probe: tc.probe, cancel: func() {},
				done: make(chan struct{})}
			close(failed.done)
			failed.result.Store(int32(probeFailure))
			f.worker.probers[key] = failed
			if _, err := f.worker.sync(context.Background()); err != nil {
				t.Fatal(err)
			}
			if got, ok := f.runtime.graces["server"]; !ok || got != tc.want {
				t.Errorf("container stopped with grace %d (stopped: %v), want %d", got, ok, tc.want)
			}
		})
	}
}
