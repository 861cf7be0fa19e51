package podmanager

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/nodeagent/nodeagent/pkg/source"
)

// fakeStatic is a fixed set of static pods.
type fakeStatic map[string]*corev1.Pod

func (f fakeStatic) Get(namespace, name string) (*corev1.Pod, bool) {
	p, ok := f[namespace+"/"+name]
	return p, ok
}

func (f fakeStatic) List() []*corev1.Pod {
	var out []*corev1.Pod
	for _, p := range f {
		out = append(out, p)
	}
	return out
}

func TestMirrorPodsFollowTheStaticPods(t *testing.T) {
	static := testPod("localhost/busybox:local")
	static.Name, static.UID = "web-node-a", "hash-1"
	static.Annotations = map[string]string{source.AnnotationConfigSource: "file", source.AnnotationConfigHash: "hash-1"}
	orphan := testPod("img")
	orphan.Name, orphan.UID = "gone-node-a", "mirror-uid"
	orphan.Annotations = map[string]string{source.AnnotationConfigMirror: "old-hash"}
	f := newFixture(t, orphan)
	m := f.worker.m
	m.static = fakeStatic{"default/web-node-a": static}
	ctx := context.Background()

	m.syncMirrorPods(ctx)
	mirror, err := f.client.CoreV1().Pods("default").Get(ctx, "web-node-a", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("no mirror pod: %v", err)
	}
	if mirror.Annotations[source.AnnotationConfigMirror] != "hash-1" || mirror.OwnerReferences[0].Name != "node-a" {
		t.Errorf("mirror pod annotations %v owners %v", mirror.Annotations, mirror.OwnerReferences)
	}
	if _, err := f.client.CoreV1().Pods("default").Get(ctx, "gone-node-a", metav1.GetOptions{}); err == nil {
		t.Error("the orphaned mirror pod was not deleted")
	}

	// Until the cache has the mirror, the static pod's status has nowhere to go; then it goes to the mirror.
	if target := m.statusTarget(static); target != nil {
		t.Errorf("status target before the cache has the mirror = %v", target.UID)
	}
	mirror.UID = "mirror-of-web"
	if err := f.indexer.Add(mirror); err != nil {
		t.Fatal(err)
	}
	if target := m.statusTarget(static); target == nil || target.UID != "mirror-of-web" {
		t.Errorf("status target = %v, want the mirror pod", target)
	}
	got, err := m.getPod(keyOf(static))
	if err != nil || got.UID != "hash-1" {
		t.Errorf("getPod of a static pod = %v, %v; want the static pod (its UID), not the mirror", got, err)
	}
	m.static = fakeStatic{}
	if _, err := m.getPod(keyOf(static)); err == nil {
		t.Error("a mirror pod without its static pod is handed to a worker")
	}
}

func keyOf(pod *corev1.Pod) types.NamespacedName {
	return types.NamespacedName{Namespace: pod.Namespace, Name: pod.Name}
}
