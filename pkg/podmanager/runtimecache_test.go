package podmanager

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	promtest "github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// runtimeReads are the CRI calls that read a pod's state, which the runtime cache saves the workers.
var runtimeReads = []string{"ListPodSandbox", "ListContainers", "ContainerStatus", "PodSandboxStatus"}

func (f *fixture) readCalls() []string {
	f.runtime.FakeRuntimeService.Lock()
	defer f.runtime.FakeRuntimeService.Unlock()
	var reads []string
	for _, c := range f.runtime.FakeRuntimeService.Called {
		if slices.Contains(runtimeReads, c) {
			reads = append(reads, c)
		}
	}
	f.runtime.FakeRuntimeService.Called = nil
	return reads
}

func TestWorkerReadsTheRelistedStateWithoutCallingTheRuntime(t *testing.T) {
	f := newFixture(t, testPod("localhost/testserver:local"))
	f.runtime.SetFakeImages([]string{"localhost/testserver:local"})
	f.syncAndRefresh(t)
	cache := f.worker.m.rtcache
	if err := cache.relist(context.Background()); err != nil {
		t.Fatal(err)
	}
	f.readCalls()

	status := f.syncAndRefresh(t)
	if reads := f.readCalls(); len(reads) != 0 {
		t.Errorf("a sync of a running pod after a relist read the runtime: %v", reads)
	}
	if status.Phase != "Running" || status.PodIP == "" || len(status.ContainerStatuses) != 1 || status.ContainerStatuses[0].State.Running == nil {
		t.Errorf("status from the cache = %+v, want the running pod with its IP", status)
	}
	// A relist that finds nothing changed asks the runtime for no container's status.
	if err := cache.relist(context.Background()); err != nil {
		t.Fatal(err)
	}
	if reads := f.readCalls(); !slices.Equal(reads, []string{"ListPodSandbox", "ListContainers"}) {
		t.Errorf("an unchanged relist made %v, want one ListPodSandbox and one ListContainers", reads)
	}
}

func TestRelistWakesTheWorkerOfAChangedPodWhichRestartsItsContainer(t *testing.T) {
	f := newFixture(t, testPod("localhost/testserver:local"))
	f.runtime.SetFakeImages([]string{"localhost/testserver:local"})
	f.worker.m.workers[f.worker.uid] = f.worker // as dispatch registers it, so the relist can wake it
	f.syncAndRefresh(t)
	cache := f.worker.m.rtcache
	if err := cache.relist(context.Background()); err != nil {
		t.Fatal(err)
	}
	select { // the sync's own pokes
	case <-f.worker.updates:
	default:
	}

	f.exitAll(3)
	if err := cache.relist(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-f.worker.updates:
	default:
		t.Fatal("the relist saw the container exit but did not wake the pod's worker")
	}
	cs := f.syncAndRefresh(t).ContainerStatuses[0]
	if cs.RestartCount != 1 || cs.State.Running == nil || cs.LastTerminationState.Terminated == nil ||
		cs.LastTerminationState.Terminated.ExitCode != 3 {
		t.Errorf("after the exit seen by the relist: %+v, want restarted once, the exit code 3 as the last state", cs)
	}
	// The worker's own change is what the next read sees, not the relist from before it.
	if reads := f.readCalls(); !slices.Contains(reads, "ListContainers") {
		t.Errorf("after restarting the container the worker did not read the runtime again: %v", reads)
	}
}

// A pod whose state has not changed gets no status patch: the status the API server returned (its times cut
// to seconds by the JSON the patch travels in) equals the one the worker computes again.
func TestUnchangedRunningPodIsNotPatchedAgain(t *testing.T) {
	f := newFixture(t, testPod("localhost/testserver:local"))
	f.runtime.SetFakeImages([]string{"localhost/testserver:local"})
	f.syncAndRefresh(t)
	f.syncAndRefresh(t) // the first status may still change (conditions' transition after the start)
	f.client.ClearActions()
	f.syncAndRefresh(t)
	for _, a := range f.client.Actions() {
		if a.GetVerb() == "patch" {
			t.Errorf("a sync with nothing changed patched the pod's status: %v", a)
		}
	}
}

// RunningPods (the node API's /runningpods/) is the relisted state: the pod with a ready sandbox and its
// running container, and nothing once the container exited.
func TestRunningPodsComeFromTheRelist(t *testing.T) {
	f := newFixture(t, testPod("localhost/testserver:local"))
	f.runtime.SetFakeImages([]string{"localhost/testserver:local"})
	f.syncAndRefresh(t)
	m := f.worker.m
	if err := m.rtcache.relist(context.Background()); err != nil {
		t.Fatal(err)
	}
	pods := m.RunningPods()
	if len(pods) != 1 || pods[0].UID != "uid-1" || pods[0].Name != "web" || len(pods[0].Spec.Containers) != 1 ||
		pods[0].Spec.Containers[0].Name != "server" || pods[0].Spec.Containers[0].Image != "localhost/testserver:local" {
		t.Fatalf("running pods = %+v, want web with its server container and image", pods)
	}
	f.exitAll(0)
	if err := m.rtcache.relist(context.Background()); err != nil {
		t.Fatal(err)
	}
	if pods := m.RunningPods(); len(pods) != 1 || len(pods[0].Spec.Containers) != 0 {
		t.Errorf("after the container exited: %+v, want the pod without running containers", pods)
	}
}

