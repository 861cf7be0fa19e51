package podmanager

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// podStartupDurationBuckets are the kubelet's, for its pod start histograms.
var podStartupDurationBuckets = []float64{0.5, 1, 2, 3, 4, 5, 6, 8, 10, 20, 30, 45, 60, 120, 180, 240, 300, 360, 480, 600, 900, 1200, 1800, 2700, 3600}

// metrics are the kubelet's pod metrics, with its names, labels, help and buckets, so its dashboards and
// alerts (kube-prometheus's among them) work unchanged.
type metrics struct {
	runningPods       prometheus.Gauge
	runningContainers *prometheus.GaugeVec
	workerDuration    *prometheus.HistogramVec
	startDuration     prometheus.Histogram
	startSLIDuration  prometheus.Histogram
	// relistDuration, relistInterval and relistLastSeen are the kubelet's PLEG series, which
	// kubernetes-mixin's KubeletPlegDurationHigh alert reads; here they measure the runtime cache's relist.
	relistDuration prometheus.Histogram
	relistInterval prometheus.Histogram
	relistLastSeen prometheus.Gauge
	// probes and probeDuration are the kubelet's prober metrics, served apart on /metrics/probes.
	probes        *prometheus.CounterVec
	probeDuration *prometheus.HistogramVec
}

func newMetrics() *metrics {
	return &metrics{
		runningPods: prometheus.NewGauge(prometheus.GaugeOpts{Subsystem: "kubelet", Name: "running_pods",
			Help: "Number of pods that have a running pod sandbox"}),
		runningContainers: prometheus.NewGaugeVec(prometheus.GaugeOpts{Subsystem: "kubelet", Name: "running_containers",
			Help: "Number of containers currently running"}, []string{"container_state"}),
		workerDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Subsystem: "kubelet", Name: "pod_worker_duration_seconds",
			Help: "Duration in seconds to sync a single pod. Broken down by operation type: create, update, or sync", Buckets: prometheus.DefBuckets},
			[]string{"operation_type"}),
		startDuration: prometheus.NewHistogram(prometheus.HistogramOpts{Subsystem: "kubelet", Name: "pod_start_duration_seconds",
			Help: "Duration in seconds from kubelet seeing a pod for the first time to the pod starting to run", Buckets: podStartupDurationBuckets}),
		startSLIDuration: prometheus.NewHistogram(prometheus.HistogramOpts{Subsystem: "kubelet", Name: "pod_start_sli_duration_seconds",
			Help:    "Duration in seconds to start a pod, excluding time to pull images and run init containers, measured from pod creation timestamp to when all its containers are reported as started and observed via watch",
			Buckets: podStartupDurationBuckets}),
		relistDuration: prometheus.NewHistogram(prometheus.HistogramOpts{Subsystem: "kubelet", Name: "pleg_relist_duration_seconds",
			Help: "Duration in seconds for relisting pods in PLEG.", Buckets: prometheus.DefBuckets}),
		relistInterval: prometheus.NewHistogram(prometheus.HistogramOpts{Subsystem: "kubelet", Name: "pleg_relist_interval_seconds",
			Help: "Interval in seconds between relisting in PLEG.", Buckets: prometheus.DefBuckets}),
		relistLastSeen: prometheus.NewGauge(prometheus.GaugeOpts{Subsystem: "kubelet", Name: "pleg_last_seen_seconds",
			Help: "Timestamp in seconds when PLEG was last seen active."}),
		probes: prometheus.NewCounterVec(prometheus.CounterOpts{Subsystem: "prober", Name: "probe_total",
			Help: "Cumulative number of a liveness, readiness or startup probe for a container by result."},
			[]string{"probe_type", "result", "container", "pod", "namespace", "pod_uid"}),
		probeDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Subsystem: "prober", Name: "probe_duration_seconds",
			Help: "Duration in seconds for a probe response."}, []string{"probe_type", "container", "pod", "namespace"}),
	}
}

// probeRecord counts the probes of one container as the kubelet's prober does: every result, and the
// duration of the successful ones.
func (m *metrics) probeRecord(kind probeKind, container string, pod *corev1.Pod) probeRecord {
	successful := m.probes.WithLabelValues(string(kind), "successful", container, pod.Name, pod.Namespace, string(pod.UID))
	failed := m.probes.WithLabelValues(string(kind), "failed", container, pod.Name, pod.Namespace, string(pod.UID))
	duration := m.probeDuration.WithLabelValues(string(kind), container, pod.Name, pod.Namespace)
	return func(success bool, took time.Duration) {
		if !success {
			failed.Inc()
			return
		}
		successful.Inc()
		duration.Observe(took.Seconds())
	}
}

func (m *metrics) register(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.runningPods, m.runningContainers, m.workerDuration, m.startDuration, m.startSLIDuration,
		m.relistDuration, m.relistInterval, m.relistLastSeen} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// containerStateLabel is the kubelet's name of a container state in kubelet_running_containers.
func containerStateLabel(s runtimeapi.ContainerState) string {
	switch s {
	case runtimeapi.ContainerState_CONTAINER_CREATED:
		return "created"
	case runtimeapi.ContainerState_CONTAINER_RUNNING:
		return "running"
	case runtimeapi.ContainerState_CONTAINER_EXITED:
		return "exited"
	}
	return "unknown"
}

// countRunning sets the running pods (a ready sandbox) and the containers by state, as the kubelet's relist
// does, from the runtime state of the node's pods.
func (m *metrics) countRunning(pods []*podRuntime) {
	states := map[string]int{"created": 0, "running": 0, "exited": 0, "unknown": 0}
	running := 0
	for _, p := range pods {
		for _, ct := range p.containers {
			states[containerStateLabel(ct.State)]++
		}
		for _, sb := range p.sandboxes {
			if sb.State == runtimeapi.PodSandboxState_SANDBOX_READY {
				running++
				break
			}
		}
	}
	for state, n := range states {
		m.runningContainers.WithLabelValues(state).Set(float64(n))
	}
	m.runningPods.Set(float64(running))
}

// observeStart records a pod's start once, when its status first shows it Running: from the worker's first
// sight of it, and (the SLI) from its creation less the time its images took to pull.
func (m *metrics) observeStart(pod *corev1.Pod, firstSeen time.Time, pulling time.Duration, now time.Time) {
	m.startDuration.Observe(now.Sub(firstSeen).Seconds())
	if !pod.CreationTimestamp.IsZero() {
		m.startSLIDuration.Observe(max(now.Sub(pod.CreationTimestamp.Time)-pulling, 0).Seconds())
	}
}
