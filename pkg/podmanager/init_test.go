package podmanager

import (
	"context"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func podWithInitAndSidecar() *corev1.Pod {
	pod := testPod("localhost/testserver:local")
	always := corev1.ContainerRestartPolicyAlways
	pod.Spec.InitContainers = []corev1.Container{
		{Name: "setup", Image: "localhost/testserver:local", ImagePullPolicy: corev1.PullIfNotPresent},
		{Name: "proxy", Image: "localhost/testserver:local", ImagePullPolicy: corev1.PullIfNotPresent, RestartPolicy: &always},
	}
	return pod
}

func condition(status corev1.PodStatus, typ corev1.PodConditionType) corev1.ConditionStatus {
	for _, c := range status.Conditions {
		if c.Type == typ {
			return c.Status
		}
	}
	return ""
}

func (f *fixture) containerNames(t *testing.T) []string {
	t.Helper()
	list, err := f.runtime.ListContainers(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range list {
		names = append(names, c.Metadata.Name)
	}
	slices.Sort(names)
	return names
}

func TestInitContainerGatesSidecarAndAppContainers(t *testing.T) {
	f := newFixture(t, podWithInitAndSidecar())
	f.runtime.SetFakeImages([]string{"localhost/testserver:local"})

	status := f.syncAndRefresh(t)
	if got := f.containerNames(t); !slices.Equal(got, []string{"setup"}) {
		t.Fatalf("while setup runs, containers = %v, want only setup", got)
	}
	if status.Phase != corev1.PodPending || condition(status, corev1.PodInitialized) != corev1.ConditionFalse {
		t.Errorf("phase %s Initialized %s, want Pending and False", status.Phase, condition(status, corev1.PodInitialized))
	}
	if w := status.ContainerStatuses[0].State.Waiting; w == nil || w.Reason != "PodInitializing" {
		t.Errorf("app container state = %+v, want waiting PodInitializing", status.ContainerStatuses[0].State)
	}

	f.exit("setup", 0)
	status = f.syncAndRefresh(t)
	if got := f.containerNames(t); !slices.Equal(got, []string{"proxy", "server", "setup"}) {
		t.Fatalf("after setup succeeded, containers = %v, want proxy, server and the finished setup", got)
	}
	if status.Phase != corev1.PodRunning || condition(status, corev1.PodInitialized) != corev1.ConditionTrue ||
		condition(status, corev1.PodReady) != corev1.ConditionTrue {
		t.Errorf("phase %s Initialized %s Ready %s, want Running, True, True", status.Phase,
			condition(status, corev1.PodInitialized), condition(status, corev1.PodReady))
	}
	setup, proxy := status.InitContainerStatuses[0], status.InitContainerStatuses[1]
	if setup.State.Terminated == nil || setup.State.Terminated.Reason != "Completed" || !setup.Ready {
		t.Errorf("setup status = %+v, want terminated Completed and ready", setup)
	}
	if proxy.State.Running == nil || !proxy.Ready {
		t.Errorf("sidecar status = %+v, want running and ready", proxy)
	}

	// A sidecar that dies is restarted (restartPolicy Always), and the pod is not ready meanwhile.
	f.exit("proxy", 1)
	f.syncAndRefresh(t)
	if status := f.postedStatus(t); status.InitContainerStatuses[1].RestartCount != 1 {
		t.Errorf("sidecar restartCount = %d, want 1", status.InitContainerStatuses[1].RestartCount)
	}
	// setup does not run again: it succeeded in this sandbox.
	if got := f.containerNames(t); !slices.Equal(got, []string{"proxy", "proxy", "server", "setup"}) {
		t.Errorf("containers = %v, want setup once and proxy twice", got)
	}
}

func TestFailedInitContainerWithRestartNeverFailsThePod(t *testing.T) {
	pod := podWithInitAndSidecar()
	pod.Spec.RestartPolicy = corev1.RestartPolicyNever
	f := newFixture(t, pod)
	f.runtime.SetFakeImages([]string{"localhost/testserver:local"})
	f.syncAndRefresh(t)
	f.exit("setup", 7)
	status := f.syncAndRefresh(t)
	if status.Phase != corev1.PodFailed {
		t.Errorf("phase = %s, want Failed", status.Phase)
	}
	if got := f.containerNames(t); !slices.Equal(got, []string{"setup"}) {
		t.Errorf("containers = %v, want only the failed setup", got)
	}
}

func TestSidecarsStopAfterAppContainers(t *testing.T) {
	f := newFixture(t, podWithInitAndSidecar())
	f.runtime.SetFakeImages([]string{"localhost/testserver:local"})
	f.syncAndRefresh(t)
	f.exit("setup", 0)
	f.syncAndRefresh(t)

	f.deleteAndSync(t, 30)
	stopped := *f.runtime.stopped
	if !slices.Equal(stopped, []string{"server", "proxy"}) {
		t.Errorf("stop order = %v, want the app, then the sidecar proxy (the exited setup needs no stop)", stopped)
	}
}

// A sidecar with a startup probe holds the next containers until the probe succeeds, as with the kubelet.
func TestSidecarWithAStartupProbeHoldsTheAppUntilStarted(t *testing.T) {
	pod := podWithInitAndSidecar()
	pod.Spec.InitContainers = pod.Spec.InitContainers[1:] // the sidecar alone
	pod.Spec.InitContainers[0].StartupProbe = &corev1.Probe{PeriodSeconds: 3600,
		ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"check"}}}}
	f := newFixture(t, pod)
	f.runtime.SetFakeImages([]string{"localhost/testserver:local"})
	f.syncAndRefresh(t)
	f.worker.stopProbers() // the probe has not succeeded yet
	f.syncAndRefresh(t)
	f.worker.stopProbers()
	if got := f.containerNames(t); !slices.Equal(got, []string{"proxy"}) {
		t.Fatalf("containers %v before the sidecar's startup probe succeeded, want only proxy", got)
	}
	var sidecarID string
	for _, c := range f.runtime.Containers {
		sidecarID = c.Id
	}
	started := &prober{kind: startupProbe, containerID: sidecarID, cancel: func() {}, done: make(chan struct{})}
	close(started.done)
	started.result.Store(int32(probeSuccess))
	f.worker.probers[proberKey(startupProbe, "proxy")] = started
	f.syncAndRefresh(t)
	if got := f.containerNames(t); !slices.Equal(got, []string{"proxy", "server"}) {
		t.Errorf("containers %v after the startup probe succeeded, want proxy and server", got)
	}
}
