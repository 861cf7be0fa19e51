package podmanager

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	corelisters "k8s.io/client-go/listers/core/v1"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	critest "k8s.io/cri-api/pkg/apis/testing"

	"github.com/nodeagent/nodeagent/pkg/cri"
	"github.com/nodeagent/nodeagent/pkg/source"
)

// fakeRuntime joins the CRI fakes into the one interface the manager consumes, and records the configs of
// the containers it created, the names of those it was asked to stop, in order, and each one's last grace period.
type fakeRuntime struct {
	*critest.FakeRuntimeService
	*critest.FakeImageService
	created *[]*runtimeapi.ContainerConfig
	stopped *[]string
	graces  map[string]int64
	// sandboxGate, when set, holds each RunPodSandbox until it is closed.
	sandboxGate chan struct{}
	// earlyStops is how many of the next StopContainer calls return before the container has stopped, as
	// containerd's can while it is still processing an exit.
	earlyStops *int
}

func (f fakeRuntime) RunPodSandbox(ctx context.Context, config *runtimeapi.PodSandboxConfig, handler string) (string, error) {
	if f.sandboxGate != nil {
		<-f.sandboxGate
	}
	return f.FakeRuntimeService.RunPodSandbox(ctx, config, handler)
}

func (f fakeRuntime) CreateContainer(ctx context.Context, sandboxID string, config *runtimeapi.ContainerConfig,
	sandboxConfig *runtimeapi.PodSandboxConfig) (string, error) {
	*f.created = append(*f.created, config)
	return f.FakeRuntimeService.CreateContainer(ctx, sandboxID, config, sandboxConfig)
}

func (f fakeRuntime) StopContainer(ctx context.Context, id string, timeout int64) error {
	f.FakeRuntimeService.Lock()
	if c, ok := f.Containers[id]; ok {
		*f.stopped = append(*f.stopped, c.Metadata.Name)
		f.graces[c.Metadata.Name] = timeout
	}
	early := *f.earlyStops > 0
	if early {
		*f.earlyStops--
	}
	f.FakeRuntimeService.Unlock()
	if early {
		return nil
	}
	return f.FakeRuntimeService.StopContainer(ctx, id, timeout)
}

type fixture struct {
	runtime fakeRuntime
	client  *fake.Clientset
	indexer cache.Indexer
	worker  *worker
}

func newFixture(t *testing.T, pod *corev1.Pod) *fixture {
	t.Helper()
	f := &fixture{
		runtime: fakeRuntime{critest.NewFakeRuntimeService(), critest.NewFakeImageService(),
			new([]*runtimeapi.ContainerConfig), new([]string), map[string]int64{}, nil, new(int)},
		client:  fake.NewClientset(pod),
		indexer: cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{}),
	}
	if err := f.indexer.Add(pod); err != nil {
		t.Fatal(err)
	}
	objects := source.NewObjectWatches(f.client)
	t.Cleanup(objects.StopAll)
	m := New(Config{NodeName: "node-a", PodLogsDir: t.TempDir(), RootDir: t.TempDir(), RuntimeType: "containerd",
		ClusterDNS: []string{"10.96.0.10"}, ClusterDomain: "cluster.local"},
		f.runtime, nil, f.client, Sources{Pods: corelisters.NewPodLister(f.indexer), Node: testNode, Objects: objects},
		record.NewFakeRecorder(100))
	f.worker = newWorker(m, pod.UID, types.NamespacedName{Namespace: pod.Namespace, Name: pod.Name})
	return f
}

func testNode() *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-a"}, Status: corev1.NodeStatus{
		Addresses:   []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "192.0.2.10"}},
		Allocatable: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2"), corev1.ResourceMemory: resource.MustParse("4Gi")},
	}}
}

func testPod(image string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default", UID: "uid-1"},
		Spec: corev1.PodSpec{
			NodeName:      "node-a",
			RestartPolicy: corev1.RestartPolicyAlways,
			DNSPolicy:     corev1.DNSClusterFirst,
			Containers: []corev1.Container{{Name: "server", Image: image, ImagePullPolicy: corev1.PullIfNotPresent,
				Env: []corev1.EnvVar{{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{
					FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}}}}},
		},
	}
}

