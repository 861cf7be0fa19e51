package server

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/proxy"
	translator "k8s.io/apiserver/pkg/util/proxy"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"
	"k8s.io/streaming/pkg/httpstream/wsstream"
)

// DeclaredFeatures are the node features of the node API for the Node's status.declaredFeatures:
// ExtendWebSocketsToKubelet has the API server pass WebSocket exec, attach and port-forward requests on as
// they come, and the node API translates them to the runtime's SPDY, as the kubelet v1.37 does.
func DeclaredFeatures() []string { return []string{"ExtendWebSocketsToKubelet"} }

// StreamingRuntime is what the streaming paths need of the container runtime: the URLs of its streaming
// server for an exec, an attach or a port forward, and a command run to its end for /run.
type StreamingRuntime interface {
	Exec(ctx context.Context, req *runtimeapi.ExecRequest) (*runtimeapi.ExecResponse, error)
	Attach(ctx context.Context, req *runtimeapi.AttachRequest) (*runtimeapi.AttachResponse, error)
	PortForward(ctx context.Context, req *runtimeapi.PortForwardRequest) (*runtimeapi.PortForwardResponse, error)
	ExecSync(ctx context.Context, containerID string, cmd []string, timeout time.Duration) (stdout, stderr []byte, err error)
	ListPodSandbox(ctx context.Context, filter *runtimeapi.PodSandboxFilter) ([]*runtimeapi.PodSandbox, error)
}

// handleStreaming registers /exec, /attach and /portForward, as the kubelet serves them: the runtime gives a
// URL on its own streaming server and the request (SPDY or WebSocket upgrade) is proxied to it.
func (s *NodeAPI) handleStreaming() {
	for _, path := range []string{"/exec/{namespace}/{pod}/{container}", "/exec/{namespace}/{pod}/{uid}/{container}"} {
		s.mux.HandleFunc(path, s.exec)
	}
	for _, path := range []string{"/attach/{namespace}/{pod}/{container}", "/attach/{namespace}/{pod}/{uid}/{container}"} {
		s.mux.HandleFunc(path, s.attach)
	}
	for _, path := range []string{"/portForward/{namespace}/{pod}", "/portForward/{namespace}/{pod}/{uid}"} {
		s.mux.HandleFunc(path, s.portForward)
	}
	for _, path := range []string{"POST /run/{namespace}/{pod}/{container}", "POST /run/{namespace}/{pod}/{uid}/{container}"} {
		s.mux.HandleFunc(path, s.run)
	}
}

