package source

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/labels"
)

const webObjects = `apiVersion: v1
kind: Pod
metadata: {name: web, labels: {app: web}}
spec:
  containers: [{name: c, image: busybox, ports: [{name: http, containerPort: 8080}]}]
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: http}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data: {level: debug}
`

// eventually polls cond until it holds or 10 s pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func startManifests(t *testing.T, dir string) *Manifests {
	t.Helper()
	m := NewManifests(dir, "node-a", netip.MustParsePrefix("10.96.0.0/16"), time.Hour)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { cancel(); m.Shutdown() })
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return m
}

// writeManifest replaces a file at once (a hidden temporary file renamed over it), as a user's tooling
// should: a file written in place can be read half-written.
func writeManifest(t *testing.T, path, content string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// A directory's Pod, Service and ConfigMap are served as the API server would: the Pod bound to the node
// with defaults, the Service with a cluster IP of the range, and endpoints once the node reports the pod
// Ready with an address.
func TestManifestsServeTheirObjectsAndEndpoints(t *testing.T) {
	dir := t.TempDir()
	writeManifest(t, filepath.Join(dir, "web.yaml"), webObjects)
	m := startManifests(t, dir)

	pod, err := m.Pods().Pods("default").Get("web")
	if err != nil {
		t.Fatal(err)
	}
	if pod.Spec.NodeName != "node-a" || pod.Spec.RestartPolicy != corev1.RestartPolicyAlways || pod.UID == "" || pod.Status.Phase != corev1.PodPending {
		t.Errorf("pod: nodeName %q restartPolicy %q uid %q phase %q", pod.Spec.NodeName, pod.Spec.RestartPolicy, pod.UID, pod.Status.Phase)
	}
	svc, ok, _ := m.Services().GetIndexer().GetByKey("default/web")
	if !ok {
		t.Fatal("no Service default/web")
	}
	ip := netip.MustParseAddr(svc.(*corev1.Service).Spec.ClusterIP)
	if !netip.MustParsePrefix("10.96.0.0/16").Contains(ip) {
		t.Errorf("cluster IP %s is outside 10.96.0.0/16", ip)
	}
	if cm, err := m.ConfigMap(context.Background(), pod.UID, "default", "settings"); err != nil || cm.Data["level"] != "debug" {
		t.Errorf("ConfigMap settings: %v %v", cm, err)
	}

	status := corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.244.0.5", PodIPs: []corev1.PodIP{{IP: "10.244.0.5"}},
		Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}}
	if err := m.WriteStatus(context.Background(), pod, &status); err != nil {
		t.Fatal(err)
	}
	eventually(t, "an endpoint for the ready pod", func() bool {
		slices := m.EndpointSlices().GetIndexer().List()
		if len(slices) != 1 {
			return false
		}
		s := slices[0].(*discoveryv1.EndpointSlice)
		return s.Labels[discoveryv1.LabelServiceName] == "web" && len(s.Endpoints) == 1 && s.Endpoints[0].Addresses[0] == "10.244.0.5" &&
			*s.Endpoints[0].Conditions.Ready && *s.Ports[0].Port == 8080
	})
	eventually(t, "the status in the lister", func() bool {
		p, err := m.Pods().Pods("default").Get("web")
		return err == nil && p.Status.Phase == corev1.PodRunning
	})
}

// Editing a Pod's document deletes the old pod gracefully and creates the new one once the node finalized
// the old; removing the file deletes it; a file that no longer parses keeps what it held.
func TestManifestsConvergeOnEditsAndKeepObjectsOfABrokenFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "web.yaml")
	writeManifest(t, path, webObjects)
	m := startManifests(t, dir)
	old, err := m.Pods().Pods("default").Get("web")
	if err != nil {
		t.Fatal(err)
	}

	writeManifest(t, path, "apiVersion: v1\nkind: Pod\nmetadata: {name: web, labels: {app: web}}\nspec: {containers: [{name: c, image: busybox:1.37}]}\n")
	eventually(t, "the old pod marked for deletion and the Service gone", func() bool {
		p, err := m.Pods().Pods("default").Get("web")
		_, svcLeft, _ := m.Services().GetIndexer().GetByKey("default/web")
		return err == nil && p.UID == old.UID && p.DeletionTimestamp != nil && !svcLeft
	})
	if err := m.Finalize(context.Background(), old); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the new pod in its place", func() bool {
		p, err := m.Pods().Pods("default").Get("web")
		return err == nil && p.UID != old.UID && p.Spec.Containers[0].Image == "busybox:1.37"
	})
	current, _ := m.Pods().Pods("default").Get("web")

	writeManifest(t, path, "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec: {containers: [{name: c, imagee: x}]}\n")
	m.read()
	if p, err := m.Pods().Pods("default").Get("web"); err != nil || p.UID != current.UID || p.DeletionTimestamp != nil {
		t.Errorf("a broken file changed its pod: %v %v", p, err)
	}

	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the pod marked for deletion", func() bool {
		pods, _ := m.Pods().List(labels.Everything())
		return len(pods) == 1 && pods[0].DeletionTimestamp != nil
	})
}

// A Service keeps its cluster IP and node port when its file is read again.
func TestManifestServiceAddressesAreStable(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "svc.yaml")
	content := `apiVersion: v1
kind: Service
metadata: {name: a}
spec: {type: NodePort, selector: {app: a}, ports: [{port: 80}]}
`
	writeManifest(t, path, content)
	m := startManifests(t, dir)
	get := func() *corev1.Service {
		obj, ok, _ := m.Services().GetIndexer().GetByKey("default/a")
		if !ok {
			t.Fatal("no Service a")
		}
		return obj.(*corev1.Service)
	}
	first := get()
	if first.Spec.Ports[0].NodePort < 30000 || first.Spec.Ports[0].NodePort > 32767 || first.Spec.Ports[0].TargetPort.IntValue() != 80 {
		t.Errorf("node port %d, target port %v", first.Spec.Ports[0].NodePort, first.Spec.Ports[0].TargetPort)
	}
	writeManifest(t, path, content+"  # touched\n")
	m.read()
	if again := get(); again.Spec.ClusterIP != first.Spec.ClusterIP || again.Spec.Ports[0].NodePort != first.Spec.Ports[0].NodePort {
		t.Errorf("after a reread: %s:%d, before %s:%d", again.Spec.ClusterIP, again.Spec.Ports[0].NodePort, first.Spec.ClusterIP, first.Spec.Ports[0].NodePort)
	}
}