// postedStatus returns the status the worker patched into the API (the fake tracker applies the patch).
func (f *fixture) postedStatus(t *testing.T) corev1.PodStatus {
	t.Helper()
	p, err := f.client.CoreV1().Pods("default").Get(context.Background(), "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return p.Status
}

func TestSyncRunsSandboxAndContainerWithKubeletLabels(t *testing.T) {
	pod := testPod("localhost/testserver:local")
	f := newFixture(t, pod)
	f.runtime.SetFakeImages([]string{"localhost/testserver:local"})

	if done, err := f.worker.sync(context.Background()); err != nil || done {
		t.Fatalf("sync = %v, %v; want not done, no error", done, err)
	}
	sandboxes, _ := f.runtime.ListPodSandbox(context.Background(), nil)
	if len(sandboxes) != 1 {
		t.Fatalf("sandboxes = %d, want 1", len(sandboxes))
	}
	sb := sandboxes[0]
	for k, want := range map[string]string{cri.LabelPodUID: "uid-1", cri.LabelPodName: "web",
		cri.LabelPodNamespace: "default", LabelNode: "node-a"} {
		if sb.Labels[k] != want {
			t.Errorf("sandbox label %s = %q, want %q", k, sb.Labels[k], want)
		}
	}
	sbStatus, _ := f.runtime.PodSandboxStatus(context.Background(), sb.Id, false)
	if dir := sbStatus.GetStatus().GetMetadata(); dir.GetUid() != "uid-1" {
		t.Errorf("sandbox metadata = %v", dir)
	}
	containers, _ := f.runtime.ListContainers(context.Background(), nil)
	if len(containers) != 1 || containers[0].State != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Fatalf("containers = %v, want one running", containers)
	}
	if containers[0].Labels[cri.LabelContainerName] != "server" {
		t.Errorf("container labels = %v", containers[0].Labels)
	}
	status := f.postedStatus(t)
	if status.Phase != corev1.PodRunning {
		t.Errorf("phase = %s, want Running", status.Phase)
	}
	if len(status.ContainerStatuses) != 1 || !strings.HasPrefix(status.ContainerStatuses[0].ContainerID, "containerd://") ||
		!status.ContainerStatuses[0].Ready {
		t.Errorf("container statuses = %+v", status.ContainerStatuses)
	}
	if status.PodIP == "" || status.HostIP != "192.0.2.10" {
		t.Errorf("podIP %q hostIP %q", status.PodIP, status.HostIP)
	}

	// A second sync with nothing changed creates nothing new.
	if err := f.indexer.Update(mustGetPod(t, f)); err != nil {
		t.Fatal(err)
	}
	if _, err := f.worker.sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if again, _ := f.runtime.ListContainers(context.Background(), nil); len(again) != 1 {
		t.Errorf("second sync changed the containers: %d", len(again))
	}
}

// deleteAndSync marks the Pod for deletion with grace seconds, as the API server does, and runs one sync,
// which must finish the pod.
func (f *fixture) deleteAndSync(t *testing.T, grace int64) {
	t.Helper()
	f.markDeleted(t, grace)
	if done, err := f.worker.sync(context.Background()); err != nil || !done {
		t.Fatalf("sync = %v, %v; want done", done, err)
	}
}

// markDeleted marks the Pod for deletion with grace seconds in the worker's Pod cache, as the API server does.
func (f *fixture) markDeleted(t *testing.T, grace int64) {
	t.Helper()
	deleting := mustGetPod(t, f)
	now := metav1.NewTime(time.Now())
	deleting.DeletionTimestamp, deleting.DeletionGracePeriodSeconds = &now, &grace
	if err := f.indexer.Update(deleting); err != nil {
		t.Fatal(err)
	}
}

