package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nodeagent/nodeagent/internal/testutil"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// startLogReceiver runs the OpenTelemetry Collector's fluentforward receiver (test/fluentreceiver) on
// loopback, which the agent ships its pods' logs to; it writes one JSON object per record to its Out.
func startLogReceiver(repo string) (*testutil.FluentReceiver, error) {
	bin := filepath.Join(runDir, "fluentreceiver")
	if err := testutil.BuildFluentReceiver(repo, bin); err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := l.Addr().String()
	l.Close()
	out := filepath.Join(runDir, "received-logs.jsonl")
	if err := os.Remove(out); err != nil && !os.IsNotExist(err) {
		return nil, err
	}
	return testutil.StartFluentReceiver(bin, addr, out)
}

// receivedRecord is what the receiver wrote for one record.
type receivedRecord struct {
	Body       string         `json:"body"`
	Attributes map[string]any `json:"attributes"`
}

// recordsOf returns the records the receiver r holds for one pod, in order.
func recordsOf(t *testing.T, r *testutil.FluentReceiver, ns, pod string) []receivedRecord {
	t.Helper()
	data, err := os.ReadFile(r.Out)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var records []receivedRecord
	scanner := bufio.NewScanner(bytes.NewReader(data))
	scanner.Buffer(nil, 8<<20)
	for scanner.Scan() {
		var rec receivedRecord
		if err := json.Unmarshal(scanner.Bytes(), &rec); err != nil {
			t.Fatalf("receiver output %q: %v", scanner.Text(), err)
		}
		k8s, _ := rec.Attributes["kubernetes"].(map[string]any)
		if k8s["namespace_name"] == ns && k8s["pod_name"] == pod {
			records = append(records, rec)
		}
	}
	return records
}

// A pod's stdout and stderr reach a Fluentd forward receiver the project did not write, complete and in
// order, with the metadata Fluent Bit's kubernetes filter adds and its tag; /metrics counts them with
// Fluent Bit's names.
func TestContainerLogsReachAFluentForwardReceiver(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ns := newNamespace(t)
	pod := busyboxPod("chatty", 1, `i=0; while [ $i -lt 300 ]; do echo "line $i"; i=$((i+1)); done; echo "to stderr" >&2; sleep 3600`)
	pod.Labels = map[string]string{"app": "chatty"}
	pod, err := stack.client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pod = waitForPod(ctx, t, ns, pod.Name, "Running", func(p *corev1.Pod) bool {
		return len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].ContainerID != ""
	})
	_, containerID, _ := strings.Cut(pod.Status.ContainerStatuses[0].ContainerID, "://")

	var records []receivedRecord
	err = pollUntil(ctx, func() (bool, error) {
		records = recordsOf(t, stack.receiver, ns, pod.Name)
		return len(records) >= 301, nil
	})
	if err != nil {
		t.Fatalf("the receiver has %d of the pod's 301 records", len(records))
	}
	if len(records) != 301 {
		t.Fatalf("the receiver has %d records of the pod, want 301", len(records))
	}
	var stdout []string
	for _, rec := range records {
		if rec.Attributes["stream"] == "stdout" {
			stdout = append(stdout, rec.Body)
		} else if rec.Body != "to stderr" || rec.Attributes["stream"] != "stderr" {
			t.Errorf("stderr record %+v", rec)
		}
	}
	for i, body := range stdout {
		if body != fmt.Sprintf("line %d", i) {
			t.Fatalf("stdout record %d is %q", i, body)
		}
	}
	attrs := records[0].Attributes
	k8s := attrs["kubernetes"].(map[string]any)
	wantTag := "kube.var.log.containers.chatty_" + ns + "_c-" + containerID + ".log"
	if attrs["fluent.tag"] != wantTag || k8s["pod_id"] != string(pod.UID) || k8s["container_name"] != "c" ||
		k8s["container_image"] != "localhost/busybox:local" || k8s["container_id"] != containerID || k8s["host"] != nodeName ||
		k8s["labels"].(map[string]any)["app"] != "chatty" {
		t.Errorf("record attributes %v\nwant tag %s, pod_id %s, container c, image, id %s, host %s, labels app=chatty", attrs, wantTag, pod.UID, containerID, nodeName)
	}

	body, err := httpGet(ctx, "http://127.0.0.1:10249/metrics")
	if err != nil {
		t.Fatal(err)
	}
	for _, re := range []string{
		`(?m)^fluentbit_input_records_total\{name="tail.0"\} [1-9]`,
		`(?m)^fluentbit_output_proc_records_total\{name="forward.0"\} [1-9]`,
		`(?m)^fluentbit_output_dropped_records_total\{name="forward.0"\} 0$`,
		`(?m)^nodeagent_logs_buffer_bytes `,
	} {
		if !regexp.MustCompile(re).MatchString(body) {
			t.Errorf("/metrics has no line matching %s", re)
		}
	}
}
