package source

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// Manifests is the standalone mode's source, for a node with no API server: the Pods, Services, ConfigMaps
// and Secrets of the YAML or JSON files of a directory (several objects per file, separated by ---),
// EndpointSlices computed from the pods' labels and readiness as the EndpointSlice controller does, pod
// status kept in memory, and the Node the agent describes itself with. The components read it through the
// same informers, listers and handlers as the API server's objects (Pods, Services, EndpointSlices, Node,
// OnPodChange, OnNodeChange); the pod manager writes status to it (WriteStatus, Finalize) and reads the
// ConfigMaps and Secrets its pods use from it (ConfigMap, Secret).
//
// Editing or removing a file converges: a Pod whose document changed is replaced (its UID is the hash of
// the document, as a static pod's), a Pod no file holds any more is deleted gracefully, and Services and
// mounted objects change in place. A file that cannot be read or holds an invalid object keeps the objects
// it held before, and the reason is logged with the file's path.
type Manifests struct {
	dir         string
	nodeName    string
	resync      time.Duration
	serviceCIDR netip.Prefix

	pods, services, slices                      *memoryObjects
	podInformer, serviceInformer, sliceInformer cache.SharedIndexInformer
	serviceSlices                               func() (*ServiceSlices, error)
	informers                                   sync.WaitGroup

	mu         sync.Mutex
	files      map[string]manifestFile // the last good content of each file, by path
	configMaps map[string]*corev1.ConfigMap
	secrets    map[string]*corev1.Secret
	wantPods   map[string]*corev1.Pod
	node       *corev1.Node
	onNode     []func(*corev1.Node)
}

// manifestFile is what one file holds.
type manifestFile struct {
	pods       []*corev1.Pod
	services   []*corev1.Service
	configMaps []*corev1.ConfigMap
	secrets    []*corev1.Secret
}

// NewManifests returns the source of dir for this node; Services without a clusterIP get one of
// serviceCIDR. Nothing is read until Start.
func NewManifests(dir, nodeName string, serviceCIDR netip.Prefix, resync time.Duration) *Manifests {
	m := &Manifests{dir: dir, nodeName: nodeName, serviceCIDR: serviceCIDR, resync: resync,
		files: map[string]manifestFile{}, configMaps: map[string]*corev1.ConfigMap{}, secrets: map[string]*corev1.Secret{},
		wantPods: map[string]*corev1.Pod{}}
	m.pods = newMemoryObjects(func(items []runtime.Object) runtime.Object {
		list := &corev1.PodList{}
		for _, o := range items {
			list.Items = append(list.Items, *o.(*corev1.Pod))
		}
		return list
	})
	m.services = newMemoryObjects(func(items []runtime.Object) runtime.Object {
		list := &corev1.ServiceList{}
		for _, o := range items {
			list.Items = append(list.Items, *o.(*corev1.Service))
		}
		return list
	})
	m.slices = newMemoryObjects(func(items []runtime.Object) runtime.Object {
		list := &discoveryv1.EndpointSliceList{}
		for _, o := range items {
			list.Items = append(list.Items, *o.(*discoveryv1.EndpointSlice))
		}
		return list
	})
	// One Indexers map each: the consumers' AddIndexers adds to the map itself. Slices have no namespace
	// index, as in FactoryServices.
	indexers := func() cache.Indexers { return cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc} }
	m.podInformer = cache.NewSharedIndexInformer(m.pods, &corev1.Pod{}, 0, indexers())
	m.serviceInformer = cache.NewSharedIndexInformer(m.services, &corev1.Service{}, 0, indexers())
	m.sliceInformer = cache.NewSharedIndexInformer(m.slices, &discoveryv1.EndpointSlice{}, 0, cache.Indexers{})
	m.serviceSlices = sync.OnceValues(func() (*ServiceSlices, error) { return WatchServiceSlices(m.sliceInformer) })
	return m
}

// Pods lists the manifests' Pods, with the status the node wrote.
func (m *Manifests) Pods() corelisters.PodLister {
	return corelisters.NewPodLister(m.podInformer.GetIndexer())
}

