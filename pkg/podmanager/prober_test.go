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
		default:
			w.WriteHeader(http.StatusInternalServerError)
		}
	}))
	defer srv.Close()
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
	}{
		{"http 200 on a named port", httpGet("/ok", intstr.FromString("http")), true},
		{"http redirect counts as success, unfollowed", httpGet("/moved", intstr.FromInt(port)), true},
		{"http 500", httpGet("/fail", intstr.FromInt(port)), false},
		{"unknown named port", httpGet("/ok", intstr.FromString("nope")), false},
		{"tcp open", corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt(port)}}, true},
		{"tcp closed", corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt(closedPort)}}, false},
		{"exec success", corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"true"}}}, true},
		{"exec failure", corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"false"}}}, false},
		{"grpc refused", corev1.ProbeHandler{GRPC: &corev1.GRPCAction{Port: int32(closedPort)}}, false},
	}
	for _, tt := range tests {
		err := runProbe(context.Background(), &corev1.Probe{ProbeHandler: tt.handler}, target, 2*time.Second)
		if (err == nil) != tt.ok {
			t.Errorf("%s: err = %v, want success %v", tt.name, err, tt.ok)
		}
	}
}
