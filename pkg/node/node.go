// Package node owns this node's Node object and Lease: it registers the Node, keeps its status (capacity,
// addresses, nodeInfo, conditions) current, renews the Lease in kube-node-lease, and turns spec.podCIDR into
// the agent's own CNI conflist. It touches no Pod and no other Node.
package node

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/component-helpers/apimachinery/lease"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
)

// Runtime is what the node needs of the container runtime.
type Runtime interface {
	Version(ctx context.Context, apiVersion string) (*runtimeapi.VersionResponse, error)
	Status(ctx context.Context, verbose bool) (*runtimeapi.StatusResponse, error)
}

// Config is what the node controller needs to know.
type Config struct {
	Name   string
	NodeIP string // empty: the default-route interface's address
	// DeclaredFeatures are the node features (KEP-5328, status.declaredFeatures) the agent implements, which
	// the API server and scheduler rely on.
	DeclaredFeatures     []string
	MaxPods              int32
	RootDir              string
	KubeletPort          int32
	AgentVersion         string
	StatusUpdateInterval time.Duration
	StatusReportInterval time.Duration
	LeaseDuration        time.Duration
	CNIConfDir           string
	CNIBridge            string // the Linux bridge of the node's pods
	PodCIDR              string // used when the Node has no spec.podCIDR
	// Pressure reports the node's resource pressure (the eviction manager); nil means never any.
	Pressure Pressure
	// Labels are added to the Node's well-known ones at registration, and to an adopted Node that lacks
	// them: what the agent runs on the node (nodeagent.io/proxy, ...), which the cluster's own DaemonSets
	// select against.
	Labels map[string]string
	// Publish, set in standalone mode (no API server), receives the Node with each new status instead of
	// the API server; the controller then keeps no Lease.
	Publish func(*corev1.Node)
}

// Pressure is what the node status needs of the eviction manager: the three conditions, and a signal when
// one of them changes so the status is posted at once.
type Pressure interface {
	MemoryPressure() bool
	DiskPressure() bool
	PIDPressure() bool
	PressureChanged() <-chan struct{}
}

// Controller keeps the Node and its Lease current.
type Controller struct {
	cfg     Config
	client  kubernetes.Interface
	runtime Runtime
	// getNode reads the Node from the shared cache.
	getNode func() *corev1.Node

	// kick asks Run for a sync now, for example when the podCIDR arrives.
	kick chan struct{}

	lastPosted   corev1.NodeStatus
	lastPostedAt time.Time
}

// NewController returns a controller; Run does the work.
func NewController(cfg Config, client kubernetes.Interface, runtime Runtime, getNode func() *corev1.Node) *Controller {
	return &Controller{cfg: cfg, client: client, runtime: runtime, getNode: getNode, kick: make(chan struct{}, 1)}
}

// Kick makes Run sync now instead of at its next tick; it never blocks.
func (c *Controller) Kick() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// Register creates the Node, or adopts an existing one of the same name, retrying until ctx ends.
func (c *Controller) Register(ctx context.Context) error {
	for {
		err := c.register(ctx)
		if err == nil {
			return nil
		}
		klog.ErrorS(err, "Unable to register node", "node", c.cfg.Name)
		select {
		case <-ctx.Done():
			return fmt.Errorf("registering node %s: %w", c.cfg.Name, ctx.Err())
		case <-time.After(2 * time.Second):
		}
	}
}

func (c *Controller) register(ctx context.Context) error {
	status, err := c.computeStatus(ctx)
	if err != nil {
		return err
	}
	n := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: c.cfg.Name, Labels: c.nodeLabels()},
		Status:     status,
	}
	if c.cfg.Publish != nil {
		n.CreationTimestamp = metav1.Now()
		return c.postStatus(ctx, n, status)
	}
	created, err := c.client.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{})
	switch {
	case err == nil:
		klog.InfoS("Registered node", "node", c.cfg.Name)
		n = created
	case apierrors.IsAlreadyExists(err):
		klog.InfoS("Node already registered, adopting it", "node", c.cfg.Name)
		if n, err = c.client.CoreV1().Nodes().Get(ctx, c.cfg.Name, metav1.GetOptions{}); err != nil {
			return err
		}
		if n, err = c.addLabels(ctx, n); err != nil {
			return err
		}
	default:
		return err
	}
	return c.postStatus(ctx, n, status)
}