func mustGetPod(t *testing.T, f *fixture) *corev1.Pod {
	t.Helper()
	p, err := f.client.CoreV1().Pods("default").Get(context.Background(), "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestFailedPullReportsErrImagePullThenBackOff(t *testing.T) {
	f := newFixture(t, testPod("localhost/missing:v1"))
	f.runtime.FakeImageService.InjectError("PullImage", errors.New("connection refused"))

	if _, err := f.worker.sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	w := f.postedStatus(t).ContainerStatuses[0].State.Waiting
	if w == nil || w.Reason != "ErrImagePull" || !strings.Contains(w.Message, "connection refused") {
		t.Fatalf("after the first pull: waiting = %+v, want ErrImagePull naming the cause", w)
	}
	if err := f.indexer.Update(mustGetPod(t, f)); err != nil {
		t.Fatal(err)
	}
	pulls := countCalls(f.runtime.FakeImageService.Called, "PullImage")
	if _, err := f.worker.sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	w = f.postedStatus(t).ContainerStatuses[0].State.Waiting
	if w == nil || w.Reason != "ImagePullBackOff" {
		t.Fatalf("during back-off: waiting = %+v, want ImagePullBackOff", w)
	}
	if got := countCalls(f.runtime.FakeImageService.Called, "PullImage"); got != pulls {
		t.Errorf("pulled again during back-off (%d pulls, want %d)", got, pulls)
	}
	if phase := f.postedStatus(t).Phase; phase != corev1.PodPending {
		t.Errorf("phase = %s, want Pending", phase)
	}
}

// recordedEvents takes the Events recorded so far, oldest first.
func recordedEvents(recorder *record.FakeRecorder) []string {
	var events []string
	for len(recorder.Events) > 0 {
		events = append(events, <-recorder.Events)
	}
	return events
}

func countCalls(calls []string, name string) int {
	n := 0
	for _, c := range calls {
		if c == name {
			n++
		}
	}
	return n
}

func TestDeletionRemovesEverythingAndFinalisesThePod(t *testing.T) {
	pod := testPod("localhost/testserver:local")
	f := newFixture(t, pod)
	f.runtime.SetFakeImages([]string{"localhost/testserver:local"})
	if _, err := f.worker.sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	f.deleteAndSync(t, 0)
	if c, _ := f.runtime.ListContainers(context.Background(), nil); len(c) != 0 {
		t.Errorf("containers left: %v", c)
	}
	if s, _ := f.runtime.ListPodSandbox(context.Background(), nil); len(s) != 0 {
		t.Errorf("sandboxes left: %v", s)
	}
	if _, err := f.client.CoreV1().Pods("default").Get(context.Background(), "web", metav1.GetOptions{}); err == nil {
		t.Error("the Pod object was not finalised")
	}
}

func TestPodPhase(t *testing.T) {
	running := corev1.ContainerStatus{State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}
	waiting := corev1.ContainerStatus{State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{}}}
	exited := func(code int32) corev1.ContainerStatus {
		return corev1.ContainerStatus{State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: code}}}
	}
	crashLooping := corev1.ContainerStatus{State: waiting.State, LastTerminationState: exited(1).State}
	tests := []struct {
		name     string
		policy   corev1.RestartPolicy
		statuses []corev1.ContainerStatus
		want     corev1.PodPhase
	}{
		{"not started yet", corev1.RestartPolicyAlways, []corev1.ContainerStatus{running, waiting}, corev1.PodPending},
		{"all running", corev1.RestartPolicyAlways, []corev1.ContainerStatus{running, running}, corev1.PodRunning},
		{"crash looping", corev1.RestartPolicyAlways, []corev1.ContainerStatus{crashLooping}, corev1.PodRunning},
		{"never, all succeeded", corev1.RestartPolicyNever, []corev1.ContainerStatus{exited(0), exited(0)}, corev1.PodSucceeded},
		{"never, one failed", corev1.RestartPolicyNever, []corev1.ContainerStatus{exited(0), exited(2)}, corev1.PodFailed},
		{"on failure, one failed", corev1.RestartPolicyOnFailure, []corev1.ContainerStatus{exited(0), exited(2)}, corev1.PodRunning},
		{"on failure, all succeeded", corev1.RestartPolicyOnFailure, []corev1.ContainerStatus{exited(0)}, corev1.PodSucceeded},
		{"always, exited", corev1.RestartPolicyAlways, []corev1.ContainerStatus{exited(0)}, corev1.PodRunning},
		// Container-level policies and rules (ContainerRestartRules) decide for their container.
		{"always, the container's Never, exited 3", corev1.RestartPolicyAlways, []corev1.ContainerStatus{exited(3)}, corev1.PodFailed},
		{"always, the container's Never, exited 0", corev1.RestartPolicyAlways, []corev1.ContainerStatus{exited(0)}, corev1.PodSucceeded},
		{"never, the container's rule restarts on 42", corev1.RestartPolicyNever, []corev1.ContainerStatus{exited(42)}, corev1.PodRunning},
	}
	never := corev1.ContainerRestartPolicyNever
	for _, tt := range tests {
		pod := &corev1.Pod{Spec: corev1.PodSpec{RestartPolicy: tt.policy, Containers: make([]corev1.Container, len(tt.statuses))}}
		if strings.Contains(tt.name, "container's") {
			pod.Spec.Containers[0].RestartPolicy = &never
			pod.Spec.Containers[0].RestartPolicyRules = []corev1.ContainerRestartRule{{Action: corev1.ContainerRestartRuleActionRestart,
				ExitCodes: &corev1.ContainerRestartRuleOnExitCodes{Operator: corev1.ContainerRestartRuleOnExitCodesOpIn, Values: []int32{42}}}}
		}
		if got := podPhase(pod, tt.statuses); got != tt.want {
			t.Errorf("%s: phase = %s, want %s", tt.name, got, tt.want)
		}
	}
}

