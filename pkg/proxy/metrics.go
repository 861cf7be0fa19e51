package proxy

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are kube-proxy's, with its names, labels, help and buckets, so its dashboards and alerts work
// unchanged. kube-proxy labels its per-family metrics with ip_family, one proxier per family; here one
// transaction writes both families' rules, so each sync is counted under both labels, IPv4 and IPv6.
type metrics struct {
	syncDuration        observers
	syncFullDuration    observers
	syncPartialDuration observers
	lastSynced          gauges
	lastQueued          gauges
	// networkProgramming is the time from an EndpointSlice change (its last-change-trigger-time
	// annotation, set by the EndpointSlice controller) to the rules that carry it being written.
	networkProgramming observers
	serviceChanges     prometheus.Counter
	endpointChanges    prometheus.Counter
	syncFailures       counters
	healthz, livez     *prometheus.CounterVec

	all []prometheus.Collector
}

// observers, gauges and counters are one metric's series, one per family, changed together.
type (
	observers []prometheus.Observer
	gauges    []prometheus.Gauge
	counters  []prometheus.Counter
)

func (o observers) Observe(v float64) {
	for _, s := range o {
		s.Observe(v)
	}
}

func (g gauges) Set(v float64) {
	for _, s := range g {
		s.Set(v)
	}
}

func (g gauges) SetToCurrentTime() {
	for _, s := range g {
		s.SetToCurrentTime()
	}
}

func (c counters) Inc() {
	for _, s := range c {
		s.Inc()
	}
}

// perFamily returns a vector's series for each family.
func perFamily[T any](withLabels func(...string) T) []T {
	var series []T
	for _, f := range families {
		series = append(series, withLabels(f.name))
	}
	return series
}

func newMetrics() *metrics {
	const ns = "kubeproxy"
	syncBuckets := prometheus.ExponentialBuckets(0.001, 2, 15)
	m := &metrics{}
	family := []string{"ip_family"}
	histogram := func(name, help string, buckets []float64) observers {
		v := prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: name, Help: help, Buckets: buckets}, family)
		m.all = append(m.all, v)
		return perFamily(v.WithLabelValues)
	}
	familyCounter := func(name, help string) counters {
		v := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: name, Help: help}, family)
		m.all = append(m.all, v)
		return perFamily(v.WithLabelValues)
	}
	counter := func(name, help string) prometheus.Counter {
		c := prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: name, Help: help})
		m.all = append(m.all, c)
		return c
	}
	gauge := func(name, help string) gauges {
		v := prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: name, Help: help}, family)
		m.all = append(m.all, v)
		return perFamily(v.WithLabelValues)
	}
	codes := func(name, help string) *prometheus.CounterVec {
		v := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: name, Help: help}, []string{"code"})
		m.all = append(m.all, v)
		return v
	}
	// kube-proxy's network programming buckets: fine below a second, coarse up to five minutes.
	var programmingBuckets []float64
	programmingBuckets = append(programmingBuckets, prometheus.LinearBuckets(0.25, 0.25, 2)...)
	programmingBuckets = append(programmingBuckets, prometheus.LinearBuckets(1, 1, 59)...)
	programmingBuckets = append(programmingBuckets, prometheus.LinearBuckets(60, 5, 12)...)
	programmingBuckets = append(programmingBuckets, prometheus.LinearBuckets(120, 30, 7)...)
	m.syncDuration = histogram("sync_proxy_rules_duration_seconds", "SyncProxyRules latency in seconds", syncBuckets)
	m.syncFullDuration = histogram("sync_full_proxy_rules_duration_seconds", "SyncProxyRules latency in seconds for full resyncs", syncBuckets)
	m.syncPartialDuration = histogram("sync_partial_proxy_rules_duration_seconds", "SyncProxyRules latency in seconds for partial resyncs", syncBuckets)
	m.lastSynced = gauge("sync_proxy_rules_last_timestamp_seconds", "The last time proxy rules were successfully synced")
	m.lastQueued = gauge("sync_proxy_rules_last_queued_timestamp_seconds", "The last time a sync of proxy rules was queued")
	m.networkProgramming = histogram("network_programming_duration_seconds", "In Cluster Network Programming Latency in seconds", programmingBuckets)
	m.serviceChanges = counter("sync_proxy_rules_service_changes_total", "Cumulative proxy rules Service changes")
	m.endpointChanges = counter("sync_proxy_rules_endpoint_changes_total", "Cumulative proxy rules Endpoint changes")
	m.syncFailures = familyCounter("sync_proxy_rules_nftables_sync_failures_total", "Number of failed nftables syncs")
	m.healthz = codes("proxy_healthz_total", "Cumulative proxy healthz HTTP status")
	m.livez = codes("proxy_livez_total", "Cumulative proxy livez HTTP status")
	return m
}
