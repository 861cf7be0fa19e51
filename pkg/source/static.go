package source

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	"sigs.k8s.io/yaml"
)

// The kubelet's annotations on static pods and their mirror pods.
const (
	AnnotationConfigSource = "kubernetes.io/config.source"
	AnnotationConfigHash   = "kubernetes.io/config.hash"
	AnnotationConfigSeen   = "kubernetes.io/config.seen"
	AnnotationConfigMirror = "kubernetes.io/config.mirror"
)

// IsMirrorPod reports whether pod is the API's reflection of a static pod, which no node runs as such.
func IsMirrorPod(pod *corev1.Pod) bool {
	_, ok := pod.Annotations[AnnotationConfigMirror]
	return ok
}

// IsStaticPod reports whether pod came from a manifest file rather than the API.
func IsStaticPod(pod *corev1.Pod) bool { return pod.Annotations[AnnotationConfigSource] == "file" }

// StaticPods reads the Pods of a manifest directory (the kubelet's --pod-manifest-path): one Pod per YAML or
// JSON file, files starting with "." ignored. A change in the directory is seen at once (inotify), and the
// whole directory is read again every resync period.
type StaticPods struct {
	dir      string
	nodeName string
	resync   time.Duration

	mu       sync.RWMutex
	pods     map[types.NamespacedName]*corev1.Pod
	onChange []func()
}

// NewStaticPods returns the source of dir for this node; nothing is read until Run.
func NewStaticPods(dir, nodeName string, resync time.Duration) *StaticPods {
	return &StaticPods{dir: dir, nodeName: nodeName, resync: resync, pods: map[types.NamespacedName]*corev1.Pod{}}
}

// OnChange registers fn to be called after the set of static pods changed; call it before Run.
func (s *StaticPods) OnChange(fn func()) { s.onChange = append(s.onChange, fn) }

// Get returns the static pod with this namespace and name.
func (s *StaticPods) Get(namespace, name string) (*corev1.Pod, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	pod, ok := s.pods[types.NamespacedName{Namespace: namespace, Name: name}]
	return pod, ok
}

// List returns every static pod.
func (s *StaticPods) List() []*corev1.Pod {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]*corev1.Pod, 0, len(s.pods))
	for _, p := range s.pods {
		out = append(out, p)
	}
	return out
}

// Run reads the directory now, then on every change and every resync period, until ctx ends.
func (s *StaticPods) Run(ctx context.Context) error {
	if err := os.MkdirAll(s.dir, 0o755); err != nil {
		return fmt.Errorf("static pod directory: %w", err)
	}
	watcher, err := newDirWatcher(s.dir)
	if err != nil {
		return err
	}
	watcher.run(ctx, s.resync, s.read)
	return nil
}

// dirWatcher calls a function for a directory's changes: at once through inotify, and every resync
// period in case an event was lost.
type dirWatcher struct {
	dir     string
	watcher *fsnotify.Watcher
}

func newDirWatcher(dir string) (*dirWatcher, error) {
	watcher, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("watching %s: %w", dir, err)
	}
	if err := watcher.Add(dir); err != nil {
		_ = watcher.Close()
		return nil, fmt.Errorf("watching %s: %w", dir, err)
	}
	return &dirWatcher{dir: dir, watcher: watcher}, nil
}

// run calls read now, then after every change and every resync period, until ctx ends; then it closes
// the watch.
func (d *dirWatcher) run(ctx context.Context, resync time.Duration, read func()) {
	defer d.watcher.Close()
	ticker := time.NewTicker(resync)
	defer ticker.Stop()
	for {
		read()
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		case <-d.watcher.Events:
			d.settle(ctx)
		case err := <-d.watcher.Errors:
			klog.ErrorS(err, "Watching a manifest directory", "path", d.dir)
		}
	}
}

// settle waits until the directory has been quiet for 100 ms (at most a second): a file written in place
// is truncated before it is written, and read in between it would look empty.
func (d *dirWatcher) settle(ctx context.Context) {
	deadline := time.After(time.Second)
	for {
		select {
		case <-ctx.Done():
			return
		case <-deadline:
			return
		case <-d.watcher.Events:
		case <-time.After(100 * time.Millisecond):
			return
		}
	}
}

// read replaces the set of static pods with what the directory holds. A file that cannot be read or is not a
// valid Pod is logged and left out, so its pod stops as if the file were removed, as with the kubelet.
func (s *StaticPods) read() {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		klog.ErrorS(err, "Unable to read the static pod directory", "path", s.dir)
		return
	}
	pods := map[types.NamespacedName]*corev1.Pod{}
	for _, e := range entries {
		if e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		path := filepath.Join(s.dir, e.Name())
		pod, err := s.load(path)
		if err != nil {
			klog.ErrorS(err, "Could not process manifest file", "path", path)
			continue
		}
		key := types.NamespacedName{Namespace: pod.Namespace, Name: pod.Name}
		if _, dup := pods[key]; dup {
			klog.ErrorS(nil, "Static pod name is used by another manifest; ignoring this one", "path", path, "pod", key)
			continue
		}
		pods[key] = pod
	}
	s.mu.Lock()
	changed := !samePods(s.pods, pods)
	if changed {
		s.pods = pods
	}
	s.mu.Unlock()
	if changed {
		for _, fn := range s.onChange {
			fn()
		}
	}
}