// run runs the cmd query parameter (split at spaces, as the kubelet does for this legacy path) in a running
// container to its end and answers with its stdout then its stderr; a failure, a non-zero exit among them,
// is a 500 with the error.
func (s *NodeAPI) run(w http.ResponseWriter, r *http.Request) {
	id, ok := s.containerID(w, r)
	if !ok {
		return
	}
	cmd := strings.Split(r.URL.Query().Get("cmd"), " ")
	stdout, stderr, err := s.runtime.ExecSync(r.Context(), id, cmd, 0)
	if err != nil {
		http.Error(w, fmt.Sprintf("run in container %s: %v", id, err), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json") // the kubelet's, though the body is the command's output
	_, _ = w.Write(append(stdout, stderr...))
}

// streamOptions are the kubelet's query parameters of exec and attach: input, output, error and tty ("1"
// for on); a terminal merges stderr into stdout.
type streamOptions struct{ stdin, stdout, stderr, tty bool }

func parseStreamOptions(r *http.Request) (streamOptions, error) {
	q := r.URL.Query()
	o := streamOptions{stdin: q.Get("input") == "1", stdout: q.Get("output") == "1", stderr: q.Get("error") == "1",
		tty: q.Get("tty") == "1"}
	if o.tty {
		o.stderr = false
	}
	if !o.stdin && !o.stdout && !o.stderr {
		return o, fmt.Errorf("you must specify at least 1 of stdin, stdout, stderr")
	}
	return o, nil
}

func (s *NodeAPI) exec(w http.ResponseWriter, r *http.Request) {
	s.streamContainer(w, r, "exec in", func(ctx context.Context, id string, o streamOptions) (string, error) {
		resp, err := s.runtime.Exec(ctx, &runtimeapi.ExecRequest{ContainerId: id, Cmd: r.URL.Query()["command"],
			Tty: o.tty, Stdin: o.stdin, Stdout: o.stdout, Stderr: o.stderr})
		return resp.GetUrl(), err
	})
}

func (s *NodeAPI) attach(w http.ResponseWriter, r *http.Request) {
	s.streamContainer(w, r, "attach to", func(ctx context.Context, id string, o streamOptions) (string, error) {
		resp, err := s.runtime.Attach(ctx, &runtimeapi.AttachRequest{ContainerId: id, Tty: o.tty,
			Stdin: o.stdin, Stdout: o.stdout, Stderr: o.stderr})
		return resp.GetUrl(), err
	})
}

// streamContainer serves an exec or attach: the request's options and running container, the runtime's
// streaming URL for them, and the client's stream handed to it.
func (s *NodeAPI) streamContainer(w http.ResponseWriter, r *http.Request, what string,
	streamURL func(ctx context.Context, containerID string, opts streamOptions) (string, error)) {
	opts, err := parseStreamOptions(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	id, ok := s.containerID(w, r)
	if !ok {
		return
	}
	rawURL, err := streamURL(r.Context(), id, opts)
	if err != nil {
		http.Error(w, fmt.Sprintf("%s container %s: %v", what, id, err), http.StatusInternalServerError)
		return
	}
	location, ok := runtimeURL(w, rawURL)
	if !ok {
		return
	}
	// A WebSocket v5 client (the API server, since the node declares ExtendWebSocketsToKubelet) is translated
	// to the runtime's SPDY here, as the kubelet does; anything else is proxied as it comes.
	if wsstream.IsWebSocketRequestWithStreamCloseProtocol(r) {
		translator.NewStreamTranslatorHandler(location, nil, 0,
			translator.Options{Stdin: opts.stdin, Stdout: opts.stdout, Stderr: opts.stderr, Tty: opts.tty}).ServeHTTP(w, r)
		return
	}
	upgradeAwareProxy(location).ServeHTTP(w, r)
}

func (s *NodeAPI) portForward(w http.ResponseWriter, r *http.Request) {
	pod, ok := s.pod(w, r)
	if !ok {
		return
	}
	// SPDY tunnelled in WebSocket (the API server's port forward, since the node declares
	// ExtendWebSocketsToKubelet) carries the ports in its streams, as plain SPDY does.
	tunnel := wsstream.IsWebSocketRequestWithTunnelingProtocol(r)
	var ports []int32
	for _, p := range r.URL.Query()["port"] { // WebSocket clients name the ports; SPDY streams carry them
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil || n == 0 {
			http.Error(w, fmt.Sprintf("invalid port %q", p), http.StatusBadRequest)
			return
		}
		ports = append(ports, int32(n))
	}
	sandboxes, err := s.runtime.ListPodSandbox(r.Context(), &runtimeapi.PodSandboxFilter{
		State:         &runtimeapi.PodSandboxStateValue{State: runtimeapi.PodSandboxState_SANDBOX_READY},
		LabelSelector: map[string]string{"io.kubernetes.pod.uid": string(pod.UID)}})
	if err != nil || len(sandboxes) == 0 {
		http.Error(w, fmt.Sprintf("pod %q has no running sandbox: %v", pod.Name, err), http.StatusNotFound)
		return
	}
	resp, err := s.runtime.PortForward(r.Context(), &runtimeapi.PortForwardRequest{PodSandboxId: sandboxes[0].Id, Port: ports})
	if err != nil {
		http.Error(w, fmt.Sprintf("port forward to pod %s: %v", pod.Name, err), http.StatusInternalServerError)
		return
	}
	location, ok := runtimeURL(w, resp.Url)
	if !ok {
		return
	}
	handler := upgradeAwareProxy(location)
	if tunnel {
		handler = translator.NewTunnelingHandler(handler)
	}
	handler.ServeHTTP(w, r)
}

// pod finds the request's pod (and checks its UID when the path has one), or answers 404.
func (s *NodeAPI) pod(w http.ResponseWriter, r *http.Request) (*corev1.Pod, bool) {
	name := r.PathValue("pod")
	pod, err := s.pods.Pods(r.PathValue("namespace")).Get(name)
	if apierrors.IsNotFound(err) || err == nil && r.PathValue("uid") != "" && string(pod.UID) != r.PathValue("uid") {
		http.Error(w, fmt.Sprintf("pod %q does not exist", name), http.StatusNotFound)
		return nil, false
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return nil, false
	}
	return pod, true
}

// containerID is the runtime ID of the request's running container, as the pod's status has it.
func (s *NodeAPI) containerID(w http.ResponseWriter, r *http.Request) (string, bool) {
	pod, ok := s.pod(w, r)
	if !ok {
		return "", false
	}
	name := r.PathValue("container")
	for _, cs := range allStatuses(pod) {
		if cs.Name != name {
			continue
		}
		if cs.State.Running == nil || cs.ContainerID == "" {
			http.Error(w, fmt.Sprintf("container %q in pod %q is not running", name, pod.Name), http.StatusBadRequest)
			return "", false
		}
		_, id, _ := strings.Cut(cs.ContainerID, "://")
		return id, true
	}
	http.Error(w, fmt.Sprintf("container %q not found in pod %q", name, pod.Name), http.StatusNotFound)
	return "", false
}

// runtimeURL parses the runtime's streaming URL, answering 500 when it cannot.
func runtimeURL(w http.ResponseWriter, rawURL string) (*url.URL, bool) {
	location, err := url.Parse(rawURL)
	if err != nil {
		http.Error(w, fmt.Sprintf("the runtime's streaming URL %q: %v", rawURL, err), http.StatusInternalServerError)
		return nil, false
	}
	return location, true
}

// upgradeAwareProxy hands the client's upgrade request to the runtime's streaming server, as the kubelet does.
func upgradeAwareProxy(location *url.URL) http.Handler {
	return proxy.NewUpgradeAwareHandler(location, nil, false, true, streamErrors{})
}

type streamErrors struct{}

func (streamErrors) Error(w http.ResponseWriter, _ *http.Request, err error) {
	klog.ErrorS(err, "Proxying a stream to the runtime failed")
	http.Error(w, err.Error(), http.StatusInternalServerError)
}