func (c *Controller) nodeLabels() map[string]string {
	labels := map[string]string{
		corev1.LabelHostname:   c.cfg.Name,
		corev1.LabelOSStable:   "linux",
		corev1.LabelArchStable: goarch(),
	}
	maps.Copy(labels, c.cfg.Labels)
	return labels
}

// addLabels patches the agent's own labels onto an adopted Node that lacks them (a Node registered
// before, or by a kubelet); the well-known labels it already has are the cluster's business.
func (c *Controller) addLabels(ctx context.Context, n *corev1.Node) (*corev1.Node, error) {
	missing := map[string]string{}
	for k, v := range c.cfg.Labels {
		if n.Labels[k] != v {
			missing[k] = v
		}
	}
	if len(missing) == 0 {
		return n, nil
	}
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"labels": missing}})
	if err != nil {
		return nil, err
	}
	patched, err := c.client.CoreV1().Nodes().Patch(ctx, n.Name, types.StrategicMergePatchType, patch, metav1.PatchOptions{})
	if err != nil {
		return nil, fmt.Errorf("labelling node %s: %w", n.Name, err)
	}
	return patched, nil
}

// Run renews the Lease, updates the status and writes the CNI config until ctx ends.
func (c *Controller) Run(ctx context.Context) {
	if c.cfg.Publish == nil {
		renew := c.cfg.LeaseDuration / 4
		leases := lease.NewController(clock.RealClock{}, c.client, c.cfg.Name, int32(c.cfg.LeaseDuration.Seconds()),
			nil, renew, c.cfg.Name, corev1.NamespaceNodeLease, c.setLeaseOwner)
		go leases.Run(ctx)
	}

	ticker := time.NewTicker(c.cfg.StatusUpdateInterval)
	defer ticker.Stop()
	var pressureChanged <-chan struct{} // nil without a Pressure: never ready
	if c.cfg.Pressure != nil {
		pressureChanged = c.cfg.Pressure.PressureChanged()
	}
	for {
		c.syncCNI()
		if err := c.syncStatus(ctx); err != nil {
			klog.ErrorS(err, "Unable to update node status", "node", c.cfg.Name)
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		case <-c.kick:
		case <-pressureChanged:
		}
	}
}

// syncCNI writes the CNI conflist for the pod CIDR, from the Node or, failing that, the configuration.
func (c *Controller) syncCNI() {
	podCIDR := c.cfg.PodCIDR
	if n := c.getNode(); n != nil && n.Spec.PodCIDR != "" {
		podCIDR = n.Spec.PodCIDR
	}
	if podCIDR == "" {
		return
	}
	changed, err := WriteCNIConfig(c.cfg.CNIConfDir, c.cfg.CNIBridge, podCIDR)
	if err != nil {
		klog.ErrorS(err, "Unable to write CNI config", "podCIDR", podCIDR)
		return
	}
	if changed {
		klog.InfoS("Wrote CNI config for the pod CIDR", "podCIDR", podCIDR, "dir", c.cfg.CNIConfDir)
		if err := ClearStaleBridgeAddresses(c.cfg.CNIBridge, podCIDR); err != nil {
			klog.ErrorS(err, "Unable to clear stale bridge addresses", "bridge", c.cfg.CNIBridge)
		}
	}
}

