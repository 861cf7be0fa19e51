package cri

import (
	"context"
	"strings"
	"time"
	"unicode"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Operations are the kubelet's runtime operation metrics: kubelet_runtime_operations_total,
// kubelet_runtime_operations_errors_total and kubelet_runtime_operations_duration_seconds by operation_type.
// They are fed by the spans the CRI client already opens around each call (its gRPC stats handler): a
// TracerProvider whose spans record nothing but their method, duration and failure, so no wrapper of the
// runtime's forty methods is needed.
type Operations struct {
	total, errors *prometheus.CounterVec
	duration      *prometheus.HistogramVec
}

// NewOperations returns the metrics, to register where the agent's metrics are.
func NewOperations() *Operations {
	return &Operations{
		total: prometheus.NewCounterVec(prometheus.CounterOpts{Subsystem: "kubelet", Name: "runtime_operations_total",
			Help: "Cumulative number of runtime operations by operation type."}, []string{"operation_type"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Subsystem: "kubelet", Name: "runtime_operations_errors_total",
			Help: "Cumulative number of runtime operation errors by operation type."}, []string{"operation_type"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Subsystem: "kubelet", Name: "runtime_operations_duration_seconds",
			Help: "Duration in seconds of runtime operations. Broken down by operation type.", Buckets: prometheus.ExponentialBuckets(.005, 2.5, 14)},
			[]string{"operation_type"}),
	}
}

// Collectors are the metrics to register.
func (o *Operations) Collectors() []prometheus.Collector {
	return []prometheus.Collector{o.total, o.errors, o.duration}
}

func (o *Operations) observe(method string, took time.Duration, failed bool) {
	op := operationType(method)
	o.total.WithLabelValues(op).Inc()
	o.duration.WithLabelValues(op).Observe(took.Seconds())
	if failed {
		o.errors.WithLabelValues(op).Inc()
	}
}

// operationType is the kubelet's name of a CRI call: "runtime.v1.RuntimeService/ListPodSandbox" →
// "list_podsandbox", UpdateContainerResources → "update_container".
func operationType(method string) string {
	name := method[strings.LastIndexByte(method, '/')+1:]
	if name == "UpdateContainerResources" {
		return "update_container"
	}
	name = strings.ReplaceAll(name, "PodSandbox", "Podsandbox")
	var b strings.Builder
	for i, r := range name {
		if unicode.IsUpper(r) {
			if i > 0 {
				b.WriteByte('_')
			}
			r = unicode.ToLower(r)
		}
		b.WriteRune(r)
	}
	return b.String()
}

// tracerProvider hands the CRI client tracers whose spans feed ops.
type tracerProvider struct {
	noop.TracerProvider
	ops *Operations
}

func (p tracerProvider) Tracer(string, ...trace.TracerOption) trace.Tracer { return tracer{ops: p.ops} }

type tracer struct {
	noop.Tracer
	ops *Operations
}

func (t tracer) Start(ctx context.Context, name string, _ ...trace.SpanStartOption) (context.Context, trace.Span) {
	s := &span{method: name, start: time.Now(), ops: t.ops}
	return trace.ContextWithSpan(ctx, s), s
}

// span times one call. It says it is recording, so that the stats handler sets its status and ends it;
// attributes and events are dropped.
type span struct {
	noop.Span
	method string
	start  time.Time
	failed bool
	ops    *Operations
}

func (s *span) IsRecording() bool { return true }

func (s *span) SetStatus(code codes.Code, _ string) { s.failed = code == codes.Error }

func (s *span) End(...trace.SpanEndOption) { s.ops.observe(s.method, time.Since(s.start), s.failed) }
