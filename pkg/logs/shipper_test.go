package logs

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nodeagent/nodeagent/pkg/config"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// testShipperConfig ships logsDir to the receivers in small chunks, polling often; tests change what they
// need.
func testShipperConfig(logsDir, state string, receivers ...string) ShipperConfig {
	tag, err := ParseTagTemplate(config.DefaultLogTag)
	if err != nil {
		panic(err) // a constant the tag tests check
	}
	return ShipperConfig{PodLogsDir: logsDir, StateDir: state, Tag: tag,
		Client:       &ForwardClient{Receivers: receivers, Timeout: 2 * time.Second},
		ChunkRecords: 40, ChunkBytes: 1 << 20, FlushInterval: 100 * time.Millisecond, BufferLimit: 1 << 30, MemoryBufferLimit: 32 << 20, InFlight: 4,
		Poll: 20 * time.Millisecond, RetryMax: time.Second, NodeName: "node-a",
		Pod: func(string, string, string) *corev1.Pod { return nil }, Metrics: prometheus.NewRegistry()}
}

// runShipper runs a shipper until the returned stop is called; stop waits for it.
func runShipper(t *testing.T, cfg ShipperConfig) (stop func()) {
	t.Helper()
	s, err := NewShipper(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.Run(ctx) }()
	return func() { cancel(); <-done }
}

// waitForRecords polls the receiver's file until it holds n records, and returns the bodies by pod.
func waitForRecords(t *testing.T, out string, n int) map[string][]string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		got := received(t, out)
		if len(got) >= n || time.Now().After(deadline) {
			if len(got) != n {
				t.Fatalf("%d records received, want %d", len(got), n)
			}
			byPod := map[string][]string{}
			for _, rec := range got {
				k8s := rec["attributes"].(map[string]any)["kubernetes"].(map[string]any)
				byPod[k8s["pod_name"].(string)] = append(byPod[k8s["pod_name"].(string)], fmt.Sprint(rec["body"]))
			}
			return byPod
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestShipperSendsEveryContainersLinesInOrderAndResumesAfterARestart(t *testing.T) {
	logsDir, state := t.TempDir(), t.TempDir()
	out := filepath.Join(t.TempDir(), "records.jsonl")
	r := startReceiver(t, freeLoopbackAddr(t), out)
	pods := map[string]*corev1.Pod{}
	var files []string
	for i := range 3 {
		uid := fmt.Sprintf("0000000%d-0000-4000-8000-000000000000", i)
		pods[uid] = &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("web-%d", i), Labels: map[string]string{"app": "web"}},
			Spec:   corev1.PodSpec{Containers: []corev1.Container{{Name: "server", Image: "localhost/testserver:local"}}},
			Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{{Name: "server", ContainerID: fmt.Sprintf("containerd://c0ffee%d", i)}}}}
		path := filepath.Join(logsDir, fmt.Sprintf("shop_web-%d_%s", i, uid), "server", "0.log")
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		files = append(files, path)
	}
	writeLines := func(from, to int) {
		for _, f := range files {
			for n := from; n < to; n++ {
				appendTo(t, f, fmt.Sprintf("2026-12-01T20:00:00.%09dZ stdout F line %d\n", n, n))
			}
		}
	}
	cfg := testShipperConfig(logsDir, state, r.Addr)
	cfg.Pod = func(_, _, uid string) *corev1.Pod { return pods[uid] }

	writeLines(0, 100)
	stop := runShipper(t, cfg)
	byPod := waitForRecords(t, out, 300)
	stop()
	for pod, bodies := range byPod {
		for n, b := range bodies {
			if b != fmt.Sprintf("line %d", n) {
				t.Fatalf("%s record %d is %q", pod, n, b)
			}
		}
	}
	rec := received(t, out)[0]["attributes"].(map[string]any)
	k8s := rec["kubernetes"].(map[string]any)
	if k8s["namespace_name"] != "shop" || k8s["container_name"] != "server" || k8s["host"] != "node-a" ||
		k8s["container_image"] != "localhost/testserver:local" || k8s["labels"].(map[string]any)["app"] != "web" ||
		!strings.HasPrefix(fmt.Sprint(k8s["container_id"]), "c0ffee") || !strings.HasSuffix(fmt.Sprint(rec["fluent.tag"]), "_server-"+fmt.Sprint(k8s["container_id"])+".log") ||
		rec["stream"] != "stdout" {
		t.Errorf("enrichment: %v", rec)
	}

	// Lines written while the shipper is stopped are sent by the next one, from the checkpoints: nothing
	// twice, nothing lost.
	writeLines(100, 150)
	cfg.Client = &ForwardClient{Receivers: []string{r.Addr}, Timeout: 2 * time.Second}
	cfg.Metrics = prometheus.NewRegistry()
	stop = runShipper(t, cfg)
	defer stop()
	byPod = waitForRecords(t, out, 450)
	for pod, bodies := range byPod {
		if len(bodies) != 150 || bodies[100] != "line 100" || bodies[149] != "line 149" {
			t.Errorf("%s: %d records, [100]=%q", pod, len(bodies), bodies[100])
		}
	}
}

