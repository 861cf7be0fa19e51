package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// A container that keeps failing is restarted with the back-off, and its old containers do not pile up in
// the runtime: beyond the two newest (the status's state and lastState), the exited ones go, with their
// log files and /var/log/containers links, once their successor is a minute old. Attempts start about 0,
// 0, 10, 30, 70 and 150 s in (back-off 10 s, doubling), so by the sixth only two remain. Takes ~2.5 min.
func TestCrashLoopLeavesTwoContainers(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	ns := newNamespace(t)
	pod, err := stack.client.CoreV1().Pods(ns).Create(ctx, busyboxPod("crasher", 1, "echo failing; exit 1"), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	var restarts int32
	err = pollUntil(ctx, func() (bool, error) {
		p, err := stack.client.CoreV1().Pods(ns).Get(ctx, "crasher", metav1.GetOptions{})
		if err != nil || len(p.Status.ContainerStatuses) == 0 {
			return false, nil
		}
		restarts = p.Status.ContainerStatuses[0].RestartCount
		ids = crictl(t, "ps", "-a", "--label", "io.kubernetes.pod.uid="+string(pod.UID), "-q")
		return restarts >= 5 && len(ids) == 2, nil
	})
	if err != nil {
		t.Fatalf("no state with 5 restarts and 2 containers (last: %d restarts, containers %v): %v\n%s", restarts, ids, err, describe(ns))
	}

	logs, err := filepath.Glob(filepath.Join(filepath.Dir(logFile(pod, "c")), "*"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, l := range logs {
		names = append(names, filepath.Base(l))
	}
	// The two kept containers are the newest attempts; a sync may have made one more since the poll.
	newest := func(n int32) []string { return []string{fmt.Sprintf("%d.log", n-1), fmt.Sprintf("%d.log", n)} }
	if !slices.Equal(names, newest(restarts)) && !slices.Equal(names, newest(restarts+1)) {
		t.Errorf("log files %v, want those of the two newest attempts (restart count %d)", names, restarts)
	}
	links, err := filepath.Glob("/var/log/containers/crasher_" + ns + "_c-*.log")
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		if !slices.ContainsFunc(links, func(l string) bool { return strings.HasPrefix(filepath.Base(l), "crasher_"+ns+"_c-"+id) }) {
			t.Errorf("no link for kept container %s among %v", id, links)
		}
	}
	if len(links) != 2 {
		t.Errorf("links %v, want the two kept containers'", links)
	}
}