func samePods(a, b map[types.NamespacedName]*corev1.Pod) bool {
	if len(a) != len(b) {
		return false
	}
	for k, p := range a {
		if q, ok := b[k]; !ok || q.UID != p.UID {
			return false
		}
	}
	return true
}

// load parses one manifest into the pod this node runs: named <name>-<node>, in namespace default unless
// it says otherwise, bound to this node, with the UID and config annotations derived from the file's
// content, so an unchanged file keeps its pod and a changed one replaces it.
func (s *StaticPods) load(path string) (*corev1.Pod, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	jsonData, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, err
	}
	pod := &corev1.Pod{}
	if err := decodeStrict(jsonData, pod); err != nil {
		return nil, err
	}
	if pod.APIVersion != "v1" || pod.Kind != "Pod" {
		return nil, fmt.Errorf("want apiVersion v1 and kind Pod, got %q %q", pod.APIVersion, pod.Kind)
	}
	if pod.Name == "" {
		return nil, fmt.Errorf("metadata.name: Required value")
	}
	if len(pod.Spec.Containers) == 0 {
		return nil, fmt.Errorf("spec.containers: Required value")
	}
	sum := sha256.Sum256(fmt.Appendf(data, "\x00host:%s\x00file:%s", s.nodeName, path))
	hash := hex.EncodeToString(sum[:16])
	pod.UID = types.UID(hash)
	pod.Name = pod.Name + "-" + strings.ToLower(s.nodeName)
	if pod.Namespace == "" {
		pod.Namespace = metav1.NamespaceDefault
	}
	if pod.Annotations == nil {
		pod.Annotations = map[string]string{}
	}
	pod.Annotations[AnnotationConfigSource] = "file"
	pod.Annotations[AnnotationConfigHash] = hash
	pod.Annotations[AnnotationConfigSeen] = time.Now().UTC().Format(time.RFC3339Nano)
	pod.Spec.NodeName = s.nodeName
	// Static pods tolerate every NoExecute taint, as the kubelet makes them.
	pod.Spec.Tolerations = append(pod.Spec.Tolerations, corev1.Toleration{Operator: corev1.TolerationOpExists,
		Effect: corev1.TaintEffectNoExecute})
	setPodDefaults(pod)
	return pod, nil
}

// setPodDefaults fills the fields the API server would default and the agent acts on.
func setPodDefaults(pod *corev1.Pod) {
	spec := &pod.Spec
	if spec.RestartPolicy == "" {
		spec.RestartPolicy = corev1.RestartPolicyAlways
	}
	if spec.DNSPolicy == "" {
		spec.DNSPolicy = corev1.DNSClusterFirst
	}
	if spec.TerminationGracePeriodSeconds == nil {
		grace := int64(corev1.DefaultTerminationGracePeriodSeconds)
		spec.TerminationGracePeriodSeconds = &grace
	}
	if spec.SchedulerName == "" {
		spec.SchedulerName = corev1.DefaultSchedulerName
	}
	for _, list := range [][]corev1.Container{spec.InitContainers, spec.Containers} {
		for i := range list {
			c := &list[i]
			if c.TerminationMessagePath == "" {
				c.TerminationMessagePath = corev1.TerminationMessagePathDefault
			}
			if c.TerminationMessagePolicy == "" {
				c.TerminationMessagePolicy = corev1.TerminationMessageReadFile
			}
			if c.ImagePullPolicy == "" {
				c.ImagePullPolicy = corev1.PullIfNotPresent
				if tagOf(c.Image) == "latest" {
					c.ImagePullPolicy = corev1.PullAlways
				}
			}
			for j := range c.Ports {
				if c.Ports[j].Protocol == "" {
					c.Ports[j].Protocol = corev1.ProtocolTCP
				}
			}
		}
	}
}

// tagOf is an image reference's tag; "latest" when it has neither tag nor digest.
func tagOf(image string) string {
	if strings.Contains(image, "@") {
		return ""
	}
	if i := strings.LastIndexByte(image, ':'); i > strings.LastIndexByte(image, '/') {
		return image[i+1:]
	}
	return "latest"
}

// MirrorOf is the mirror pod the API shows for a static pod: the same object, annotated config.mirror,
// owned by the node (the NodeRestriction admission requires that) and without the static UID.
func MirrorOf(static *corev1.Pod, node *corev1.Node) *corev1.Pod {
	mirror := static.DeepCopy()
	mirror.UID, mirror.ResourceVersion, mirror.Status = "", "", corev1.PodStatus{}
	mirror.Annotations[AnnotationConfigMirror] = static.Annotations[AnnotationConfigHash]
	controller := true
	mirror.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: node.Name, UID: node.UID,
		Controller: &controller}}
	return mirror
}
