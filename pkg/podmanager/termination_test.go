package podmanager

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestTerminationMessageFromFileThenRemovedWithThePod(t *testing.T) {
	pod := testPod("localhost/testserver:local")
	pod.Spec.RestartPolicy = corev1.RestartPolicyNever
	pod.Spec.Containers[0].TerminationMessagePath = "/dev/termination-log"
	f := newFixture(t, pod)
	f.runtime.SetFakeImages([]string{"localhost/testserver:local"})
	f.syncAndRefresh(t)

	host := f.worker.m.terminationMessageFile("uid-1", "server", 0)
	if _, err := os.Stat(host); err != nil {
		t.Fatalf("termination message file not created for the mount: %v", err)
	}
	var mounted bool
	for _, c := range *f.runtime.created {
		for _, m := range c.Mounts {
			mounted = mounted || (m.HostPath == host && m.ContainerPath == "/dev/termination-log")
		}
	}
	if !mounted {
		t.Error("the file is not mounted at the container's terminationMessagePath")
	}
	if err := os.WriteFile(host, []byte("goodbye"), 0o644); err != nil {
		t.Fatal(err)
	}
	f.exitAll(2)
	term := f.syncAndRefresh(t).ContainerStatuses[0].State.Terminated
	if term == nil || term.Message != "goodbye" || term.ExitCode != 2 {
		t.Fatalf("terminated = %+v, want message goodbye and exit code 2", term)
	}

	f.deleteAndSync(t, 0)
	if _, err := os.Stat(f.worker.m.podDir("uid-1")); !os.IsNotExist(err) {
		t.Errorf("pod directory still there after removal: %v", err)
	}
}

func TestLogTailStripsCRIPrefixesAndKeepsTheLastLines(t *testing.T) {
	var b strings.Builder
	for i := range 100 {
		fmt.Fprintf(&b, "2026-11-25T03:29:21.685010865Z stderr F line %d\n", i)
	}
	path := filepath.Join(t.TempDir(), "0.log")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	got := logTail(path)
	lines := strings.Split(got, "\n")
	if len(lines) != maxFallbackLogLines || lines[len(lines)-1] != "line 99" || lines[0] != "line 20" {
		t.Errorf("tail has %d lines, first %q last %q; want 80 lines, line 20 .. line 99", len(lines), lines[0], lines[len(lines)-1])
	}
	if strings.Contains(got, "stderr") {
		t.Error("CRI prefixes were not removed")
	}
}
