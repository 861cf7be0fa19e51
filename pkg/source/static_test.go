package source

import (
	"os"
	"path/filepath"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const webManifest = `apiVersion: v1
kind: Pod
metadata:
  name: web
  namespace: tools
spec:
  containers:
  - name: server
    image: localhost/testserver:local
`

func TestStaticPodsFromAManifestDirectory(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("web.yaml", webManifest)
	write("broken.yaml", "apiVersion: v1\nkind: Pod\nspec: {containers: 3}\n")
	write(".hidden.yaml", webManifest)
	write("latest.json", `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"tail"},"spec":{"containers":[{"name":"c","image":"busybox"}]}}`)
	s := NewStaticPods(dir, "Node-A", 0)
	changes := 0
	s.OnChange(func() { changes++ })
	s.read()

	if got := len(s.List()); got != 2 {
		t.Fatalf("%d static pods, want 2 (the broken and the hidden file are skipped)", got)
	}
	web, ok := s.Get("tools", "web-node-a")
	if !ok {
		t.Fatal("no static pod tools/web-node-a")
	}
	if web.Spec.NodeName != "Node-A" || web.Annotations[AnnotationConfigSource] != "file" ||
		web.Annotations[AnnotationConfigHash] != string(web.UID) || len(web.UID) != 32 || !IsStaticPod(web) {
		t.Errorf("static pod = node %q annotations %v uid %q", web.Spec.NodeName, web.Annotations, web.UID)
	}
	c := web.Spec.Containers[0]
	if web.Spec.RestartPolicy != corev1.RestartPolicyAlways || web.Spec.DNSPolicy != corev1.DNSClusterFirst ||
		c.ImagePullPolicy != corev1.PullIfNotPresent || c.TerminationMessagePath != "/dev/termination-log" {
		t.Errorf("defaults not applied: %+v / %+v", web.Spec, c)
	}
	if tail, ok := s.Get("default", "tail-node-a"); !ok || tail.Spec.Containers[0].ImagePullPolicy != corev1.PullAlways {
		t.Errorf("an untagged image's pull policy is not Always (%v)", ok)
	}
	if changes != 1 {
		t.Errorf("%d change notifications, want 1", changes)
	}

	s.read() // nothing changed
	if again, _ := s.Get("tools", "web-node-a"); again.UID != web.UID || changes != 1 {
		t.Errorf("re-reading an unchanged directory changed the pod (uid %s → %s, %d notifications)", web.UID, again.UID, changes)
	}
	write("web.yaml", webManifest+"    args: [--port=9090]\n")
	s.read()
	if changed, _ := s.Get("tools", "web-node-a"); changed.UID == web.UID || changes != 2 {
		t.Errorf("an edited manifest kept its UID %s (%d notifications)", web.UID, changes)
	}
	if err := os.Remove(filepath.Join(dir, "web.yaml")); err != nil {
		t.Fatal(err)
	}
	s.read()
	if _, ok := s.Get("tools", "web-node-a"); ok || changes != 3 {
		t.Errorf("a removed manifest's pod is still there (%d notifications)", changes)
	}
}

func TestMirrorPodIsOwnedByTheNode(t *testing.T) {
	s := NewStaticPods(t.TempDir(), "node-a", 0)
	if err := os.WriteFile(filepath.Join(s.dir, "web.yaml"), []byte(webManifest), 0o644); err != nil {
		t.Fatal(err)
	}
	s.read()
	static, _ := s.Get("tools", "web-node-a")
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-a", UID: "node-uid"}}
	mirror := MirrorOf(static, node)
	if !IsMirrorPod(mirror) || mirror.Annotations[AnnotationConfigMirror] != string(static.UID) || mirror.UID != "" {
		t.Errorf("mirror annotations %v uid %q", mirror.Annotations, mirror.UID)
	}
	if len(mirror.OwnerReferences) != 1 || mirror.OwnerReferences[0].Kind != "Node" || mirror.OwnerReferences[0].UID != "node-uid" ||
		!*mirror.OwnerReferences[0].Controller {
		t.Errorf("owner references %+v", mirror.OwnerReferences)
	}
	if IsMirrorPod(static) {
		t.Error("the static pod itself counts as a mirror pod")
	}
}
