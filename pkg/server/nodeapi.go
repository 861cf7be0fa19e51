// Package server owns the agent's listeners: the node API (:10250 by default) and, through Serve, the plain
// HTTP ones the agent opens beside it (the metrics on :10249, the node's /healthz on 127.0.0.1:10248, the
// proxy's /healthz on :10256), whose handlers the other packages provide. The node API is served as the
// kubelet serves it: TLS with the
// node's serving certificate, clients authenticated by a certificate of the cluster's client CA or by a
// bearer token (TokenReview), each request authorized by a SubjectAccessReview with the kubelet's mapping
// of paths to node subresources. Behind it, the handlers read what the other components own (pod log files
// in the kubelet's layout, pods from the shared cache) and hand exec, attach and port-forward streams to the
// runtime's streaming server; the package itself changes no pod and no file of the node.
package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/nodeagent/nodeagent/internal/unixsock"
	"github.com/prometheus/client_golang/prometheus"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/klog/v2"
)

// NodeAPIConfig is what the node API needs to know.
type NodeAPIConfig struct {
	// Address is where it listens (host:port); "" opens no port (a standalone node without client CAs).
	Address string
	// LocalSocket, when set, is a unix socket (mode 0600) serving the same paths without authentication
	// or authorization: the socket's permissions are the check, as the runtime's socket's.
	LocalSocket string
	// NodeName names the node in authorization checks (nodes/<name>).
	NodeName string
	// CertFile and KeyFile are the serving certificate; when both are empty a self-signed one is made (see
	// servingCert) in CertDir.
	CertFile, KeyFile, CertDir string
	// HostIPs and Hostname are the serving certificate's subject alternative names when it is self-signed.
	HostIPs  []string
	Hostname string
	// Access is who gets in and how long the API server's answers are trusted.
	Access Access
	// ServingCertificate, when set, is asked for the certificate at each handshake (one the cluster signed
	// and rotates: serverTLSBootstrap); nil from it refuses the handshake. The files above are not read.
	ServingCertificate func() *tls.Certificate
	// ClientCA is the PEM bundle of the CAs that sign client certificates (the API server's kubelet client
	// certificate among them).
	ClientCA []byte
	// PodLogsDir is where the container logs are, in the kubelet's layout.
	PodLogsDir string
	// ParseLogLine reads one line of a CRI container log (the log shipper's parser); lines it refuses are
	// skipped, as the kubelet skips them.
	ParseLogLine func(raw []byte) (LogLine, error)
	// RunningPods are the pods the runtime runs (ready sandboxes with their running containers), for
	// /runningpods/; nil serves none.
	RunningPods func() []*corev1.Pod
	// Configz is the configuration in effect, for /configz.
	Configz any
	// Metrics serves the agent's metrics registry on /metrics; nil serves none. Registry is where the node
	// API's own metrics (kubelet_http_requests_total) go; nil keeps them unregistered.
	Metrics  http.Handler
	Registry prometheus.Registerer
	// ResourceMetrics serves /metrics/resource (the node's and containers' CPU and memory, for
	// metrics-server); nil serves none.
	ResourceMetrics http.Handler
	// ProbeMetrics serves /metrics/probes (prober_probe_total, prober_probe_duration_seconds); nil serves none.
	ProbeMetrics http.Handler
	// StatsSummary is /stats/summary (the kubelet's stats v1alpha1 Summary); nil serves none.
	StatsSummary func(ctx context.Context) (any, error)
	// Describe is /describe/pods/{namespace}/{name}: one pod as every part of the node sees it (nodeagent
	// describe pod); nil serves none.
	Describe func(ctx context.Context, namespace, name string) (any, error)
}

// LogLine is one line of a CRI container log, as /containerLogs writes it.
type LogLine struct {
	Time    time.Time
	Partial bool // the runtime split a long line: no newline after this part
	Message []byte
}

// NodeAPI serves the node API until its context ends.
type NodeAPI struct {
	cfg      NodeAPIConfig
	listener net.Listener // nil: no port
	local    net.Listener // nil: no local socket
	runtime  StreamingRuntime
	pods     corelisters.PodLister
	client   kubernetes.Interface
	tls      *tls.Config
	mux      *http.ServeMux
	// decisions caches authentication and authorization answers, as the kubelet's webhook caches do.
	decisions *decisionCache
	requests  *prometheus.CounterVec
}

