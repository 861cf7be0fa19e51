// Package metrics owns the agent's Prometheus registry and its HTTP handler (pkg/server serves it). The metrics
// themselves are defined by the package that measures them (pkg/proxy, ...) and registered here at start-up;
// this package must not know what they mean.
package metrics

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// NewRegistry returns a registry with the Go runtime and process collectors that every Kubernetes
// component exposes (go_*, process_*), so dashboards built for them work unchanged.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// Handler serves reg in the Prometheus text format (or OpenMetrics when the scraper asks for it).
func Handler(reg *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg, EnableOpenMetrics: true})
}