// setLeaseOwner makes the Node own its Lease, as the kubelet does, so deleting the Node deletes the Lease.
func (c *Controller) setLeaseOwner(l *coordinationv1.Lease) error {
	if len(l.OwnerReferences) > 0 {
		return nil
	}
	n := c.getNode()
	if n == nil {
		return nil // try again at the next renewal, once the cache has the Node
	}
	l.OwnerReferences = []metav1.OwnerReference{{
		APIVersion: corev1.SchemeGroupVersion.WithKind("Node").Version,
		Kind:       "Node",
		Name:       n.Name,
		UID:        n.UID,
	}}
	return nil
}

func (c *Controller) syncStatus(ctx context.Context) error {
	n := c.getNode()
	if n == nil {
		return c.register(ctx)
	}
	status, err := c.computeStatus(ctx)
	if err != nil {
		return err
	}
	// As the kubelet, compare with the Node as the API server holds it too: the node lifecycle controller
	// sets Ready=Unknown while it hears nothing (an API server outage), and the node must say it is Ready
	// again at its next update, not at its next periodic report minutes later.
	if statusEqual(status, c.lastPosted) && conditionsHeld(status.Conditions, n.Status.Conditions) &&
		time.Since(c.lastPostedAt) < c.cfg.StatusReportInterval {
		return nil
	}
	return c.postStatus(ctx, n, status)
}

// conditionsHeld says whether the Node holds each of ours with the same status, reason and message.
func conditionsHeld(ours, held []corev1.NodeCondition) bool {
	for _, want := range ours {
		found := false
		for _, got := range held {
			if got.Type == want.Type {
				found = got.Status == want.Status && got.Reason == want.Reason && got.Message == want.Message
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// postStatus merges the computed status into the Node's status subresource, keeping transition times of
// conditions whose status did not change.
func (c *Controller) postStatus(ctx context.Context, n *corev1.Node, status corev1.NodeStatus) error {
	now := metav1.Now()
	for i := range status.Conditions {
		cond := &status.Conditions[i]
		cond.LastHeartbeatTime = now
		cond.LastTransitionTime = now
		for _, old := range n.Status.Conditions {
			if old.Type == cond.Type && old.Status == cond.Status && !old.LastTransitionTime.IsZero() {
				cond.LastTransitionTime = old.LastTransitionTime
			}
		}
	}
	if c.cfg.Publish != nil {
		published := n.DeepCopy()
		published.Status = status
		c.cfg.Publish(published)
		c.lastPosted, c.lastPostedAt = status, time.Now()
		return nil
	}
	patch, err := json.Marshal(map[string]any{"status": status})
	if err != nil {
		return err
	}
	if _, err := c.client.CoreV1().Nodes().Patch(ctx, n.Name, types.StrategicMergePatchType, patch,
		metav1.PatchOptions{}, "status"); err != nil {
		return fmt.Errorf("patching node status: %w", err)
	}
	c.lastPosted, c.lastPostedAt = status, time.Now()
	return nil
}

// statusEqual compares two statuses ignoring heartbeat and transition times.
func statusEqual(a, b corev1.NodeStatus) bool {
	strip := func(s corev1.NodeStatus) corev1.NodeStatus {
		s = *s.DeepCopy()
		for i := range s.Conditions {
			s.Conditions[i].LastHeartbeatTime = metav1.Time{}
			s.Conditions[i].LastTransitionTime = metav1.Time{}
		}
		return s
	}
	return reflect.DeepEqual(strip(a), strip(b))
}

// RegisterMetrics adds the kubelet's kubelet_node_name{node} (always 1), the key kubelet alerts join on.
func (c *Controller) RegisterMetrics(reg prometheus.Registerer) error {
	name := prometheus.NewGaugeVec(prometheus.GaugeOpts{Subsystem: "kubelet", Name: "node_name",
		Help: "The node's name. The count is always 1."}, []string{"node"})
	name.WithLabelValues(c.cfg.Name).Set(1)
	if err := reg.Register(name); err != nil {
		return fmt.Errorf("registering node metrics: %w", err)
	}
	return nil
}