// NewNodeAPI loads (or makes) the serving certificate and the client CAs; an unreadable file stops start-up.
func NewNodeAPI(cfg NodeAPIConfig, pods corelisters.PodLister, runtime StreamingRuntime, client kubernetes.Interface) (*NodeAPI, error) {
	tlsConfig := &tls.Config{ClientAuth: tls.VerifyClientCertIfGiven, MinVersion: tls.VersionTLS12}
	if current := cfg.ServingCertificate; current != nil {
		tlsConfig.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			if cert := current(); cert != nil {
				return cert, nil
			}
			return nil, errors.New("no serving certificate yet: the node's kubelet-serving CSR is not approved")
		}
	} else {
		cert, err := servingCert(cfg)
		if err != nil {
			return nil, err
		}
		tlsConfig.Certificates = []tls.Certificate{cert}
	}
	cas := x509.NewCertPool()
	if (cfg.Address != "" || len(cfg.ClientCA) > 0) && !cas.AppendCertsFromPEM(cfg.ClientCA) {
		return nil, fmt.Errorf("node API client CA: no PEM certificate in it")
	}
	s := &NodeAPI{cfg: cfg, pods: pods, runtime: runtime, client: client, mux: http.NewServeMux(), decisions: newDecisionCache(),
		requests: newHTTPRequests(),
		tls:      tlsConfig}
	tlsConfig.ClientCAs = cas
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	s.mux.HandleFunc("GET /containerLogs/{namespace}/{pod}/{container}", s.containerLogs)
	s.handleStreaming()
	s.handlePods()
	if cfg.Metrics != nil {
		s.mux.Handle("GET /metrics", cfg.Metrics)
	}
	if cfg.ResourceMetrics != nil {
		s.mux.Handle("GET /metrics/resource", cfg.ResourceMetrics)
	}
	if cfg.ProbeMetrics != nil {
		s.mux.Handle("GET /metrics/probes", cfg.ProbeMetrics)
	}
	if cfg.StatsSummary != nil {
		s.mux.HandleFunc("GET /stats/summary", func(w http.ResponseWriter, r *http.Request) {
			summary, err := cfg.StatsSummary(r.Context())
			if err != nil {
				http.Error(w, "Internal Error: failed to get the stats summary: "+err.Error(), http.StatusInternalServerError)
				return
			}
			writeJSON(w, summary)
		})
	}
	if cfg.Describe != nil {
		s.mux.HandleFunc("GET /describe/pods/{namespace}/{name}", func(w http.ResponseWriter, r *http.Request) {
			desc, err := cfg.Describe(r.Context(), r.PathValue("namespace"), r.PathValue("name"))
			if err != nil {
				http.Error(w, err.Error(), http.StatusNotFound)
				return
			}
			writeJSON(w, desc)
		})
	}
	if cfg.Registry != nil {
		if err := cfg.Registry.Register(s.requests); err != nil {
			return nil, fmt.Errorf("registering node API metrics: %w", err)
		}
	}
	return s, nil
}

// Listen opens the port and the local socket, so that one in use stops start-up before anything runs.
func (s *NodeAPI) Listen() error {
	if s.cfg.Address != "" {
		listener, err := net.Listen("tcp", s.cfg.Address)
		if err != nil {
			return fmt.Errorf("node API: %w", err)
		}
		s.listener = listener
	}
	if s.cfg.LocalSocket != "" {
		local, err := unixsock.Listen(s.cfg.LocalSocket, 0o755)
		if err != nil {
			return fmt.Errorf("node API local socket: %w", err)
		}
		s.local = local
	}
	return nil
}

// Run serves on what Listen opened until ctx ends.
func (s *NodeAPI) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	errs := make([]error, 2)
	serve := func(i int, srv *http.Server, start func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := start(); !errors.Is(err, http.ErrServerClosed) {
				klog.ErrorS(err, "The node API stopped serving", "address", s.cfg.Address, "socket", s.cfg.LocalSocket)
				errs[i] = err
			}
		}()
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-ctx.Done()
			shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = srv.Shutdown(shutdownCtx)
		}()
	}
	base := func(net.Listener) context.Context { return ctx }
	if s.listener != nil {
		srv := &http.Server{Handler: s.Handler(), TLSConfig: s.tls, ReadHeaderTimeout: 30 * time.Second, BaseContext: base}
		klog.InfoS("Serving the node API", "address", s.listener.Addr().String())
		serve(0, srv, func() error { return srv.ServeTLS(s.listener, "", "") })
	}
	if s.local != nil {
		srv := &http.Server{Handler: s.counted(s.mux), ReadHeaderTimeout: 30 * time.Second, BaseContext: base}
		klog.InfoS("Serving the node API to local root", "socket", s.cfg.LocalSocket)
		serve(1, srv, func() error { return srv.Serve(s.local) })
	}
	<-ctx.Done()
	wg.Wait()
	return errors.Join(errs...)
}

