package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// A chatty container's log is rotated at containerLogMaxSize (256Ki in the e2e config) through CRI
// ReopenContainerLog: the runtime keeps writing into a fresh 0.log, at most containerLogMaxFiles (3) files
// remain, and the older rotated ones are gzipped, as with the kubelet.
func TestContainerLogRotation(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ns := newNamespace(t)
	// About 4 MiB in 1 KiB lines over ~8 s, then a marker line every second.
	pod := busyboxPod("chatty", 1, `line=$(head -c 1000 /dev/zero | tr '\0' x); i=0; `+
		`while [ $i -lt 4000 ]; do echo "$i $line"; i=$((i+1)); [ $((i % 500)) -eq 0 ] && sleep 1; done; `+
		`while true; do echo still-logging; sleep 1; done`)
	created, err := stack.client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Dir(logFile(created, "c"))
	var names []string
	err = pollUntil(ctx, func() (bool, error) {
		entries, err := os.ReadDir(dir)
		if err != nil {
			return false, nil
		}
		names = names[:0]
		compressed := 0
		for _, e := range entries {
			names = append(names, e.Name())
			if strings.HasSuffix(e.Name(), ".gz") {
				compressed++
			}
		}
		live, _ := os.ReadFile(filepath.Join(dir, "0.log"))
		// Done writing the burst, rotated at least twice (so one rotated file is compressed).
		return compressed >= 1 && strings.Contains(string(live), "still-logging"), nil
	})
	if err != nil {
		t.Fatalf("log never rotated twice and kept going: files %v", names)
	}
	if len(names) > 3 {
		t.Errorf("%d log files %v, want at most containerLogMaxFiles=3", len(names), names)
	}
	for _, n := range names {
		info, err := os.Stat(filepath.Join(dir, n))
		// The check runs every second while the burst writes ~0.5 MiB a second: a file may exceed the limit
		// by about that much, never by the whole burst.
		if err == nil && info.Size() > 1<<20 {
			t.Errorf("%s is %d bytes, far past the 256Ki limit", n, info.Size())
		}
	}
}