// exitAll marks every running fake container as exited with code.
func (f *fixture) exitAll(code int32) { f.exit("", code) }

// exit marks the running fake containers called name (every one for "") as exited with code.
func (f *fixture) exit(name string, code int32) {
	f.runtime.FakeRuntimeService.Lock()
	defer f.runtime.FakeRuntimeService.Unlock()
	for _, c := range f.runtime.Containers {
		if c.State == runtimeapi.ContainerState_CONTAINER_RUNNING && (name == "" || c.Metadata.Name == name) {
			c.State, c.ExitCode, c.FinishedAt = runtimeapi.ContainerState_CONTAINER_EXITED, code, time.Now().UnixNano()
		}
	}
}

// syncAndRefresh runs one sync and feeds the posted Pod back into the cache, as the informer would.
func (f *fixture) syncAndRefresh(t *testing.T) corev1.PodStatus {
	t.Helper()
	if _, err := f.worker.sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := f.indexer.Update(mustGetPod(t, f)); err != nil {
		t.Fatal(err)
	}
	return f.postedStatus(t)
}

func TestFailedContainerIsRestartedThenBacksOff(t *testing.T) {
	f := newFixture(t, testPod("localhost/testserver:local"))
	f.runtime.SetFakeImages([]string{"localhost/testserver:local"})
	f.syncAndRefresh(t)

	f.exitAll(3)
	cs := f.syncAndRefresh(t).ContainerStatuses[0]
	if cs.RestartCount != 1 || cs.State.Running == nil {
		t.Fatalf("after the first failure: restartCount=%d state=%+v, want 1 and running", cs.RestartCount, cs.State)
	}
	if last := cs.LastTerminationState.Terminated; last == nil || last.ExitCode != 3 || last.Reason != "Error" {
		t.Errorf("lastState = %+v, want terminated with exit code 3, reason Error", cs.LastTerminationState)
	}

	f.exitAll(3)
	status := f.syncAndRefresh(t)
	cs = status.ContainerStatuses[0]
	if cs.State.Waiting == nil || cs.State.Waiting.Reason != "CrashLoopBackOff" {
		t.Fatalf("after the second failure: state = %+v, want waiting CrashLoopBackOff", cs.State)
	}
	if cs.RestartCount != 1 {
		t.Errorf("restartCount = %d during back-off, want 1", cs.RestartCount)
	}
	if status.Phase != corev1.PodRunning {
		t.Errorf("phase = %s during back-off, want Running (as the kubelet reports)", status.Phase)
	}
	if all, _ := f.runtime.ListContainers(context.Background(), nil); len(all) != 2 {
		t.Errorf("%d containers exist, want 2: no new attempt during back-off", len(all))
	}
}

func TestNeverRestartPolicyLeavesThePodFailed(t *testing.T) {
	pod := testPod("localhost/testserver:local")
	pod.Spec.RestartPolicy = corev1.RestartPolicyNever
	f := newFixture(t, pod)
	f.runtime.SetFakeImages([]string{"localhost/testserver:local"})
	f.syncAndRefresh(t)
	f.exitAll(1)
	status := f.syncAndRefresh(t)
	if status.Phase != corev1.PodFailed {
		t.Errorf("phase = %s, want Failed", status.Phase)
	}
	if all, _ := f.runtime.ListContainers(context.Background(), nil); len(all) != 1 {
		t.Errorf("%d containers, want 1: Never must not restart", len(all))
	}
}

