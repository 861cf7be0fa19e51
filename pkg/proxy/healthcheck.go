package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"k8s.io/klog/v2"
)

// healthCheckNodePorts serves the healthCheckNodePort of every externalTrafficPolicy Local Service, as
// kube-proxy does: a load balancer asks each node and sends traffic only to those that answer 200, the
// nodes with a ready endpoint of the Service. One HTTP server per port, started and stopped as Services
// come and go; all of them stop when the context given to newHealthCheckNodePorts ends.
type healthCheckNodePorts struct {
	ctx     context.Context
	host    string // address the servers listen on; "" for all
	listen  func(network, address string) (net.Listener, error)
	healthy func() bool // whether the proxy's rules are current

	mu      sync.Mutex
	servers map[uint16]*healthCheckServer
	wg      sync.WaitGroup
}

// healthCheck is what one Service's health check answers with.
type healthCheck struct {
	namespace, name string
	port            uint16
	localEndpoints  int
}

type healthCheckServer struct {
	srv     *http.Server
	healthy func() bool
	mu      sync.Mutex
	hc      healthCheck
}

func newHealthCheckNodePorts(ctx context.Context, host string, listen func(network, address string) (net.Listener, error),
	healthy func() bool) *healthCheckNodePorts {
	h := &healthCheckNodePorts{ctx: ctx, host: host, listen: listen, healthy: healthy,
		servers: map[uint16]*healthCheckServer{}}
	go func() {
		<-ctx.Done()
		h.mu.Lock()
		defer h.mu.Unlock()
		for port, s := range h.servers {
			_ = s.srv.Close()
			delete(h.servers, port)
		}
	}()
	return h
}

// update makes the servers exactly the checks given, keeping the listeners of ports that stay.
func (h *healthCheckNodePorts) update(checks []healthCheck) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.ctx.Err() != nil {
		return
	}
	want := make(map[uint16]healthCheck, len(checks))
	for _, c := range checks {
		want[c.port] = c
	}
	for port, s := range h.servers {
		if _, ok := want[port]; !ok {
			_ = s.srv.Close()
			delete(h.servers, port)
		}
	}
	for port, c := range want {
		if s, ok := h.servers[port]; ok {
			s.mu.Lock()
			s.hc = c
			s.mu.Unlock()
			continue
		}
		s, err := h.serve(c)
		if err != nil {
			// Like kube-proxy: the Service's rules are still written; only its load balancer health check
			// is missing, and the next sync tries again.
			klog.ErrorS(err, "Health check node port not served", "service", c.namespace+"/"+c.name, "port", port)
			continue
		}
		h.servers[port] = s
	}
}

func (h *healthCheckNodePorts) serve(c healthCheck) (*healthCheckServer, error) {
	ln, err := h.listen("tcp", net.JoinHostPort(h.host, strconv.Itoa(int(c.port))))
	if err != nil {
		return nil, fmt.Errorf("listening for health checks: %w", err)
	}
	s := &healthCheckServer{hc: c, healthy: h.healthy}
	s.srv = &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			klog.ErrorS(err, "Health check node port server stopped", "port", c.port)
		}
	}()
	return s, nil
}

// wait returns once every server has stopped (after the context ended).
func (h *healthCheckNodePorts) wait() { h.wg.Wait() }

// ServeHTTP answers as kube-proxy's service health server does, body and headers alike.
func (s *healthCheckServer) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	hc := s.hc
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("X-Load-Balancing-Endpoint-Weight", strconv.Itoa(hc.localEndpoints))
	healthy := s.healthy()
	if hc.localEndpoints == 0 || !healthy {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	var body struct {
		Service struct {
			Namespace string `json:"namespace"`
			Name      string `json:"name"`
		} `json:"service"`
		LocalEndpoints      int  `json:"localEndpoints"`
		ServiceProxyHealthy bool `json:"serviceProxyHealthy"`
	}
	body.Service.Namespace, body.Service.Name = hc.namespace, hc.name
	body.LocalEndpoints, body.ServiceProxyHealthy = hc.localEndpoints, healthy
	_ = json.NewEncoder(w).Encode(body)
}
