package dns

import (
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics has CoreDNS's names and labels, so its dashboards and alerts work on the agent: the server's
// (coredns_dns_*), the cache plugin's (coredns_cache_*) and the forward plugin's (coredns_proxy_*,
// coredns_forward_*).
type metrics struct {
	server string // the label of every series: "dns://" + the first listen address
	zones  string // the cache's zones label

	requests    *prometheus.CounterVec
	responses   *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	malformed   prometheus.Counter
	cacheHits   *prometheus.CounterVec
	cacheMisses *prometheus.CounterVec
	upstreamRT  *prometheus.HistogramVec
	// forwardRejects counts questions answered SERVFAIL because maxForwarding were waiting already.
	forwardRejects prometheus.Counter
	all            []prometheus.Collector
}

// newMetrics makes the server's metrics; cacheCounts gives the cache's success and denial entries, read
// when Prometheus scrapes rather than kept up to date on every query.
func newMetrics(server string, cacheCounts func() (success, denial int)) *metrics {
	m := &metrics{
		server: server,
		zones:  ".",
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "coredns_dns_requests_total", Help: "Counter of DNS requests made per zone, protocol and family.",
		}, []string{"server", "zone", "view", "proto", "family", "type"}),
		responses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "coredns_dns_responses_total", Help: "Counter of response status codes.",
		}, []string{"server", "zone", "view", "rcode", "plugin"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "coredns_dns_request_duration_seconds", Help: "Histogram of the time (in seconds) each request took per zone.",
			Buckets: prometheus.ExponentialBuckets(0.00025, 2, 16),
		}, []string{"server", "zone", "view", "type"}),
		malformed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "nodeagent_dns_malformed_requests_total", Help: "Packets that were not a DNS query the server could read; answered FORMERR or dropped.",
		}),
		cacheHits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "coredns_cache_hits_total", Help: "The count of cache hits.",
		}, []string{"server", "type", "zones", "view"}),
		cacheMisses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "coredns_cache_misses_total", Help: "The count of cache misses. Deprecated, derive misses from cache hits/requests counters.",
		}, []string{"server", "zones", "view"}),
		upstreamRT: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "coredns_proxy_request_duration_seconds", Help: "Histogram of the time each request took.",
			Buckets: prometheus.ExponentialBuckets(0.00025, 2, 16),
		}, []string{"proxy_name", "to", "rcode"}),
		forwardRejects: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "coredns_forward_max_concurrent_rejects_total", Help: "Counter of the number of queries rejected because the concurrent queries were at maximum.",
		}),
	}
	entries := func(typ string, count func() int) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "coredns_cache_entries", Help: "The number of elements in the cache.",
			ConstLabels: prometheus.Labels{"server": server, "type": typ, "zones": m.zones, "view": ""},
		}, func() float64 { return float64(count()) })
	}
	m.all = []prometheus.Collector{m.requests, m.responses, m.duration, m.malformed, m.cacheHits, m.cacheMisses,
		entries("success", func() int { n, _ := cacheCounts(); return n }),
		entries("denial", func() int { _, n := cacheCounts(); return n }),
		m.upstreamRT, m.forwardRejects}
	return m
}

// request counts one answered query.
func (m *metrics) request(zone, proto string, family int, qtype uint16, rcode int, plugin string, took time.Duration) {
	typ := typeLabel(qtype)
	fam := "1"
	if family == 2 {
		fam = "2"
	}
	m.requests.WithLabelValues(m.server, zone, "", proto, fam, typ).Inc()
	m.responses.WithLabelValues(m.server, zone, "", rcodeLabel(rcode), plugin).Inc()
	m.duration.WithLabelValues(m.server, zone, "", typ).Observe(took.Seconds())
}

func (m *metrics) cacheHit(denial bool) {
	typ := "success"
	if denial {
		typ = "denial"
	}
	m.cacheHits.WithLabelValues(m.server, typ, m.zones, "").Inc()
}

func (m *metrics) cacheMiss() { m.cacheMisses.WithLabelValues(m.server, m.zones, "").Inc() }

// upstream observes one exchange with an upstream; rcode is "" when it failed.
func (m *metrics) upstream(to, rcode string, took time.Duration) {
	m.upstreamRT.WithLabelValues("forward", to, rcode).Observe(took.Seconds())
}

// typeLabel keeps the type label's values few, as CoreDNS does: common types by name, the rest "other".
func typeLabel(qtype uint16) string {
	switch qtype {
	case dns.TypeA, dns.TypeAAAA, dns.TypeSRV, dns.TypePTR, dns.TypeTXT, dns.TypeCNAME, dns.TypeSOA, dns.TypeNS,
		dns.TypeMX, dns.TypeANY, dns.TypeHTTPS, dns.TypeSVCB, dns.TypeDS, dns.TypeDNSKEY:
		return dns.TypeToString[qtype]
	}
	return "other"
}

func rcodeLabel(rcode int) string {
	if s, ok := dns.RcodeToString[rcode]; ok {
		return s
	}
	return "other"
}