func TestOrphanedPodFilesAreRemoved(t *testing.T) {
	pod := testPod("img")
	f := newFixture(t, pod)
	m := f.worker.m
	m.workers[pod.UID] = f.worker
	write := func(path string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	orphanVolume := filepath.Join(m.volumeDir("orphan-uid", "empty-dir", "cache"), "data")
	orphanLog := filepath.Join(m.cfg.PodLogsDir, "default_gone_orphan-uid", "c", "0.log")
	ownVolume := filepath.Join(m.volumeDir(string(pod.UID), "empty-dir", "cache"), "data")
	for _, p := range []string{orphanVolume, orphanLog, ownVolume} {
		write(p)
	}
	m.removeOrphanedPodFiles()
	for _, gone := range []string{m.podDir("orphan-uid"), filepath.Dir(filepath.Dir(orphanLog))} {
		if _, err := os.Stat(gone); !os.IsNotExist(err) {
			t.Errorf("%s is still there (%v)", gone, err)
		}
	}
	if _, err := os.Stat(ownVolume); err != nil {
		t.Errorf("a pod with a worker lost its files: %v", err)
	}
}

func TestRemovedPodLogsStayForTheRetentionPeriod(t *testing.T) {
	f := newFixture(t, testPod("img"))
	m := f.worker.m
	dir := filepath.Join(m.cfg.PodLogsDir, "default_web_uid-1")
	if err := os.MkdirAll(filepath.Join(dir, "c"), 0o755); err != nil {
		t.Fatal(err)
	}
	m.scheduleLogRemoval("uid-1")
	m.removeExpiredLogs(time.Now())
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("logs removed before the retention period: %v", err)
	}
	m.removeExpiredLogs(time.Now().Add(logRetention + time.Second))
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("logs still there after the retention period (%v)", err)
	}
}

