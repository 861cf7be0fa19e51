package eviction

import (
	"context"
	"strings"
	"testing"

	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestParseThresholds(t *testing.T) {
	ts, err := ParseThresholds(map[string]string{"memory.available": "100Mi", "nodefs.available": "10%"})
	if err != nil {
		t.Fatal(err)
	}
	if len(ts) != 2 || ts[0].Signal != SignalMemoryAvailable || ts[0].limit(0) != 100<<20 ||
		ts[1].limit(1000) != 100 {
		t.Errorf("thresholds = %+v", ts)
	}
	for _, bad := range []map[string]string{{"allocatableMemory.available": "10%"}, {"memory.available": "lots"},
		{"nodefs.available": "120%"}} {
		if _, err := ParseThresholds(bad); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}

type fakeStats struct {
	obs   map[string]Observation
	usage map[string][3]int64 // pod name → memory, disk, PIDs
}

func (f *fakeStats) Observe() (map[string]Observation, error) { return f.obs, nil }
func (f *fakeStats) PodUsage(pod *corev1.Pod) Usage {
	u := f.usage[pod.Name]
	return Usage{Memory: u[0], Disk: u[1], PIDs: u[2]}
}

type fakePods struct {
	pods    []*corev1.Pod
	evicted []string
	message string
	grace   int64
}

func (f *fakePods) ActivePods() []*corev1.Pod { return f.pods }
func (f *fakePods) Evict(_ context.Context, pod *corev1.Pod, message string, grace int64) error {
	f.evicted, f.message, f.grace = append(f.evicted, pod.Name), message, grace
	return nil
}

func pod(name, memoryRequest string, static bool) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: map[string]string{}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c"}}}}
	if memoryRequest != "" {
		p.Spec.Containers[0].Resources.Requests = corev1.ResourceList{corev1.ResourceMemory: resource.MustParse(memoryRequest)}
	}
	if static {
		p.Annotations["kubernetes.io/config.source"] = "file"
	}
	return p
}

func TestMemoryPressureEvictsBestEffortFirstAndTheConditionLingers(t *testing.T) {
	stats := &fakeStats{
		obs: map[string]Observation{SignalMemoryAvailable: {Available: 50 << 20, Capacity: 4 << 30},
			SignalNodeFsAvailable: {Available: 50 << 30, Capacity: 100 << 30}},
		usage: map[string][3]int64{"static": {900 << 20}, "guaranteed": {200 << 20}, "within-request": {100 << 20},
			"besteffort-small": {10 << 20}, "besteffort-big": {300 << 20}},
	}
	pods := &fakePods{pods: []*corev1.Pod{pod("static", "", true), pod("guaranteed", "100Mi", false),
		pod("within-request", "500Mi", false), pod("besteffort-small", "", false), pod("besteffort-big", "", false)}}
	hard, _ := ParseThresholds(map[string]string{SignalMemoryAvailable: "100Mi", SignalNodeFsAvailable: "10%"})
	m := New(Config{Hard: hard, PressureTransitionPeriod: time.Minute}, stats, pods)
	start := time.Now()

	m.synchronize(context.Background(), start)
	if len(pods.evicted) != 1 || pods.evicted[0] != "besteffort-big" {
		t.Fatalf("evicted %v, want the BestEffort pod using the most memory above its (zero) request", pods.evicted)
	}
	if n := testutil.ToFloat64(m.evictions.WithLabelValues(SignalMemoryAvailable)); n != 1 {
		t.Errorf("kubelet_evictions{eviction_signal=memory.available} = %v, want 1", n)
	}
	if !strings.Contains(pods.message, "The node was low on resource: memory. Threshold quantity: 100Mi, available: 50Mi.") {
		t.Errorf("eviction message %q", pods.message)
	}
	if !m.under("memory", start) || m.under("ephemeral-storage", start) || !received(m.PressureChanged()) {
		t.Errorf("memory pressure %v, disk pressure %v, change told %v; want true, false, true",
			m.under("memory", start), m.under("ephemeral-storage", start), !m.under("memory", start))
	}
	pods.pods = pods.pods[:4] // the evicted one is gone
	m.synchronize(context.Background(), start.Add(10*time.Second))
	if pods.evicted[1] != "guaranteed" {
		t.Errorf("second eviction %s, want the pod over its request (not the static one, not the one within)", pods.evicted[1])
	}

	// Recovered: the condition stays for the transition period, then clears; nothing more is evicted.
	stats.obs[SignalMemoryAvailable] = Observation{Available: 2 << 30, Capacity: 4 << 30}
	m.synchronize(context.Background(), start.Add(20*time.Second))
	if !m.under("memory", start.Add(20*time.Second)) || len(pods.evicted) != 2 || received(m.PressureChanged()) {
		t.Errorf("pressure cleared (or a change told) before the transition period, or more pods evicted (%v)", pods.evicted)
	}
	m.synchronize(context.Background(), start.Add(2*time.Minute))
	if m.under("memory", start.Add(2*time.Minute)) || !received(m.PressureChanged()) {
		t.Errorf("pressure still on, or its end not told, after the transition period")
	}
}

// A soft threshold counts (pressure and eviction) only once met for its whole grace period, starts over when
// it stops being met, and its eviction gives the pod its own grace period up to the maximum; a hard one
// evicts at once with one second.
func TestSoftThresholdWaitsForItsGracePeriod(t *testing.T) {
	stats := &fakeStats{obs: map[string]Observation{SignalMemoryAvailable: {Available: 300 << 20, Capacity: 4 << 30}},
		usage: map[string][3]int64{"a": {200 << 20}}}
	a := pod("a", "", false)
	thirty := int64(30)
	a.Spec.TerminationGracePeriodSeconds = &thirty
	pods := &fakePods{pods: []*corev1.Pod{a}}
	hard, _ := ParseThresholds(map[string]string{SignalMemoryAvailable: "100Mi"})
	soft, err := ParseSoftThresholds(map[string]string{SignalMemoryAvailable: "500Mi"}, map[string]string{SignalMemoryAvailable: "1m30s"})
	if err != nil {
		t.Fatal(err)
	}
	m := New(Config{Hard: hard, Soft: soft, MaxPodGracePeriodSeconds: 20, PressureTransitionPeriod: time.Minute}, stats, pods)
	start := time.Now()
	m.synchronize(context.Background(), start)
	m.synchronize(context.Background(), start.Add(80*time.Second))
	if len(pods.evicted) != 0 || m.under("memory", start.Add(80*time.Second)) {
		t.Fatalf("within the grace period: evicted %v, pressure %v", pods.evicted, m.under("memory", start.Add(80*time.Second)))
	}
	stats.obs[SignalMemoryAvailable] = Observation{Available: 1 << 30, Capacity: 4 << 30} // recovers: the clock restarts
	m.synchronize(context.Background(), start.Add(85*time.Second))
	stats.obs[SignalMemoryAvailable] = Observation{Available: 300 << 20, Capacity: 4 << 30}
	m.synchronize(context.Background(), start.Add(90*time.Second))
	m.synchronize(context.Background(), start.Add(170*time.Second))
	if len(pods.evicted) != 0 {
		t.Fatalf("evicted %v before the threshold was met for 90 s in a row", pods.evicted)
	}
	m.synchronize(context.Background(), start.Add(180*time.Second))
	if len(pods.evicted) != 1 || pods.grace != 20 || !m.under("memory", start.Add(180*time.Second)) {
		t.Fatalf("after the grace period: evicted %v with %d s, pressure %v; want a with 20 s (max below its 30)",
			pods.evicted, pods.grace, m.under("memory", start.Add(180*time.Second)))
	}
	stats.obs[SignalMemoryAvailable] = Observation{Available: 50 << 20, Capacity: 4 << 30}
	m.synchronize(context.Background(), start.Add(190*time.Second))
	if len(pods.evicted) != 2 || pods.grace != 1 {
		t.Fatalf("on the hard threshold: evicted %v with %d s, want at once with 1 s", pods.evicted, pods.grace)
	}
	for _, bad := range []struct{ soft, grace map[string]string }{
		{map[string]string{SignalMemoryAvailable: "500Mi"}, nil},
		{map[string]string{SignalMemoryAvailable: "500Mi"}, map[string]string{SignalMemoryAvailable: "soon"}},
		{nil, map[string]string{SignalNodeFsAvailable: "1m"}},
	} {
		if _, err := ParseSoftThresholds(bad.soft, bad.grace); err == nil {
			t.Errorf("soft %v with grace periods %v accepted", bad.soft, bad.grace)
		}
	}
}

func TestDiskPressureRanksByDiskUse(t *testing.T) {
	stats := &fakeStats{
		obs:   map[string]Observation{SignalNodeFsAvailable: {Available: 5 << 30, Capacity: 100 << 30}},
		usage: map[string][3]int64{"a": {0, 1 << 20}, "b": {0, 2 << 30}},
	}
	pods := &fakePods{pods: []*corev1.Pod{pod("a", "", false), pod("b", "", false)}}
	hard, _ := ParseThresholds(map[string]string{SignalNodeFsAvailable: "10%"})
	m := New(Config{Hard: hard, PressureTransitionPeriod: time.Minute}, stats, pods)
	m.synchronize(context.Background(), time.Now())
	if len(pods.evicted) != 1 || pods.evicted[0] != "b" || !m.DiskPressure() || m.MemoryPressure() {
		t.Errorf("evicted %v, disk pressure %v", pods.evicted, m.DiskPressure())
	}
	if !strings.Contains(pods.message, "low on resource: ephemeral-storage") {
		t.Errorf("message %q", pods.message)
	}
}

// Under disk pressure, unused images go before any pod: a pod is evicted only if that did not free enough.
func TestDiskPressureRemovesUnusedImagesBeforeEvicting(t *testing.T) {
	for _, tc := range []struct {
		name        string
		freed       int64
		wantEvicted int
	}{{"enough freed", 6 << 30, 0}, {"not enough freed", 1 << 30, 1}} {
		t.Run(tc.name, func(t *testing.T) {
			stats := &fakeStats{
				obs:   map[string]Observation{SignalImageFsAvailable: {Available: 5 << 30, Capacity: 100 << 30}},
				usage: map[string][3]int64{"a": {0, 1 << 20}},
			}
			pods := &fakePods{pods: []*corev1.Pod{pod("a", "", false)}}
			hard, _ := ParseThresholds(map[string]string{SignalImageFsAvailable: "10%"})
			reclaims := 0
			m := New(Config{Hard: hard, PressureTransitionPeriod: time.Minute, ReclaimDisk: func(context.Context) error {
				reclaims++
				o := stats.obs[SignalImageFsAvailable]
				o.Available += tc.freed
				stats.obs[SignalImageFsAvailable] = o
				return nil
			}}, stats, pods)
			m.synchronize(context.Background(), time.Now())
			if reclaims != 1 || len(pods.evicted) != tc.wantEvicted || !m.DiskPressure() {
				t.Errorf("reclaimed %d times, evicted %v, disk pressure %v; want 1 reclaim, %d evicted, pressure reported",
					reclaims, pods.evicted, m.DiskPressure(), tc.wantEvicted)
			}
		})
	}
}

func TestNodeStatsObserveTheNodeAndImageFilesystems(t *testing.T) {
	dir := t.TempDir()
	stats := &NodeStats{RootDir: dir, ImageFs: func() (string, error) { return dir, nil }}
	obs, err := stats.Observe()
	if err != nil {
		t.Fatal(err)
	}
	for _, signal := range supportedSignals {
		o, ok := obs[signal]
		if !ok || o.Capacity <= 0 || o.Available < 0 || o.Available > o.Capacity {
			t.Errorf("%s = %+v, %v", signal, o, ok)
		}
	}
	if obs[SignalNodeFsAvailable] != obs[SignalImageFsAvailable] && obs[SignalNodeFsAvailable].Capacity != obs[SignalImageFsAvailable].Capacity {
		t.Errorf("one filesystem observed as two: %+v vs %+v", obs[SignalNodeFsAvailable], obs[SignalImageFsAvailable])
	}
}

func TestPIDPressureEvictsThePodWithTheMostProcesses(t *testing.T) {
	stats := &fakeStats{
		obs:   map[string]Observation{SignalPIDAvailable: {Available: 100, Capacity: 32768}},
		usage: map[string][3]int64{"few": {0, 0, 3}, "forker": {0, 0, 900}},
	}
	pods := &fakePods{pods: []*corev1.Pod{pod("few", "", false), pod("forker", "", false)}}
	hard, _ := ParseThresholds(map[string]string{SignalPIDAvailable: "1000"})
	m := New(Config{Hard: hard, PressureTransitionPeriod: time.Minute}, stats, pods)
	m.synchronize(context.Background(), time.Now())
	if len(pods.evicted) != 1 || pods.evicted[0] != "forker" || !m.PIDPressure() || m.MemoryPressure() || m.DiskPressure() {
		t.Errorf("evicted %v, PID pressure %v", pods.evicted, m.PIDPressure())
	}
	if !strings.Contains(pods.message, "The node was low on resource: pids. Threshold quantity: 1k, available: 100.") {
		t.Errorf("message %q", pods.message)
	}
}

// received says whether ch has a value ready, taking it.
func received(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
