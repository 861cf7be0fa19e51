package podmanager

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// An ephemeral container (kubectl debug) runs once in the pod's sandbox, in its target's process namespace,
// and shows in ephemeralContainerStatuses; it is not restarted when it exits.
func TestEphemeralContainerRunsOnceBesideItsTarget(t *testing.T) {
	pod := testPod("localhost/testserver:local")
	pod.Spec.EphemeralContainers = []corev1.EphemeralContainer{{TargetContainerName: "server",
		EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "debugger", Image: "localhost/testserver:local",
			ImagePullPolicy: corev1.PullIfNotPresent}}}
	f := newFixture(t, pod)
	f.runtime.SetFakeImages([]string{"localhost/testserver:local"})
	status := f.syncAndRefresh(t)

	var server, debugger *runtimeapi.ContainerConfig
	for _, c := range *f.runtime.created {
		switch c.Metadata.Name {
		case "server":
			server = c
		case "debugger":
			debugger = c
		}
	}
	if server == nil || debugger == nil {
		t.Fatalf("created %d containers, want server and debugger", len(*f.runtime.created))
	}
	ns := debugger.GetLinux().GetSecurityContext().GetNamespaceOptions()
	var serverID string
	for _, c := range f.runtime.Containers {
		if c.Metadata.Name == "server" {
			serverID = c.Id
		}
	}
	if ns.GetPid() != runtimeapi.NamespaceMode_TARGET || ns.GetTargetId() != serverID {
		t.Errorf("debugger's pid namespace %v target %q, want TARGET %q", ns.GetPid(), ns.GetTargetId(), serverID)
	}
	if es := status.EphemeralContainerStatuses; len(es) != 1 || es[0].Name != "debugger" || es[0].State.Running == nil {
		t.Errorf("ephemeral statuses %+v, want debugger running", es)
	}

	f.exit("debugger", 1)
	status = f.syncAndRefresh(t)
	if es := status.EphemeralContainerStatuses; len(es) != 1 || es[0].State.Terminated == nil || es[0].RestartCount != 0 {
		t.Errorf("after it exited: %+v, want debugger terminated, not restarted", es)
	}
	if status.Phase != corev1.PodRunning {
		t.Errorf("phase %s, want Running: an ephemeral container does not end the pod", status.Phase)
	}
}