// As the kubelet's container garbage collection, housekeeping removes the log directories of pods the node
// does not run (removed while the agent was down, or run by another agent before it), after the retention
// that the logs of its own removed pods get, and never those of a pod it runs.
func TestLogsOfPodsTheNodeDoesNotRunAreRemoved(t *testing.T) {
	pod := testPod("img")
	f := newFixture(t, pod)
	m := f.worker.m
	m.workers[pod.UID] = f.worker
	unknown := filepath.Join(m.cfg.PodLogsDir, "default_gone_unknown-uid")
	own := m.podLogDir(pod.Namespace, pod.Name, string(pod.UID))
	for _, dir := range []string{unknown, own} {
		if err := os.MkdirAll(filepath.Join(dir, "c"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	m.scheduleUnknownPodLogs()
	m.removeExpiredLogs(time.Now())
	if _, err := os.Stat(unknown); err != nil {
		t.Fatalf("an unknown pod's logs removed before the retention period: %v", err)
	}
	m.removeExpiredLogs(time.Now().Add(logRetention + time.Second))
	if _, err := os.Stat(unknown); !os.IsNotExist(err) {
		t.Errorf("an unknown pod's logs still there after the retention period (%v)", err)
	}
	if _, err := os.Stat(own); err != nil {
		t.Errorf("the logs of a pod the node runs were removed: %v", err)
	}
}

// A container whose start keeps failing (the runtime leaves it exited, 128, with no start time) backs off
// longer each time, as one that crashes does; it is not taken for a long healthy run that resets the back-off.
func TestFailingStartBacksOffLongerEachTime(t *testing.T) {
	f := newFixture(t, testPod("localhost/testserver:local"))
	f.runtime.SetFakeImages([]string{"localhost/testserver:local"})
	f.syncAndRefresh(t)
	var delays []time.Duration
	for range 3 {
		f.runtime.FakeRuntimeService.Lock()
		for _, c := range f.runtime.Containers {
			if c.State == runtimeapi.ContainerState_CONTAINER_RUNNING {
				c.State, c.ExitCode, c.StartedAt, c.FinishedAt = runtimeapi.ContainerState_CONTAINER_EXITED, 128, 0, time.Now().UnixNano()
			}
		}
		f.runtime.FakeRuntimeService.Unlock()
		if b, ok := f.worker.backoff["server"]; ok {
			b.until = time.Now().Add(-time.Second) // the back-off period has passed
			f.worker.backoff["server"] = b
		}
		f.syncAndRefresh(t)
		delays = append(delays, f.worker.backoff["server"].delay)
	}
	want := []time.Duration{initialBackoff, 2 * initialBackoff, 4 * initialBackoff}
	if !slices.Equal(delays, want) {
		t.Errorf("back-off after each failed start %v, want %v", delays, want)
	}
}

// Before a deleted pod is finalised, its final status is written: each container terminated and a terminal
// phase, as the kubelet writes it, so a Pod that a finalizer keeps does not show running containers forever.
func TestDeletionWritesTheFinalStatusBeforeFinalising(t *testing.T) {
	f := runningFixture(t)
	f.deleteAndSync(t, 0)
	checkFinalStatus(t, f)
}

// runningFixture is a fixture whose pod has been synced once (its container runs), with the API actions so
// far cleared.
func runningFixture(t *testing.T) *fixture {
	t.Helper()
	f := newFixture(t, testPod("localhost/testserver:local"))
	f.runtime.SetFakeImages([]string{"localhost/testserver:local"})
	f.syncAndRefresh(t)
	f.client.ClearActions()
	return f
}

// checkFinalStatus checks the last status written before the Pod was finalised: each container terminated
// and a terminal phase.
func checkFinalStatus(t *testing.T, f *fixture) {
	t.Helper()
	var final *corev1.Pod
	for _, a := range f.client.Actions() {
		if a.GetVerb() == "delete" {
			break
		}
		if patch, ok := a.(k8stesting.PatchAction); ok && a.GetSubresource() == "status" {
			final = &corev1.Pod{}
			if err := json.Unmarshal(patch.GetPatch(), final); err != nil {
				t.Fatal(err)
			}
		}
	}
	if final == nil {
		t.Fatal("no status was written before the Pod was finalised")
	}
	if final.Status.Phase != corev1.PodSucceeded && final.Status.Phase != corev1.PodFailed {
		t.Errorf("final phase %s, want a terminal one", final.Status.Phase)
	}
	if cs := final.Status.ContainerStatuses; len(cs) != 1 || cs[0].State.Terminated == nil {
		t.Errorf("final container statuses %+v, want server terminated", cs)
	}
}

// A stop can return before the runtime shows the container stopped (containerd answering while it still
// processes the exit). As the kubelet does, the worker then fails the sync and tries again, rather than
// writing a final status with the container running and finalising the Pod with it: upstream's "should never
// report success for a pending container" saw deleted pods go with phase Running.
func TestDeletionWaitsForTheRuntimeToShowTheContainersStopped(t *testing.T) {
	f := runningFixture(t)
	f.markDeleted(t, 0)
	*f.runtime.earlyStops = 1
	if done, err := f.worker.sync(context.Background()); err == nil || done {
		t.Fatalf("sync with the container still running after its stop = %v, %v; want an error to retry", done, err)
	}
	for _, a := range f.client.Actions() {
		if a.GetVerb() == "delete" || a.GetSubresource() == "status" {
			t.Fatalf("while the container still ran: %s %s, want nothing written", a.GetVerb(), a.GetSubresource())
		}
	}
	if done, err := f.worker.sync(context.Background()); err != nil || !done {
		t.Fatalf("sync once the stop took = %v, %v; want done", done, err)
	}
	checkFinalStatus(t, f)
}

// A container's own restartPolicy and restartPolicyRules decide whether it runs again (ContainerRestartRules,
// beta and on by default in v1.37): a rule that matches the exit code restarts it even in a Never pod.
func TestContainerRestartRules(t *testing.T) {
	never := corev1.ContainerRestartPolicyNever
	pod := testPod("localhost/testserver:local")
	pod.Spec.RestartPolicy = corev1.RestartPolicyAlways
	pod.Spec.Containers[0].RestartPolicy = &never
	pod.Spec.Containers[0].RestartPolicyRules = []corev1.ContainerRestartRule{{Action: corev1.ContainerRestartRuleActionRestart,
		ExitCodes: &corev1.ContainerRestartRuleOnExitCodes{Operator: corev1.ContainerRestartRuleOnExitCodesOpIn, Values: []int32{42}}}}
	f := newFixture(t, pod)
	f.runtime.SetFakeImages([]string{"localhost/testserver:local"})
	f.syncAndRefresh(t)

	f.exitAll(42)
	if cs := f.syncAndRefresh(t).ContainerStatuses[0]; cs.RestartCount != 1 || cs.State.Running == nil {
		t.Fatalf("after exit 42: restartCount=%d state=%+v, want restarted by the rule", cs.RestartCount, cs.State)
	}
	f.exitAll(3)
	status := f.syncAndRefresh(t)
	if cs := status.ContainerStatuses[0]; cs.RestartCount != 1 || cs.State.Terminated == nil {
		t.Errorf("after exit 3: restartCount=%d state=%+v, want it left terminated (its own policy Never)", cs.RestartCount, cs.State)
	}
	if status.Phase != corev1.PodFailed {
		t.Errorf("phase %s, want Failed", status.Phase)
	}
}

// A pod that ran on the node longer than its activeDeadlineSeconds is stopped and Failed with reason
// DeadlineExceeded, as the kubelet's active deadline handler does (the deadline may be shortened later).
func TestActiveDeadlineStopsThePod(t *testing.T) {
	f := newFixture(t, testPod("localhost/testserver:local"))
	f.runtime.SetFakeImages([]string{"localhost/testserver:local"})
	f.syncAndRefresh(t)
	pod := mustGetPod(t, f)
	deadline := int64(5)
	pod.Spec.ActiveDeadlineSeconds = &deadline
	pod.Status.StartTime = &metav1.Time{Time: time.Now().Add(-10 * time.Second)}
	if err := f.indexer.Update(pod); err != nil {
		t.Fatal(err)
	}
	if _, err := f.worker.sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	status := f.postedStatus(t)
	if status.Phase != corev1.PodFailed || status.Reason != "DeadlineExceeded" {
		t.Errorf("phase %s reason %q, want Failed DeadlineExceeded", status.Phase, status.Reason)
	}
	if c, _ := f.runtime.ListContainers(context.Background(), nil); len(c) != 1 || c[0].State != runtimeapi.ContainerState_CONTAINER_EXITED {
		t.Errorf("containers %v, want the one stopped", c)
	}
}

// A sync that runs before the Pod cache has seen the status the last one wrote must not write it again;
// once the cache has a newer Pod, its status is what a sync compares with.
func TestStatusIsNotRewrittenBeforeTheCacheSeesIt(t *testing.T) {
	pod := testPod("localhost/testserver:local")
	pod.ResourceVersion = "1"
	f := newFixture(t, pod)
	f.runtime.SetFakeImages([]string{"localhost/testserver:local"})
	statusPatches := func() int {
		n := 0
		for _, a := range f.client.Actions() {
			if _, ok := a.(k8stesting.PatchAction); ok && a.GetSubresource() == "status" {
				n++
			}
		}
		return n
	}
	for i := range 3 { // the cache still holds resourceVersion 1
		if i == 1 {
			// A sync in a later second computes the status again: the start and transition times the
			// worker wrote are kept, not taken from the clock again (cut to seconds, they differed).
			nextSecond()
		}
		if _, err := f.worker.sync(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if n := statusPatches(); n != 1 {
		t.Fatalf("status patches after three syncs over the same Pod, a second apart = %d, want 1", n)
	}

	// Someone else changes the status meanwhile: the cache's newer Pod is what the node's status is compared with.
	changed := pod.DeepCopy()
	changed.ResourceVersion, changed.Status = "3", f.postedStatus(t)
	changed.Status.Conditions = nil
	if err := f.indexer.Update(changed); err != nil {
		t.Fatal(err)
	}
	if _, err := f.worker.sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := statusPatches(); n != 2 {
		t.Fatalf("status patches after the Pod changed = %d, want 2", n)
	}
}

// nextSecond returns once the wall clock has passed into the next whole second (within one second).
func nextSecond() {
	this := time.Now().Truncate(time.Second)
	for time.Now().Truncate(time.Second).Equal(this) {
		time.Sleep(5 * time.Millisecond)
	}
}

// As the kubelet, a container whose image is present gets Pulled ("already present on machine"), Created
// and Started.
func TestAPresentImageIsReportedPulled(t *testing.T) {
	pod := testPod("localhost/testserver:local")
	f := newFixture(t, pod)
	f.runtime.SetFakeImages([]string{"localhost/testserver:local"})
	if _, err := f.worker.sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	events := recordedEvents(f.worker.m.recorder.(*record.FakeRecorder))
	want := []string{`Normal Pulled Container image "localhost/testserver:local" already present on machine`,
		"Normal Created Created container: server", "Normal Started Started container server"}
	if !slices.Equal(events, want) {
		t.Errorf("events %q, want %q", events, want)
	}
}
