package proxy

import (
	"encoding/json"
	"net/http"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// healthTimeout is how long a change may wait for its sync before the proxy calls itself unhealthy:
// kube-proxy's 2 × its default 30 s sync period.
const healthTimeout = time.Minute

// toBeDeletedTaint is the cluster autoscaler's mark on a node it is about to remove; kube-proxy's /healthz
// then fails so that load balancers drain the node first.
const toBeDeletedTaint = "ToBeDeletedByClusterAutoscaler"

// health is the proxy's answer to "are the rules current?", as kube-proxy's ProxyHealthServer computes it:
// healthy unless a change has waited more than healthTimeout for a sync.
type health struct {
	now func() time.Time

	mu            sync.Mutex
	lastUpdated   time.Time // the last successful sync
	oldestPending time.Time // the first change not written yet; zero when none
}

func (h *health) queued() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.oldestPending.IsZero() {
		h.oldestPending = h.now()
	}
}

// synced records a successful sync that wrote every change queued before start.
func (h *health) synced(start time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.lastUpdated = h.now()
	if !h.oldestPending.After(start) {
		h.oldestPending = time.Time{}
	}
}

func (h *health) state() (healthy bool, lastUpdated, now time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	now = h.now()
	healthy = h.oldestPending.IsZero() || now.Sub(h.oldestPending) <= healthTimeout
	return healthy, h.lastUpdated, now
}

// HealthHandler serves kube-proxy's /healthz and /livez (port 10256). /healthz also fails while the node is
// being deleted, so load balancers stop sending to it; /livez answers only for the proxy itself. node
// returns this node's object, nil when it is not known yet.
func (p *Proxier) HealthHandler(node func() *corev1.Node) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		p.serveHealth(w, node(), true)
	})
	mux.HandleFunc("/livez", func(w http.ResponseWriter, _ *http.Request) {
		p.serveHealth(w, node(), false)
	})
	return mux
}

func (p *Proxier) serveHealth(w http.ResponseWriter, node *corev1.Node, checkNode bool) {
	healthy, lastUpdated, now := p.health.state()
	var body struct {
		LastUpdated  string `json:"lastUpdated"`
		CurrentTime  string `json:"currentTime"`
		NodeEligible *bool  `json:"nodeEligible,omitempty"`
	}
	body.LastUpdated, body.CurrentTime = lastUpdated.String(), now.String()
	if checkNode {
		eligible := nodeEligible(node)
		body.NodeEligible = &eligible
		healthy = healthy && eligible
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	code := http.StatusOK
	if !healthy {
		code = http.StatusServiceUnavailable
	}
	metric := p.metrics.livez
	if checkNode {
		metric = p.metrics.healthz
	}
	metric.WithLabelValues(strconv.Itoa(code)).Inc()
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(body)
}

func nodeEligible(node *corev1.Node) bool {
	if node == nil {
		return true
	}
	if node.DeletionTimestamp != nil {
		return false
	}
	for _, t := range node.Spec.Taints {
		if t.Key == toBeDeletedTaint {
			return false
		}
	}
	return true
}