// OnPodChange calls fn with the Pod after every add, update and delete.
func (m *Manifests) OnPodChange(fn func(*corev1.Pod)) error {
	_, err := m.podInformer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { callWithPod(obj, fn) },
		UpdateFunc: func(_, obj any) { callWithPod(obj, fn) },
		DeleteFunc: func(obj any) { callWithPod(obj, fn) },
	})
	return err
}

// Services are the manifests' Services, with the cluster IPs given to them.
func (m *Manifests) Services() cache.SharedIndexInformer { return m.serviceInformer }

// EndpointSlices are the Services' endpoints, from the Pods that match their selectors.
func (m *Manifests) EndpointSlices() cache.SharedIndexInformer { return m.sliceInformer }

// ServiceSlices are the EndpointSlices of each Service, one for all consumers, made at the first call.
func (m *Manifests) ServiceSlices() (*ServiceSlices, error) { return m.serviceSlices() }

// Node is the Node the agent last described itself with (SetNode), nil before.
func (m *Manifests) Node() *corev1.Node {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.node
}

// SetNode replaces the node's own Node object and tells those who registered with OnNodeChange.
func (m *Manifests) SetNode(n *corev1.Node) {
	m.mu.Lock()
	m.node = n
	handlers := slices.Clone(m.onNode)
	m.mu.Unlock()
	for _, fn := range handlers {
		fn(n)
	}
}

// OnNodeChange calls fn after every SetNode.
func (m *Manifests) OnNodeChange(fn func(*corev1.Node)) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.onNode = append(m.onNode, fn)
	return nil
}

// Start reads the directory, fills the caches and keeps reading the directory on every change and every
// resync period until ctx ends.
func (m *Manifests) Start(ctx context.Context) error {
	if err := os.MkdirAll(m.dir, 0o755); err != nil {
		return fmt.Errorf("manifest directory: %w", err)
	}
	m.read()
	for _, inf := range []cache.SharedIndexInformer{m.podInformer, m.serviceInformer, m.sliceInformer} {
		m.informers.Add(1)
		go func() { defer m.informers.Done(); inf.RunWithContext(ctx) }()
	}
	if !cache.WaitForCacheSync(ctx.Done(), m.podInformer.HasSynced, m.serviceInformer.HasSynced, m.sliceInformer.HasSynced) {
		return fmt.Errorf("manifest caches did not fill: %w", ctx.Err())
	}
	watcher, err := newDirWatcher(m.dir)
	if err != nil {
		return err
	}
	m.informers.Add(1)
	go func() {
		defer m.informers.Done()
		watcher.run(ctx, m.resync, m.read)
	}()
	return nil
}

// Shutdown waits for the informers and the directory watch after ctx given to Start ended.
func (m *Manifests) Shutdown() {
	for _, o := range []*memoryObjects{m.pods, m.services, m.slices} {
		o.shutdown()
	}
	m.informers.Wait()
}

// ConfigMap returns a ConfigMap of the manifests; the user does not matter: nothing is watched for it.
func (m *Manifests) ConfigMap(_ context.Context, _ types.UID, namespace, name string) (*corev1.ConfigMap, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if cm, ok := m.configMaps[namespace+"/"+name]; ok {
		return cm, nil
	}
	return nil, apierrors.NewNotFound(corev1.Resource("configmaps"), name)
}

// Secret returns a Secret of the manifests.
func (m *Manifests) Secret(_ context.Context, _ types.UID, namespace, name string) (*corev1.Secret, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if s, ok := m.secrets[namespace+"/"+name]; ok {
		return s, nil
	}
	return nil, apierrors.NewNotFound(corev1.Resource("secrets"), name)
}

// Release has nothing to stop: the manifests' objects are all in memory.
func (m *Manifests) Release(types.UID) {}

