package podmanager

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// crashLoop makes the pod's only container exit and be restarted, attempts times, skipping the back-off.
func (f *fixture) crashLoop(t *testing.T, attempts int) {
	t.Helper()
	for range attempts {
		f.exitAll(1)
		delete(f.worker.backoff, "server")
		f.syncAndRefresh(t)
	}
}

// readLinks returns the links of dir and their targets.
func readLinks(t *testing.T, dir string) map[string]string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	links := map[string]string{}
	for _, e := range entries {
		target, err := os.Readlink(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		links[e.Name()] = target
	}
	return links
}

// Each container gets the kubelet's /var/log/containers link to its log; a container that keeps crashing
// does not pile up: beyond the two newest, its exited containers go, with their log files and links, once
// their successor is older than the log retention.
func TestContainerLogLinksAndOldContainersOfACrashLoop(t *testing.T) {
	f := newFixture(t, testPod("localhost/testserver:local"))
	m := f.worker.m
	m.cfg.ContainerLogLinksDir = filepath.Join(t.TempDir(), "containers")
	f.runtime.SetFakeImages([]string{"localhost/testserver:local"})
	f.syncAndRefresh(t)
	f.crashLoop(t, 3)

	ctx := context.Background()
	all, err := f.worker.containers(ctx)
	if err != nil || len(all) != 4 {
		t.Fatalf("%d containers (%v), want 4: nothing is removed within the log retention", len(all), err)
	}
	logDir := filepath.Join(m.cfg.PodLogsDir, "default_web_uid-1", "server")
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		t.Fatal(err)
	}
	links := readLinks(t, m.cfg.ContainerLogLinksDir)
	for _, ct := range all {
		attempt := ct.GetMetadata().GetAttempt()
		name := "web_default_server-" + ct.Id + ".log"
		if want := filepath.Join(logDir, strconv.Itoa(int(attempt))+".log"); links[name] != want {
			t.Errorf("link %s → %q, want → %s (links: %v)", name, links[name], want, links)
		}
		// The runtime would have written these; the fake does not.
		for _, file := range []string{strconv.Itoa(int(attempt)) + ".log", strconv.Itoa(int(attempt)) + ".log.20261202-101010"} {
			if err := os.WriteFile(filepath.Join(logDir, file), []byte("x\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}

	f.worker.removeOldContainers(ctx, all, time.Now().Add(logRetention+time.Second))
	left, err := f.worker.containers(ctx)
	if err != nil || len(left) != 2 || left[0].GetMetadata().GetAttempt() != 3 || left[1].GetMetadata().GetAttempt() != 2 {
		t.Fatalf("containers left: %v (%v), want attempts 3 and 2", left, err)
	}
	files, _ := filepath.Glob(filepath.Join(logDir, "*"))
	if len(files) != 4 || filepath.Base(files[0]) != "2.log" || filepath.Base(files[2]) != "3.log" {
		t.Errorf("log files left: %v, want those of attempts 2 and 3", files)
	}
	if links := readLinks(t, m.cfg.ContainerLogLinksDir); len(links) != 2 ||
		links["web_default_server-"+left[0].Id+".log"] == "" || links["web_default_server-"+left[1].Id+".log"] == "" {
		t.Errorf("links left: %v, want those of attempts 2 and 3", links)
	}
	cs := f.syncAndRefresh(t).ContainerStatuses[0]
	if cs.RestartCount != 3 || cs.LastTerminationState.Terminated == nil || cs.LastTerminationState.Terminated.ExitCode != 1 {
		t.Errorf("status after the collection: restartCount %d, lastState %+v; want 3 and the exit of attempt 2",
			cs.RestartCount, cs.LastTerminationState)
	}

	// The pod is deleted: once its logs go, so do its links; a link whose pod log directory is gone (the
	// agent stopped in between) goes at the next housekeeping; another agent's link stays.
	foreign := filepath.Join(m.cfg.ContainerLogLinksDir, "other_default_c-0123.log")
	if err := os.Symlink("/elsewhere/default_other_u/c/0.log", foreign); err != nil {
		t.Fatal(err)
	}
	if err := m.removePodLogs("uid-1"); err != nil {
		t.Fatal(err)
	}
	if links := readLinks(t, m.cfg.ContainerLogLinksDir); len(links) != 1 {
		t.Errorf("links after the pod's logs were removed: %v, want only the other agent's", links)
	}
	stale := filepath.Join(m.cfg.ContainerLogLinksDir, "gone_default_c-4567.log")
	if err := os.Symlink(filepath.Join(m.cfg.PodLogsDir, "default_gone_u2", "c", "0.log"), stale); err != nil {
		t.Fatal(err)
	}
	if err := m.removeDanglingLinks(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(stale); !os.IsNotExist(err) {
		t.Errorf("a link into a removed pod log directory is still there (%v)", err)
	}
	if _, err := os.Lstat(foreign); err != nil {
		t.Errorf("another agent's link was removed: %v", err)
	}
}