// metricValue is the value of a metric without labels other than constant ones, or -1.
func metricValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		m := f.GetMetric()[0]
		switch {
		case m.GetCounter() != nil:
			return m.GetCounter().GetValue()
		case m.GetGauge() != nil:
			return m.GetGauge().GetValue()
		}
	}
	return -1
}

// waitForMetric polls until the metric reaches want.
func waitForMetric(t *testing.T, reg *prometheus.Registry, name string, want float64) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for metricValue(t, reg, name) < want {
		if time.Now().After(deadline) {
			t.Fatalf("%s = %v after 20s, want %v", name, metricValue(t, reg, name), want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// With no receiver, records wait in the buffer up to its limit; past it the oldest chunks are dropped and
// counted. Once a receiver is there, what was kept arrives, and kept + dropped is everything written.
func TestShipperDropsTheOldestPastTheBufferLimitAndCountsThem(t *testing.T) {
	logsDir, state := t.TempDir(), t.TempDir()
	addr := freeLoopbackAddr(t) // nothing listens there yet
	cfg := testShipperConfig(logsDir, state, addr)
	cfg.ChunkRecords, cfg.BufferLimit = 100, 64<<10
	reg := cfg.Metrics.(*prometheus.Registry)
	l := newRuntimeLog(t, logsDir, "pod-c00", "c00", 0)
	const written = 5000
	if err := l.write(criLines("c00", 0, written)); err != nil {
		t.Fatal(err)
	}
	stop := runShipper(t, cfg)
	defer stop()
	waitForMetric(t, reg, "fluentbit_input_records_total", written)
	dropped := metricValue(t, reg, "fluentbit_output_dropped_records_total")
	if buffered := metricValue(t, reg, "nodeagent_logs_buffer_bytes"); dropped <= 0 || buffered > 64<<10 {
		t.Fatalf("%v records dropped, %v bytes buffered; want some dropped and at most 64 KiB kept", dropped, buffered)
	}

	out := filepath.Join(t.TempDir(), "records.jsonl")
	startReceiver(t, addr, out)
	waitForMetric(t, reg, "fluentbit_output_proc_records_total", written-dropped)
	got := receivedBodies(t, out)
	if len(got)+int(dropped) != written {
		t.Fatalf("%d received + %v dropped, want %d written", len(got), dropped, written)
	}
	for i, body := range got { // the newest records were kept, in order
		if want := fmt.Sprintf("c00 %d", written-len(got)+i); body != want {
			t.Fatalf("record %d is %q, want %q", i, body, want)
		}
	}
	if retries := metricValue(t, reg, "fluentbit_output_retries_total"); retries < 1 {
		t.Errorf("fluentbit_output_retries_total = %v while the receiver was missing", retries)
	}
}

// With parseJSON, the fields of a message that is a JSON object become fields of its record; other
// messages and the record's own fields are left as they are. A line not in the CRI format is forwarded raw
// and counted.
func TestShipperMergesJSONMessages(t *testing.T) {
	logsDir, state := t.TempDir(), t.TempDir()
	out := filepath.Join(t.TempDir(), "records.jsonl")
	r := startReceiver(t, freeLoopbackAddr(t), out)
	cfg := testShipperConfig(logsDir, state, r.Addr)
	cfg.ParseJSON = true
	l := newRuntimeLog(t, logsDir, "pod-json", "app", 0)
	if err := l.write([]byte(criLine(Stdout, false, `{"level":"warn","msg":"disk 91% full","code":507,"stream":"mine"}`) +
		criLine(Stdout, false, `plain text`) + criLine(Stdout, false, `{"broken": `) + "{\"not\": \"a CRI line\"}\n")); err != nil {
		t.Fatal(err)
	}
	stop := runShipper(t, cfg)
	defer stop()
	waitForCount(t, out, 4, 20*time.Second)
	got := received(t, out)
	attrs := got[0]["attributes"].(map[string]any)
	if attrs["level"] != "warn" || attrs["msg"] != "disk 91% full" || fmt.Sprint(attrs["code"]) != "507" || attrs["stream"] != "stdout" ||
		got[0]["body"] != `{"level":"warn","msg":"disk 91% full","code":507,"stream":"mine"}` {
		t.Errorf("JSON message: %v", got[0])
	}
	for _, rec := range got[1:] {
		if a := rec["attributes"].(map[string]any); a["level"] != nil || len(a) != 3 { // stream, kubernetes, fluent.tag
			t.Errorf("not a JSON object, yet fields were added: %v", rec)
		}
	}
	if got[3]["body"] != `{"not": "a CRI line"}` {
		t.Errorf("a malformed line arrived as %v", got[3])
	}
	if n := metricValue(t, cfg.Metrics.(*prometheus.Registry), "nodeagent_logs_malformed_lines_total"); n != 1 {
		t.Errorf("nodeagent_logs_malformed_lines_total = %v, want 1", n)
	}
}

// A container writes before its pod's status carries its ID: its first records wait for the ID, so every
// record has the same container_id and tag.
func TestShipperWaitsForTheContainerIDOfANewContainer(t *testing.T) {
	logsDir, state := t.TempDir(), t.TempDir()
	out := filepath.Join(t.TempDir(), "records.jsonl")
	r := startReceiver(t, freeLoopbackAddr(t), out)
	cfg := testShipperConfig(logsDir, state, r.Addr)
	var mu sync.Mutex
	pod := &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app:1"}}}}
	cfg.Pod = func(string, string, string) *corev1.Pod {
		mu.Lock()
		defer mu.Unlock()
		return pod.DeepCopy()
	}
	l := newRuntimeLog(t, logsDir, "pod-new", "app", 0)
	if err := l.write(criLines("app", 0, 50)); err != nil {
		t.Fatal(err)
	}
	stop := runShipper(t, cfg)
	defer stop()
	time.Sleep(300 * time.Millisecond) // the agent has not reported the container yet
	mu.Lock()
	pod.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "app", ContainerID: "containerd://abc123"}}
	mu.Unlock()
	waitForCount(t, out, 50, 20*time.Second)
	for i, rec := range received(t, out) {
		attrs := rec["attributes"].(map[string]any)
		if attrs["kubernetes"].(map[string]any)["container_id"] != "abc123" || !strings.HasSuffix(fmt.Sprint(attrs["fluent.tag"]), "_app-abc123.log") {
			t.Fatalf("record %d: %v", i, attrs)
		}
	}
}

// Rotations while the agent is stopped compress the file its checkpoint points into: it is found by its
// first bytes and read from the checkpoint on, then the newer rotated file and the live one, nothing lost.
// When the compressed file is removed too (the kubelet keeps a few rotated files), its lines after the
// checkpoint cannot be read any more, and the metric counts the file.
func TestShipperResumesInALogFileRotatedAwayWhileItWasStopped(t *testing.T) {
	for _, tc := range []struct {
		name    string
		removed bool
		want    []string
		skipped float64
	}{
		{name: "compressed", want: []string{"app 10", "app 11", "app 12", "app 13", "app 14", "app 15", "app 16"}},
		{name: "removed", removed: true, want: []string{"app 15", "app 16"}, skipped: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			logsDir, state := t.TempDir(), t.TempDir()
			out := filepath.Join(t.TempDir(), "records.jsonl")
			r := startReceiver(t, freeLoopbackAddr(t), out)
			l := newRuntimeLog(t, logsDir, "pod-away", "app", 0)
			if err := l.write(criLines("app", 0, 10)); err != nil {
				t.Fatal(err)
			}
			stop := runShipper(t, testShipperConfig(logsDir, state, r.Addr))
			waitForCount(t, out, 10, 20*time.Second)
			stop()

			if err := l.write(criLines("app", 10, 15)); err != nil { // after the checkpoint
				t.Fatal(err)
			}
			rotate(t, l.path, "20261201-200000", strings.TrimSuffix(string(criLines("app", 15, 16)), "\n"))
			rotate(t, l.path, "20261201-200010", strings.TrimSuffix(string(criLines("app", 16, 17)), "\n"))
			if tc.removed {
				if err := os.Remove(l.path + ".20261201-200000.gz"); err != nil {
					t.Fatal(err)
				}
			}
			cfg := testShipperConfig(logsDir, state, r.Addr)
			stop = runShipper(t, cfg)
			defer stop()
			waitForCount(t, out, 10+len(tc.want), 20*time.Second)
			var bodies []string
			for _, rec := range received(t, out)[10:] {
				bodies = append(bodies, fmt.Sprint(rec["body"]))
			}
			if !slices.Equal(bodies, tc.want) {
				t.Errorf("after the restart %q arrived, want %q", bodies, tc.want)
			}
			if n := metricValue(t, cfg.Metrics.(*prometheus.Registry), "nodeagent_logs_skipped_files_total"); n != tc.skipped {
				t.Errorf("nodeagent_logs_skipped_files_total = %v, want %v", n, tc.skipped)
			}
		})
	}
}