// counted counts each request in kubelet_http_requests_total before next serves it.
func (s *NodeAPI) counted(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.WithLabelValues(requestLabels(r.Method, r.URL.Path)...).Inc()
		next.ServeHTTP(w, r)
	})
}

// Handler is the node API behind authentication and authorization (without TLS, which Run adds).
func (s *NodeAPI) Handler() http.Handler {
	return s.counted(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, groups, err := s.authenticate(r)
		if err != nil {
			klog.V(2).InfoS("Node API request not authenticated", "path", r.URL.Path, "err", err)
			http.Error(w, "Unauthorized", http.StatusUnauthorized)
			return
		}
		verb, subresource := requestAttributes(r)
		allowed, reason, err := s.authorize(r.Context(), user, groups, verb, subresource)
		if err != nil {
			klog.ErrorS(err, "Node API authorization failed", "user", user, "path", r.URL.Path)
			http.Error(w, "Authorization error (user="+user+", verb="+verb+", resource=nodes, subresource="+subresource+")",
				http.StatusInternalServerError)
			return
		}
		if !allowed {
			msg := fmt.Sprintf("Forbidden (user=%s, verb=%s, resource=nodes, subresource=%s)", user, verb, subresource)
			klog.V(2).InfoS("Node API request forbidden", "user", user, "verb", verb, "subresource", subresource, "reason", reason)
			http.Error(w, msg, http.StatusForbidden)
			return
		}
		s.mux.ServeHTTP(w, r)
	}))
}

// Access is the node API's authentication and authorization setup, as the kubelet's configuration has it.
type Access struct {
	// Anonymous lets requests without credentials through as system:anonymous, for authorization to decide.
	Anonymous bool
	// NoTokens refuses bearer tokens: client certificates only.
	NoTokens bool
	// AlwaysAllow allows every authenticated request without asking the API server.
	AlwaysAllow bool
	// TokenTTL, AllowedTTL and DeniedTTL are how long a TokenReview's answer, an allowing and a denying
	// answer (of either review) are kept; 0 keeps none.
	TokenTTL, AllowedTTL, DeniedTTL time.Duration
}

// DefaultAccess is the kubelet's as kubeadm sets it up: certificates and tokens, no anonymous access,
// SubjectAccessReview, and its webhook cache times.
func DefaultAccess() Access {
	return Access{TokenTTL: 2 * time.Minute, AllowedTTL: 5 * time.Minute, DeniedTTL: 30 * time.Second}
}

// authenticate returns the client's user and groups: a verified client certificate's common name and
// organizations, or a bearer token's user as the API server's TokenReview says; without either,
// system:anonymous if Access.Anonymous.
func (s *NodeAPI) authenticate(r *http.Request) (string, []string, error) {
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 {
		leaf := r.TLS.VerifiedChains[0][0]
		return leaf.Subject.CommonName, leaf.Subject.Organization, nil
	}
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	switch {
	case ok && token != "" && s.cfg.Access.NoTokens:
		return "", nil, errors.New("bearer tokens are not accepted (authentication.webhook.enabled is false)")
	case ok && token != "":
	case s.cfg.Access.Anonymous:
		return "system:anonymous", []string{"system:unauthenticated"}, nil
	default:
		return "", nil, errors.New("no client certificate and no bearer token")
	}
	key := "token/" + token
	if d, ok := s.decisions.get(key); ok {
		return d.user, d.groups, d.err
	}
	review, err := s.client.AuthenticationV1().TokenReviews().Create(r.Context(), &authenticationv1.TokenReview{
		Spec: authenticationv1.TokenReviewSpec{Token: token}}, metav1.CreateOptions{})
	if err != nil {
		return "", nil, fmt.Errorf("token review: %w", err)
	}
	d := decision{user: review.Status.User.Username, groups: review.Status.User.Groups}
	if !review.Status.Authenticated {
		d.err = fmt.Errorf("token not authenticated: %s", review.Status.Error)
	}
	ttl := s.cfg.Access.TokenTTL
	if d.err != nil {
		ttl = s.cfg.Access.DeniedTTL
	}
	s.decisions.put(key, d, ttl)
	return d.user, d.groups, d.err
}