// WriteStatus keeps status as the Pod's, for the listers, the node API and the Services' endpoints.
func (m *Manifests) WriteStatus(_ context.Context, target *corev1.Pod, status *corev1.PodStatus) error {
	key := target.Namespace + "/" + target.Name
	m.mu.Lock()
	defer m.mu.Unlock()
	obj, ok := m.pods.get(key)
	if !ok || obj.(*corev1.Pod).UID != target.UID {
		return apierrors.NewNotFound(corev1.Resource("pods"), target.Name)
	}
	pod := obj.(*corev1.Pod).DeepCopy()
	pod.Status = *status.DeepCopy()
	if err := m.pods.put(pod); err != nil {
		return err
	}
	return m.syncEndpointSlices()
}

// Finalize removes a deleted Pod once nothing of it runs, and creates the Pod a file holds in its place.
func (m *Manifests) Finalize(_ context.Context, pod *corev1.Pod) error {
	key := pod.Namespace + "/" + pod.Name
	m.mu.Lock()
	defer m.mu.Unlock()
	if obj, ok := m.pods.get(key); ok && obj.(*corev1.Pod).UID == pod.UID {
		if err := m.pods.remove(key); err != nil {
			return err
		}
	}
	return m.converge()
}

// read parses every file of the directory and converges the objects to what they hold.
func (m *Manifests) read() {
	entries, err := os.ReadDir(m.dir)
	if err != nil {
		klog.ErrorS(err, "Unable to read the manifest directory", "path", m.dir)
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	seen := map[string]bool{}
	for _, e := range entries {
		if e.IsDir() || strings.HasPrefix(e.Name(), ".") || !slices.Contains([]string{".yaml", ".yml", ".json"}, filepath.Ext(e.Name())) {
			continue
		}
		path := filepath.Join(m.dir, e.Name())
		seen[path] = true
		file, err := m.load(path)
		if err != nil {
			if _, had := m.files[path]; had {
				klog.ErrorS(err, "Manifest not applied: its objects stay as they were", "path", path)
			} else {
				klog.ErrorS(err, "Manifest not applied", "path", path)
			}
			continue
		}
		m.files[path] = file
	}
	for path := range m.files {
		if !seen[path] {
			delete(m.files, path)
		}
	}
	if err := m.converge(); err != nil {
		klog.ErrorS(err, "Unable to apply the manifests", "path", m.dir)
	}
}

// load parses one file; an error names the document and the field.
func (m *Manifests) load(path string) (manifestFile, error) {
	var file manifestFile
	data, err := os.ReadFile(path)
	if err != nil {
		return file, err
	}
	docs := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for i := 1; ; i++ {
		doc, err := docs.Read()
		if errors.Is(err, io.EOF) {
			return file, nil
		}
		if err != nil {
			return file, fmt.Errorf("document %d: %w", i, err)
		}
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		if err := m.decode(&file, path, doc); err != nil {
			return file, fmt.Errorf("document %d: %w", i, err)
		}
	}
}

// decode adds one document's object to file, with the defaults the API server would give it.
func (m *Manifests) decode(file *manifestFile, path string, doc []byte) error {
	jsonData, err := yaml.YAMLToJSON(doc)
	if err != nil {
		return err
	}
	var typeMeta metav1.TypeMeta
	if err := kjson.UnmarshalCaseSensitivePreserveInts(jsonData, &typeMeta); err != nil {
		return err
	}
	if typeMeta.APIVersion != "v1" {
		return fmt.Errorf("apiVersion %q kind %q: standalone mode reads v1 Pods, Services, ConfigMaps and Secrets", typeMeta.APIVersion, typeMeta.Kind)
	}
	switch typeMeta.Kind {
	case "Pod":
		pod := &corev1.Pod{}
		if err := decodeStrict(jsonData, pod); err != nil {
			return err
		}
		if err := m.completePod(pod, path, jsonData); err != nil {
			return err
		}
		file.pods = append(file.pods, pod)
	case "Service":
		svc := &corev1.Service{}
		if err := decodeStrict(jsonData, svc); err != nil {
			return err
		}
		if err := completeObjectMeta(&svc.ObjectMeta); err != nil {
			return err
		}
		setServiceDefaults(svc)
		file.services = append(file.services, svc)
	case "ConfigMap":
		cm := &corev1.ConfigMap{}
		if err := decodeStrict(jsonData, cm); err != nil {
			return err
		}
		if err := completeObjectMeta(&cm.ObjectMeta); err != nil {
			return err
		}
		file.configMaps = append(file.configMaps, cm)
	case "Secret":
		secret := &corev1.Secret{}
		if err := decodeStrict(jsonData, secret); err != nil {
			return err
		}
		if err := completeObjectMeta(&secret.ObjectMeta); err != nil {
			return err
		}
		if secret.Data == nil {
			secret.Data = map[string][]byte{}
		}
		for k, v := range secret.StringData { // as the API server: stringData is written into data
			secret.Data[k] = []byte(v)
		}
		secret.StringData = nil
		if secret.Type == "" {
			secret.Type = corev1.SecretTypeOpaque
		}
		file.secrets = append(file.secrets, secret)
	default:
		return fmt.Errorf("kind %q: standalone mode reads v1 Pods, Services, ConfigMaps and Secrets", typeMeta.Kind)
	}
	return nil
}

// decodeStrict unmarshals JSON into obj, refusing unknown and duplicate fields as kubectl's validation does.
func decodeStrict(jsonData []byte, obj any) error {
	strictErrs, err := kjson.UnmarshalStrict(jsonData, obj)
	if err != nil {
		return err
	}
	if len(strictErrs) > 0 {
		return fmt.Errorf("%v", errors.Join(strictErrs...))
	}
	return nil
}

// completeObjectMeta checks the name and puts the object in namespace default unless it names another.
func completeObjectMeta(meta *metav1.ObjectMeta) error {
	if meta.Name == "" {
		return fmt.Errorf("metadata.name: Required value")
	}
	if meta.Namespace == "" {
		meta.Namespace = metav1.NamespaceDefault
	}
	return nil
}

// completePod binds the Pod to this node with a UID derived from its document, so an unchanged document
// keeps its pod and a changed one replaces it.
func (m *Manifests) completePod(pod *corev1.Pod, path string, jsonData []byte) error {
	if err := completeObjectMeta(&pod.ObjectMeta); err != nil {
		return err
	}
	if len(pod.Spec.Containers) == 0 {
		return fmt.Errorf("pod %s/%s: spec.containers: Required value", pod.Namespace, pod.Name)
	}
	if pod.Spec.NodeName != "" && pod.Spec.NodeName != m.nodeName {
		return fmt.Errorf("pod %s/%s: spec.nodeName: %q is not this node (%s)", pod.Namespace, pod.Name, pod.Spec.NodeName, m.nodeName)
	}
	sum := sha256.Sum256(fmt.Appendf(jsonData, "\x00host:%s\x00file:%s", m.nodeName, path))
	pod.UID = types.UID(hex.EncodeToString(sum[:16]))
	pod.Spec.NodeName = m.nodeName
	pod.Status = corev1.PodStatus{Phase: corev1.PodPending}
	setPodDefaults(pod)
	return nil
}

// setServiceDefaults fills what the API server defaults; the cluster IP and node ports come later
// (assignAddresses), when every Service is known.
func setServiceDefaults(svc *corev1.Service) {
	spec := &svc.Spec
	if spec.Type == "" {
		spec.Type = corev1.ServiceTypeClusterIP
	}
	if spec.SessionAffinity == "" {
		spec.SessionAffinity = corev1.ServiceAffinityNone
	}
	if spec.Type != corev1.ServiceTypeExternalName && spec.InternalTrafficPolicy == nil {
		cluster := corev1.ServiceInternalTrafficPolicyCluster
		spec.InternalTrafficPolicy = &cluster
	}
	if (spec.Type == corev1.ServiceTypeNodePort || spec.Type == corev1.ServiceTypeLoadBalancer) && spec.ExternalTrafficPolicy == "" {
		spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyCluster
	}
	for i := range spec.Ports {
		p := &spec.Ports[i]
		if p.Protocol == "" {
			p.Protocol = corev1.ProtocolTCP
		}
		if p.TargetPort == (intstr.IntOrString{}) {
			p.TargetPort = intstr.FromInt32(p.Port)
		}
	}
}

// converge makes the objects in memory what the files hold (m.mu is held): ConfigMaps and Secrets at
// once, Services with their addresses, Pods (a changed or removed Pod is deleted first, and its successor
// created once Finalize removed it), then the EndpointSlices.
func (m *Manifests) converge() error {
	want := manifestFile{}
	for _, path := range sortedKeys(m.files) {
		f := m.files[path]
		want.pods = append(want.pods, f.pods...)
		want.services = append(want.services, f.services...)
		want.configMaps = append(want.configMaps, f.configMaps...)
		want.secrets = append(want.secrets, f.secrets...)
	}
	m.configMaps = byKey(want.configMaps, func(c *corev1.ConfigMap) *metav1.ObjectMeta { return &c.ObjectMeta })
	m.secrets = byKey(want.secrets, func(s *corev1.Secret) *metav1.ObjectMeta { return &s.ObjectMeta })
	services := byKey(want.services, func(s *corev1.Service) *metav1.ObjectMeta { return &s.ObjectMeta })
	m.assignAddresses(services)
	if err := convergeStore(m.services, services, func(a, b *corev1.Service) bool {
		return apiequality.Semantic.DeepEqual(a.Spec, b.Spec) && maps.Equal(a.Labels, b.Labels)
	}); err != nil {
		return err
	}
	m.wantPods = byKey(want.pods, func(p *corev1.Pod) *metav1.ObjectMeta { return &p.ObjectMeta })
	if err := m.convergePods(); err != nil {
		return err
	}
	return m.syncEndpointSlices()
}

// convergePods deletes gracefully the Pods no file holds as they are, and creates those a file holds
// whose name is free.
func (m *Manifests) convergePods() error {
	for _, key := range m.pods.keys() {
		obj, _ := m.pods.get(key)
		have := obj.(*corev1.Pod)
		if want, ok := m.wantPods[key]; (ok && want.UID == have.UID) || have.DeletionTimestamp != nil {
			continue
		}
		deleting := have.DeepCopy()
		now := metav1.Now()
		deleting.DeletionTimestamp = &now
		deleting.DeletionGracePeriodSeconds = deleting.Spec.TerminationGracePeriodSeconds
		if err := m.pods.put(deleting); err != nil {
			return err
		}
	}
	for _, key := range sortedKeys(m.wantPods) {
		if _, taken := m.pods.get(key); taken {
			continue
		}
		pod := m.wantPods[key].DeepCopy()
		pod.CreationTimestamp = metav1.Now()
		if err := m.pods.put(pod); err != nil {
			return err
		}
	}
	return nil
}

// assignAddresses gives each Service without one a cluster IP of the service range, and each NodePort
// Service's ports without one a node port, as the API server's allocators: a free address chosen from a
// hash of the Service's name, so the same file gives the same address after a restart.
func (m *Manifests) assignAddresses(services map[string]*corev1.Service) {
	usedIPs := map[netip.Addr]bool{}
	usedPorts := map[int32]bool{}
	for key, svc := range services {
		if had, ok := m.services.get(key); ok { // keep what it was given before
			keepAddresses(&svc.Spec, &had.(*corev1.Service).Spec)
		}
		if ip, err := netip.ParseAddr(svc.Spec.ClusterIP); err == nil {
			usedIPs[ip] = true
		}
		for _, p := range svc.Spec.Ports {
			usedPorts[p.NodePort] = true
		}
	}
	for _, key := range sortedKeys(services) {
		spec := &services[key].Spec
		if spec.Type != corev1.ServiceTypeExternalName && spec.ClusterIP == "" {
			ip := freeAddress(m.serviceCIDR, key, usedIPs)
			usedIPs[ip] = true
			spec.ClusterIP = ip.String()
		}
		if spec.ClusterIP != "" && spec.ClusterIP != corev1.ClusterIPNone {
			spec.ClusterIPs = []string{spec.ClusterIP}
			family := corev1.IPv4Protocol
			if ip, err := netip.ParseAddr(spec.ClusterIP); err == nil && ip.Is6() {
				family = corev1.IPv6Protocol
			}
			spec.IPFamilies = []corev1.IPFamily{family}
		}
		if spec.Type != corev1.ServiceTypeNodePort && spec.Type != corev1.ServiceTypeLoadBalancer {
			continue
		}
		for i := range spec.Ports {
			if spec.Ports[i].NodePort == 0 {
				port := freeNodePort(key+"/"+spec.Ports[i].Name, usedPorts)
				usedPorts[port] = true
				spec.Ports[i].NodePort = port
			}
		}
	}
}

// keepAddresses gives spec the cluster IP and node ports it had, where it asks for none.
func keepAddresses(spec, had *corev1.ServiceSpec) {
	if spec.ClusterIP == "" && spec.Type != corev1.ServiceTypeExternalName && had.ClusterIP != corev1.ClusterIPNone {
		spec.ClusterIP = had.ClusterIP
	}
	for i := range spec.Ports {
		for _, old := range had.Ports {
			if spec.Ports[i].NodePort == 0 && old.Name == spec.Ports[i].Name && old.Protocol == spec.Ports[i].Protocol {
				spec.Ports[i].NodePort = old.NodePort
			}
		}
	}
}

// freeAddress is the first address of prefix, from one chosen by a hash of key on, that is not used; it
// skips the network's first address (the kubernetes Service's, by convention) and, for IPv4, the broadcast.
func freeAddress(prefix netip.Prefix, key string, used map[netip.Addr]bool) netip.Addr {
	bits := prefix.Addr().BitLen() - prefix.Bits()
	size := uint64(1) << min(bits, 32)
	sum := sha256.Sum256([]byte(key))
	offset := binary.BigEndian.Uint64(sum[:8]) % size
	for range size {
		offset = (offset + 1) % size
		if offset < 2 || offset == size-1 {
			continue
		}
		ip := addOffset(prefix.Masked().Addr(), offset)
		if !used[ip] {
			return ip
		}
	}
	return netip.Addr{}
}

func addOffset(base netip.Addr, offset uint64) netip.Addr {
	b := base.AsSlice()
	for i := len(b) - 1; i >= 0 && offset > 0; i-- {
		sum := uint64(b[i]) + offset&0xff
		b[i] = byte(sum)
		offset = offset>>8 + sum>>8
	}
	ip, _ := netip.AddrFromSlice(b)
	return ip
}

// freeNodePort is a free port of the default node port range, 30000-32767, chosen as freeAddress chooses.
func freeNodePort(key string, used map[int32]bool) int32 {
	const first, size = 30000, 2768
	sum := sha256.Sum256([]byte(key))
	offset := binary.BigEndian.Uint32(sum[:4]) % size
	for range size {
		port := int32(first + offset)
		if !used[port] {
			return port
		}
		offset = (offset + 1) % size
	}
	return 0
}

// convergeStore makes store hold want: objects added, changed (when same says they differ) or removed.
func convergeStore[T runtime.Object](store *memoryObjects, want map[string]T, same func(a, b T) bool) error {
	for _, key := range store.keys() {
		if _, ok := want[key]; !ok {
			if err := store.remove(key); err != nil {
				return err
			}
		}
	}
	for _, key := range sortedKeys(want) {
		if have, ok := store.get(key); ok && same(have.(T), want[key]) {
			continue
		}
		if err := store.put(want[key].DeepCopyObject()); err != nil {
			return err
		}
	}
	return nil
}

// byKey indexes objects by namespace/name; of two with the same key, the first (by file name) is kept.
func byKey[T any](objects []T, meta func(T) *metav1.ObjectMeta) map[string]T {
	out := make(map[string]T, len(objects))
	for _, o := range objects {
		m := meta(o)
		key := m.Namespace + "/" + m.Name
		if _, dup := out[key]; dup {
			klog.ErrorS(nil, "An object of this kind and name is in two manifests: the first file's is used", "object", key)
			continue
		}
		out[key] = o
	}
	return out
}

func sortedKeys[T any](m map[string]T) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
