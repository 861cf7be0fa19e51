package proxy

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are kube-proxy's, with its names, help and buckets, so its dashboards and alerts work unchanged.
type metrics struct {
	syncDuration        prometheus.Histogram
	syncFullDuration    prometheus.Histogram
	syncPartialDuration prometheus.Histogram
	lastSynced          prometheus.Gauge
	lastQueued          prometheus.Gauge
	// networkProgramming is the time from an EndpointSlice change (its last-change-trigger-time
	// annotation, set by the EndpointSlice controller) to the rules that carry it being written.
	networkProgramming prometheus.Histogram
	serviceChanges     prometheus.Counter
	endpointChanges    prometheus.Counter
	syncFailures       prometheus.Counter
	healthz, livez     *prometheus.CounterVec
}

func newMetrics() *metrics {
	const ns = "kubeproxy"
	syncBuckets := prometheus.ExponentialBuckets(0.001, 2, 15)
	histogram := func(name, help string, buckets []float64) prometheus.Histogram {
		return prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Name: name, Help: help, Buckets: buckets})
	}
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: name, Help: help})
	}
	gauge := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: name, Help: help})
	}
	// kube-proxy's network programming buckets: fine below a second, coarse up to five minutes.
	var programmingBuckets []float64
	programmingBuckets = append(programmingBuckets, prometheus.LinearBuckets(0.25, 0.25, 2)...)
	programmingBuckets = append(programmingBuckets, prometheus.LinearBuckets(1, 1, 59)...)
	programmingBuckets = append(programmingBuckets, prometheus.LinearBuckets(60, 5, 12)...)
	programmingBuckets = append(programmingBuckets, prometheus.LinearBuckets(120, 30, 7)...)
	return &metrics{
		syncDuration:        histogram("sync_proxy_rules_duration_seconds", "SyncProxyRules latency in seconds", syncBuckets),
		syncFullDuration:    histogram("sync_full_proxy_rules_duration_seconds", "SyncProxyRules latency in seconds for full resyncs", syncBuckets),
		syncPartialDuration: histogram("sync_partial_proxy_rules_duration_seconds", "SyncProxyRules latency in seconds for partial resyncs", syncBuckets),
		lastSynced:          gauge("sync_proxy_rules_last_timestamp_seconds", "The last time proxy rules were successfully synced"),
		lastQueued:          gauge("sync_proxy_rules_last_queued_timestamp_seconds", "The last time a sync of proxy rules was queued"),
		networkProgramming:  histogram("network_programming_duration_seconds", "In Cluster Network Programming Latency in seconds", programmingBuckets),
		serviceChanges:      counter("sync_proxy_rules_service_changes_total", "Cumulative proxy rules Service changes"),
		endpointChanges:     counter("sync_proxy_rules_endpoint_changes_total", "Cumulative proxy rules Endpoint changes"),
		syncFailures:        counter("sync_proxy_rules_nftables_sync_failures_total", "Number of failed nftables syncs"),
		healthz: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "proxy_healthz_total",
			Help: "Cumulative proxy healthz HTTP status"}, []string{"code"}),
		livez: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "proxy_livez_total",
			Help: "Cumulative proxy livez HTTP status"}, []string{"code"}),
	}
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.syncDuration, m.syncFullDuration, m.syncPartialDuration, m.lastSynced,
		m.lastQueued, m.networkProgramming, m.serviceChanges, m.endpointChanges, m.syncFailures, m.healthz, m.livez}
}