// The kubelet's pod metrics: the relist counts running pods and containers by state; a pod's start is
// observed once, when its status first shows it Running.
func TestPodMetrics(t *testing.T) {
	f := newFixture(t, testPod("localhost/testserver:local"))
	f.runtime.SetFakeImages([]string{"localhost/testserver:local"})
	m := f.worker.m
	f.syncAndRefresh(t)
	f.syncAndRefresh(t)
	if err := m.rtcache.relist(context.Background()); err != nil {
		t.Fatal(err)
	}
	if pods, running := promtest.ToFloat64(m.metrics.runningPods), promtest.ToFloat64(m.metrics.runningContainers.WithLabelValues("running")); pods != 1 || running != 1 {
		t.Errorf("kubelet_running_pods %v, kubelet_running_containers{running} %v; want 1 and 1", pods, running)
	}
	if n := histogramCount(t, m.metrics.startDuration); n != 1 {
		t.Errorf("kubelet_pod_start_duration_seconds has %d observations after two syncs of a running pod, want 1", n)
	}
	f.exitAll(1)
	if err := m.rtcache.relist(context.Background()); err != nil {
		t.Fatal(err)
	}
	if exited := promtest.ToFloat64(m.metrics.runningContainers.WithLabelValues("exited")); exited != 1 {
		t.Errorf("kubelet_running_containers{exited} = %v after the container exited, want 1", exited)
	}
}

// The kubelet's prober metrics: each probe counted by result, with the container, pod and UID.
func TestProbeMetrics(t *testing.T) {
	pod := testPod("localhost/testserver:local")
	pod.Spec.Containers[0].ReadinessProbe = &corev1.Probe{PeriodSeconds: 1,
		ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"true"}}}}
	f := newFixture(t, pod)
	f.runtime.SetFakeImages([]string{"localhost/testserver:local"})
	t.Cleanup(f.worker.stopProbers)
	f.syncAndRefresh(t)
	f.syncAndRefresh(t) // the container runs: its prober starts
	successful := f.worker.m.metrics.probes.WithLabelValues("Readiness", "successful", "server", "web", "default", "uid-1")
	deadline := time.Now().Add(10 * time.Second)
	for promtest.ToFloat64(successful) < 1 {
		if time.Now().After(deadline) {
			t.Fatal(`prober_probe_total{probe_type="Readiness",result="successful",container="server",pod="web"} never counted the probe`)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := promtest.CollectAndCount(f.worker.m.metrics.probeDuration); n != 1 {
		t.Errorf("prober_probe_duration_seconds has %d series, want the container's one", n)
	}
}

// The relist is measured with the kubelet's PLEG series, which kubernetes-mixin's KubeletPlegDurationHigh
// alert reads: every relist's duration, the interval between relists, and when the last good one ran.
func TestRelistIsMeasuredAsTheKubeletsPLEG(t *testing.T) {
	f := newFixture(t, testPod("localhost/testserver:local"))
	cache := f.worker.m.rtcache
	before := time.Now().Unix()
	for range 2 {
		if err := cache.relist(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	m := f.worker.m.metrics
	if n := histogramCount(t, m.relistDuration); n != 2 {
		t.Errorf("kubelet_pleg_relist_duration_seconds counted %d relists, want 2", n)
	}
	if n := histogramCount(t, m.relistInterval); n != 1 {
		t.Errorf("kubelet_pleg_relist_interval_seconds counted %d intervals, want 1 (between two relists)", n)
	}
	if seen := promtest.ToFloat64(m.relistLastSeen); seen < float64(before) {
		t.Errorf("kubelet_pleg_last_seen_seconds = %v, want at least %d", seen, before)
	}
}

// histogramCount is how many observations h holds.
func histogramCount(t *testing.T, h prometheus.Histogram) uint64 {
	t.Helper()
	var m dto.Metric
	if err := h.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetHistogram().GetSampleCount()
}

// As the kubelet's PLEG check: unhealthy until the first relist, and when the last is older than 3 minutes.
func TestHealthFollowsTheRelist(t *testing.T) {
	c := newRuntimeCache(nil, "node", func(types.UID) {}, nil)
	if err := c.healthy(); err == nil || !strings.Contains(err.Error(), "yet to be successful") {
		t.Errorf("before the first relist: %v, want pleg has yet to be successful", err)
	}
	c.lastRelist = time.Now().Add(-time.Minute)
	if err := c.healthy(); err != nil {
		t.Errorf("a relist a minute ago: %v, want healthy", err)
	}
	c.lastRelist = time.Now().Add(-4 * time.Minute)
	if err := c.healthy(); err == nil || !strings.Contains(err.Error(), "threshold is 3m0s") {
		t.Errorf("a relist 4 minutes ago: %v, want pleg was last seen active 4m0s ago", err)
	}
}