// requestAttributes maps a request to the verb and the subresource of nodes/<name> that authorize it, as the
// kubelet does: GET → get, POST → create (and so on); /stats → stats, /metrics → metrics, /logs → log,
// /pods and /runningpods → pods, /healthz → healthz, /configz → configz, anything else → proxy. Beyond the kubelet, exec,
// attach, portForward and run need create whatever the method: the kubelet lets get nodes/proxy exec over a
// WebSocket GET, so a read-only monitoring role could run commands in every pod.
func requestAttributes(r *http.Request) (verb, subresource string) {
	if isStreamingPath(r.URL.Path) {
		return "create", "proxy"
	}
	switch r.Method {
	case http.MethodPost:
		verb = "create"
	case http.MethodPut:
		verb = "update"
	case http.MethodPatch:
		verb = "patch"
	case http.MethodDelete:
		verb = "delete"
	default:
		verb = "get"
	}
	subresource = "proxy"
	for prefix, sub := range map[string]string{"/stats": "stats", "/metrics": "metrics", "/logs": "log",
		"/pods": "pods", "/runningpods": "pods", "/healthz": "healthz", "/configz": "configz"} {
		if r.URL.Path == prefix || strings.HasPrefix(r.URL.Path, prefix+"/") {
			subresource = sub
		}
	}
	return verb, subresource
}

func isStreamingPath(path string) bool {
	for _, prefix := range []string{"/exec/", "/attach/", "/portForward/", "/run/"} {
		if strings.HasPrefix(path, prefix) {
			return true
		}
	}
	return false
}

// authorize asks the API server whether the user may do verb on nodes/<name>/<subresource>. The fine-grained
// subresources (pods, healthz, configz; KEP-2862) fall back to proxy, which implies them, as with the kubelet.
func (s *NodeAPI) authorize(ctx context.Context, user string, groups []string, verb, subresource string) (bool, string, error) {
	if s.cfg.Access.AlwaysAllow {
		return true, "", nil
	}
	allowed, reason, err := s.review(ctx, user, groups, verb, subresource)
	if err != nil || allowed {
		return allowed, reason, err
	}
	switch subresource {
	case "pods", "healthz", "configz":
		return s.review(ctx, user, groups, verb, "proxy")
	}
	return false, reason, nil
}

func (s *NodeAPI) review(ctx context.Context, user string, groups []string, verb, subresource string) (bool, string, error) {
	key := strings.Join([]string{"sar", user, strings.Join(groups, ","), verb, subresource}, "/")
	if d, ok := s.decisions.get(key); ok {
		return d.allowed, d.reason, nil
	}
	sar, err := s.client.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{
		Spec: authorizationv1.SubjectAccessReviewSpec{User: user, Groups: groups,
			ResourceAttributes: &authorizationv1.ResourceAttributes{Verb: verb, Version: "v1", Resource: "nodes",
				Subresource: subresource, Name: s.cfg.NodeName}}}, metav1.CreateOptions{})
	if err != nil {
		return false, "", fmt.Errorf("subject access review: %w", err)
	}
	ttl := s.cfg.Access.DeniedTTL
	if sar.Status.Allowed {
		ttl = s.cfg.Access.AllowedTTL
	}
	s.decisions.put(key, decision{allowed: sar.Status.Allowed, reason: sar.Status.Reason}, ttl)
	return sar.Status.Allowed, sar.Status.Reason, nil
}

// decision is a cached answer: of a TokenReview (user, groups, err) or of a SubjectAccessReview (allowed,
// reason).
type decision struct {
	user    string
	groups  []string
	err     error
	allowed bool
	reason  string
	expires time.Time
}

// maxDecisions bounds the cached answers.
const maxDecisions = 4096

type decisionCache struct {
	mu      sync.Mutex
	entries map[string]decision
}

func newDecisionCache() *decisionCache { return &decisionCache{entries: map[string]decision{}} }

func (c *decisionCache) get(key string) (decision, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	d, ok := c.entries[key]
	if !ok || time.Now().After(d.expires) {
		return decision{}, false
	}
	return d, true
}

func (c *decisionCache) put(key string, d decision, ttl time.Duration) {
	if ttl <= 0 {
		return
	}
	d.expires = time.Now().Add(ttl)
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= maxDecisions {
		clear(c.entries) // simple and bounded: the next requests ask again
	}
	c.entries[key] = d
}
